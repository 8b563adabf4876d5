"""Descriptions from docstrings: Google, NumPy, reST and Epydoc styles.

docstring-parser does the parsing; this module papers over the traps we
know of: a docstring that starts directly with ``Args:`` (no summary line)
after ``inspect.cleandoc``, starred names (``*args``, ``**kwargs``), and
parameter descriptions with continuation lines.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from docstring_parser import Docstring, ParseError, epydoc, rest
from docstring_parser.google import GoogleParser
from docstring_parser.numpydoc import NumpydocParser


@dataclass
class DocInfo:
    description: str = ""
    params: dict[str, str] = field(default_factory=dict)
    returns: str = ""


_SECTION_STARTS = ("Args:", "Arguments:", "Parameters:", "Params:", "Keyword Args:")

#: ``docstring_parser.parse``'s automatic style, built once: the same four
#: parsers in the same order. Its Google and NumPy parsers compile their
#: section patterns on every call (about half of a schema's time).
_PARSERS = (rest.parse, GoogleParser().parse, NumpydocParser().parse, epydoc.parse)


def _parse_any_style(text: str) -> Docstring:
    """What ``docstring_parser.parse(text)`` returns: the parse with the most
    entries, the first of them on a tie. Raises the last ``ParseError`` if
    every style fails."""
    best: Docstring | None = None
    error: ParseError | None = None
    for parse in _PARSERS:
        try:
            parsed = parse(text)
        except ParseError as exc:
            error = exc
            continue
        if best is None or len(parsed.meta) > len(best.meta):
            best = parsed
    if best is None:
        raise error or ParseError("no docstring style applies")
    return best


def parse_docstring(obj: object) -> DocInfo:
    """Parse ``obj.__doc__``; a docstring that cannot be parsed gives only its text."""
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return DocInfo()
    if doc.lstrip().startswith(_SECTION_STARTS):
        # A docstring that opens with "Args:" on its first line: cleandoc()
        # would dedent the entries to the header's level (losing the section
        # structure), and docstring-parser would take "Args:" for the summary.
        # An empty first line makes both see the section as written.
        doc = "\n" + doc.lstrip(" ")
    raw = inspect.cleandoc(doc)
    text = "\n" + raw if raw.startswith(_SECTION_STARTS) else raw
    try:
        parsed = _parse_any_style(text)
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
