"""The rule every exported function name obeys, shared by worker and host.

One rule that every provider accepts: OpenAI and Anthropic take
``^[a-zA-Z0-9_-]{1,64}$``, Gemini wants a letter or ``_`` first. Dots are
refused even though Gemini allows them: ``"set.function"`` is how a caller
names a function of one particular set, so a function that could call
itself ``"other.get_weather"`` would receive the calls meant for set
``other``. The worker skips a function whose name breaks the rule; the host
refuses a ``ready`` that reports one (a worker's own code can forge it).
"""

from __future__ import annotations

import re

#: Longest name any provider accepts everywhere.
MAX_FUNCTION_NAME = 64

#: The rule as users read it (documented in the README).
FUNCTION_NAME_RULE = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"

# Matched with ``fullmatch``: ``$`` alone would accept a trailing newline.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def is_valid_function_name(name: object) -> bool:
    """True if ``name`` is a string that obeys ``FUNCTION_NAME_RULE``."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def function_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be an exported function name, or None if it can.

    The text says what is wrong first, then the rule, e.g. "the name
    contains '.', which separates a set from its function ...".
    """
    if is_valid_function_name(name):
        return None
    if not isinstance(name, str):
        why = f"the name is a {type(name).__name__}, not a string"
    elif not name:
        why = "the name is empty"
    elif "." in name:
        why = (
            "the name contains '.', which separates a set from its function in 'set.function' names"
        )
    elif len(name) > MAX_FUNCTION_NAME:
        why = f"the name is {len(name)} characters long; tool names are at most {MAX_FUNCTION_NAME}"
    elif any(c not in _ALLOWED for c in name):
        bad = next(c for c in name if c not in _ALLOWED)
        why = f"the name contains {bad!r}; only ASCII letters, digits, '_' and '-' are allowed"
    else:
        why = "the name must start with an ASCII letter or '_'"
    return f"{why} (tool names must match {FUNCTION_NAME_RULE})"
