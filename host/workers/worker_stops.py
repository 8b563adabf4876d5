"""How a set's worker is stopped on purpose: retired by a reload, stopped
when idle or to make room (``host.workers.live_workers``), closed with its
host. ``WorkerHandle`` inherits these; its own file keeps the worker's
start, restart and death.

Each stop marks the incarnation with its reason (``RETIRED``, ``IDLE``,
``CLOSING``) before the worker is told, so that whatever its calls see
(a "not started" answer, its exit) is read as that stop and never counted
as a crash; and each keeps the incarnation in ``_retiring`` until it is
reaped, so that a close running beside it always finds it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from host.launch.launcher import WorkerSpec
from host.workers.call_gate import CallGate
from host.workers.incarnation import (
    CLOSING,
    IDLE,
    REAP_TIMEOUT,
    RETIRED,
    Incarnation,
    usable,
)
from host.workers.live_workers import LiveWorkers
from protocol import Verb


class WorkerStops:
    """The stopping half of ``WorkerHandle`` (see the module)."""

    spec: WorkerSpec
    name: str
    current: Incarnation | None
    _lock: threading.Lock
    _gate: CallGate
    _retiring: set[Incarnation]
    _closed: bool
    _live: LiveWorkers | None
    _log: logging.Logger
    _standby: Incarnation | None
    #: ``Standby._drop_standby`` and ``Standby.drop_standby``.
    _drop_standby: Callable[..., None]
    drop_standby: Callable[[], Incarnation | None]

    # -- reloading -------------------------------------------------------------

    def swap(self, new: Incarnation) -> None:
        """Serve new calls from ``new``; calls in flight finish on the old worker,
        which then exits (killed after its call timeout plus the grace)."""
        with self._lock:
            closed = self._closed
            old, self.current = self.current, (None if closed else new)
            if closed:
                old = new
        if old is None:
            return
        if old.channel.broken:
            old.channel.close()
            old.proc.remove_workdir()
            return
        self._retire(old)

    def discard(self, inc: Incarnation) -> None:
        """Stop a replacement that will not be swapped in."""
        inc.kill(CLOSING, "the reload was abandoned")
        self._stop(inc, time.monotonic() + REAP_TIMEOUT)

    def _retire(self, old: Incarnation) -> None:
        if old.kill_reason is None:
            old.kill_reason = (RETIRED, "was replaced by a reloaded version during the call")
        if old.ready is None or not old.channel.notify(Verb.SHUTDOWN, {}):
            old.proc.kill_group()
        self._retiring.add(old)
        limits = self.spec.limits

        def reap() -> None:
            wait = None if limits.timeout is None else limits.timeout + limits.shutdown_grace
            self._stop(old, None if wait is None else time.monotonic() + wait)

        threading.Thread(target=reap, name=f"fnhost-retire-{self.name}", daemon=True).start()

    def _stop(
        self, inc: Incarnation, deadline: float | None, overdue: tuple[str, str] | None = None
    ) -> None:
        """Wait for ``inc`` to exit until ``deadline``, then kill (with the
        reason ``overdue``, unless it has one); release it."""
        ch = inc.channel
        if not ch.wait(ch.exit, deadline):
            if overdue is not None:
                inc.kill(*overdue)
            else:
                inc.proc.kill_group()
            ch.wait(ch.exit, time.monotonic() + REAP_TIMEOUT)
        ch.close()
        inc.proc.remove_workdir()
        self._retiring.discard(inc)

    # -- idling (host.workers.live_workers) -----------------------------------

    @property
    def idle_timeout(self) -> float | None:
        return self.spec.limits.idle_timeout

    @property
    def idle_since(self) -> float | None:
        """``time.monotonic()`` of the end of the worker's last call (or of
        the handle's making), or None if it has a call running or waiting,
        or no ready worker."""
        if self._gate.load or not usable(self.current):
            return None
        return self._gate.last_used

    @property
    def live_processes(self) -> int:
        """Worker processes of this set alive now, stopping ones included."""
        inc = self.current
        return (
            (inc is not None and not inc.channel.broken)
            + len(self._retiring)
            # A standby that died waiting is dropped at the next restart; its
            # channel, which nobody reads until then, does not know it yet.
            + ((standby := self._standby) is not None and standby.proc.alive())
        )

    def stop_if_idle(self, since: float) -> Incarnation | None:
        """Stop the worker if it has had no call since ``since`` (its
        ``idle_since``); the set stays loaded and its next call starts a
        worker again. Never blocks: a handle busy (re)starting is skipped.

        Returns the stopping incarnation, to be passed to ``reap_stopped``,
        or None if nothing was stopped. A call that took the worker just
        before this (past the idle check) either reaches it after the
        shutdown, is answered "not started" and goes to the next worker, or
        reaches it first and runs there to its end (see ``reap_stopped``),
        as in a reload.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            inc = self.current
            if self._closed or not usable(inc) or self._gate.load or self._gate.last_used != since:
                return None
            # Retiring before it stops being current: a close that runs
            # beside this (it takes no lock) sees it in one or the other.
            self._retiring.add(inc)
            inc.kill_reason = (IDLE, "was stopped after being idle")
            self.current = None
            self._drop_standby()
            if not inc.channel.notify(Verb.SHUTDOWN, {}):
                inc.proc.kill_group()
            return inc
        finally:
            self._lock.release()

    def reap_stopped(self, stopped: Incarnation) -> None:
        """Wait up to ``shutdown_grace`` for a worker ``stop_if_idle`` stopped
        to exit, and release its pipes, files and cgroup.

        A call that took the worker just before ``current`` was cleared may
        have reached it ahead of the shutdown and be running: then the
        worker is left to finish it, as a reloaded one is (killed only
        after the call's timeout plus the grace, on a thread of its own),
        and this returns at once.
        """
        limits = self.spec.limits
        ch = stopped.channel
        if ch.wait(ch.exit, time.monotonic() + limits.shutdown_grace):
            self._stop(stopped, None)
            return
        wait = None if limits.timeout is None else limits.timeout + limits.shutdown_grace
        threading.Thread(
            target=self._stop,
            args=(stopped, None if wait is None else time.monotonic() + wait),
            name=f"fnhost-idle-{self.name}",
            daemon=True,
        ).start()

    # -- closing -------------------------------------------------------------

    def begin_close(self) -> None:
        """Ask the worker to exit after the calls it has (no new calls start).

        Never waits for the handle's lock (a restart may hold it while the
        new worker starts): a worker that is not ready, or whose pipe cannot
        take the shutdown message at once, is killed instead.
        """
        self._closed = True
        self._drop_standby(reap=False)  # into _retiring: killed below, reaped by finish_close
        for inc in [self.current, *self._retiring]:
            if inc is None or inc.channel.broken:
                continue
            if inc.kill_reason is None or inc.kill_reason[0] in (RETIRED, IDLE):
                inc.kill_reason = (CLOSING, "the host was closed while the call was running")
            if inc.ready is None or not inc.channel.notify(Verb.SHUTDOWN, {}):
                inc.proc.kill_group()

    def finish_close(self, deadline: float) -> None:
        """Wait for the exits until ``deadline``, then kill; release everything."""
        for inc in [self.current, *list(self._retiring)]:
            if inc is not None:
                self._stop(inc, deadline)
        if self._live is not None:
            self._live.remove(self)
