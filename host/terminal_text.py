"""Text from a set, made safe to show an operator: in a log or a terminal.

A set's log lines, exception messages and printed output are the set's to
choose. Written as they are, a line break forges a log record of the
host's own, and an escape sequence moves the cursor, rewrites the line, sets
the window title or writes the clipboard (OSC 52). ``shown`` escapes every
C0 and C1 control character (tab kept where allowed), DEL, and the Unicode
line and paragraph separators, as ``\\xNN`` / ``\\uNNNN``, so the text reads
the same and can do nothing.
"""

from __future__ import annotations

_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))}
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})
_ONE_LINE = str.maketrans(_ESCAPES)
_LINES = str.maketrans({k: v for k, v in _ESCAPES.items() if k not in (0x09, 0x0A)})


def shown(text: str, lines: bool = False) -> str:
    """``text`` with its control characters escaped (see the module).
    ``lines``: keep line feeds and tabs (output shown as it was printed,
    in a terminal); otherwise the result is one line (a log record)."""
    return text.translate(_LINES if lines else _ONE_LINE)
