"""Bytes from a worker's reply pipe to messages, in order.

Reads what the pipe holds now (never blocks: the fd is non-blocking),
cuts it into frames and decodes each one: a small frame directly, a large
one with a budget on what its lists and maps may take once decoded
(``protocol.decode_budget``), in chunks that let other threads run. A reply
over that budget becomes a ``result_too_large`` error for its own call.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from host.wire.gc_pause import gc_paused
from protocol import FrameDecoder
from protocol.decode_budget import PLAIN_DECODE_MAX, decode_reply
from protocol.framing import unpack
from protocol.messages import Message, message_from

READ_CHUNK = 1 << 18


class ReplyReader:
    """The reading end of one worker's reply pipe."""

    def __init__(self, fd: int, max_frame_size: int, decode_budget: int) -> None:
        self.fd = fd
        #: The pipe reached end of file (every writer closed it).
        self.eof = False
        self._decoder = FrameDecoder(max_frame_size)
        self._decode_budget = decode_budget

    def pump(self, deliver: Callable[[list[tuple[Message, int]]], None]) -> bool:
        """Read everything available now and ``deliver`` the messages of
        each read (each with its body's size in bytes), in order, as one
        list.

        Returns True if this call found the end of file (once). Raises
        ``ProtocolViolation`` for a malformed frame or message, or whatever
        ``deliver`` raises; the messages before it were delivered, the rest
        of what was read is lost (the stream is unusable after a violation).
        """
        while True:
            try:
                data = os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                return False
            except OSError:
                data = b""
            if not data:
                first = not self.eof
                self.eof = True
                return first
            messages: list[tuple[Message, int]] = []
            try:
                for body in self._decoder.feed(data):
                    if len(body) <= PLAIN_DECODE_MAX:
                        # decode_message, inlined: every reply's path.
                        messages.append((message_from(unpack(body)), len(body)))
                    else:
                        with gc_paused():
                            messages.append((decode_reply(body, self._decode_budget), len(body)))
            finally:
                # (Those before a malformed one still count.)
                if messages:
                    deliver(messages)
            if len(data) < READ_CHUNK:
                return False
