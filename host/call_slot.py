"""One call at a time per function set, first come first served, for threads
and asyncio alike.

A worker runs its calls one after another anyway. Queueing them in the host
instead of in the worker's pipe means that only the running call can be
blamed for what happens to the worker: a crash fails that call alone, and a
call whose deadline passes while it waits is refused without killing
anyone (the calls behind a crash go to the restarted worker).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time


class _Waiter:
    __slots__ = ("event", "future", "granted", "gave_up")

    def __init__(self, future: asyncio.Future | None) -> None:
        self.event = None if future is not None else threading.Event()
        self.future = future
        self.granted = False
        self.gave_up = False


def _grant(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class CallSlot:
    """A FIFO mutex usable from threads and event loops. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self._waiters: collections.deque[_Waiter] = collections.deque()

    def acquire(self, deadline: float | None) -> bool:
        """Wait for the slot until ``deadline``; False if it passed first."""
        with self._lock:
            if not self._busy:
                self._busy = True
                return True
            waiter = _Waiter(None)
            self._waiters.append(waiter)
        assert waiter.event is not None
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        waiter.event.wait(timeout)
        return self._settle(waiter)

    def try_acquire(self) -> bool:
        """Take the slot if it is free, without waiting (and without the
        cost of a coroutine, for the asyncio path)."""
        with self._lock:
            if self._busy:
                return False
            self._busy = True
            return True

    async def acquire_async(self, deadline: float | None) -> bool:
        """``acquire`` for asyncio; cancellation leaves the queue cleanly."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._busy:
                self._busy = True
                return True
            waiter = _Waiter(loop.create_future())
            self._waiters.append(waiter)
        assert waiter.future is not None
        timer = None
        if deadline is not None:
            timer = loop.call_later(max(0.0, deadline - time.monotonic()), _grant, waiter.future)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if self._settle(waiter):
                self.release()  # granted as we were cancelled: pass it on
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return self._settle(waiter)

    def _settle(self, waiter: _Waiter) -> bool:
        """After a wake-up or a timeout: True if the slot is ours."""
        with self._lock:
            if waiter.granted:
                return True
            waiter.gave_up = True
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
            return False

    def release(self) -> None:
        """Hand the slot to the next waiter that has not given up, or free it."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if waiter.gave_up:
                    continue
                waiter.granted = True
                if waiter.event is not None:
                    waiter.event.set()
                else:
                    fut = waiter.future
                    assert fut is not None
                    loop = fut.get_loop()
                    try:
                        if asyncio._get_running_loop() is loop:
                            _grant(fut)  # same thread: no self-pipe wake-up needed
                        else:
                            loop.call_soon_threadsafe(_grant, fut)
                    except RuntimeError:  # its loop is closed: nobody will take it
                        waiter.granted = False
                        waiter.gave_up = True
                        continue
                return
            self._busy = False

    @property
    def load(self) -> int:
        """Calls running (0 or 1) plus calls waiting."""
        return int(self._busy) + len(self._waiters)
