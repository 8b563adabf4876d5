"""The worker's request loop: read frames, run the calls, write the replies.

Single-threaded and strictly sequential: one call runs at a time, in arrival
order, and replies go out in that order. The host may send a call while the
previous one still runs (pipelining); such calls wait in the conversation's
queue (``protocol.conversation.WorkerConversation``, which decides what each
message from the host means), and before starting one of them the loop reads
whatever else has arrived, so a ``cancel`` sent meanwhile is honoured at
once: the call leaves the queue and is answered "cancelled" (ahead of the
calls before it) without running; on ``shutdown`` every queued call is
answered so before the worker exits. After a reply that asks the host to
recycle the worker (out of memory), the worker exits instead of starting the
next call. Every exception from user code,
including ``SystemExit`` and ``KeyboardInterrupt``, becomes an error reply;
the loop only ends on ``shutdown``, on end of input (the host is gone), or
on a protocol violation by the host.
"""

from __future__ import annotations

import inspect
import os
import select
import traceback as tb
from typing import Any, NoReturn

from protocol import ErrorKind, FrameDecoder, ProtocolViolation, Request, decode_message
from protocol.conversation import Skip, Stop, WorkerConversation
from worker.binding import bind
from worker.capture import OutputCapture
from worker.results import encode_error, encode_result
from worker.signature import FunctionSpec
from worker.typespec import ArgumentError

READ_CHUNK = 1 << 16

# Bound once, when the worker starts and before any user code runs: a user
# module that monkeypatches ``os.write`` or ``os._exit`` does not reach the
# request loop.
_read, _write, _getpid, _exit = os.read, os.write, os.getpid, os._exit
_NO_OUTPUT = {"stdout": "", "stderr": ""}


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = _write(fd, view)
        view = view[written:]


def describe_exception(exc: BaseException) -> tuple[str, str, str]:
    """(type name, message, traceback) without trusting the exception object.

    ``str()`` and ``repr()`` of a user exception may raise or be huge; the
    protocol's ``make_error_map`` bounds the sizes.
    """
    cls = type(exc)
    module = getattr(cls, "__module__", "") or ""
    type_name = cls.__qualname__ if module in ("builtins", "") else f"{module}.{cls.__qualname__}"
    try:
        message = str(exc)
    except BaseException:
        message = f"<{type_name}: str() failed>"
    try:
        trace = "".join(tb.format_exception(exc, limit=50))
    except BaseException:
        trace = f"<traceback of {type_name} could not be formatted>"
    return type_name, message, trace


class Server:
    def __init__(
        self,
        in_fd: int,
        out_fd: int,
        functions: dict[str, FunctionSpec],
        capture: OutputCapture,
        max_frame_size: int,
        max_result_bytes: int,
        conversation: WorkerConversation,
    ) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.functions = functions
        self.capture = capture
        self.decoder = FrameDecoder(max_frame_size)
        self.max_result_bytes = max_result_bytes
        self.pid = _getpid()
        #: The rules; it holds the calls received and not started yet.
        self.conversation = conversation
        self.recycling = False
        self._poller = select.poll()
        self._poller.register(in_fd, select.POLLIN)

    def run(self) -> NoReturn:
        """Serve until shutdown or EOF, then leave with ``os._exit``."""
        conversation, poll = self.conversation, self._poller.poll
        while True:
            if not conversation.waiting:
                self._receive()  # blocks until the host sends something
                # Just read: nothing can have come for it meanwhile.
            elif poll(0):
                # This call waited while another ran: take in what came
                # meanwhile (a cancel for it, more calls) before starting it.
                self._receive()
            call = conversation.next_call()  # (a cancel may have emptied the queue)
            if call is not None:
                self.handle_call(call)

    def _receive(self) -> None:
        """Read one chunk and take in its messages (blocking). Exits on EOF,
        ``shutdown`` or a protocol violation."""
        try:
            data = _read(self.in_fd, READ_CHUNK)
        except OSError as exc:
            self._die(f"cannot read requests: {exc}", 74)
        if not data:
            _exit(0)
        receive = self.conversation.receive
        try:
            for body in self.decoder.feed(data):
                event = receive(decode_message(body))
                if type(event) is Skip:
                    self._confirm_cancel(event.msgid)
                elif type(event) is Stop:
                    # The calls waiting here never started: say so (the host
                    # sends them to the next worker, or fails them if it is
                    # closing). Nothing after a shutdown matters.
                    for msgid in event.never_started:
                        self._confirm_cancel(msgid)
                    _exit(0)
        except ProtocolViolation as exc:
            self._die(f"protocol violation by host: {exc}", 76)

    def _confirm_cancel(self, msgid: int) -> None:
        reply = encode_error(msgid, ErrorKind.CANCELLED, "cancelled before it started", _NO_OUTPUT)
        write_all(self.out_fd, reply)

    def _die(self, why: str, code: int) -> None:
        try:
            _write(2, f"fnhost worker: {why}\n".encode())
        finally:
            _exit(code)

    def handle_call(self, msg: Request) -> None:
        frame = self._run_call(msg)
        if _getpid() != self.pid:
            _exit(0)  # a process forked by user code never answers
        self.conversation.reply_sent(msg.msgid, self.recycling)
        write_all(self.out_fd, frame)
        if self.recycling:
            # The host replaces us: the calls queued here must not start
            # (they go to the new worker; see the module docstring).
            _exit(0)

    def _run_call(self, msg: Request) -> bytes:
        params = msg.params if isinstance(msg.params, dict) else {}
        name = params.get("function")
        arguments = params.get("arguments", {})
        spec = self.functions.get(name) if isinstance(name, str) else None
        if spec is None:
            available = ", ".join(sorted(self.functions))[:2000] or "none"
            return encode_error(
                msg.msgid,
                ErrorKind.UNKNOWN_FUNCTION,
                f"no exported function named {name!r} (available: {available})",
                self.capture.collect(),
            )
        try:
            args, kwargs = bind(spec, arguments)
        except ArgumentError as exc:
            return encode_error(
                msg.msgid,
                ErrorKind.INVALID_ARGUMENTS,
                str(exc),
                self.capture.collect(),
                path=exc.path,
                expected=exc.expected,
                got=exc.got,
            )
        try:
            value = self._invoke(spec, args, kwargs)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: user errors
            if _getpid() != self.pid:
                _exit(0)
            type_name, message, trace = describe_exception(exc)
            output = self.capture.collect()
            if isinstance(exc, MemoryError):
                # The function may still hold the memory (a global, a cycle):
                # ask the host to replace this worker with a fresh one.
                del exc
                self.recycling = True
                return encode_error(
                    msg.msgid,
                    ErrorKind.OUT_OF_MEMORY,
                    message,
                    output,
                    type_name,
                    trace,
                    recycle=True,
                )
            del exc
            return encode_error(
                msg.msgid, ErrorKind.USER_EXCEPTION, message, output, type_name, trace
            )
        if _getpid() != self.pid:
            _exit(0)
        output = self.capture.collect()
        return encode_result(msg.msgid, value, output, self.max_result_bytes)

    @staticmethod
    def _invoke(spec: FunctionSpec, args: list[Any], kwargs: dict[str, Any]) -> Any:
        value = spec.function(*args, **kwargs)
        if inspect.isawaitable(value):
            import asyncio

            async def _await() -> Any:
                return await value

            value = asyncio.run(_await())
        return value
