"""Length-prefixed msgpack frames.

A frame is a 4-byte big-endian length followed by that many bytes of one
msgpack object. The length comes first so a reader can refuse an oversized
frame before allocating it.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from protocol.errors import ProtocolViolation

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
#: Hard ceiling of the format itself (the length field is 32 bits).
MAX_FRAME_LIMIT = 2**32 - 1

#: How every frame body is packed (also by ``messages.encode_call``).
PACK_OPTIONS = {"use_bin_type": True, "datetime": False}


def pack(obj: Any, default: Any = None, strict: bool = False) -> bytes:
    """msgpack-encode one object (``TypeError``/``ValueError`` if it cannot be)."""
    packed: bytes = msgpack.packb(obj, default=default, strict_types=strict, **PACK_OPTIONS)
    return packed


def encode_frame(payload: bytes) -> bytes:
    """Prefix an already packed payload with its length."""
    if len(payload) > MAX_FRAME_LIMIT:
        raise ValueError(f"frame of {len(payload)} bytes exceeds the 4 GiB format limit")
    return HEADER.pack(len(payload)) + payload


def _reject_ext(code: int, data: bytes) -> Any:
    raise ProtocolViolation(f"msgpack extension type {code} is not allowed")


#: How every frame body is unpacked (also by ``decode_budget``). Extension
#: types are refused (the protocol uses none, and nothing from a worker is
#: ever turned into arbitrary objects), except msgpack's own timestamp type
#: (-1), which msgpack decodes itself, before any hook, into an inert
#: ``msgpack.Timestamp``. Strings must be UTF-8.
UNPACK_OPTIONS = {
    "raw": False,
    "strict_map_key": False,
    "ext_hook": _reject_ext,
    "timestamp": 0,
    "use_list": True,
}


def unpack(payload: bytes | memoryview) -> Any:
    """Decode one frame body. Anything malformed is a ``ProtocolViolation``
    (see ``UNPACK_OPTIONS`` for what is refused). Nesting deeper than
    msgpack's own limit (1024 levels) is malformed too."""
    try:
        # UNPACK_OPTIONS spelled out: ** costs a third of a small frame's decode.
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=False,
            ext_hook=_reject_ext,
            timestamp=0,
            use_list=True,
        )
    except ProtocolViolation:
        raise
    except msgpack.ExtraData:
        raise ProtocolViolation("frame holds more than one msgpack object") from None
    except Exception as exc:  # msgpack raises a zoo: ValueError, UnicodeDecodeError, ...
        raise not_msgpack(exc) from None


def not_msgpack(exc: Exception) -> ProtocolViolation:
    """The violation for an exception msgpack raised while decoding a frame."""
    return ProtocolViolation(f"frame is not valid msgpack ({type(exc).__name__}: {exc})")


class FrameDecoder:
    """Accumulates bytes and yields complete frame bodies.

    ``feed()`` never blocks and never allocates more than ``max_frame_size``
    for one frame: a header announcing more raises ``FrameTooLarge`` before
    the body is read.
    """

    def __init__(self, max_frame_size: int) -> None:
        if not 0 < max_frame_size <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_frame_size must be in 1..{MAX_FRAME_LIMIT}")
        self.max_frame_size = max_frame_size
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return every complete frame body, in order.

        Raises ``FrameTooLarge`` as soon as an oversized header is seen; the
        decoder is then unusable (the stream has lost its framing).
        """
        buf = self._buf
        if not buf and len(data) >= HEADER_SIZE:
            # The usual case, one whole frame in one read: no buffering.
            (size,) = HEADER.unpack_from(data)
            if size > self.max_frame_size:
                raise FrameTooLarge(size, self.max_frame_size)
            if len(data) == HEADER_SIZE + size:
                return [bytes(data[HEADER_SIZE:])]
        buf += data
        frames = []
        offset = 0
        end = len(buf)
        while end - offset >= HEADER_SIZE:
            (size,) = HEADER.unpack_from(buf, offset)
            if size > self.max_frame_size:
                raise FrameTooLarge(size, self.max_frame_size)
            if end - offset - HEADER_SIZE < size:
                break
            start = offset + HEADER_SIZE
            offset = start + size
            frames.append(bytes(buf[start:offset]))
        if offset:
            del buf[:offset]
        return frames


class FrameTooLarge(ProtocolViolation):
    """A frame header announced more bytes than the reader accepts."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit
