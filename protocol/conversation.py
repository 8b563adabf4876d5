"""The conversation between the host and one worker, as a state machine.

Every rule of the conversation that decides what a message *means* lives
here, and nowhere else: which message may come next, which call a reply
answers, when a call starts, when a cancel may be confirmed, what the end
of a worker does to the calls it held. The I/O around it (``host.wire.channel``,
``worker.serve``) reads and writes bytes, keeps locks and clocks, and asks
this module what each message is. Nothing here touches a file descriptor,
a thread or a clock: times are passed in (``now``), so every rule can be
tested without a process (``tests/test_conversation.py``). Not
thread-safe: its driver serialises the calls (``Channel`` holds its lock).
The worker's end, which keeps the same rules from the other side, is
``protocol.worker_conversation``.

The rules (h11's idea: one file decides the state, each end has its own
object):

* **The handshake comes first.** The worker's first message is ``probed``
  (its sandbox report, sent before user code ran), the second ``ready`` or
  ``load_failed``. Nothing else may come before; no notification after.
* **Calls are answered in the order they were sent.** The worker runs one
  call at a time, so the oldest unanswered call is the one running
  (*started*); the call behind it starts when the reply to it is received
  (the worker starts it right after writing that reply). A reply to any
  other call is a violation, with one exception:
* **A cancel is confirmed only for a call that never started.** The host may
  send ``cancel`` for a call still waiting; the worker answers it
  ``cancelled`` ahead of the calls before it, or (if it had started it
  already) ignores the cancel. A ``cancelled`` reply to a call the host sent
  no cancel for (nor a ``shutdown``, which cancels every waiting call) is a
  violation; the host sends no cancel for a call it knows has started.
* **After a recycle nothing more.** A reply whose error asks for the worker
  to be recycled (it ran out of memory) is its last: it exits without
  starting the calls behind, so none of them is taken as started, the host
  sends it no new call, and any later reply is a violation.
* **After ``shutdown`` no new call.** The worker confirms each waiting call
  ``cancelled`` and exits after the running one.
* **The end.** When the worker exits or breaks a rule, ``close`` hands back
  the calls in flight, oldest first: only the first can have started; the
  ones behind it never did, so the host may send them to another worker.

**Requests during a call.** The running call may ask the host something
(``ask``: a method of its context, an attribute's value): a worker→host
request that names that call's ``msgid``. It is accepted only from the
running call (``head`` and ``started``), one at a time (the worker waits for
the answer), and never completes, starts or reorders a call, so the
ordering rules above stay untouched: the call's reply may not come while
its request is unanswered, and the host's answer (a response to the
request's own id, which the worker chose) is dropped if the call has ended
meanwhile. Progress reports and log lines (``progress``, ``log``
notifications) follow the same rule: each names the running call, at most
``MAX_NOTES_PER_CALL`` per call, and is an event of its own (``Noted``).
So do a stream's items (``item``), for a call sent with ``"stream": true``
only, and only as much as its credit allows: ``STREAM_WINDOW`` items and
the call's result limit in bytes at first, plus what each ``more`` from the
host adds (``send_more``); the host stops
a running stream with a ``cancel`` (``send_stop``), which the worker
answers with an ordinary reply.
Any other request from a worker, and any other notification after the
handshake, is a ``ProtocolViolation``.

Errors: ``ProtocolViolation`` when the *peer* broke a rule (the connection is
then unusable: the driver must end the worker; the state is left as it was
before the offending message, and ``close`` still reports the calls in
flight); ``ConversationMisuse`` when the *driver* did (a bug in fnhost).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from protocol.call_record import Call
from protocol.errors import ErrorKind, ProtocolViolation
from protocol.host_events import (
    Answered,
    Asked,
    HostEvent,
    LoadFailed,
    Noted,
    Probed,
    Ready,
)
from protocol.messages import (
    MAX_MORE,
    MAX_NOTES_PER_CALL,
    Message,
    Notification,
    Request,
    Response,
    Verb,
    validate_call_result,
    validate_note,
)


class ConversationMisuse(RuntimeError):
    """The driver asked for something the state forbids (a bug in fnhost,
    never caused by the peer): e.g. a call sent before the handshake, or two
    calls with one ``msgid``."""


class Phase(Enum):
    """Where a conversation is. Host and worker go through the same phases."""

    #: Waiting for (host) or about to send (worker) the sandbox report.
    PROBING = "probing"
    #: The report is in; the module is being imported.
    STARTING = "starting"
    #: ``ready``: calls flow.
    SERVING = "serving"
    #: ``load_failed``: the worker exits; no call was or will be sent.
    LOAD_FAILED = "load_failed"
    #: The worker exited or broke a rule (host), or stopped serving (worker).
    CLOSED = "closed"


_SERVING = Phase.SERVING  # (a global lookup less on every call's path)
_NOTES = (Verb.PROGRESS, Verb.LOG, Verb.ITEM)


# The call record and the host end's events live in their own files;
# importable from here, where the rules that produce them are.
__all__ = [
    "Answered",
    "Asked",
    "Call",
    "ConversationMisuse",
    "HostConversation",
    "HostEvent",
    "LoadFailed",
    "Noted",
    "Phase",
    "Probed",
    "Ready",
]


class HostConversation:
    """The host's end of the conversation with one worker process."""

    def __init__(self) -> None:
        self.phase = Phase.PROBING
        #: The worker's sandbox report, once received.
        self.probed: Any = None
        #: The worker asked to be recycled: no call starts there any more.
        self.recycling = False
        #: ``shutdown`` was sent: the worker cancels what waits and exits.
        self.shutdown_sent = False
        # Oldest first: the first is the running call (if it started).
        self._inflight: dict[int, Call] = {}

    # -- what the host may do ------------------------------------------------

    @property
    def accepting(self) -> bool:
        """A call sent now would be run (serving, not recycling, not shut down)."""
        return self.phase is Phase.SERVING and not self.recycling and not self.shutdown_sent

    @property
    def head(self) -> Call | None:
        """The oldest unanswered call: the one running, if it ``started``."""
        return next(iter(self._inflight.values()), None)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def send_call(self, call: Call, now: float) -> bool:
        """Take ``call`` into flight; the driver then writes its frame.

        Returns True if it was taken: if no other call is in flight it has
        started (``run_deadline`` counts from ``now``), else it waits behind
        the others. Returns False, changing nothing, if the worker will not
        run it (closed, load failed, recycling, or told to shut down): the
        driver must not write it, and may send it to another worker.

        Raises ``ConversationMisuse`` before the handshake has completed, or
        if a call with the same ``msgid`` is in flight.
        """
        # (``accepting`` and ``Call._start`` inlined: every call's path.)
        if self.phase is not _SERVING or self.recycling or self.shutdown_sent:
            if self.phase in (Phase.PROBING, Phase.STARTING):
                raise ConversationMisuse("a call was sent before the worker was ready")
            return False
        inflight = self._inflight
        msgid = call.msgid
        if msgid in inflight:
            raise ConversationMisuse(f"request id {msgid} is already in flight")
        if not inflight:
            call.started = True
            if call.timeout is not None:
                call.run_deadline = now + call.timeout
        inflight[msgid] = call
        return True

    def send_cancel(self, call: Call) -> bool:
        """May a ``cancel`` for ``call`` be written now? True marks it sent.

        False (nothing changes) if the call is not in flight, has started
        (only a call that never started can be skipped; the caller waits for
        its end or its timeout instead), a cancel was already sent, or the
        worker is gone. If the driver then fails to write the frame it must
        call ``cancel_unsent``.
        """
        if (
            call.started
            or call.cancel_sent
            or self.phase is not Phase.SERVING
            or self._inflight.get(call.msgid) is not call
        ):
            return False
        call.cancel_sent = True  # before the write: the confirmation may come at once
        return True

    def send_stop(self, call: Call) -> bool:
        """May a ``cancel`` that stops the running stream ``call`` be written?
        True marks it sent: the worker stops at the stream's next item and
        answers with an ordinary result. False (nothing changes) if ``call``
        is not a stream, is not the running call, or a cancel went already;
        if the driver then fails to write the frame it must call
        ``cancel_unsent``."""
        if (
            call.credit < 0
            or not call.started
            or call.cancel_sent
            or self.phase is not Phase.SERVING
            or self._inflight.get(call.msgid) is not call
        ):
            return False
        call.cancel_sent = True
        return True

    def send_more(self, call: Call, n: int, nbytes: int) -> bool:
        """May a ``more`` letting the stream ``call`` send ``n`` more items of
        ``nbytes`` more bytes be written? True adds them to its credit
        (before the write: the items may come at once). False, changing
        nothing, if ``call`` is not a stream still in flight, or ``n`` is
        not in 1..``MAX_MORE`` or ``nbytes`` negative."""
        if (
            call.credit < 0
            or not 0 < n <= MAX_MORE
            or nbytes < 0
            or self.phase is not Phase.SERVING
            or self._inflight.get(call.msgid) is not call
        ):
            return False
        call.credit += n
        call.byte_credit += nbytes
        return True

    def more_unsent(self, call: Call, n: int, nbytes: int) -> None:
        """The ``more`` that ``send_more`` allowed was not written."""
        call.credit -= n
        call.byte_credit -= nbytes

    def cancel_unsent(self, call: Call) -> None:
        """The cancel ``send_cancel`` allowed was not written (the stream is intact)."""
        call.cancel_sent = False

    def send_shutdown(self) -> bool:
        """Mark ``shutdown`` as sent; True if this is the first (the driver
        writes it), False if one was sent already. If the write fails the
        driver must call ``shutdown_unsent``."""
        if self.shutdown_sent:
            return False
        self.shutdown_sent = True  # before the write: the worker may answer at once
        return True

    def shutdown_unsent(self) -> None:
        """The ``shutdown`` ``send_shutdown`` allowed was not written at all."""
        self.shutdown_sent = False

    def send_answer(self, call: Call, request_id: int) -> bool:
        """May the answer to ``call``'s request ``request_id`` be written now?

        True clears the request (the worker goes on with the call once it
        reads the answer). False, changing nothing, if the call has left the
        conversation (answered, or its worker gone) or that request is not
        the one it is waiting for: the answer must be dropped.
        """
        if call.asking != request_id or self._inflight.get(call.msgid) is not call:
            return False
        call.asking = None
        return True

    # -- what the worker says ------------------------------------------------

    def receive(self, msg: Message, now: float, size: int = 0) -> HostEvent:
        """What ``msg`` from the worker means.

        Returns an event: ``Probed``, ``Ready`` or ``LoadFailed`` during the
        handshake, ``Answered`` for a reply (the call has left the
        conversation; if it was the running one, the next call in line has
        started at ``now``).

        ``size``: the message's body in bytes, which a stream's items count
        against its byte credit.

        Raises ``ProtocolViolation`` if the message breaks a rule (see the
        module docstring); the state is unchanged, and the driver must end
        the worker and ``close`` the conversation.
        """
        if type(msg) is not Response:
            if type(msg) is Request and msg.method == Verb.ASK:
                return self._asked(msg)
            if type(msg) is Notification and msg.method in _NOTES and self.phase is _SERVING:
                return self._noted(msg, size)
            return self._handshake(msg)
        if self.phase is not _SERVING or self.recycling:
            raise self._misplaced_reply()
        inflight = self._inflight
        msgid = msg.msgid
        error = msg.error
        cancelled = error is not None and error.get("kind") == ErrorKind.CANCELLED
        head = next(iter(inflight.values()), None)
        if head is not None and head.msgid == msgid:
            # (Even a call taken as started may be confirmed cancelled: the
            # cancel or shutdown reached the worker before it started it.)
            call = head
        else:
            found = inflight.get(msgid) if cancelled else None
            if found is None:
                oldest = None if head is None else head.msgid
                raise ProtocolViolation(
                    f"reply to request id {msgid}, but the oldest unanswered is {oldest}"
                )
            call = found
        if cancelled and not call.cancel_sent and not self.shutdown_sent:
            raise ProtocolViolation(f"request {msgid} reported cancelled, but no cancel was sent")
        if call.asking is not None:
            raise ProtocolViolation(
                f"reply to request id {msgid} while its request {call.asking} is unanswered"
            )
        # Checked before the state moves: a malformed reply must not let the
        # next call be taken as started.
        result = validate_call_result(msg.result)
        if error is None and "value" not in result:
            raise ProtocolViolation("successful reply without a value")
        recycle = False
        if error is not None and not cancelled:
            details = error.get("details")
            recycle = isinstance(details, dict) and details.get("recycle") is True
        del inflight[msgid]
        started = None
        if recycle:
            self.recycling = True
        elif call is head and inflight and not (cancelled and self._by_shutdown(call)):
            # The worker starts the next call as soon as this reply is written
            # (but not after a shutdown: it cancels all that waits and exits).
            started = next(iter(inflight.values()))
            started.start(now)
        return Answered(call, msg, result, cancelled, recycle, started)

    def _asked(self, msg: Request) -> Asked:
        if self.phase is not _SERVING or self.recycling:
            raise ProtocolViolation(f"a request ({msg.method!r}) while no call can run")
        params = msg.params
        target = params.get("call") if isinstance(params, dict) else None
        if type(target) is not int:
            raise ProtocolViolation(
                f"an {msg.method!r} request must name its call, got {params!r:.100}"
            )
        head = next(iter(self._inflight.values()), None)
        if head is None or not head.started or head.msgid != target:
            running = head.msgid if head is not None and head.started else None
            raise ProtocolViolation(
                f"a request for call {target}, but the running call is {running}"
            )
        if head.asking is not None:
            raise ProtocolViolation(
                f"request {msg.msgid} while request {head.asking} of call {target} is unanswered"
            )
        head.asking = msg.msgid
        return Asked(head, msg)

    def _noted(self, msg: Notification, size: int) -> Noted:
        params = validate_note(msg.method, msg.params)
        target = params.get("call")
        head = next(iter(self._inflight.values()), None)
        if self.recycling or head is None or not head.started or head.msgid != target:
            running = head.msgid if head is not None and head.started else None
            raise ProtocolViolation(
                f"a {msg.method} for call {target!r}, but the running call is {running}"
            )
        if msg.method == Verb.ITEM:
            if head.credit <= 0:
                raise ProtocolViolation(
                    f"an item for call {target}, which is not a stream"
                    if head.credit < 0
                    else f"call {target} sent more items than the host made room for"
                )
            if size > head.byte_credit:
                raise ProtocolViolation(
                    f"call {target} sent an item of {size} bytes with room for {head.byte_credit}"
                )
            head.credit -= 1
            head.byte_credit -= size
            return Noted(head, msg, size)
        if head.notes >= MAX_NOTES_PER_CALL:
            raise ProtocolViolation(
                f"call {target} sent more than {MAX_NOTES_PER_CALL} progress reports and log lines"
            )
        head.notes += 1
        return Noted(head, msg)

    def _misplaced_reply(self) -> ProtocolViolation:
        if self.recycling:
            return ProtocolViolation("a reply after the worker asked to be recycled")
        if self.phase is Phase.CLOSED:
            return ProtocolViolation("a reply after the worker was closed")
        if self.phase is Phase.LOAD_FAILED:
            return ProtocolViolation("a reply after the worker reported load_failed")
        return ProtocolViolation("reply received before the worker reported ready")

    def _handshake(self, msg: Message) -> HostEvent:
        phase = self.phase
        if isinstance(msg, Notification):
            if phase is Phase.PROBING:
                if msg.method != Verb.PROBED:
                    raise ProtocolViolation(f"first message is {msg.method!r}, not probed")
                self.phase = Phase.STARTING
                self.probed = msg.params
                return Probed(msg.params)
            if phase is Phase.STARTING:
                if msg.method == Verb.READY:
                    self.phase = Phase.SERVING
                    return Ready(msg.params)
                if msg.method == Verb.LOAD_FAILED:
                    self.phase = Phase.LOAD_FAILED
                    return LoadFailed(msg.params)
                raise ProtocolViolation(f"expected ready or load_failed, got {msg.method!r}")
            raise ProtocolViolation(f"unexpected notification {msg.method!r} after start")
        if isinstance(msg, Request):
            raise ProtocolViolation(f"a worker may not send requests ({msg.method!r})")
        raise ProtocolViolation(f"unexpected message {msg!r:.100}")

    def _by_shutdown(self, call: Call) -> bool:
        """A ``cancelled`` confirmation of ``call`` can only be the shutdown's.
        (With a cancel sent too, either may explain it: the call behind is
        then taken as started, the safe side: it is never run twice.)"""
        return self.shutdown_sent and not call.cancel_sent

    # -- the end -------------------------------------------------------------

    def close(self) -> list[Call]:
        """The worker exited or broke a rule: the conversation is over.

        Returns the calls that were in flight, oldest first; only the first
        can have ``started``, the others never did. Later calls to ``close``
        return an empty list; ``send_call`` returns False from now on.
        """
        self.phase = Phase.CLOSED
        calls = list(self._inflight.values())
        self._inflight.clear()
        return calls
