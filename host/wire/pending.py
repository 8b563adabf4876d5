"""A call waiting for its outcome, and how its waiter is woken.

``Pending`` is the host's record of one call in flight: the conversation's
part (``protocol.conversation.Call``: started, run deadline, cancel sent)
plus who waits for it (a thread's condition, an event loop's future) and
what came back. ``Channel`` completes it; the call path reads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from protocol.conversation import Call


class Pending(Call):
    """One call (or the start handshake, or the exit: ``msgid`` 0, which no
    call has) waiting for its outcome.

    ``started``, ``run_deadline`` and ``cancel_sent`` are the conversation's
    (``protocol.conversation.Call``). ``result`` is the reply (a
    ``Response``) or the handshake's notification; ``error`` is set instead
    when the worker is gone. ``on_exit``: called once when an abandoned call
    leaves the pipe.
    """

    __slots__ = (
        "function",
        "done",
        "result",
        "error",
        "future",
        "abandoned",
        "cond",
        "on_exit",
        "door",
        "on_progress",
        "on_item",
    )

    def __init__(self, msgid: int, function: str, timeout: float | None = None) -> None:
        # Call.__init__, inlined: every call's path.
        self.msgid = msgid
        self.timeout = timeout
        self.started = False
        self.run_deadline: float | None = None
        self.cancel_sent = False
        self.asking: int | None = None
        self.notes = 0
        self.credit = -1  # not a stream; ``host.workers.stream`` makes one
        self.byte_credit = 0
        self.function = function
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.future: asyncio.Future | None = None
        self.abandoned = False
        #: The locks its followers sleep on (``host.wire.leadership``).
        self.cond: list[Any] | None = None
        self.on_exit: Callable[[], None] | None = None
        #: What answers the call's requests to its context (``ask``), if any.
        self.door: Any = None
        #: Called with (done, total, message) for each progress report.
        self.on_progress: Callable[[float, float | None, str | None], object] | None = None
        #: A stream's: called with each item (``host.workers.stream``).
        self.on_item: Any = None


def _resolve_future(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def wake_future(fut: asyncio.Future, running: asyncio.AbstractEventLoop | None = None) -> None:
    """Resolve ``fut`` from any thread: directly on its own loop's thread
    (no self-pipe write), else through ``call_soon_threadsafe``. A closed
    loop means nobody is waiting. ``running``: the loop running on this
    thread, if the caller knows it (else it is asked for)."""
    loop = fut.get_loop()
    if running is None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
    if running is loop:
        _resolve_future(fut)
        return
    try:
        loop.call_soon_threadsafe(_resolve_future, fut)
    except RuntimeError:
        pass


class WorkerGone(Exception):
    """The worker was already gone when the call was to be sent."""


class WorkerLost(Exception):
    """The worker is gone and handling its end failed (a bug, logged)."""


class WriteInterrupted(Exception):
    """The host's write to the worker raised part-way (``cause``: what was
    raised), so the worker was ended while this call ran."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause
