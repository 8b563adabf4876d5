"""One call's path to its set's worker: its turn, its deadlines, its outcome.

A call waits for its turn at the set's ``CallGate`` (a FIFO way into the
worker's pipe), is sent to the current incarnation, and is waited for under
two deadlines: its turn's (past it, it is cancelled: ``CallTimeout`` with
cause "queued") and its run's (past it, the worker is killed and replaced:
``CallTimeout``). A call that never started because its worker died (or
shut down) is sent again to the replacement; an abandoned asyncio call is
watched by a thread until it leaves the pipe. The worker itself, its
restarts and its deaths, are the ``WorkerLife`` this path is given
(``WorkerHandle``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from host.errors import CallTimeout, InvalidArguments
from host.wire.pending import Pending, WorkerGone
from host.workers.call_gate import CallGate
from host.workers.call_outcome import outcome
from host.workers.call_result import CallResult
from host.workers.context_door import ContextDoor
from host.workers.death import NotStarted
from host.workers.incarnation import REAP_TIMEOUT, TIMEOUT, Incarnation, usable
from host.workers.stream import StreamSink
from protocol import ErrorKind, encode_call
from protocol.messages import STREAM_WINDOW, new_packer

#: Each thread's packer of call frames (``new_packer``: reused, unlike
#: ``msgpack.packb``'s, and not shared: a packer is not thread-safe).
_packers = threading.local()
#: ... replaced after a frame larger than this.
PACKER_KEEP = 1 << 20

#: ``on_progress(done, total, message)``.
OnProgress = Callable[[float, float | None, str | None], object]

#: How long past a running call's deadline the calls behind it wait before
#: killing the worker themselves (its own caller does so at the deadline,
#: unless it was cancelled and left).
OVERDUE_GRACE = 0.1


class WorkerLife(Protocol):
    """What a call's path asks of its set's worker (``WorkerHandle``)."""

    @property
    def current(self) -> Incarnation | None:
        """The incarnation calls go to now; read without a lock, so it may be
        dead or starting (``usable`` says whether it can take a call as it is)."""
        ...

    def ready_incarnation(self, function: str, deadline: float | None) -> Incarnation:
        """The current incarnation, ready to take calls; restarts a dead one.

        Raises ``HostClosed``, ``WorkerCrashed`` (parked, or the restart
        failed) or ``CallTimeout`` (``deadline`` passed while it started).
        """
        ...

    def restart_in_background(self, dying: Incarnation | None = None) -> None:
        """Start a replacement for ``dying``, which is being killed on purpose."""
        ...


class CallPath:
    """The calls of one set, from their turn to their outcome. Thread-safe."""

    def __init__(
        self,
        life: WorkerLife,
        name: str,
        gate: CallGate,
        max_argument_bytes: int,
        log: logging.Logger,
        max_result_bytes: int = 0,
    ) -> None:
        self._life = life
        #: A stream's first byte credit: the worker's limit for one result.
        self._max_result_bytes = max_result_bytes
        self.name = name
        self._gate = gate
        self._max_argument_bytes = max_argument_bytes
        self._ids = itertools.count()
        self._log = log

    def call(
        self,
        function: str,
        arguments: Any,
        timeout: float | None,
        door: ContextDoor | None = None,
        on_progress: OnProgress | None = None,
        stream: StreamSink | None = None,
    ) -> CallResult:
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
        raise the matching ``CallError`` subclass. ``door``: the call's
        context and what of it is exposed (``context_door``); its requests
        are answered while the call runs, under the same timeout.
        ``on_progress(done, total, message)``: called for each progress
        report of the running function (``worker.progress``), on the thread
        reading the worker's pipe: it must be quick; what it raises is logged.
        ``stream``: the call's items go there as they come (``stream``).
        """
        queue_deadline = _deadline(timeout)
        msgid, frame = self._encode(function, arguments, door, stream is not None)
        weight = len(frame)
        gate = self._gate
        if not gate.acquire(queue_deadline, weight, timeout):
            raise self._queued_timeout(function, timeout)
        try:
            while True:
                inc = self._life.current
                if not usable(inc):
                    # A (re)start gets the call's timeout too.
                    inc = self._life.ready_incarnation(function, _deadline(timeout))
                pending = Pending(msgid, function, timeout)
                pending.door = door
                pending.on_progress = on_progress
                if stream is not None:
                    pending.on_item = stream
                    pending.credit = STREAM_WINDOW
                    pending.byte_credit = stream.byte_window = self._max_result_bytes
                channel = inc.channel
                egress = inc.proc.egress_door
                mark = None if egress is None else egress[0].mark(egress[1])
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
                    return outcome(
                        self.name, inc, pending, mark, self._log
                    )  # the usual case, checked inline
                if not self._resend(pending, function, timeout):
                    return outcome(self.name, inc, pending, mark, self._log)
        finally:
            gate.release(weight)

    async def acall(
        self,
        function: str,
        arguments: Any,
        timeout: float | None,
        door: ContextDoor | None = None,
        on_progress: OnProgress | None = None,
        stop_on_cancel: bool = False,
        stream: StreamSink | None = None,
    ) -> CallResult:
        """``call`` for asyncio. Never blocks the loop, except the writing of a
        large argument (a start or restart of the worker runs in a thread).
        Cancelling while the call waits for its turn leaves the queue; once
        sent, the worker is asked to skip it if it has not started, and if
        it has, it runs to its end (under its timeout) and its reply is
        discarded, or with ``stop_on_cancel`` its worker is killed (and
        restarted, as after a timeout); either way the calls behind it go on.
        """
        queue_deadline = _deadline(timeout)
        msgid, frame = self._encode(function, arguments, door, stream is not None)
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
                inc = self._life.current
                if not usable(inc):
                    inc = await asyncio.to_thread(
                        self._life.ready_incarnation, function, _deadline(timeout)
                    )
                pending = Pending(msgid, function, timeout)
                pending.door = door
                pending.on_progress = on_progress
                if stream is not None:
                    pending.on_item = stream
                    pending.credit = STREAM_WINDOW
                    pending.byte_credit = stream.byte_window = self._max_result_bytes
                pending.future = loop.create_future()
                channel = inc.channel
                egress = inc.proc.egress_door
                mark = None if egress is None else egress[0].mark(egress[1])
                if not channel.try_send(pending, frame, loop):
                    # Another thread is writing to this pipe: wait for it
                    # off the loop, which must never block on a lock.
                    await asyncio.to_thread(channel.send, pending, frame)
                try:
                    while True:
                        fut = channel.watch(
                            pending,
                            pending.run_deadline
                            if pending.started
                            else self._next_deadline(inc, pending, queue_deadline),
                            loop,
                        )
                        if fut is not None:
                            try:
                                await fut
                            finally:
                                channel.unwatch(pending, fut, loop)
                        if pending.done:
                            break
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
                        if stop_on_cancel and pending.started:
                            self._kill_cancelled(inc, pending)
                        else:
                            cancelled = channel.cancel(pending, lock_timeout=0)  # never blocks
                            if not cancelled or timeout is not None:
                                self._watch(inc, pending, cancel=not cancelled)
                    raise
                if pending.error is None and pending.result.error is None:
                    return outcome(
                        self.name, inc, pending, mark, self._log
                    )  # the usual case, checked inline
                if not self._resend(pending, function, timeout):
                    return outcome(self.name, inc, pending, mark, self._log)
        finally:
            if release:
                gate.release(weight)

    def _encode(
        self, function: str, arguments: Any, door: ContextDoor | None, stream: bool = False
    ) -> tuple[int, bytes]:
        """A request id (unique for this set) and the framed request."""
        msgid = next(self._ids) % 0xFFFFFFFF + 1
        try:
            pack = _packers.pack
        except AttributeError:
            pack = _packers.pack = new_packer()
        try:
            if door is None and not stream:
                frame = encode_call(msgid, function, arguments, None, False, pack)
            else:
                context = None if door is None else door.describe()
                frame = encode_call(msgid, function, arguments, context, stream, pack)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise self._not_sendable(function, str(exc)) from None
        if len(frame) > PACKER_KEEP:
            _packers.pack = new_packer()  # (a packer keeps the largest buffer it filled)
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
        head = inc.channel.head_hint  # (only when to look again: _overdue decides)
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
        self._life.restart_in_background(dying=inc)

    def _kill_cancelled(self, inc: Incarnation, pending: Pending) -> None:
        """The caller of a running call was cancelled and asked for it to
        stop: kill its worker (restarted as after a timeout; the calls behind
        it never started and go to the new one)."""
        inc.kill(
            TIMEOUT,
            f"was killed because a call to {self.name}.{pending.function} "
            "was cancelled while it ran",
        )
        self._life.restart_in_background(dying=inc)

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


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout
