"""One function set's worker over its life: start, ready, calls, death, restart.

A ``WorkerHandle`` owns the current *incarnation* (one process and its
channel). When that process dies (crash, timeout kill, protocol error) every
call in flight on it fails with a specific error, and a new incarnation is
started in the background. Repeated unintended deaths in a short window
park the set: calls fail fast with ``WorkerCrashed`` until the window has
passed, instead of restarting in a loop.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from typing import Any

from host.call_gate import PIPE_BUDGET, CallGate
from host.call_result import CallResult
from host.channel import Pending, WorkerGone, WorkerLost
from host.death import Death, NotStarted
from host.errors import (
    CallTimeout,
    HostClosed,
    InvalidArguments,
    LoadError,
    WorkerCrashed,
    error_from_map,
)
from host.incarnation import (
    CLOSING,
    LOAD_FAILED,
    PROTOCOL,
    REAP_TIMEOUT,
    RECYCLE,
    RETIRED,
    START,
    TIMEOUT,
    Incarnation,
    log_stderr,
    usable,
)
from host.launcher import Launcher, WorkerSpec
from protocol import ErrorKind, ProtocolViolation, Response, Verb, encode_call

logger = logging.getLogger("fnhost")

#: How long past a running call's deadline the calls behind it wait before
#: killing the worker themselves (its own caller does so at the deadline,
#: unless it was cancelled and left).
OVERDUE_GRACE = 0.1


class WorkerHandle:
    """The worker of one function set. Thread-safe; sync and asyncio calls."""

    def __init__(self, spec: WorkerSpec, launcher: Launcher) -> None:
        self.spec = spec
        self.name = spec.set_name
        self._launcher = launcher
        self._lock = threading.Lock()
        self._current: Incarnation | None = None
        self._deaths: collections.deque[float] = collections.deque()
        self._deaths_lock = threading.Lock()
        self._retiring: set[Incarnation] = set()
        self._gate = CallGate()  # FIFO way into the worker's pipe
        self._max_argument_bytes = spec.limits.max_argument_bytes
        self._ids = itertools.count()
        self._parked_until = 0.0
        self._park_reason = ""
        self._closed = False
        self._log = logger.getChild(f"worker.{self.name}")

    # -- starting ------------------------------------------------------------

    def _spawn(self) -> Incarnation:
        try:
            proc = self._launcher.spawn(self.spec)
        except (OSError, RuntimeError) as exc:
            raise LoadError(
                self.name, f"cannot start a worker process: {exc}", source=self.spec.source
            )
        inc = Incarnation(self.spec, proc, self._log, self._on_broken, self._recycle)
        self._gate.resize(min(PIPE_BUDGET, inc.pipe_capacity // 2))
        return inc

    def _replace(self, old: Incarnation | None) -> Incarnation:
        """Start a new incarnation in place of a dead one (lock held).

        ``begin_close`` does not take the lock, so a close that slipped in
        while this one was spawning is checked for after publishing it: one
        of the two always sees the other, and the new worker is stopped.
        """
        if old is not None:
            old.channel.close()
        inc = self._current = self._spawn()
        if self._closed:
            inc.kill(CLOSING, "the host was closed")
            inc.channel.wait(inc.channel.exit, time.monotonic() + REAP_TIMEOUT)
            inc.channel.close()
            inc.proc.remove_workdir()
            raise HostClosed(self.name, None, "the host is closed")
        return inc

    def start(self) -> None:
        """Start the worker process without waiting for it (parallel loads)."""
        with self._lock:
            if self._current is None:
                self._current = self._spawn()

    def wait_loaded(self) -> dict[str, Any]:
        """Wait for the first start to finish; the ``ready`` params or ``LoadError``.

        Fails if the module raised, exited or crashed while importing, or did
        not report ready within ``limits.start_timeout`` (it is then killed).
        """
        self.start()
        with self._lock:
            inc = self._current
            assert inc is not None
            inc.handshake(None)
            assert inc.ready is not None
            return inc.ready

    def _ready_incarnation(self, function: str, deadline: float | None) -> Incarnation:
        """The current worker, ready to take calls; restarts a dead one.

        Raises ``HostClosed`` after ``close()`` (also one that stops the new
        worker this call waits for); ``WorkerCrashed`` while the
        set is parked or when a new worker fails to start; ``CallTimeout``
        if ``deadline`` passes while the worker is still starting.
        """
        inc = self._current
        if usable(inc):
            return inc  # fast path, no lock
        with self._lock:
            if self._closed:
                raise HostClosed(self.name, function, "the host is closed")
            inc = self._current
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
                    if time.monotonic() < self._parked_until:
                        left = self._parked_until - time.monotonic()
                        raise WorkerCrashed(
                            self.name,
                            function,
                            f"is parked: {self._park_reason}; it will be restarted on a call "
                            f"in {left:.1f}s",
                            details={"cause": "parked"},
                        )
                    inc = self._replace(inc)
                inc.handshake(deadline)
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

    def _restart_in_background(self, dying: Incarnation | None = None) -> None:
        """Start a replacement for the current worker if it is dead.

        With ``dying`` (a worker being killed on purpose: a timeout, a
        recycle), the replacement is forked at once, in parallel with its
        death, instead of after it has been reaped; ``dying`` is retired: its
        calls fail as usual when its exit is seen, and a reaper thread
        releases its pipes and files.
        """

        def job() -> None:
            # Runs on the launcher thread. A caller holding the lock may be
            # waiting for this very thread to spawn, so never block on it:
            # if the lock is taken, that caller is restarting the worker.
            if not self._lock.acquire(blocking=False):
                return
            try:
                inc = self._current
                if self._closed or time.monotonic() < self._parked_until:
                    return
                if inc is None or inc.channel.broken:
                    self._replace(inc)
                elif inc is dying:
                    # Retired first: whatever happens to the spawn (a close,
                    # a failure), the reaper releases the old one.
                    self._retiring.add(inc)
                    threading.Thread(
                        target=self._stop,
                        args=(inc, time.monotonic() + REAP_TIMEOUT),
                        name=f"fnhost-reap-{self.name}",
                        daemon=True,
                    ).start()
                    self._replace(None)  # publishes the new one as current
            except LoadError as exc:
                self._log.warning("%s", exc)
            except HostClosed:
                pass
            finally:
                self._lock.release()

        self._launcher.submit(job)

    # -- calling -------------------------------------------------------------

    def call(self, function: str, arguments: Any, timeout: float | None) -> CallResult:
        """Run ``function`` in the worker and wait for its result.

        Calls to one set run one at a time, in arrival order (the worker is
        sequential); up to ``call_gate.PIPE_DEPTH`` of them with the same
        timeout wait in its pipe so that each starts as soon as the previous
        one ends. ``timeout`` bounds two things: the wait for the call's turn
        (past it: the call is cancelled and ``CallTimeout`` with cause
        "queued" is raised once the worker confirms it never started, which
        it does as soon as the call it is running ends; nothing else is
        disturbed) and, from when it starts, the function's run (past it:
        the worker's process group is killed and restarted, then
        ``CallTimeout``). So a call that started late still gets its
        whole budget, and the caller waits at most about twice ``timeout``.
        A worker death fails only the call it was running: the calls behind
        it never started and go to the restarted worker. Other failures
        raise the matching ``CallError`` subclass.
        """
        queue_deadline = _deadline(timeout)
        msgid, frame = self._encode(function, arguments)
        weight = len(frame)
        gate = self._gate
        if not gate.acquire(queue_deadline, weight, timeout):
            raise self._queued_timeout(function, timeout)
        try:
            while True:
                inc = self._current
                if not usable(inc):
                    # A (re)start gets the call's timeout too.
                    inc = self._ready_incarnation(function, _deadline(timeout))
                pending = Pending(msgid, function, timeout)
                channel = inc.channel
                channel.send(pending, frame)
                while not channel.wait(
                    pending,
                    pending.run_deadline
                    if pending.started
                    else self._next_deadline(inc, pending, queue_deadline),
                ):
                    if self._overdue(inc, pending, queue_deadline):
                        channel.wait(channel.exit, time.monotonic() + REAP_TIMEOUT)
                        raise self._timeout_error(function, timeout)
                if pending.error is None and pending.result.error is None:
                    return self._outcome(inc, pending)  # the usual case, checked inline
                if not self._resend(pending, function, timeout):
                    return self._outcome(inc, pending)
        finally:
            gate.release(weight)

    async def acall(self, function: str, arguments: Any, timeout: float | None) -> CallResult:
        """``call`` for asyncio. Never blocks the loop, except the writing of a
        large argument (a start or restart of the worker runs in a thread).
        Cancelling while the call waits for its turn leaves the queue; once
        sent, the worker is asked to skip it if it has not started, and if
        it has, it runs to its end (under its timeout) and its reply is
        discarded; either way the calls behind it go on.
        """
        queue_deadline = _deadline(timeout)
        msgid, frame = self._encode(function, arguments)
        weight = len(frame)
        gate = self._gate
        if not gate.try_acquire(weight, timeout) and not await gate.acquire_async(
            queue_deadline, weight, timeout
        ):
            raise self._queued_timeout(function, timeout)
        release = True
        try:
            loop = asyncio.get_running_loop()
            while True:
                inc = self._current
                if not usable(inc):
                    inc = await asyncio.to_thread(
                        self._ready_incarnation, function, _deadline(timeout)
                    )
                pending = Pending(msgid, function, timeout)
                pending.future = loop.create_future()
                channel = inc.channel
                channel.send(pending, frame)
                try:
                    while not await channel.wait_async(
                        pending,
                        pending.run_deadline
                        if pending.started
                        else self._next_deadline(inc, pending, queue_deadline),
                    ):
                        # (lock_timeout=0: a cancel must not block the loop;
                        # it is tried again on the next turn.)
                        if self._overdue(inc, pending, queue_deadline, lock_timeout=0):
                            if not channel.exit.done:
                                await asyncio.to_thread(
                                    channel.wait, channel.exit, time.monotonic() + REAP_TIMEOUT
                                )
                            raise self._timeout_error(function, timeout)
                except asyncio.CancelledError:
                    # Its place in the pipe is given back when it leaves it;
                    # meanwhile a watchdog keeps its timeout.
                    if not channel.abandon(pending, lambda: gate.release(weight)):
                        release = False
                        cancelled = channel.cancel(pending, lock_timeout=0)  # never block the loop
                        if not cancelled or timeout is not None:
                            self._watch(inc, pending, cancel=not cancelled)
                    raise
                if pending.error is None and pending.result.error is None:
                    return self._outcome(inc, pending)  # the usual case, checked inline
                if not self._resend(pending, function, timeout):
                    return self._outcome(inc, pending)
        finally:
            if release:
                gate.release(weight)

    def _encode(self, function: str, arguments: Any) -> tuple[int, bytes]:
        """A request id (unique for this set) and the framed request."""
        msgid = next(self._ids) % 0xFFFFFFFF + 1
        try:
            frame = encode_call(msgid, function, arguments)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise self._not_sendable(function, str(exc)) from None
        limit = self._max_argument_bytes
        if len(frame) > limit:
            raise self._not_sendable(
                function,
                f"they encode to {len(frame)} bytes; the limit is {limit} bytes "
                "(Limits.max_argument_mb)",
            )
        return msgid, frame

    def _not_sendable(self, function: str, why: str) -> InvalidArguments:
        return InvalidArguments(
            self.name,
            function,
            f"the arguments cannot be sent: {why}",
            details={"path": "$", "expected": "JSON-compatible values", "got": why},
        )

    def _next_deadline(
        self, inc: Incarnation, pending: Pending, queue_deadline: float | None
    ) -> float | None:
        """When a waiting caller must next look at its call (``_overdue``)."""
        if pending.started:
            return pending.run_deadline
        # Waiting in the pipe: until its turn's deadline (then it is
        # cancelled), and no longer than the running call's deadline plus a
        # grace (in case that call's caller was cancelled and left).
        deadline = None if pending.cancel_sent else queue_deadline
        head = inc.channel.head
        if head is not None and head is not pending and head.run_deadline is not None:
            overdue = head.run_deadline + OVERDUE_GRACE
            deadline = overdue if deadline is None else min(deadline, overdue)
        return deadline

    def _overdue(
        self,
        inc: Incarnation,
        pending: Pending,
        queue_deadline: float | None,
        lock_timeout: float = 0.05,
    ) -> bool:
        """A wait ended at its deadline. True if ``pending`` ran out of time
        and its worker was killed; otherwise did what was due (cancel the
        call that waited too long for its turn, kill a worker whose running
        call nobody is timing any more) and the caller waits again."""
        now = time.monotonic()
        if pending.started:
            if pending.run_deadline is not None and now >= pending.run_deadline:
                return self._kill_for_timeout(inc, pending)
            return False
        head = inc.channel.head
        if (
            head is not None
            and head is not pending
            and head.run_deadline is not None
            and now >= head.run_deadline + OVERDUE_GRACE
        ):
            self._kill_overdue(inc, head)
        if queue_deadline is not None and now >= queue_deadline and not pending.cancel_sent:
            inc.channel.cancel(pending, lock_timeout)
        return False

    def _resend(self, pending: Pending, function: str, timeout: float | None) -> bool:
        """After the wait: True if the call never started and must go to the
        (restarted) worker again; raises its queue timeout if it was
        cancelled."""
        error = pending.error
        if error is None:
            msg = pending.result
            if msg.error is None or msg.error.get("kind") != ErrorKind.CANCELLED:
                return False
            if pending.cancel_sent:
                raise self._queued_timeout(function, timeout)
            return True  # its worker was told to shut down (a reload, a close) first
        if not isinstance(error, (NotStarted, WorkerGone)):
            return False
        if pending.cancel_sent:
            raise self._queued_timeout(function, timeout)
        return True

    def _kill_for_timeout(self, inc: Incarnation, pending: Pending) -> bool:
        """Kill the worker for ``pending``'s timeout; False if it finished after all."""
        if inc.channel.abandon(pending):
            return False
        self._kill_timed_out(inc, pending)
        return True

    def _kill_overdue(self, inc: Incarnation, head: Pending) -> None:
        """Kill the worker for the timeout of a running call whose caller
        did not (it was cancelled and left)."""
        if inc.channel.head is head and not head.done:
            self._kill_timed_out(inc, head)

    def _watch(self, inc: Incarnation, pending: Pending, cancel: bool) -> None:
        """For an abandoned call (its caller was cancelled), from a thread of
        its own: send the cancel that could not be sent from the event loop
        (``cancel``), and enforce its timeout until it leaves the pipe."""

        def watch() -> None:
            channel = inc.channel
            while cancel and not (pending.started or pending.done or pending.cancel_sent):
                if channel.broken:
                    return
                if not channel.cancel(pending, lock_timeout=0.5):
                    # Another writer, or a full pipe: read meanwhile (and
                    # notice an exit), then again.
                    channel.wait(pending, time.monotonic() + 0.01)
            if pending.timeout is None:
                return
            while not channel.wait(pending, self._next_deadline(inc, pending, None)):
                if self._overdue(inc, pending, None):
                    return

        threading.Thread(target=watch, name=f"fnhost-watch-{self.name}", daemon=True).start()

    def _kill_timed_out(self, inc: Incarnation, pending: Pending) -> None:
        if pending.msgid is not None:
            inc.timed_out.add(pending.msgid)
        inc.kill(
            TIMEOUT,
            f"was killed because a call to {self.name}.{pending.function} "
            "timed out before this call finished",
        )
        self._restart_in_background(dying=inc)

    def _queued_timeout(self, function: str, timeout: float | None) -> CallTimeout:
        return CallTimeout(
            self.name,
            function,
            f"did not start within {timeout:g}s: earlier calls to this function set were "
            "still running (a set runs one call at a time); nothing was interrupted",
            details={"cause": "queued"},
        )

    def _timeout_error(self, function: str, timeout: float | None) -> CallTimeout:
        return CallTimeout(
            self.name,
            function,
            f"did not finish within {timeout:g}s; its worker was killed and is restarting",
        )

    def _outcome(self, inc: Incarnation, pending: Pending) -> CallResult:
        if pending.error is not None:
            if isinstance(pending.error, WorkerGone):
                raise WorkerCrashed(
                    self.name, pending.function, "had already exited when the call was sent"
                )
            if isinstance(pending.error, WorkerLost):
                raise WorkerCrashed(self.name, pending.function, "its worker was lost")
            raise pending.error
        msg = pending.result
        assert isinstance(msg, Response)
        output = msg.result  # checked by the channel (validate_call_result)
        if output.get("stderr"):
            log_stderr(self._log, output)
        if msg.error is not None:
            # (A "recycle" error has had its worker replaced: _recycle.)
            raise error_from_map(self.name, pending.function, msg.error, output)
        return CallResult(
            output["value"],
            output.get("stdout") or "",
            output.get("stderr") or "",
            self.name,
            pending.function,
        )

    def _recycle(self, inc: Incarnation, pending: Pending) -> None:
        """The worker asked to be replaced (it ran out of memory and may
        still hold what exhausted it); it exits by itself, without starting
        the calls behind, which go to the new worker."""
        inc.kill(RECYCLE, f"was replaced after {self.name}.{pending.function} ran out of memory")
        self._restart_in_background(dying=inc)

    # -- dying ---------------------------------------------------------------

    def _on_broken(self, inc: Incarnation, violation: ProtocolViolation | None) -> None:
        """The incarnation exited or broke the protocol: reap, fail calls, restart."""
        death = Death.reap(inc, violation)
        reason = death.reason
        inc.channel.fail_all(death.error_for)
        if reason is None or reason[0] in (PROTOCOL, LOAD_FAILED, START):
            self._record_death()
        if (
            inc.ready is not None
            and not self._closed
            and time.monotonic() >= self._parked_until
            and (reason is None or reason[0] in (TIMEOUT, PROTOCOL, RECYCLE))
        ):
            self._restart_in_background()
        # After the restart is under way: the next call waits for it, not
        # for this cleanup (removing the directory takes ~0.3 ms).
        inc.proc.remove_workdir()
        # A worker that died before it was ready is reported as the set's
        # load failure (Incarnation.handshake), with the reason; its exit
        # status alone ("exited with status 0" after a failed import) says nothing.
        if inc.ready is not None and (reason is None or reason[0] == PROTOCOL):
            self._log.warning("worker (pid %d) %s", inc.proc.pid, death.how)

    def _record_death(self) -> None:
        now = time.monotonic()
        limits = self.spec.limits
        with self._deaths_lock:
            self._deaths.append(now)
            while self._deaths and self._deaths[0] < now - limits.crash_window:
                self._deaths.popleft()
            if len(self._deaths) < limits.crash_limit:
                return
            self._deaths.clear()
            self._park_reason = (
                f"its worker died {limits.crash_limit} times within {limits.crash_window:g}s"
            )
            self._parked_until = now + limits.crash_window
        self._log.error("function set %r parked: %s", self.name, self._park_reason)

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

    def swap(self, new: Incarnation) -> None:
        """Serve new calls from ``new``; calls in flight finish on the old worker,
        which then exits (killed after its call timeout plus the grace)."""
        with self._lock:
            closed = self._closed
            old, self._current = self._current, (None if closed else new)
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

    def _stop(self, inc: Incarnation, deadline: float | None) -> None:
        """Wait for ``inc`` to exit until ``deadline``, then kill; release it."""
        ch = inc.channel
        if not ch.wait(ch.exit, deadline):
            inc.proc.kill_group()
            ch.wait(ch.exit, time.monotonic() + REAP_TIMEOUT)
        ch.close()
        inc.proc.remove_workdir()
        self._retiring.discard(inc)

    # -- closing -------------------------------------------------------------

    def begin_close(self) -> None:
        """Ask the worker to exit after the calls it has (no new calls start).

        Never waits for the handle's lock (a restart may hold it while the
        new worker starts): a worker that is not ready, or whose pipe cannot
        take the shutdown message at once, is killed instead.
        """
        self._closed = True
        for inc in [self._current, *self._retiring]:
            if inc is None or inc.channel.broken:
                continue
            if inc.kill_reason is None or inc.kill_reason[0] == RETIRED:
                inc.kill_reason = (CLOSING, "the host was closed while the call was running")
            if inc.ready is None or not inc.channel.notify(Verb.SHUTDOWN, {}):
                inc.proc.kill_group()

    def finish_close(self, deadline: float) -> None:
        """Wait for the exits until ``deadline``, then kill; release everything."""
        for inc in [self._current, *list(self._retiring)]:
            if inc is not None:
                self._stop(inc, deadline)

    @property
    def load(self) -> int:
        """Calls running or waiting on this worker."""
        return self._gate.load

    @property
    def parked(self) -> bool:
        """True while a call would fail at once because the set is parked
        after a crash loop (its worker is dead and not being restarted)."""
        if time.monotonic() >= self._parked_until:
            return False
        inc = self._current
        return inc is None or inc.channel.broken or inc.load_error is not None

    @property
    def pids(self) -> list[int | None]:
        return [self.pid]

    def protections(self) -> dict[str, bool]:
        """What the current worker really has: the layers it applied to itself
        at start (each the result of its system call), and how it was started.
        Empty while no worker is running."""
        inc = self._current
        if inc is None or inc.ready is None or inc.channel.broken:
            return {}
        report = {k: bool(v) for k, v in (inc.ready.get("protections") or {}).items()}
        report["forked_from_zygote"] = inc.proc.zygote is not None
        report["death_seen_by_pidfd"] = inc.proc.pidfd is not None
        return report

    @property
    def pid(self) -> int | None:
        inc = self._current
        return None if inc is None or inc.channel.broken else inc.proc.pid


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout
