"""Turn a return value into a response frame, or into the right error.

JSON-compatible values (and ``bytes``) pass through; a few common types are
converted (documented in ``to_wire``). Anything else is
``result_not_serializable`` naming the type; an encoded reply larger than
the set's limit is ``result_too_large``. The worker survives both.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from typing import Any

from protocol import ErrorKind, Response, encode_message
from protocol.messages import make_error_map


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


def encode_result(msgid: int, value: Any, output: dict[str, str], max_bytes: int) -> bytes:
    """The response frame for a successful call, or an error frame."""
    try:
        frame = encode_message(
            Response(msgid, None, {"value": value, **output}), default=to_wire, strict=True
        )
    except MemoryError:
        return encode_error(
            msgid, ErrorKind.OUT_OF_MEMORY, "ran out of memory encoding the result", output
        )
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        text = str(exc)
        if "recursion" in text.lower() or isinstance(exc, RecursionError):
            text = "the result nests too deeply or contains a reference cycle"
        elif isinstance(exc, OverflowError):
            text = f"an integer in the result does not fit in 64 bits ({exc})"
        return encode_error(
            msgid, ErrorKind.RESULT_NOT_SERIALIZABLE, text, output, type_name=type(value).__name__
        )
    if len(frame) > max_bytes:
        size = len(frame)
        del frame
        return encode_error(
            msgid,
            ErrorKind.RESULT_TOO_LARGE,
            f"the encoded result is {size} bytes; the limit is {max_bytes} bytes",
            output,
            type_name=type(value).__name__,
        )
    return frame


def encode_error(
    msgid: int,
    kind: ErrorKind,
    message: str,
    output: dict[str, str],
    type_name: str | None = None,
    traceback: str | None = None,
    **details: Any,
) -> bytes:
    err = make_error_map(kind, message, type_name, traceback, **details)
    return encode_message(Response(msgid, err, output))
