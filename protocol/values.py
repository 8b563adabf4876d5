"""What crosses the wall as data, in either direction.

Results going to the host, and answers and arguments between a call and its
context, are msgpack data. ``to_wire`` is the msgpack ``default`` hook both
ends use for the values that are not exactly a JSON type: each has one
obvious JSON form, everything else is refused (``TypeError``), so no object,
reference or pickle ever crosses.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from typing import Any


def to_wire(obj: Any) -> Any:
    """msgpack ``default`` hook: convert what has one obvious JSON form.

    Called for every value that is not exactly a JSON type (subclasses
    included, so a NamedTuple is not silently sent as an array):
    Enum -> its value; NamedTuple -> object; other tuple/list subclasses ->
    array; dict subclasses -> object; set/frozenset -> array; dataclass ->
    object; pydantic model -> ``model_dump(mode="json")``;
    datetime/date/time -> ISO 8601 string; UUID, Decimal, Path -> string;
    bytearray/memoryview -> bytes. Anything else raises ``TypeError``.
    """
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return dict(obj._asdict())
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, dict):
        return dict(obj)
    dump = getattr(type(obj), "model_dump", None)
    if callable(dump) and hasattr(type(obj), "model_json_schema"):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    # A value can only be an instance of a class whose module is loaded:
    # look these up instead of importing them into every worker.
    dt = sys.modules.get("datetime")
    if dt is not None and isinstance(obj, dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    for module, name in (("uuid", "UUID"), ("decimal", "Decimal"), ("pathlib", "PurePath")):
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(obj, getattr(loaded, name)):
            return str(obj)
    if isinstance(obj, bytearray | memoryview):
        return bytes(obj)
    raise TypeError(f"a value of type {type(obj).__qualname__} cannot be sent as JSON")
