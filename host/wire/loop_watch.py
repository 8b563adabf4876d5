"""Which asyncio event loops watch one channel's fds, and when they let go.

An asyncio caller does not poll: its loop calls the channel back when the
reply pipe or the worker's pidfd is readable. The readers are added when
the first call on a loop waits and stay registered for that loop's next
calls (one task's sequential calls do not add and remove readers every
call); they go at the first event that finds no call waiting on that loop,
or at once when the channel is closing. While any loop still watches, the
channel's fds stay open: closing them under a selector would leave it
polling a number that may already belong to another file.

Shares the channel's lock, so that "not broken" and "one more call waits
here" are decided in one critical section.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from host.wire.deadline_timer import DeadlineTimer

Loop = asyncio.AbstractEventLoop


class LoopWatch:
    """The loops watching one channel, and the calls waiting on each.

    ``on_data``/``on_exit`` are added as the loop's readers of ``read_fd``
    and ``pidfd``; ``on_released`` is called (on that loop's thread) when
    the last loop lets go while the channel is closing.
    """

    def __init__(
        self,
        lock: threading.Lock,
        read_fd: int,
        pidfd: int | None,
        on_data: Callable[[], None],
        on_exit: Callable[[], None],
        on_released: Callable[[], None],
    ) -> None:
        self._lock = lock
        self._read_fd = read_fd
        self._pidfd = pidfd
        self._on_data = on_data
        self._on_exit = on_exit
        self._on_released = on_released
        self._waiting: dict[Loop, int] = {}  # calls waiting on each loop
        self._watched: set[Loop] = set()  # loops our readers are registered with
        self._timers: dict[Loop, DeadlineTimer] = {}
        self.closing = False

    @property
    def busy(self) -> bool:
        """A loop still watches (call with the lock held)."""
        return bool(self._waiting or self._watched)

    def attach(self, loop: Loop, usable: Callable[[], bool], reading: bool) -> bool:
        """One more call waits on ``loop``: watch from it. False, and nothing
        registered, if ``usable()`` (checked under the lock) says the channel
        is broken or closed. ``reading``: the pipe has not reached EOF."""
        with self._lock:
            if not usable():
                return False
            self._waiting[loop] = self._waiting.get(loop, 0) + 1
            register = loop not in self._watched
            if register:
                # A loop closed while watching (asyncio.run ended) is gone:
                # forget it rather than keep it alive.
                self._watched = {w for w in self._watched if not w.is_closed()}
                self._timers = {w: t for w, t in self._timers.items() if not w.is_closed()}
            self._watched.add(loop)
        if register:
            if reading:
                loop.add_reader(self._read_fd, self._on_data)
            if self._pidfd is not None:
                loop.add_reader(self._pidfd, self._on_exit)
        return True

    def detach(self, loop: Loop) -> None:
        """A call stopped waiting on ``loop`` (its reply came, or it gave up)."""
        with self._lock:
            count = self._waiting.get(loop, 0) - 1
            if count > 0:
                self._waiting[loop] = count
                return
            self._waiting.pop(loop, None)
            closing = self.closing
        # The readers stay registered for the task's next call (no add and
        # remove per call, no extra loop turn); they go at the first event
        # that finds no call waiting on this loop, or now if we are closing.
        if closing:
            self.unwatch(loop)

    def release_wait(self, loop: Loop, fut: asyncio.Future) -> None:
        """A call stopped waiting for ``fut`` on ``loop``: forget its
        deadline, and ``detach``."""
        timer = self._timers.get(loop)
        if timer is not None:
            timer.remove(fut)
        self.detach(loop)

    def timer(self, loop: Loop) -> DeadlineTimer:
        """The loop's shared deadline timer (cheaper than a timer per call)."""
        timer = self._timers.get(loop)
        if timer is None:
            timer = self._timers[loop] = DeadlineTimer(loop)
        return timer

    def idle_here(self, loop: Loop) -> bool:
        """No call waits on ``loop`` (the running one): stop watching from
        it (True).

        Otherwise a thread reading the pipe would keep the loop's
        level-triggered readers firing; the next caller reads what is there.
        """
        if loop in self._waiting:
            return False
        self.unwatch(loop)
        return True

    def unwatch(self, loop: Loop) -> None:
        """Remove our readers from ``loop`` (on its own thread) if no call
        waits there; the last one to go while closing calls ``on_released``."""
        with self._lock:
            if loop in self._waiting or loop not in self._watched:
                return
            self._watched.discard(loop)
        loop.remove_reader(self._read_fd)
        if self._pidfd is not None:
            loop.remove_reader(self._pidfd)
        if self.closing:
            self._on_released()

    def stop_reading(self, pipe_done: bool, worker_gone: bool) -> None:
        """After an event on the running loop: drop the readers that can
        fire no more (the pipe at EOF, the pidfd once the worker is gone)."""
        if pipe_done or worker_gone:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._read_fd)
            if worker_gone and self._pidfd is not None:
                loop.remove_reader(self._pidfd)

    def release(self) -> bool:
        """The channel is closing: let go of every loop no call waits on.

        The running loop lets go now, another thread's loop on its next turn,
        a closed loop at once (its selector is gone). Returns True if the
        running loop let go here (``unwatch`` has then called ``on_released``
        if it was the last); the caller must not go on closing then.
        """
        with self._lock:
            self.closing = True
            idle = [loop for loop in self._watched if loop not in self._waiting]
        try:
            running: Loop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop in idle:
            if loop.is_closed():
                with self._lock:
                    self._watched.discard(loop)
            elif loop is running:
                self.unwatch(loop)
                return True
            else:
                try:
                    loop.call_soon_threadsafe(self.unwatch, loop)
                except RuntimeError:  # closed since: its selector is gone
                    with self._lock:
                        self._watched.discard(loop)
        return False
