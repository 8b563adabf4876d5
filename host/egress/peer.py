"""One side of a relayed HTTP conversation, in the proxy: a stream and its
``h11`` state machine, with deadlines; and the refusal every failure ends in.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11

from host.egress.scrubbing import Scrubber

#: The largest request or response head (the worker's or upstream's).
MAX_HEAD = 32 * 1024
#: One read; also the largest piece of a decoded body held at once.
CHUNK = 64 * 1024


class Refused(Exception):
    """Answer the worker with ``status`` and ``reason`` and end the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class Stalled(Exception):
    """The other side sent nothing for too long (or not a whole head in time)."""


class Peer:
    """A stream and its ``h11.Connection`` (``role``: ``h11.SERVER`` for
    the worker's side, ``h11.CLIENT`` for upstream). Counts bytes."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        role: Any,
        idle: float = 60.0,
    ) -> None:
        self.reader, self.writer = reader, writer
        #: How long a write may wait for the other side to read.
        self.idle = idle
        self.conn = h11.Connection(role, max_incomplete_event_size=MAX_HEAD)
        self.received = 0
        self.sent = 0

    async def next_event(self, idle: float, within: float | None = None) -> Any:
        """The next ``h11`` event. Raises ``Stalled`` if no byte comes for
        ``idle`` seconds or, with ``within``, if the event (a whole head)
        has not come that many seconds from now; ``h11.RemoteProtocolError``
        for bytes that are not HTTP/1.1."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            wait = idle if deadline is None else min(idle, deadline - loop.time())
            if wait <= 0:
                raise Stalled
            try:
                data = await asyncio.wait_for(self.reader.read(CHUNK), wait)
            except TimeoutError:
                raise Stalled from None
            self.received += len(data)
            self.conn.receive_data(data)

    async def send(self, event: Any) -> None:
        """Write ``event``; ``Stalled`` if the other side reads nothing of it
        for ``idle`` seconds (a worker that stops reading holds nothing)."""
        data = self.conn.send(event)
        if data:
            self.sent += len(data)
            self.writer.write(data)
            try:
                await asyncio.wait_for(self.writer.drain(), self.idle)
            except TimeoutError:
                raise Stalled from None


async def refuse(peer: Peer, status: int, reason: str, scrubber: Scrubber | None = None) -> None:
    """Answer ``status`` with ``reason`` as reason phrase and body (scrubbed
    of the set's secrets: a reason may quote upstream), if the worker's side
    may still be answered. Never raises."""
    if scrubber is not None:
        reason = scrubber.scrub(reason.encode("utf-8", "replace")).decode("utf-8", "replace")
    if peer.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = (reason + "\n").encode()
    try:
        await peer.send(
            h11.Response(
                status_code=status,
                reason=phrase(reason),
                headers=[
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    (b"x-fnhost-egress", b"blocked" if status == 403 else b"error"),
                ],
            )
        )
        await peer.send(h11.Data(data=body))
        await peer.send(h11.EndOfMessage())
    except (OSError, h11.LocalProtocolError):
        pass


def phrase(reason: str) -> bytes:
    """A reason phrase h11 accepts: printable ASCII."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in reason)[:900].encode()
