"""Checked reads of single fields, for the small contracts both ends share
(``worker_config``, ``zygote_control``): maps decoded from JSON or msgpack
whose every field has one exact type.

Each function raises ``ProtocolViolation`` naming the map (``what``: "worker
config", "zygote spawn request"...) and the field, so a reader of the
message sees exactly which part is wrong. ``bool`` is never accepted where
an integer is meant (in Python it is one).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from protocol.errors import ProtocolViolation


def describe(value: object) -> str:
    """A value's type and the start of its repr, for an error message."""
    return f"{type(value).__name__} {repr(value)[:60]}"


def fields_of(wire: object, what: str, known: Collection[str]) -> dict[str, Any]:
    """``wire`` as a map with no field outside ``known`` (``ProtocolViolation``
    if it is not a map, if a key is not a string, or if a field is unknown)."""
    if not isinstance(wire, dict):
        raise ProtocolViolation(f"{what} must be a map, got {describe(wire)}")
    for key in wire:
        if key not in known:
            raise ProtocolViolation(f"{what} has an unknown field {key!r}")
    return wire


def present(wire: dict[str, Any], key: str, what: str) -> Any:
    """The value of field ``key`` (``ProtocolViolation`` if it is missing)."""
    try:
        return wire[key]
    except KeyError:
        raise ProtocolViolation(f"{what} lacks the field {key!r}") from None


def integer(wire: dict[str, Any], key: str, what: str, minimum: int | None = None) -> int:
    """Field ``key``: an ``int`` (not a bool), at least ``minimum`` if given."""
    value = present(wire, key, what)
    if type(value) is not int or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ProtocolViolation(f"{what}: {key!r} must be an integer{bound}, got {describe(value)}")
    return value


def optional_integer(
    wire: dict[str, Any], key: str, what: str, minimum: int | None = None
) -> int | None:
    """Field ``key``: ``None`` (or absent) or an ``int`` as ``integer`` reads it."""
    if wire.get(key) is None:
        return None
    return integer(wire, key, what, minimum)


def text(wire: dict[str, Any], key: str, what: str) -> str:
    """Field ``key``: a ``str``."""
    value = present(wire, key, what)
    if not isinstance(value, str):
        raise ProtocolViolation(f"{what}: {key!r} must be a string, got {describe(value)}")
    return value


def optional_text(wire: dict[str, Any], key: str, what: str) -> str | None:
    """Field ``key``: ``None`` or a ``str`` (it must be present)."""
    if present(wire, key, what) is None:
        return None
    return text(wire, key, what)


def flag(wire: dict[str, Any], key: str, what: str) -> bool:
    """Field ``key``: a ``bool``."""
    value = present(wire, key, what)
    if type(value) is not bool:
        raise ProtocolViolation(f"{what}: {key!r} must be true or false, got {describe(value)}")
    return value


def texts(wire: dict[str, Any], key: str, what: str) -> list[str]:
    """Field ``key``: an array of strings."""
    value = present(wire, key, what)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProtocolViolation(
            f"{what}: {key!r} must be an array of strings, got {describe(value)}"
        )
    return value


def text_map(wire: dict[str, Any], key: str, what: str) -> dict[str, str]:
    """Field ``key``: a map of strings to strings."""
    value = present(wire, key, what)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ProtocolViolation(
            f"{what}: {key!r} must be a map of strings to strings, got {describe(value)}"
        )
    return value
