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

import _thread
import inspect
import itertools
import os
import select
import traceback as tb
from typing import Any, NoReturn

from protocol import (
    ErrorKind,
    FrameDecoder,
    Notification,
    ProtocolViolation,
    Request,
    Response,
    Verb,
    decode_message,
    encode_message,
)
from protocol.values import to_wire
from protocol.worker_conversation import Skip, Stop, WorkerConversation
from worker import network_note, progress
from worker.binding import bind
from worker.capture import OutputCapture
from worker.context_proxy import ContextProxy, raise_answer_error
from worker.results import encode_error, encode_result
from worker.signature import FunctionSpec
from worker.typespec import ArgumentError

READ_CHUNK = 1 << 16

# Bound once, when the worker starts and before any user code runs: a user
# module that monkeypatches ``os.write`` or ``os._exit`` does not reach the
# request loop.
_read, _write, _getpid, _exit = os.read, os.write, os.getpid, os._exit
_NO_OUTPUT = {"stdout": "", "stderr": ""}
#: Result types that are never awaitable nor generators.
_PLAIN = frozenset({int, float, str, bool, type(None), dict, list, bytes})


def write_all(fd: int, data: bytes) -> None:
    written = _write(fd, data)  # (a reply usually goes whole: no view)
    if written == len(data):
        return
    view = memoryview(data)[written:]
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


def _cancelled(msgid: int) -> bytes:
    """The reply confirming that call ``msgid`` was cancelled before it started."""
    return encode_error(msgid, ErrorKind.CANCELLED, "cancelled before it started", _NO_OUTPUT)


