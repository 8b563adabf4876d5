"""One function set's worker over its life: start, restart, park, reload, close.

A ``WorkerHandle`` owns the current *incarnation* (one process and its
channel, ``host.workers.incarnation``). When that process dies (crash, timeout kill,
protocol error) every call in flight on it fails with a specific error
(``host.workers.death``), and a new incarnation is started in the background.
Repeated unintended deaths in a short window park the set: calls fail fast
with ``WorkerCrashed`` until the window has passed, instead of restarting in
a loop. Each call's own path (its turn, deadlines, cancel, resend) is
``host.workers.call_path``; stopping a worker on purpose (a reload's swap,
an idle stop, a close) is ``host.workers.worker_stops``, which
``WorkerHandle`` inherits.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from host.errors import CallTimeout, HostClosed, LoadError, WorkerCrashed
from host.launch.launcher import Launcher, WorkerSpec
from host.wire.pending import Pending
from host.workers.call_gate import PIPE_BUDGET, CallGate
from host.workers.call_path import CallPath
from host.workers.call_result import CallResult
from host.workers.crash_loop import CrashLoop
from host.workers.death import Death
from host.workers.incarnation import (
    CLOSING,
    LOAD_FAILED,
    PROTOCOL,
    REAP_TIMEOUT,
    RECYCLE,
    START,
    TIMEOUT,
    Incarnation,
    usable,
)
from host.workers.live_workers import LiveWorkers
from host.workers.standby import Standby
from host.workers.worker_stops import WorkerStops
from protocol import ProtocolViolation

logger = logging.getLogger("fnhost")


class WorkerHandle(WorkerStops, Standby):
    """The worker of one function set. Thread-safe; sync and asyncio calls.

    ``call`` and ``acall`` are its ``CallPath``'s (documented there), bound
    directly: no extra frame or coroutine per call.
    """

    # (function, arguments, timeout, door=None), as CallPath.call / acall.
    call: Callable[..., CallResult]
    acall: Callable[..., Coroutine[Any, Any, CallResult]]

    def __init__(
        self, spec: WorkerSpec, launcher: Launcher, live: LiveWorkers | None = None
    ) -> None:
        self.spec = spec
        self.name = spec.set_name
        self._launcher = launcher
        self._live = live
        self._lock = threading.Lock()
        #: The incarnation calls go to (read by them without the lock).
        self.current: Incarnation | None = None
        self._crashes = CrashLoop(spec.limits.crash_limit, spec.limits.crash_window)
        self._retiring: set[Incarnation] = set()
        self._gate = CallGate()  # FIFO way into the worker's pipe
        self._closed = False
        self._log = logger.getChild(f"worker.{self.name}")
        calls = CallPath(
            self,
            self.name,
            self._gate,
            spec.limits.max_argument_bytes,
            self._log,
            spec.limits.max_result_bytes,
        )
        self.call = calls.call
        self.acall = calls.acall
        if live is not None:
            live.add(self)

    # -- starting ------------------------------------------------------------

    def _spawn(self, standby: bool = False) -> Incarnation:
        """A new incarnation (a ``standby``: ``host.workers.standby``, which
        never makes room by stopping other sets' workers). Raises
        ``LoadError`` if no process can be started."""
        spec = self.spec  # once: a respec beside this (it takes no lock) is seen whole
        live = None if standby else self._live
        if live is not None:
            live.make_room(self)
        while True:
            try:
                proc = self._launcher.spawn(spec, standby)
                break
            except OSError as exc:
                # Out of descriptors: an idle worker of another set gives its up.
                if exc.errno in (errno.EMFILE, errno.ENFILE) and live and live.evict_one(self):
                    continue
                raise LoadError(
                    self.name, f"cannot start a worker process: {exc}", source=spec.source
                )
            except (RuntimeError, ValueError) as exc:  # ValueError: an egress secret
                raise LoadError(
                    self.name, f"cannot start a worker process: {exc}", source=spec.source
                )
        inc = Incarnation(spec, proc, self._log, self._on_broken, self._recycle, self._on_eof)
        self._gate.resize(min(PIPE_BUDGET, inc.pipe_capacity // 2))
        return inc

    def _replace(self, old: Incarnation | None, died: bool = False) -> Incarnation:
        """Start a new incarnation in place of a dead one (lock held): the
        standby, if the set has one (``host.workers.standby``), else a new
        worker. ``died``: the old one died unintentionally (or is being
        killed for a timeout): the set keeps a standby from now on.

        ``begin_close`` does not take the lock, so a close that slipped in
        while this one was spawning is checked for after publishing it: one
        of the two always sees the other, and the new worker is stopped.
        """
        if old is not None:
            old.channel.close()
        inc = self.current = self._take_standby() or self._spawn()
        if self._closed:
            inc.kill(CLOSING, "the host was closed")
            inc.channel.wait(inc.channel.exit, time.monotonic() + REAP_TIMEOUT)
            inc.channel.close()
            inc.proc.remove_workdir()
            raise HostClosed(self.name, None, "the host is closed")
        if died:
            self._want_standby()
        return inc

    def start(self) -> None:
        """Start the worker process without waiting for it (parallel loads)."""
        with self._lock:
            if self.current is None:
                self.current = self._spawn()

    def wait_loaded(self) -> dict[str, Any]:
        """Wait for the first start to finish; the ``ready`` params or ``LoadError``.

        Fails if the module raised, exited or crashed while importing, or did
        not report ready within ``limits.start_timeout`` (it is then killed).
        """
        self.start()
        with self._lock:
            inc = self.current
            assert inc is not None
            inc.handshake(None)
            assert inc.ready is not None
            return inc.ready

    def ready_incarnation(self, function: str, deadline: float | None) -> Incarnation:
        """The current worker, ready to take calls; restarts a dead one.

        Raises ``HostClosed`` after ``close()`` (also one that stops the new
        worker this call waits for); ``WorkerCrashed`` while the
        set is parked or when a new worker fails to start; ``CallTimeout``
        if ``deadline`` passes while the worker is still starting.
        """
        inc = self.current
        if usable(inc):
            return inc  # fast path, no lock
        with self._lock:
            if self._closed:
                raise HostClosed(self.name, function, "the host is closed")
            inc = self.current
            if (
                inc is not None
                and (inc.kill_reason is not None or inc.channel.dying)
                and not inc.channel.broken
            ):
                # Killed on purpose (recycled, timed out) but not yet reaped:
                # finish that, so the call goes to its replacement.
                inc.channel.wait(inc.channel.exit, time.monotonic() + REAP_TIMEOUT)
            try:
                if inc is None or inc.channel.broken or inc.load_error is not None:
                    if self._crashes.parked():
                        left = self._crashes.seconds_left()
                        raise WorkerCrashed(
                            self.name,
                            function,
                            f"is parked: {self._crashes.reason}; it will be restarted on a call "
                            f"in {left:.1f}s",
                            details={"cause": "parked"},
                        )
                    inc = self._replace(inc, died=inc is not None)
                try:
                    inc.handshake(deadline)
                except LoadError:
                    if not inc.was_standby or self._closed or inc.kill_reason is not None:
                        raise
                    # The standby may have died before its import: once
                    # more with a fresh worker. Not after its import failed,
                    # hung or broke the protocol (kill_reason): a fresh worker
                    # would do the same, a second death against crash_limit.
                    inc = self._replace(inc)
                    inc.handshake(deadline)
                self._standby_due()
            except TimeoutError:
                raise CallTimeout(
                    self.name,
                    function,
                    "the deadline passed while its worker was still starting",
                    details={"cause": "starting"},
                )
            except LoadError as exc:
                if self._closed:  # close() stopped the worker it waited for
                    raise HostClosed(
                        self.name, function, "the host was closed before the call started"
                    ) from exc
                raise WorkerCrashed(
                    self.name,
                    function,
                    f"could not be restarted: {exc.message}",
                    remote_type=exc.remote_type,
                    traceback=exc.traceback,
                    exit_code=exc.exit_code,
                    signal=exc.signal,
                    stderr_tail=exc.stderr_tail,
                ) from exc
            return inc

    def restart_in_background(
        self, dying: Incarnation | None = None, overdue: tuple[str, str] | None = None
    ) -> None:
        """Start a replacement for the current worker if it is dead.

        With ``dying`` (a worker being killed on purpose: a timeout, a
        recycle; or one whose pipe closed as it exits, ``_on_eof``), the
        replacement is forked at once, in parallel with its death, instead
        of after it has been reaped; ``dying`` is retired: its calls fail as
        usual when its exit is seen, and a reaper thread releases its pipes
        and files, killing it (with the reason ``overdue``, if given) if it
        has not exited within ``REAP_TIMEOUT``. With ``overdue``, a ``dying``
        that is not retired here (the set closed or parked meanwhile, or a
        caller restarting it first) is still killed then if it lingers.
        """

        def job() -> None:
            # Runs on the launcher thread. A caller holding the lock may be
            # waiting for this very thread to spawn, so never block on it:
            # if the lock is taken, that caller is restarting the worker.
            retired = False
            if not self._lock.acquire(blocking=False):
                if dying is not None and overdue is not None:
                    self._kill_if_it_stays(dying, overdue)
                return
            try:
                inc = self.current
                if self._closed or self._crashes.parked():
                    return
                if inc is None or inc.channel.broken:
                    self._replace(inc, died=True)
                elif inc is dying:
                    # Retired first: whatever happens to the spawn (a close,
                    # a failure), the reaper releases the old one.
                    retired = True
                    self._retiring.add(inc)
                    reap_by = time.monotonic() + REAP_TIMEOUT
                    try:
                        self._replace(None, died=True)  # publishes the new one as current
                    finally:
                        # After the spawn: starting a thread waits for it to
                        # run, which the replacement need not wait for.
                        threading.Thread(
                            target=self._stop,
                            args=(inc, reap_by, overdue),
                            name=f"fnhost-reap-{self.name}",
                            daemon=True,
                        ).start()
            except LoadError as exc:
                self._log.warning("%s", exc)
            except HostClosed:
                pass
            finally:
                self._lock.release()
                if not retired and dying is not None and overdue is not None:
                    self._kill_if_it_stays(dying, overdue)

        self._launcher.submit(job)

    def _kill_if_it_stays(self, inc: Incarnation, reason: tuple[str, str]) -> None:
        """On a thread of its own: kill ``inc`` with ``reason`` if it has not
        exited within ``REAP_TIMEOUT`` (its exit is handled as usual)."""

        def watch() -> None:
            ch = inc.channel
            if not ch.wait(ch.exit, time.monotonic() + REAP_TIMEOUT):
                inc.kill(*reason)

        threading.Thread(target=watch, name=f"fnhost-eof-{self.name}", daemon=True).start()

    def _recycle(self, inc: Incarnation, pending: Pending) -> None:
        """The worker asked to be replaced (it ran out of memory and may
        still hold what exhausted it); it exits by itself, without starting
        the calls behind, which go to the new worker."""
        inc.kill(RECYCLE, f"was replaced after {self.name}.{pending.function} ran out of memory")
        self.restart_in_background(dying=inc)

    # -- dying ---------------------------------------------------------------

    def _on_eof(self, inc: Incarnation) -> None:
        """The serving incarnation's pipe closed, and not because the host
        ended it: it is exiting by itself (a crash, ``os._exit``, the OOM
        killer) or user code closed the pipe. Count the death and start the
        replacement now, beside the exit, instead of after the exit has
        been seen and reaped (a worker in its own PID namespace is seen to
        exit only after its init and warden, ~2 ms later). Its calls still
        fail when the exit is seen (``_on_broken``); one that closed its
        pipe but does not exit is killed after ``REAP_TIMEOUT`` as a
        protocol error. Runs on the thread leading the channel: never blocks.
        """
        if (
            inc.ready is None
            or inc.kill_reason is not None
            or self._closed
            or inc is not self.current
            or inc.death_counted
        ):
            return
        inc.death_counted = True
        overdue = (PROTOCOL, "it closed its end of the pipe and did not exit")
        if self._record_death():
            # Parked: no replacement until the window has passed; a worker
            # that closed its pipe but lives on is still killed.
            self._kill_if_it_stays(inc, overdue)
            return
        self.restart_in_background(dying=inc, overdue=overdue)

    def _on_broken(self, inc: Incarnation, violation: ProtocolViolation | None) -> None:
        """The incarnation exited or broke the protocol: reap, fail calls, restart."""
        death = Death.reap(inc, violation)
        reason = death.reason
        inc.channel.fail_all(death.error_for)
        if not inc.death_counted and (
            reason is None or reason[0] in (PROTOCOL, LOAD_FAILED, START)
        ):
            inc.death_counted = True
            self._record_death()
        if (
            inc.ready is not None
            and inc is self.current  # else its replacement is started already
            and not self._closed
            and not self._crashes.parked()
            and (reason is None or reason[0] in (TIMEOUT, PROTOCOL, RECYCLE))
        ):
            self.restart_in_background()
        # After the restart is under way: the next call waits for it, not
        # for this cleanup (removing the directory takes ~0.3 ms). A retired
        # worker's reaper (WorkerStops._stop) removes it, off the path of
        # the crashed call's error, which this thread may be about to raise.
        if inc not in self._retiring:
            inc.proc.remove_workdir()
        # A worker that died before it was ready is reported as the set's
        # load failure (Incarnation.handshake), with the reason; its exit
        # status alone ("exited with status 0" after a failed import) says nothing.
        if inc.ready is not None and (reason is None or reason[0] == PROTOCOL):
            how = (
                "was killed by the kernel's OOM killer "
                + ("at its memory limit" if death.oom == "limit" else "(the machine was short)")
                if death.oom
                else death.how
            )
            self._log.warning("worker (pid %d) %s", inc.proc.pid, how)

    def _record_death(self) -> bool:
        """Count an unintended death; True if it parks the set (logged)."""
        if not self._crashes.record_death():
            return False
        self._log.error("function set %r parked: %s", self.name, self._crashes.reason)
        return True

    # -- reloading -----------------------------------------------------------

    def start_replacement(self) -> tuple[Incarnation, dict[str, Any]]:
        """Start a new worker from the set's source (which may have changed)
        and wait for it to be ready; the current worker keeps serving.

        Returns the new incarnation (not yet serving) and its ``ready``
        params. Raises ``LoadError`` if the new version does not load; the
        failed worker is cleaned up and nothing else changes.
        """
        inc = self._spawn()
        try:
            inc.handshake(None)
        except LoadError:
            if not inc.channel.exit.done:
                inc.kill(START, "failed to load")
                inc.channel.wait(inc.channel.exit, time.monotonic() + REAP_TIMEOUT)
            inc.channel.close()
            inc.proc.remove_workdir()
            raise
        assert inc.ready is not None
        return inc, inc.ready

    def respec(self, spec: WorkerSpec) -> None:
        """Start later workers (restarts, replacements) from ``spec``: a reload
        found the set's environment changed."""
        self.spec = spec
        self._drop_standby()  # started from the old spec

    @property
    def load(self) -> int:
        """Calls running or waiting on this worker."""
        return self._gate.load

    @property
    def parked(self) -> bool:
        """True while a call would fail at once because the set is parked
        after a crash loop (its worker is dead and not being restarted)."""
        if not self._crashes.parked():
            return False
        inc = self.current
        return inc is None or inc.channel.broken or inc.load_error is not None

    @property
    def pids(self) -> list[int | None]:
        return [self.pid]

    def protections(self) -> dict[str, bool]:
        """What the current worker really has: the layers it applied to itself
        at start (each the result of its system call), and how it was started.
        Empty while no worker is running."""
        inc = self.current
        if inc is None or inc.ready is None or inc.channel.broken:
            return {}
        report = {k: bool(v) for k, v in (inc.ready.get("protections") or {}).items()}
        report["forked_from_zygote"] = inc.proc.zygote is not None
        report["death_seen_by_pidfd"] = inc.proc.pidfd is not None
        return report

    @property
    def pid(self) -> int | None:
        inc = self.current
        return None if inc is None or inc.channel.broken else inc.proc.pid
