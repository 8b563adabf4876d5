"""One worker process of a set and its channel, from spawn to the end of its start.

An ``Incarnation`` is one process (``WorkerProcess``), the ``Channel`` to it,
and what the host learned of it: its ``ready`` params once its handshake
succeeded, the ``LoadError`` if it failed, and why the host killed it
(``kill_reason``, one of the reasons below) if it did. A set's worker is a
succession of incarnations (``WorkerHandle``); how an incarnation's death
becomes each call's error is ``host.workers.death``.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import TypeIs

from host.errors import CallError, LoadError
from host.launch.launcher import WorkerSpec
from host.launch.worker_process import WorkerProcess
from host.terminal_text import shown
from host.wire.channel import Channel
from host.wire.pending import Pending
from host.workers.context_door import answer_in_thread
from protocol import Notification, ProtocolViolation, Request, Verb
from protocol.frame_limits import reply_frame_limit, request_frame_limit
from protocol.handshake import validate_probed, validate_ready
from protocol.messages import validate_error_map

#: How long to wait for a killed worker to be reaped before giving up on it.
REAP_TIMEOUT = 5.0
#: How long a worker has to read the answer to its request (it waits for it).
ANSWER_GRACE = 5.0

# Why the host ended an incarnation on purpose (``Incarnation.kill_reason[0]``).
#: A call running on it timed out.
TIMEOUT = "timeout"
#: The host (or a reload that was abandoned) stopped it.
CLOSING = "closing"
#: Its module failed to import (the worker said so, and exits by itself).
LOAD_FAILED = "load_failed"
#: It broke the protocol.
PROTOCOL = "protocol"
#: It did not finish its start in time, or failed to load as a replacement.
START = "start"
#: It asked to be replaced (it ran out of memory).
RECYCLE = "recycle"
#: A reloaded version took its place.
RETIRED = "retired"
#: It had no call for ``Limits.idle_timeout``, or made room for another
#: set's worker (``host.workers.live_workers``).
IDLE = "idle"


class Incarnation:
    """One worker process, its channel, and how far its start got.

    ``on_broken(inc, violation)`` and ``on_recycle(inc, pending)`` are the
    channel's callbacks (see ``Channel``) with this incarnation added.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        proc: WorkerProcess,
        log: logging.Logger,
        on_broken: Callable[[Incarnation, ProtocolViolation | None], None],
        on_recycle: Callable[[Incarnation, Pending], None],
        on_eof: Callable[[Incarnation], None] | None = None,
    ) -> None:
        self.spec = spec
        self.proc = proc
        self.log = log
        self.started = time.monotonic()
        self.ready: dict[str, Any] | None = None
        self.load_error: LoadError | None = None
        self.kill_reason: tuple[str, str] | None = None
        self.timed_out: set[int] = set()
        #: Its death was counted towards the crash limit when its pipe closed.
        self.death_counted = False
        #: It was a standby before it served (``host.workers.standby``).
        self.was_standby = False
        #: A standby's: its set's file as it was at its spawn (``standby``).
        self.standby_source: tuple[int, ...] | None = None
        self.channel = Channel(
            read_fd=proc.resp_r,
            write_fd=proc.req_w,
            pidfd=proc.pidfd,
            max_frame_size=reply_frame_limit(spec.limits.max_result_bytes),
            decode_budget=spec.limits.max_decoded_bytes,
            on_broken=lambda violation: on_broken(self, violation),
            exited=lambda: not proc.alive(),
            on_recycle=lambda pending: on_recycle(self, pending),
            on_ask=self._on_ask,
            on_note=self._on_note,
            on_eof=None if on_eof is None else (lambda: on_eof(self)),
        )
        # Calls waiting in the pipe must fit in it: a pipe can be as small as
        # one page when the user's pipe buffers are over their soft limit.
        try:
            self.pipe_capacity: int = fcntl.fcntl(proc.req_w, fcntl.F_GETPIPE_SZ)
        except OSError:
            self.pipe_capacity = 4096

    def _on_ask(self, pending: Pending, request: Request) -> None:
        """The running call asks its context something: answer on a thread
        of its own (``context_door``), off the pipe's reader."""
        future = pending.future
        channel = self.channel

        def send(frame: bytes) -> None:
            # The worker waits for this answer and reads it at once; one that
            # does not read it within ANSWER_GRACE (or its call's deadline:
            # its timeout kill then) is killed, so the pipe's write lock is
            # never held longer.
            deadline = time.monotonic() + ANSWER_GRACE
            run_deadline = pending.run_deadline
            if run_deadline is not None and run_deadline < deadline:
                deadline = run_deadline
            if not channel.answer(pending, request.msgid, frame, deadline):
                if run_deadline is None or time.monotonic() < run_deadline:
                    self.kill(PROTOCOL, "it did not read the answer to its request")

        answer_in_thread(
            pending.door,
            request.msgid,
            request.params,
            future.get_loop() if future is not None else None,
            send,
            f"fnhost-context-{self.spec.set_name}",
            request_frame_limit(self.spec.limits.max_argument_bytes),
        )

    def _on_note(self, pending: Pending, note: Notification, size: int = 0) -> None:
        """A progress report or log line of the running call (on the thread
        reading the pipe: the caller's ``on_progress`` must be quick; an
        ``acall``'s runs on its own event loop)."""
        params = note.params
        if note.method == Verb.ITEM:
            sink = pending.on_item
            if sink is not None:  # (the conversation takes items of streams only)
                sink.received(params["value"], size, self.channel, pending)
            return
        if note.method == Verb.LOG:
            # One record, one line, no escape sequences: a worker's text
            # cannot forge records of the host's own (host.terminal_text).
            self.log.info("%s: %s", pending.function, shown(params["text"]))
            return
        callback = pending.on_progress
        if callback is None:
            return
        args = (params["done"], params.get("total"), params.get("message"))
        future = pending.future
        if future is not None:
            try:
                future.get_loop().call_soon_threadsafe(_report, callback, args, self.log)
            except RuntimeError:
                pass  # the caller's loop is closed: nobody is listening
        else:
            _report(callback, args, self.log)

    def kill(self, reason: str, message: str) -> None:
        """Kill the process group; the first reason given is the one kept."""
        if self.kill_reason is None:
            self.kill_reason = (reason, message)
        self.proc.kill_group()

    def handshake(self, deadline: float | None) -> None:
        """Read the worker's first message (one caller at a time: the handle's
        lock, or an incarnation nobody else sees yet).

        Raises ``LoadError`` if the worker failed to start or did not report
        ready within ``start_timeout`` of its start (it is killed then), and
        ``TimeoutError`` if the caller's ``deadline`` came first (the worker
        is left starting, for the next call).
        """
        if self.ready is not None:
            return
        if self.load_error is not None:
            raise self.load_error
        ch = self.channel
        name = self.spec.set_name
        limit = self.spec.limits.start_timeout
        start_deadline = self.started + limit
        if deadline is not None and deadline < start_deadline:
            if not ch.wait(ch.handshake, deadline):
                raise TimeoutError
        if not ch.wait(ch.handshake, start_deadline):
            self.kill(START, f"did not finish importing within {limit:g}s")
            ch.wait(ch.exit, time.monotonic() + REAP_TIMEOUT)
        hs = ch.handshake
        if hs.error is not None:
            raise self._load_failed(_as_load_error(self.spec, hs.error))
        msg = hs.result
        try:
            if not isinstance(msg, Notification):
                raise ProtocolViolation("first message is not a notification")
            if msg.method == Verb.LOAD_FAILED:
                params = msg.params if isinstance(msg.params, dict) else {}
                err = validate_error_map(params.get("error"))
                self.kill_reason = (LOAD_FAILED, "the module failed to import")
                load_error = LoadError(
                    name,
                    _load_failure_text(err),
                    source=self.spec.source,
                    remote_type=err.get("type"),
                    traceback=err.get("traceback"),
                    stderr_tail=_text(params.get("stderr")),
                )
                ch.wait(ch.exit, time.monotonic() + REAP_TIMEOUT)  # it exits by itself
                if not ch.exit.done:
                    self.proc.kill_group()
                raise self._load_failed(load_error)
            if msg.method != Verb.READY:
                raise ProtocolViolation(f"expected ready, got {msg.method!r}")
            ready = validate_ready(msg.params)
            assert ch.probed is not None  # the channel completes no handshake before it
            # The sandbox report is the one sent before user code ran; a
            # report inside ready (which user code could have shaped) is ignored.
            ready["protections"] = validate_probed(ch.probed.params)
        except ProtocolViolation as exc:
            self.kill(PROTOCOL, str(exc))
            ch.wait(ch.exit, time.monotonic() + REAP_TIMEOUT)
            raise self._load_failed(
                LoadError(
                    name,
                    f"the worker broke the protocol while starting: {exc}",
                    source=self.spec.source,
                ),
            )
        log_stderr(self.log, ready)
        self.ready = ready

    def _load_failed(self, error: LoadError) -> LoadError:
        """Record and log why this incarnation did not load (once: it is
        raised again from ``load_error`` to later callers); returns it to raise."""
        self.load_error = error
        self.log.warning("%s", error)  # "function set 'x' failed to load: <why>"
        return error


