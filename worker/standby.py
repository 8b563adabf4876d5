"""A standby worker's wait (``WorkerConfig.standby``; the host's side is
``host.workers.standby``): started, confined and probed ahead of need, it
reads the host's first message before it imports the set: ``load`` to go
on, end of input or ``shutdown`` to exit.

It reads exactly one frame (its header, then the length that announces),
so that nothing after it (the first call) is taken from the pipe before
the server's decoder reads it. From its split into warden, init and
worker until its ``load`` the worker is named ``fnhost-standby`` (``ps``).
"""

from __future__ import annotations

import ctypes
import os

from protocol import ProtocolViolation, decode_message
from protocol.framing import HEADER, HEADER_SIZE
from protocol.worker_conversation import WorkerConversation

#: What ``ps`` calls a standby until its ``load``.
STANDBY_NAME = b"fnhost-standby"
#: The largest first message a standby reads (``load`` is a few bytes).
MAX_LOAD_FRAME = 256
PR_SET_NAME, PR_GET_NAME = 15, 16


def mark() -> bytes | None:
    """Take the standby's name (``ps``, ``/proc/<pid>/comm``); the name
    before, to take back at ``load``, or None if it could not be changed.
    Called in the worker once the wall's processes are split off (a warden
    keeps the name it has then for good)."""
    libc = ctypes.CDLL(None)
    name = ctypes.create_string_buffer(16)
    if libc.prctl(PR_GET_NAME, name, 0, 0, 0) != 0:
        return None
    if libc.prctl(PR_SET_NAME, STANDBY_NAME, 0, 0, 0) != 0:
        return None
    return name.value


def await_load(in_fd: int, conversation: WorkerConversation, name: bytes | None) -> bool:
    """Block until the host's first message; True for ``load``. Takes back
    ``name`` (``mark``'s) whatever comes.

    False on end of input or ``shutdown`` (the host dropped this standby:
    the caller exits 0). Raises ``ProtocolViolation`` for any other message
    or a frame larger than ``MAX_LOAD_FRAME``, ``OSError`` if the pipe
    cannot be read (the caller exits with the reason)."""
    try:
        header = _read_exactly(in_fd, HEADER_SIZE)
        if header is None:
            return conversation.load_received(None)
        (size,) = HEADER.unpack(header)
        if size > MAX_LOAD_FRAME:
            raise ProtocolViolation(f"a standby's first frame of {size} bytes")
        body = _read_exactly(in_fd, size)
        if body is None:
            return conversation.load_received(None)
        return conversation.load_received(decode_message(body))
    finally:
        if name is not None:
            ctypes.CDLL(None).prctl(PR_SET_NAME, name, 0, 0, 0)


def _read_exactly(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd``; None at end of input before they came."""
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data
