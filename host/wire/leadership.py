"""Who reads a worker's pipe: one waiting caller at a time (leader/follower).

No thread is dedicated to reading. A caller waiting for its call becomes
the *leader* if nobody leads: it reads the pipe and the pidfd
(``lead_once``) and hands each reply to its waiter. The other waiters are
*followers*: each sleeps on its own pending's condition (on the channel's
lock), so a reply wakes only its caller. A leader that stops leading wakes
one follower to take over, and a follower whose call completed after it
was asked to lead passes that on, or nobody would read. An event loop's
reader callback and a write waiting on a full pipe lead the same way
(``try_lead``), but never wait as followers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from host.wire.pending import Pending, WorkerGone


class Leadership:
    """The leader/follower turns of one channel, under the channel's lock.

    ``lead_once(deadline)``: poll until something happens or ``deadline``
    and handle it (called by the leader only, without the lock).
    ``orphaned()`` (asked under the lock): the worker's end has been
    handled, so nobody will complete a call that is still waiting.
    """

    def __init__(
        self,
        lock: threading.Lock,
        lead_once: Callable[[float | None], None],
        orphaned: Callable[[], bool],
    ) -> None:
        self._lock = lock
        self._lead_once = lead_once
        self._orphaned = orphaned
        self._leader = False
        self._followers: list[threading.Condition] = []

    def try_lead(self) -> bool:
        """Lead if nobody does (True: call ``release`` when done)."""
        with self._lock:
            if self._leader:
                return False
            self._leader = True
            return True

    def release(self) -> None:
        """Stop leading; wake one follower to lead next."""
        with self._lock:
            self._leader = False
            if self._followers:
                self._followers[0].notify()  # one of them leads next

    def wait(self, pending: Pending, deadline: float | None) -> bool:
        """``Channel.wait`` (see there): lead or follow until ``pending`` is
        done (True) or ``deadline`` passes (False)."""
        while True:
            with self._lock:
                while True:
                    if pending.done:
                        if not self._leader and self._followers:
                            # We may have been the one asked to lead next:
                            # pass that on, or nobody reads.
                            self._followers[0].notify()
                        return True
                    if self._orphaned():
                        # Registered after the breakage was handled: nobody
                        # else will ever complete it.
                        pending.error = pending.error or WorkerGone()
                        pending.done = True
                        return True
                    expired = deadline is not None and time.monotonic() >= deadline
                    if not self._leader:
                        self._leader = True
                        break
                    if expired:
                        return False
                    cond = pending.cond
                    if cond is None:
                        cond = pending.cond = threading.Condition(self._lock)
                    self._followers.append(cond)
                    try:
                        cond.wait(None if deadline is None else deadline - time.monotonic())
                    finally:
                        self._followers.remove(cond)
            try:
                self._lead_once(deadline)
            finally:
                self.release()
            if expired or pending.done:
                return pending.done