class _ItemRefused(Exception):
    """A streamed item cannot be sent (``kind``: not data, or too large)."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


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
        # A stream's items may take this many bytes before the host's more.
        conversation.stream_bytes = max_result_bytes
        self.recycling = False
        #: Added to a call's error when a connection or lookup failed
        #: (``worker.network_note``): the sandbox may be why.
        self.network_note = ""
        #: No network namespace: the syscall filter's EPERM is the network's.
        self.network_refusals = False
        #: A shutdown came while a call waited for the host's answer: exit
        #: after that call's reply.
        self.stopping = False
        self._ask_ids = itertools.count(1)
        self._thread = _thread.get_ident()
        progress.server = self
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

    def _receive(self) -> Response | None:
        """Read one chunk and take in its messages (blocking): queue calls,
        confirm cancels, and return the answer to the running call's request
        if it came. Exits on EOF, on ``shutdown`` between calls, or on a
        protocol violation; a ``shutdown`` during a call (it waits for an
        answer) makes the worker exit after that call's reply."""
        try:
            data = _read(self.in_fd, READ_CHUNK)
        except OSError as exc:
            self._die(f"cannot read requests: {exc}", 74)
        if not data:
            _exit(0)
        receive = self.conversation.receive
        answer = None
        # Cancel confirmations, written together once the chunk is taken in.
        confirmations: list[bytes] = []
        try:
            for body in self.decoder.feed(data):
                event = receive(decode_message(body))
                if type(event) is Skip:
                    confirmations.append(_cancelled(event.msgid))
                elif type(event) is Stop:
                    # The calls waiting here never started: say so (the host
                    # sends them to the next worker, or fails them if it is
                    # closing). Nothing after a shutdown matters, but the
                    # answer a running call waits for.
                    confirmations += map(_cancelled, event.never_started)
                    if self.conversation.running is None:
                        write_all(self.out_fd, b"".join(confirmations))
                        _exit(0)
                    self.stopping = True
                elif type(event) is Response:
                    answer = event
        except ProtocolViolation as exc:
            self._die(f"protocol violation by host: {exc}", 76)
        if confirmations:
            write_all(self.out_fd, b"".join(confirmations))
        return answer

    def note(self, method: str, params: dict[str, Any]) -> None:
        """Send a progress report or log line of the running call (see
        ``worker.progress``). Raises ``RuntimeError`` outside a call or from
        another thread, ``TypeError`` for values that are not numbers."""
        if self.conversation.running is None or _thread.get_ident() != self._thread:
            raise RuntimeError(
                "progress can only be reported during a call, from the thread that runs it"
            )
        if method == "progress":
            done, total = params["done"], params["total"]
            if type(done) not in (int, float) or not (total is None or type(total) in (int, float)):
                raise TypeError("progress: done and total must be numbers")
            if done != done or total != total:
                raise ValueError("progress: done and total must not be NaN")
        params["call"] = self.conversation.noted()
        write_all(self.out_fd, encode_message(Notification(method, params)))

    def ask(
        self, call: int, op: str, path: str, args: list[Any], kwargs: dict[str, Any], value: Any
    ) -> Any:
        """One request of the running call ``call`` to the host (its context);
        blocks until the answer, taking in what else arrives meanwhile.

        Returns the answer's value. Raises ``RuntimeError`` if ``call`` is
        not running or this is not the thread that runs it, ``TypeError`` or
        ``ValueError`` if the request cannot be sent (not data, too large),
        and what the answer says otherwise (``raise_answer_error``). The
        call's timeout bounds the wait: the host kills the worker at it.
        """
        conversation = self.conversation
        if conversation.running != call or _thread.get_ident() != self._thread:
            raise RuntimeError(
                "the context can only be used during its call, from the thread that runs it"
            )
        request_id = next(self._ask_ids) % 0xFFFFFFFF + 1
        params = {"call": call, "op": op, "path": path, "args": args, "kwargs": kwargs}
        if op == "set":
            params["value"] = value
        try:
            frame = encode_message(Request(request_id, Verb.ASK, params), default=to_wire)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"cannot send this to the host (only data crosses): {exc}") from None
        if len(frame) > self.max_result_bytes:
            raise ValueError(
                f"the request to the host is {len(frame)} bytes; the limit is "
                f"{self.max_result_bytes} (Limits.max_result_mb)"
            )
        conversation.asked(request_id)
        write_all(self.out_fd, frame)
        answer = None
        while answer is None:
            answer = self._receive()
        if answer.error is not None:
            raise_answer_error(
                str(answer.error.get("type") or ""), str(answer.error.get("message") or "")
            )
        result = answer.result
        if not isinstance(result, dict) or "value" not in result:
            self._die(f"an answer without a value: {result!r:.100}", 76)
        return result["value"]

    def _die(self, why: str, code: int) -> NoReturn:
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
        if self.stopping:
            _exit(0)  # a shutdown came while the call ran; it has been answered
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
        description = params.get("context")
        context = None if description is None else self._context(msg.msgid, description)
        try:
            args, kwargs = bind(spec, arguments, context)
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
            value = spec.function(*args, **kwargs)
            streaming = params.get("stream") is True
            if streaming or type(value) not in _PLAIN:
                # (A plain value is neither awaited nor drained: the inspect
                # checks cost a tenth of a small call.)
                value = self._drain(self._awaited(value), streaming)
        except _ItemRefused as refused:
            return encode_error(msg.msgid, refused.kind, refused.message, self.capture.collect())
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
            if self.network_note and network_note.explains(exc, message, self.network_refusals):
                message += self.network_note
            del exc
            return encode_error(
                msg.msgid, ErrorKind.USER_EXCEPTION, message, output, type_name, trace
            )
        if _getpid() != self.pid:
            _exit(0)
        output = self.capture.collect()
        return encode_result(msg.msgid, value, output, self.max_result_bytes)

    # -- generators and streams ------------------------------------------------

    def _drain(self, value: Any, streaming: bool) -> Any:
        """The call's value once a generator has run: for a stream, its
        items go out as ``item`` notifications and the value is what the
        generator returned (a plain value is one item, and the value None);
        otherwise the items, as a list. What the generator raises
        propagates (the call's error); so does ``_ItemRefused``."""
        if inspect.isgenerator(value):
            return self._stream(value) if streaming else list(value)
        if inspect.isasyncgen(value):
            import asyncio

            agen = value
            if streaming:
                return asyncio.run(self._stream_async(agen))

            async def collect() -> list[Any]:
                return [item async for item in agen]

            return asyncio.run(collect())
        if streaming:
            self._send_item(value)
            return None
        return value

    def _stream(self, gen: Any) -> Any:
        try:
            while True:
                try:
                    item = next(gen)
                except StopIteration as stop:
                    return stop.value
                if not self._send_item(item):
                    return None  # stopped by the host: closed below
        finally:
            gen.close()  # its finally blocks run; a stop is an ordinary end

    async def _stream_async(self, agen: Any) -> None:
        try:
            async for item in agen:
                if not self._send_item(item):
                    break
        finally:
            await agen.aclose()

    def _send_item(self, value: Any) -> bool:
        """Send one item of the running stream, waiting for room (the host's
        ``more``: items and bytes) if it has none for it; False if the host
        stopped the stream. The wait takes in what else arrives and counts
        in the call's timeout. Raises ``_ItemRefused`` for an item that is
        not data or too large."""
        conversation = self.conversation
        try:
            frame = encode_message(
                Notification(Verb.ITEM, {"call": conversation.running, "value": value}),
                default=to_wire,
            )
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise _ItemRefused(
                ErrorKind.RESULT_NOT_SERIALIZABLE, f"a streamed item cannot be sent: {exc}"
            ) from None
        size = len(frame) - 4  # the message's body, as the host counts it
        if size > self.max_result_bytes:
            raise _ItemRefused(
                ErrorKind.RESULT_TOO_LARGE,
                f"a streamed item is {size} bytes; the limit is "
                f"{self.max_result_bytes} (Limits.max_result_mb)",
            )
        if self._poller.poll(0):
            self._receive()  # a stop (or room) that came meanwhile
        while not conversation.halted and not conversation.has_room(size):
            self._receive()
        if conversation.halted:
            return False
        conversation.item_sent(size)
        write_all(self.out_fd, frame)
        return True

    def _context(self, call: int, description: Any) -> ContextProxy | None:
        """The call's context proxy, from what the host exposed (None without)."""
        if description is None:
            return None
        kinds = description.get("paths") if isinstance(description, dict) else None
        if not isinstance(kinds, dict) or not all(
            isinstance(k, str) and v in ("method", "attribute") for k, v in kinds.items()
        ):
            self._die(f"a malformed context description: {description!r:.200}", 76)
        ask = self.ask

        def ask_for_this_call(
            op: str, path: str, args: list[Any], kwargs: dict[str, Any], value: Any
        ) -> Any:
            return ask(call, op, path, args, kwargs, value)

        return ContextProxy(kinds, ask_for_this_call)

    @staticmethod
    def _awaited(value: Any) -> Any:
        """``value``, or what it returns once awaited if it is awaitable."""
        if inspect.isawaitable(value):
            import asyncio

            async def _await() -> Any:
                return await value

            value = asyncio.run(_await())
        return value
