"""The fnhost wire protocol, sans I/O.

Bytes in, messages out; messages in, bytes out. Nothing here touches a file
descriptor, a process or a thread, so the host (threads or asyncio) and the
worker (a plain blocking loop) drive the same objects.
"""

from protocol.errors import ErrorKind, ProtocolViolation
from protocol.framing import FrameDecoder, encode_frame
from protocol.messages import (
    PROTOCOL_VERSION,
    Notification,
    Request,
    Response,
    Verb,
    decode_message,
    encode_call,
    encode_cancel,
    encode_message,
)

__all__ = [
    "PROTOCOL_VERSION",
    "ErrorKind",
    "FrameDecoder",
    "Notification",
    "ProtocolViolation",
    "Request",
    "Response",
    "Verb",
    "decode_message",
    "encode_call",
    "encode_cancel",
    "encode_frame",
    "encode_message",
]
