"""Turn a return value into a response frame, or into the right error.

JSON-compatible values (and ``bytes``) pass through; a few common types are
converted (documented in ``to_wire``). Anything else is
``result_not_serializable`` naming the type; an encoded reply larger than
the set's limit is ``result_too_large``. The worker survives both.

Dict keys travel as they are when msgpack carries them as keys the host can
rebuild: strings, ints, floats, bools, ``None``, bytes (and what ``to_wire``
turns into one of those: an Enum's value, a date's ISO text...). A key that
would arrive as an array or a map (a tuple, a frozenset, a frozen
dataclass) cannot be a key on the host: ``result_not_serializable`` naming
the key's type, instead of a frame the host must refuse as malformed.
"""

from __future__ import annotations

from typing import Any

from protocol import ErrorKind, ProtocolViolation, Response, encode_message
from protocol.framing import HEADER_SIZE, encode_frame, unpack
from protocol.messages import RESPONSE, make_error_map, new_packer
from protocol.values import to_wire

#: Packs the usual reply (only exact native types: nothing of the user's
#: runs while it packs, so one packer serves the worker's request loop).
_pack_strict = new_packer(strict=True)
#: ... replaced after a reply larger than this (a packer keeps the largest
#: buffer it filled: an idle worker would hold it).
PACKER_KEEP = 1 << 20


def _renew_packer() -> None:
    global _pack_strict
    _pack_strict = new_packer(strict=True)


#: What msgpack packs natively (``strict_types``) and the host can use as a key.
_KEY_TYPES = (str, int, float, bool, type(None), bytes)


def encode_result(msgid: int, value: Any, output: dict[str, str], max_bytes: int) -> bytes:
    """The response frame for a successful call, or an error frame."""
    try:
        # The usual case, a value msgpack packs as it is (no conversion, so
        # no key that would arrive as an array or a map): packed directly.
        # Anything else (a conversion, an error, a result over the limit)
        # takes the path below, which packs it again.
        body = _pack_strict([RESPONSE, msgid, None, {"value": value, **output}])
    except Exception:
        _renew_packer()  # (it may have filled a large buffer before it failed)
    else:
        if len(body) > PACKER_KEEP:
            _renew_packer()
        if len(body) + HEADER_SIZE <= max_bytes:
            return encode_frame(body)
    made_container = False

    def default(obj: Any) -> Any:
        nonlocal made_container
        wire = to_wire(obj)
        if type(wire) is list or type(wire) is dict:
            made_container = True
        return wire

    try:
        frame = encode_message(
            Response(msgid, None, {"value": value, **output}), default=default, strict=True
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
    if made_container:
        # Only a conversion can have put an array or a map where a key is
        # (a hashable key that packs natively is a scalar): decode as the
        # host will, which only results with tuples, sets, dataclasses... pay.
        try:
            unpack(memoryview(frame)[HEADER_SIZE:])
        except ProtocolViolation as exc:
            key_type = _unusable_key_type(value)
            text = (
                f"a dict key of type {key_type} cannot be sent: keys must be str, int, float, "
                "bool, None or bytes"
                if key_type
                else f"the host cannot decode it ({exc})"
            )
            return encode_error(
                msgid,
                ErrorKind.RESULT_NOT_SERIALIZABLE,
                text,
                output,
                type_name=key_type or type(value).__name__,
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


def _unusable_key_type(value: Any) -> str | None:
    """The type name of the first dict key in ``value`` that would be sent
    as an array or a map (after ``to_wire``), or ``None``. Only run on a
    result already known to be unsendable, so it may be slow; it is
    iterative (the value may nest deeply) and visits each container once
    (it may share them, or hold a cycle)."""
    stack = [value]
    seen: set[int] = set()
    held: list[Any] = []  # keeps converted copies alive, so no id is reused
    while stack:
        original = stack.pop()
        if id(original) in seen:
            continue
        item = _wire_form(original)
        if not isinstance(item, list | dict):
            continue
        seen.add(id(original))
        held += (original, item)
        if isinstance(item, dict):
            for key, member in item.items():
                if isinstance(_wire_form(key), list | dict):
                    return type(key).__name__
                stack.append(member)
        else:
            stack.extend(item)
    return None


def _wire_form(obj: Any) -> Any:
    """``obj`` as msgpack will pack it: converted until it is a native type."""
    for _ in range(8):  # an Enum whose value is a tuple converts twice
        if type(obj) in (*_KEY_TYPES, list, dict):
            return obj
        try:
            obj = to_wire(obj)
        except TypeError:
            return obj
    return obj


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
