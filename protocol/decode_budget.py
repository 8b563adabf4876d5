"""Decoding an untrusted peer's frame with bounded memory and bounded pauses.

A frame's size bounds its bytes, not what they become: an empty map is one
byte on the wire and 64 in memory, a chain of one-entry maps 224 per two
bytes. So the host decodes what a worker sends with ``decode_reply``, which
adds two bounds to ``decode_message``:

- **Memory.** The lists and maps built from one frame may take at most
  ``budget`` bytes (``sys.getsizeof`` of each, counted as each is
  completed). A response that would take more is returned as a
  ``result_too_large`` error response for the same request id: the frame's
  length is known, so the stream stays in step and only that call fails.
  Any other message that would take more is a ``ProtocolViolation``.
  Strings, numbers, and the one list or map being built when the budget
  runs out, are not counted; they take at most about 20 bytes per byte of
  the frame (a 2-character string is 3 bytes on the wire, 51 in memory).
  Nesting stops at msgpack's own limit, 1024 levels (a ``ProtocolViolation``;
  a worker's packer stops at 512).
- **Pauses.** msgpack's decoder holds the GIL while it runs. A frame above
  ``PLAIN_DECODE_MAX`` is fed to it in chunks of ``CHUNK`` bytes, so other
  threads run between chunks and at every list or map completed.

Frames up to ``PLAIN_DECODE_MAX`` are decoded in one call, without counting:
at ``MAX_CONTAINER_BYTES_PER_BYTE`` they cannot reach ``MIN_DECODE_BUDGET``.
So is a response whose value is one string or binary that is all but
``PLAIN_DECODE_MAX`` bytes of the frame: its one copy is quick.
"""

from __future__ import annotations

import sys
from typing import Any

import msgpack

from protocol.errors import ErrorKind, ProtocolViolation
from protocol.framing import UNPACK_OPTIONS, not_msgpack
from protocol.messages import (
    RESPONSE,
    Message,
    Response,
    decode_message,
    make_error_map,
    message_from,
)

MIB = 1024 * 1024
#: The most memory lists and maps can take per byte of a frame: a chain of
#: one-entry maps, 224 bytes (``sys.getsizeof({0: x})``) per 2 bytes.
MAX_CONTAINER_BYTES_PER_BYTE = 112
#: Frames up to this size are decoded in one call (about 13 ms at most).
PLAIN_DECODE_MAX = 256 * 1024
#: The smallest budget ``decode_reply`` takes: a frame decoded without
#: counting (up to ``PLAIN_DECODE_MAX``) stays below it.
MIN_DECODE_BUDGET = 32 * MIB
#: Bytes handed to the decoder at a time (about 3 ms of the slowest input).
CHUNK = 64 * 1024

_getsizeof = sys.getsizeof


class _OverBudget(Exception):
    """The lists and maps decoded so far take more than the budget."""


def decode_reply(payload: bytes, budget: int) -> Message:
    """``decode_message`` for a frame from an untrusted peer, within ``budget``.

    ``budget``: bytes the frame's lists and maps may take once decoded (at
    least ``MIN_DECODE_BUDGET``). A response that would exceed it comes back
    as ``Response(msgid, {"kind": "result_too_large", ...}, {"stdout": "",
    "stderr": ""})`` (what the call printed is lost with its result); any
    other message that would, or a malformed frame, raises
    ``ProtocolViolation``. See the module docstring for what is bounded.
    """
    if budget < MIN_DECODE_BUDGET:
        raise ValueError(f"budget must be at least {MIN_DECODE_BUDGET} bytes")
    if len(payload) <= PLAIN_DECODE_MAX or _mostly_one_raw(payload):
        return decode_message(payload)
    try:
        obj = _unpack_counted(payload, budget)
    except _OverBudget:
        return _too_large(payload, budget)
    return message_from(obj)


