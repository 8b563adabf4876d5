"""One timer per event loop for the deadlines of all the calls awaiting there.

A timer per call (``loop.call_later`` and its ``cancel``) costs about a sixth
of an ``acall``: a heap push, a pure-Python handle, and a heap that fills
with cancelled entries. Calls usually finish long before their deadline, and
sequential calls have ever later deadlines, so one timer armed for the
earliest deadline, re-armed only when it fires, serves them all.

Loop-confined: use it only from its loop's thread.
"""

from __future__ import annotations

import asyncio
import math
import time


class DeadlineTimer:
    """Resolves each registered future (with ``None``) once its deadline
    (``time.monotonic()``) has passed, unless it was removed first."""

    __slots__ = ("_loop", "_waiters", "_handle", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: dict[asyncio.Future, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._when = math.inf

    def add(self, fut: asyncio.Future, deadline: float) -> None:
        self._waiters[fut] = deadline
        if deadline < self._when:
            self._arm(deadline)

    def remove(self, fut: asyncio.Future) -> None:
        # The timer stays armed: when it fires with nobody due it re-arms
        # for the earliest deadline left, or stops.
        self._waiters.pop(fut, None)

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = self._loop.call_later(max(0.0, when - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._when = math.inf
        now = time.monotonic()
        earliest = math.inf
        for fut, deadline in list(self._waiters.items()):
            if deadline <= now:
                del self._waiters[fut]
                if not fut.done():
                    fut.set_result(None)
            elif deadline < earliest:
                earliest = deadline
        if earliest < math.inf:
            self._arm(earliest)
