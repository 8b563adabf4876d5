"""What a message from the worker means to the host: the events
``HostConversation.receive`` returns (``protocol.conversation``)."""

from __future__ import annotations

from typing import Any

from protocol.call_record import Call
from protocol.messages import Notification, Request, Response


class Probed:
    """The worker's sandbox report (``params``), sent before user code ran."""

    __slots__ = ("params",)

    def __init__(self, params: Any) -> None:
        self.params = params


class Ready:
    """The module loaded: ``params`` lists its functions. Calls may be sent."""

    __slots__ = ("params",)

    def __init__(self, params: Any) -> None:
        self.params = params


class LoadFailed:
    """The module did not load (``params`` has the error); the worker exits."""

    __slots__ = ("params",)

    def __init__(self, params: Any) -> None:
        self.params = params


class Answered:
    """The reply to ``call`` (which has left the conversation).

    ``cancelled``: the worker confirmed it never started (the host had sent a
    cancel or a shutdown). ``recycle``: the worker exits after this reply;
    the calls behind it never start there. ``started``: the call that
    started when this reply was written (the next in line), if any.
    ``result``: the reply's result map, already validated.
    """

    __slots__ = ("call", "response", "result", "cancelled", "recycle", "started")

    def __init__(
        self,
        call: Call,
        response: Response,
        result: dict[str, Any],
        cancelled: bool,
        recycle: bool,
        started: Call | None,
    ) -> None:
        self.call = call
        self.response = response
        self.result = result
        self.cancelled = cancelled
        self.recycle = recycle
        self.started = started


class Asked:
    """The running ``call`` asks the host something (``request``, verb
    ``ask``); answer it with ``send_answer`` and a response to
    ``request.msgid``."""

    __slots__ = ("call", "request")

    def __init__(self, call: Call, request: Request) -> None:
        self.call = call
        self.request = request


class Noted:
    """The running ``call`` reports progress or a log line, or a stream's
    item (``note``, its params checked by ``messages.validate_note``;
    ``size``: its message's bytes). Nothing to answer."""

    __slots__ = ("call", "note", "size")

    def __init__(self, call: Call, note: Notification, size: int = 0) -> None:
        self.call = call
        self.note = note
        self.size = size


HostEvent = Probed | Ready | LoadFailed | Answered | Asked | Noted