def _unpack_counted(payload: bytes, budget: int) -> Any:
    """Unpack in chunks, charging each completed list and map to ``budget``."""
    spent = 0

    def charge(obj: Any) -> Any:
        nonlocal spent
        spent += _getsizeof(obj)
        if spent > budget:
            raise _OverBudget
        return obj

    size = len(payload)
    unpacker = msgpack.Unpacker(
        **UNPACK_OPTIONS, list_hook=charge, object_hook=charge, max_buffer_size=size
    )
    view = memoryview(payload)
    fed = 0
    try:
        while True:
            try:
                obj = unpacker.unpack()
                break
            except msgpack.OutOfData:
                # The decoder keeps its place inside a value; between chunks
                # the GIL can pass to another thread.
                if fed >= size:
                    raise ProtocolViolation("frame is not valid msgpack (it ends inside a value)")
                unpacker.feed(view[fed : fed + CHUNK])
                fed += CHUNK
        if fed < size or unpacker.tell() != size:
            raise ProtocolViolation("frame holds more than one msgpack object")
    except (ProtocolViolation, _OverBudget):
        raise
    except Exception as exc:  # msgpack raises a zoo: ValueError, StackError, ...
        raise not_msgpack(exc) from None
    return obj


def _mostly_one_raw(payload: bytes) -> bool:
    """True if all but ``PLAIN_DECODE_MAX`` bytes of a successful response are
    its value, one string or binary: then one call decodes the frame within
    any budget, copying the value once (the chunks would copy it twice)."""
    head = msgpack.Unpacker()
    head.feed(payload[:64])
    try:
        # [1, msgid, nil, {first key: value, ...}]
        if head.read_array_header() != 4 or head.unpack() != RESPONSE:
            return False
        head.skip()
        if head.unpack() is not None:
            return False
        head.read_map_header()
        head.skip()
        at = head.tell()
    except Exception:  # another shape, or a first key longer than the peek
        return False
    marker = payload[at]
    if marker in (0xC4, 0xD9):  # bin 8, str 8
        length = payload[at + 1]
    elif marker in (0xC5, 0xDA):  # bin 16, str 16
        length = int.from_bytes(payload[at + 1 : at + 3], "big")
    elif marker in (0xC6, 0xDB):  # bin 32, str 32
        length = int.from_bytes(payload[at + 1 : at + 5], "big")
    else:
        return False
    return bool(len(payload) - length <= PLAIN_DECODE_MAX)


def _too_large(payload: bytes, budget: int) -> Response:
    """The error response for a frame over its budget, or ``ProtocolViolation``
    if the frame is not a response (its request id is read from its head)."""
    head = msgpack.Unpacker()
    head.feed(payload[:16])  # [1, msgid, ...]: 1 + 1 + at most 5 bytes
    try:
        length = head.read_array_header()
        kind = head.unpack()
        msgid = head.unpack()
    except Exception:  # not even the start of a response
        length = kind = msgid = None
    if length != 4 or kind != RESPONSE or type(kind) is not int:
        what = "a message that is not a response"
    elif type(msgid) is not int or not 0 <= msgid < 2**32:
        what = "a response without a valid request id"
    else:
        what = None
    if what is not None:
        raise ProtocolViolation(
            f"{what} ({len(payload)} bytes) would take more than {budget} bytes of memory to decode"
        )
    error = make_error_map(
        ErrorKind.RESULT_TOO_LARGE,
        f"the reply is {len(payload)} bytes, but its lists and maps would take more than "
        f"{budget} bytes of host memory once decoded; return fewer, larger items "
        "(strings or bytes)",
        encoded_bytes=len(payload),
        decode_budget=budget,
    )
    return Response(msgid, error, {"stdout": "", "stderr": ""})


__all__ = [
    "CHUNK",
    "MAX_CONTAINER_BYTES_PER_BYTE",
    "MIN_DECODE_BUDGET",
    "PLAIN_DECODE_MAX",
    "decode_reply",
]