def usable(inc: Incarnation | None) -> TypeIs[Incarnation]:
    """Ready, not being killed, not dead: calls can go to it as it is."""
    return (
        inc is not None
        and inc.ready is not None
        and inc.kill_reason is None
        and not inc.channel.broken
        and not inc.channel.dying
    )


def log_stderr(log: logging.Logger, output: dict[str, Any]) -> None:
    """Log the last 50 lines of what the worker printed to stderr (``output["stderr"]``)."""
    text = output.get("stderr")
    if text and isinstance(text, str):
        for line in text.splitlines()[-50:]:
            log.info("%s", line)


def _as_load_error(spec: WorkerSpec, exc: BaseException) -> LoadError:
    if isinstance(exc, LoadError):
        return exc
    if isinstance(exc, CallError):
        return LoadError(
            spec.set_name,
            exc.message,
            source=spec.source,
            exit_code=exc.exit_code,
            signal=exc.signal,
            stderr_tail=exc.stderr_tail,
        )
    return LoadError(spec.set_name, str(exc) or type(exc).__name__, source=spec.source)


def _load_failure_text(err: dict[str, Any]) -> str:
    if err.get("type") and not err["message"].startswith("the module called"):
        return f"{err['type']}: {err['message']}"
    return err["message"]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _report(callback: Callable[..., object], args: tuple[Any, ...], log: logging.Logger) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("the on_progress callback failed")
