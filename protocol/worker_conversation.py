"""The worker's end of the conversation (``protocol.conversation`` has the
rules and the host's end): the handshake's order, the queue of calls that
have not started, the one that is running, and its request to the host.

Driven by ``worker.serve`` (and ``worker.start`` for the handshake); no
I/O, no clock, not thread-safe.
"""

from __future__ import annotations

from protocol.conversation import ConversationMisuse, Phase
from protocol.errors import ProtocolViolation
from protocol.messages import (
    MAX_MORE,
    STREAM_WINDOW,
    Message,
    Notification,
    Request,
    Response,
    Verb,
)

_SERVING = Phase.SERVING  # (a global lookup less on every call's path)


class Skip:
    """The host cancelled a call that had not started: answer ``msgid``
    ``cancelled`` now (it has left the queue)."""

    __slots__ = ("msgid",)

    def __init__(self, msgid: int) -> None:
        self.msgid = msgid


class Stop:
    """``shutdown``: answer each of ``never_started`` ``cancelled``, then exit."""

    __slots__ = ("never_started",)

    def __init__(self, never_started: list[int]) -> None:
        self.never_started = never_started


#: A cancel for a call that has started or finished: nothing to do.
IGNORED = None

#: A ``Request`` (a call) as an event: it arrived and waits for its turn
#: (``WorkerConversation.next_call``).
WorkerEvent = Request | Response | Skip | Stop | None


