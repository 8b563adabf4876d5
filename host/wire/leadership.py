"""Who reads a worker's pipe: one waiting caller at a time (leader/follower).

No thread is dedicated to reading. A caller waiting for its call becomes
the *leader* if nobody leads: it reads the pipe and the pidfd
(``lead_once``) and hands each reply to its waiter. The other waiters are
*followers*: each sleeps on a lock of its own, which only its reply (``wake``)
or a hand-over releases, so a reply wakes only its caller and nobody is
woken who has nothing to do. A leader leads on, without a hand-over, until
its own call is done or its deadline passes; then it hands over to one
follower whose call is still waiting (none: nobody needs to read). A
follower that finds its call done and nobody leading passes that on, or
nobody would read. An event loop's reader callback and a write waiting on
a full pipe lead the same way (``try_lead``), but never wait as followers.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable

from host.wire.pending import Pending, WorkerGone

_new_lock = _thread.allocate_lock


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
        #: Followers asleep, in the order they came, each on its own (held)
        #: lock: whoever takes one out of here releases it, once.
        self._sleepers: dict[_thread.LockType, Pending] = {}
        #: Followers woken to lead next (until they have looked, under the lock).
        self._heirs: set[_thread.LockType] = set()

    def try_lead(self) -> bool:
        """Lead if nobody does (True: call ``release`` when done)."""
        with self._lock:
            if self._leader:
                return False
            self._leader = True
            return True

    def release(self) -> None:
        """Stop leading; wake one follower whose call waits, to lead next."""
        with self._lock:
            self._leader = False
            self._hand_over()

    def wake(self, pending: Pending) -> None:
        """``pending`` is done: wake its followers (lock held)."""
        waiters = pending.cond
        if waiters:
            pending.cond = None
            sleepers = self._sleepers
            for waiter in waiters:
                if sleepers.pop(waiter, None) is not None:
                    waiter.release()

    def _hand_over(self) -> None:
        """Wake the first follower whose call is not done (lock held)."""
        sleepers = self._sleepers
        for waiter, pending in sleepers.items():
            if not pending.done:
                del sleepers[waiter]
                self._heirs.add(waiter)
                waiter.release()
                return

    def wait(self, pending: Pending, deadline: float | None) -> bool:
        """``Channel.wait`` (see there): lead or follow until ``pending`` is
        done (True) or ``deadline`` passes (False)."""
        leading = expired = False
        while True:
            with self._lock:
                if leading:
                    if pending.done or expired:
                        # Done leading: the next caller still waiting leads.
                        self._leader = False
                        self._hand_over()
                        return pending.done
                elif pending.done:
                    if not self._leader:
                        # We may have been the one asked to lead next:
                        # pass that on, or nobody reads.
                        self._hand_over()
                    return True
                if self._orphaned():
                    # Registered after the breakage was handled: nobody
                    # else will ever complete it.
                    pending.error = pending.error or WorkerGone()
                    pending.done = True
                    if leading:
                        self._leader = False
                        self._hand_over()
                    return True
                expired = deadline is not None and time.monotonic() >= deadline
                if not leading:
                    if not self._leader:
                        self._leader = leading = True
                    elif expired:
                        return False
                    else:
                        waiter = _new_lock()
                        waiter.acquire()
                        self._sleepers[waiter] = pending
                        if pending.cond is None:
                            pending.cond = [waiter]
                        else:
                            pending.cond.append(waiter)
            if leading:
                try:
                    self._lead_once(deadline)
                except BaseException:
                    self.release()
                    raise
                continue
            # Asleep until our reply, a hand-over or the deadline.
            if waiter.acquire(
                True, -1 if deadline is None else max(0.0, deadline - time.monotonic())
            ):
                if waiter not in self._heirs and pending.done:
                    # Woken by our reply (which took us out of the sleepers
                    # before it released us): nothing else to do, no lock.
                    return True
                with self._lock:
                    self._heirs.discard(waiter)
                continue
            with self._lock:
                if self._sleepers.pop(waiter, None) is not None and pending.cond:
                    # Timed out: nobody released it.
                    try:
                        pending.cond.remove(waiter)
                    except ValueError:
                        pass
                self._heirs.discard(waiter)
