"""Does this Python meet a ``requires-python`` specifier (PEP 440)?

Only release numbers are compared (``3.11.7``), which is what a Python
version is; pre-release tags in a specifier are ignored.
"""

from __future__ import annotations

import re
import sys

_CLAUSE = re.compile(r"^\s*(~=|===|==|!=|<=|>=|<|>)\s*(\S+?)\s*$")
_RELEASE = re.compile(r"^(?:\d+!)?(\d+(?:\.\d+)*)(\.\*)?")


def current_python() -> tuple[int, int, int]:
    """This interpreter's version, as environments are built for it."""
    return sys.version_info[0], sys.version_info[1], sys.version_info[2]


def _release(text: str, spec: str) -> tuple[tuple[int, ...], bool]:
    match = _RELEASE.match(text)
    if match is None:
        raise ValueError(f"{spec!r} is not a version specifier (such as '>=3.11')")
    return tuple(int(p) for p in match.group(1).split(".")), bool(match.group(2))


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)), b + (0,) * (n - len(b))


def _clause_holds(op: str, text: str, version: tuple[int, ...], spec: str) -> bool:
    if op == "===":
        return text == ".".join(map(str, version))
    release, wildcard = _release(text, spec)
    if wildcard and op not in ("==", "!="):
        raise ValueError(f"{spec!r}: '.*' is only allowed with == and !=")
    if op in ("==", "!="):
        if wildcard:
            equal = version[: len(release)] == release
        else:
            mine, theirs = _padded(version, release)
            equal = mine == theirs
        return equal if op == "==" else not equal
    mine, theirs = _padded(version, release)
    if op == "~=":
        if len(release) < 2:
            raise ValueError(f"{spec!r}: '~=' needs at least two version parts")
        return mine >= theirs and version[: len(release) - 1] == release[:-1]
    return {"<": mine < theirs, "<=": mine <= theirs, ">": mine > theirs, ">=": mine >= theirs}[op]


def python_satisfies(spec: str, version: tuple[int, ...] | None = None) -> bool:
    """Whether ``version`` (default: this Python) meets ``spec`` (``">=3.10,<4"``).

    Raises ``ValueError`` naming the specifier if it does not parse.
    """
    version = version or current_python()
    clauses = [c for c in spec.split(",") if c.strip()]
    if not clauses:
        raise ValueError(f"{spec!r} is not a version specifier (such as '>=3.11')")
    result = True
    for clause in clauses:
        match = _CLAUSE.match(clause)
        if match is None:
            raise ValueError(f"{spec!r} is not a version specifier (such as '>=3.11')")
        result = _clause_holds(match.group(1), match.group(2), version, spec) and result
    return result