class WorkerConversation:
    """The worker's end: the handshake's order, the queue of calls that have
    not started, and the one that is running."""

    def __init__(self) -> None:
        self.phase = Phase.PROBING
        #: The ``msgid`` of the call running now (its reply not yet written).
        self.running: int | None = None
        #: The last reply asked for a recycle: no call starts any more.
        self.recycling = False
        #: The id of the running call's request the host has not answered.
        self.asking: int | None = None
        #: A running stream's room: the items it may send now (None: the
        #: running call is no stream).
        self.credit: int | None = None
        #: ... and the bytes its items may still take (``stream_bytes`` at
        #: first, plus what each ``more`` adds).
        self.byte_credit = 0
        #: A stream's first byte credit: the worker's result limit.
        self.stream_bytes = 0
        #: The host stopped the running stream: it ends at its next item.
        self.halted = False
        self._queue: dict[int, Request] = {}

    # -- the handshake ------------------------------------------------------

    def probed_sent(self) -> None:
        """Before writing ``probed``. Raises ``ConversationMisuse`` if not first."""
        self._advance(Phase.PROBING, Phase.STARTING, "probed")

    def load_received(self, msg: Message | None) -> bool:
        """A standby worker (``WorkerConfig.standby``) read ``msg``, the
        host's first message, after its ``probed``: True for ``load`` (import
        the set now). False for ``None`` (end of input: the host dropped the
        standby; exit quietly) or ``shutdown``, which means the same.

        Raises ``ConversationMisuse`` before ``probed``, and
        ``ProtocolViolation`` for anything else (a call before ``ready``):
        the worker should exit; the state is unchanged."""
        if self.phase is not Phase.STARTING:
            raise ConversationMisuse(f"load awaited in phase {self.phase.value}")
        if msg is None:
            return False
        if isinstance(msg, Notification) and msg.method in (Verb.LOAD, Verb.SHUTDOWN):
            return msg.method == Verb.LOAD
        raise ProtocolViolation(f"a standby's first message must be load, got {msg!r:.100}")

    def ready_sent(self) -> None:
        """Before writing ``ready``. Raises ``ConversationMisuse`` unless ``probed`` went first."""
        self._advance(Phase.STARTING, Phase.SERVING, "ready")

    def load_failed_sent(self) -> None:
        """Before writing ``load_failed`` (the worker then exits)."""
        self._advance(Phase.STARTING, Phase.LOAD_FAILED, "load_failed")

    def _advance(self, expected: Phase, to: Phase, what: str) -> None:
        if self.phase is not expected:
            raise ConversationMisuse(f"{what} sent in phase {self.phase.value}")
        self.phase = to

    # -- calls ------------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        """Calls have arrived that have not started."""
        return bool(self._queue)

    def receive(self, msg: Message) -> WorkerEvent:
        """What ``msg`` from the host means.

        Returns the ``Request`` (a call, queued to run in its turn), ``Skip`` (a cancelled
        call that never started: answer it now), ``Stop`` (shutdown: answer
        the waiting calls ``cancelled`` and exit) or ``IGNORED`` (a cancel
        for a call that started or finished).

        While the running call waits for the host's answer (``asked``), the
        ``Response`` to that request is returned as it is (the answer).
        After ``shutdown`` only that answer may still come.

        Raises ``ProtocolViolation`` for anything else (the worker should
        exit: the host ends it anyway); the state is unchanged.
        """
        if type(msg) is Response:
            if self.asking is None or msg.msgid != self.asking:
                raise ProtocolViolation(
                    f"an answer to request {msg.msgid}, but the request waiting is {self.asking}"
                )
            self.asking = None
            return msg
        if self.phase is not _SERVING:
            raise ProtocolViolation(f"a message from the host in phase {self.phase.value}")
        if type(msg) is Request and msg.method == Verb.CALL:
            msgid = msg.msgid
            if msgid in self._queue or msgid == self.running:
                raise ProtocolViolation(f"request id {msgid} is already in flight")
            self._queue[msgid] = msg
            return msg
        if isinstance(msg, Notification) and msg.method == Verb.CANCEL:
            params = msg.params
            target = params.get("msgid") if isinstance(params, dict) else None
            if type(target) is not int:
                raise ProtocolViolation(f"cancel needs an integer msgid, got {params!r:.100}")
            if self._queue.pop(target, None) is None:
                if target == self.running and self.credit is not None:
                    self.halted = True  # a running stream: it stops at its next item
                return IGNORED  # started or finished already: not ours to stop
            return Skip(target)
        if isinstance(msg, Notification) and msg.method == Verb.MORE:
            params = msg.params
            target = params.get("msgid") if isinstance(params, dict) else None
            n = params.get("n") if isinstance(params, dict) else None
            nbytes = params.get("bytes") if isinstance(params, dict) else None
            if (
                type(target) is not int
                or type(n) is not int
                or type(nbytes) is not int
                or not 0 < n <= MAX_MORE
                or nbytes < 0
            ):
                raise ProtocolViolation(
                    f"more needs a msgid, a count and bytes, got {params!r:.100}"
                )
            if target == self.running and self.credit is not None:
                self.credit += n
                self.byte_credit += nbytes
            return IGNORED  # (for a stream that has ended: late, harmless)
        if isinstance(msg, Notification) and msg.method == Verb.SHUTDOWN:
            never_started = list(self._queue)
            self._queue.clear()
            self.phase = Phase.CLOSED
            if self.credit is not None:
                self.halted = True  # a running stream ends at its next item
            return Stop(never_started)
        raise ProtocolViolation(f"unexpected message from host: {msg!r:.200}")

    def next_call(self) -> Request | None:
        """The call to run now (it leaves the queue and is ``running``), or
        ``None`` if none waits, one is running, or the worker must not start
        any more (recycling, shut down)."""
        if self.running is not None or self.recycling or not self._queue:
            return None
        msgid = next(iter(self._queue))
        self.running = msgid
        call = self._queue.pop(msgid)
        params = call.params
        stream = isinstance(params, dict) and params.get("stream") is True
        self.credit = STREAM_WINDOW if stream else None
        self.byte_credit = self.stream_bytes if stream else 0
        self.halted = False
        return call

    def has_room(self, size: int) -> bool:
        """The running stream may send an item of ``size`` bytes now."""
        return self.credit is not None and self.credit > 0 and size <= self.byte_credit

    def item_sent(self, size: int) -> int:
        """Before writing an item (a message of ``size`` bytes) of the
        running stream: its ``msgid`` (the item names it). Raises
        ``ConversationMisuse`` if no stream runs or it has no room for it
        (wait for the host's ``more``: ``receive``)."""
        if self.running is None or self.credit is None:
            raise ConversationMisuse("an item with no stream running")
        if not self.has_room(size):
            raise ConversationMisuse("an item with no room: wait for the host's more")
        self.credit -= 1
        self.byte_credit -= size
        return self.running

    def asked(self, request_id: int) -> None:
        """Before writing a request of the running call (``ask``); the call
        then waits for the answer (``receive`` returns it). Raises
        ``ConversationMisuse`` if no call runs or one request is unanswered."""
        if self.running is None:
            raise ConversationMisuse("a request with no call running")
        if self.asking is not None:
            raise ConversationMisuse(f"request {request_id} while {self.asking} is unanswered")
        self.asking = request_id

    def noted(self) -> int:
        """Before writing a progress report or log line: the running call's
        ``msgid`` (the note names it). Raises ``ConversationMisuse`` if no
        call runs."""
        if self.running is None:
            raise ConversationMisuse("a progress report with no call running")
        return self.running

    def reply_sent(self, msgid: int, recycle: bool = False) -> None:
        """Before writing the reply to the running call ``msgid``; with
        ``recycle`` it is the last (the worker exits instead of starting the
        next). Raises ``ConversationMisuse`` if ``msgid`` is not running."""
        if msgid != self.running:
            raise ConversationMisuse(f"reply to {msgid}, but the running call is {self.running}")
        if self.asking is not None:
            raise ConversationMisuse(f"reply to {msgid} while request {self.asking} is unanswered")
        self.running = None
        self.credit = None
        self.halted = False
        if recycle:
            self.recycling = True
