"""The way into one worker's pipe: first come first served, for threads and
asyncio alike, with several calls in the pipe at once (pipelining).

A worker runs its calls one after another; sending the next call while the
current one runs saves a round trip per call. What may wait in the pipe is
bounded so that the host's guarantees still hold:

- bytes: the calls admitted and not yet answered fit in ``budget`` bytes,
  half the pipe's capacity, so writing an admitted call never blocks (the
  worker reads everything waiting before each call). A larger call goes in
  alone.
- time: calls share the pipe only if they have the same timeout (the usual
  case: the set's default). When a call's timeout passes before it starts,
  the host cancels it, and the worker confirms at once, before the next
  call starts; the call running then ends within that same timeout, so the
  caller waits at most about twice its timeout. (The calls admitted
  together may reach the pipe in any order: with equal timeouts that does
  not matter.)
- depth: at most ``depth`` calls.

A crash still blames only the running call: the worker answers in order, so
the calls behind it in the pipe are known not to have started, and go to the
restarted worker.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time

#: Bytes of admitted, unanswered calls that may wait in a pipe (half of
#: Linux's default 64 KiB pipe, leaving room for cancel notifications).
PIPE_BUDGET = 32768
#: Calls that may be in one worker's pipe at once.
PIPE_DEPTH = 64


class _Waiter:
    __slots__ = ("event", "future", "granted", "gave_up", "weight", "timeout")

    def __init__(self, future: asyncio.Future | None, weight: int, timeout: float) -> None:
        self.event = None if future is not None else threading.Event()
        self.future = future
        self.granted = False
        self.gave_up = False
        self.weight = weight
        self.timeout = timeout


def _grant(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class CallGate:
    """A FIFO admission queue usable from threads and event loops. Thread-safe.

    Each holder is one call, from admission until its reply is read or its
    worker is gone; it passes its ``weight`` (frame bytes) and ``timeout``
    (``None``: no limit) to ``acquire``, and the same weight to ``release``.
    """

    def __init__(self, budget: int = PIPE_BUDGET, depth: int = PIPE_DEPTH) -> None:
        self._lock = threading.Lock()
        self._budget = budget
        self._depth = depth
        self._used = 0
        self._holders = 0
        self._timeout = math.inf  # the holders' (one and the same) timeout
        self._waiters: collections.deque[_Waiter] = collections.deque()
        #: ``time.monotonic()`` when the last holder left (or the gate was
        #: made): how long the set has been idle, for ``LiveWorkers``.
        self.last_used = time.monotonic()

    def _fits(self, weight: int, timeout: float) -> bool:
        if not self._holders:
            return True
        return (
            self._used + weight <= self._budget
            and self._holders < self._depth
            and self._timeout == timeout
        )

    def resize(self, budget: int) -> None:
        """Set the bytes budget (half of a new worker's pipe capacity)."""
        with self._lock:
            self._budget = budget
            self._admit()

    def _take(self, weight: int, timeout: float) -> None:
        self._used += weight
        self._holders += 1
        self._timeout = timeout

    def try_acquire(self, weight: int, timeout: float | None) -> bool:
        """Take a place if one is free and nobody waits, without waiting
        (and without the cost of a coroutine, for the asyncio path)."""
        limit = math.inf if timeout is None else timeout
        with self._lock:
            holders = self._holders
            if holders and (
                self._waiters
                # (_fits, inlined: every asyncio call's path)
                or self._used + weight > self._budget
                or holders >= self._depth
                or self._timeout != limit
            ):
                return False
            # (_take, inlined)
            self._used += weight
            self._holders = holders + 1
            self._timeout = limit
            return True

    def acquire(self, deadline: float | None, weight: int, timeout: float | None) -> bool:
        """Wait for a place until ``deadline``; False if it passed first."""
        limit = math.inf if timeout is None else timeout
        with self._lock:
            if not self._holders or (not self._waiters and self._fits(weight, limit)):
                self._take(weight, limit)
                return True
            waiter = _Waiter(None, weight, limit)
            self._waiters.append(waiter)
        assert waiter.event is not None
        waiter.event.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._settle(waiter)

    async def acquire_async(
        self, deadline: float | None, weight: int, timeout: float | None
    ) -> bool:
        """``acquire`` for asyncio; cancellation leaves the queue cleanly."""
        loop = asyncio.get_running_loop()
        limit = math.inf if timeout is None else timeout
        with self._lock:
            if not self._waiters and self._fits(weight, limit):
                self._take(weight, limit)
                return True
            waiter = _Waiter(loop.create_future(), weight, limit)
            self._waiters.append(waiter)
        assert waiter.future is not None
        timer = None
        if deadline is not None:
            timer = loop.call_later(max(0.0, deadline - time.monotonic()), _grant, waiter.future)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if self._settle(waiter):
                self.release(weight)  # granted as we were cancelled: pass it on
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return self._settle(waiter)

    def _settle(self, waiter: _Waiter) -> bool:
        """After a wake-up or a timeout: True if the place is ours."""
        with self._lock:
            if waiter.granted:
                return True
            waiter.gave_up = True
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
            # A waiter that gives up at the front may have been holding back
            # others that fit now.
            self._admit()
            return False

    def release(self, weight: int) -> None:
        """Give a place back and admit the waiters that now fit, in order."""
        with self._lock:
            self._used -= weight
            self._holders -= 1
            self.last_used = time.monotonic()
            if self._waiters:
                self._admit()

    def _admit(self) -> None:
        """Grant places to the front waiters while they fit (lock held)."""
        waiters = self._waiters
        while waiters:
            waiter = waiters[0]
            if waiter.gave_up:
                waiters.popleft()
                continue
            if not self._fits(waiter.weight, waiter.timeout):
                return
            waiters.popleft()
            if waiter.event is not None:
                waiter.granted = True
                self._take(waiter.weight, waiter.timeout)
                waiter.event.set()
                continue
            fut = waiter.future
            assert fut is not None
            loop = fut.get_loop()
            try:
                if asyncio._get_running_loop() is loop:
                    _grant(fut)  # same thread: no self-pipe wake-up needed
                else:
                    loop.call_soon_threadsafe(_grant, fut)
            except RuntimeError:  # its loop is closed: nobody will take it
                waiter.gave_up = True
                continue
            waiter.granted = True
            self._take(waiter.weight, waiter.timeout)

    @property
    def load(self) -> int:
        """Calls admitted (running or waiting in the pipe) plus calls queued here."""
        return self._holders + len(self._waiters)
