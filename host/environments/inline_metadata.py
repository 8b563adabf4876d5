"""PEP 723 inline script metadata: the ``# /// script`` block of a set's file.

Parsed as the PEP's reference implementation does (the same regular
expression), without importing or running the file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

from host.set_file import read_set_file

#: The PEP's regular expression for a metadata block of any type.
BLOCK = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


class ScriptMetadataError(ValueError):
    """The file's ``script`` block is malformed (the message says where and how)."""


@dataclass(frozen=True)
class ScriptMetadata:
    """What a ``script`` block declares."""

    dependencies: tuple[str, ...]
    requires_python: str | None


def parse_script_metadata(text: str) -> ScriptMetadata | None:
    """The ``script`` block of a source text, or None if it has none.

    Raises ``ScriptMetadataError`` for two ``script`` blocks, TOML that does
    not parse, ``dependencies`` that is not a list of strings, or
    ``requires-python`` that is not a string.
    """
    blocks = [m for m in BLOCK.finditer(text) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise ScriptMetadataError("it has more than one '# /// script' block (PEP 723 allows one)")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise ScriptMetadataError(f"its '# /// script' block is not valid TOML: {exc}") from None
    deps = data.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ScriptMetadataError(
            f"'dependencies' in its '# /// script' block must be a list of strings, not {deps!r}"
        )
    requires_python = data.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise ScriptMetadataError(
            "'requires-python' in its '# /// script' block must be a string such as "
            f"'>=3.11', not {requires_python!r}"
        )
    return ScriptMetadata(tuple(deps), requires_python)


def read_script_metadata(path: str) -> ScriptMetadata | None:
    """``parse_script_metadata`` of the file at ``path``; None if it cannot be
    read, is not a regular file or is too large (``host.set_file``; the
    worker then reports why the set does not load)."""
    try:
        text = read_set_file(path).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return parse_script_metadata(text)
