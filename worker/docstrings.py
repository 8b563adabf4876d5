"""Descriptions from docstrings: Google, NumPy, reST and Epydoc styles.

docstring-parser does the parsing; this module papers over the traps we
know of: a docstring that starts directly with ``Args:`` (no summary line)
after ``inspect.cleandoc``, starred names (``*args``, ``**kwargs``), and
parameter descriptions with continuation lines.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import docstring_parser


@dataclass
class DocInfo:
    description: str = ""
    params: dict[str, str] = field(default_factory=dict)
    returns: str = ""


_SECTION_STARTS = ("Args:", "Arguments:", "Parameters:", "Params:", "Keyword Args:")


def parse_docstring(obj: object) -> DocInfo:
    """Parse ``obj.__doc__``; a docstring that cannot be parsed gives only its text."""
    raw = inspect.getdoc(obj)
    if not raw:
        return DocInfo()
    text = raw
    if text.lstrip().startswith(_SECTION_STARTS):
        # Without a summary line docstring-parser takes "Args:" for the summary.
        text = "\n" + text
    try:
        parsed = docstring_parser.parse(text)
    except Exception:
        return DocInfo(description=raw.strip())
    parts = [p for p in (parsed.short_description, parsed.long_description) if p]
    info = DocInfo(description="\n\n".join(p.strip() for p in parts))
    for param in parsed.params:
        name = param.arg_name.split()[-1].lstrip("*") if param.arg_name else ""
        if name and param.description:
            info.params[name] = " ".join(param.description.split())
    if parsed.returns and parsed.returns.description:
        info.returns = " ".join(parsed.returns.description.split())
    return info
