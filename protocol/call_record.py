"""One call in flight, as the conversation sees it (``protocol.conversation``).

The host's bookkeeping of a call (its waiters and result,
``host.wire.pending.Pending``) subclasses it; the conversation decides its
state: started or waiting, its run deadline, a cancel sent, a request of
its waiting for the host's answer, a stream's credit.
"""

from __future__ import annotations

from protocol.messages import STREAM_WINDOW


class Call:
    """One call in flight, as the conversation sees it.

    ``started``: the worker is running it (it is the oldest unanswered call);
    from then on ``run_deadline`` is ``now + timeout`` of the moment it
    started, if it has a ``timeout``. ``cancel_sent``: the host asked the
    worker to skip it. ``asking``: the id of its request the host has not
    answered yet. The host's own bookkeeping (waiters, results) subclasses
    this.
    """

    __slots__ = (
        "msgid",
        "timeout",
        "started",
        "run_deadline",
        "cancel_sent",
        "asking",
        "notes",
        "credit",
        "byte_credit",
    )

    def __init__(
        self, msgid: int, timeout: float | None = None, stream: bool = False, stream_bytes: int = 0
    ) -> None:
        self.msgid = msgid
        self.timeout = timeout
        self.started = False
        self.run_deadline: float | None = None
        self.cancel_sent = False
        #: The id of the worker's unanswered request (``ask``) for this call.
        self.asking: int | None = None
        #: Progress reports and log lines received for it.
        self.notes = 0
        #: A stream (sent with ``"stream": true``): the items its worker may
        #: still send (``STREAM_WINDOW``, plus what ``send_more`` allowed,
        #: less what came). -1: not a stream.
        self.credit = STREAM_WINDOW if stream else -1
        #: ... and the bytes (message bodies) its items may still take: the
        #: call's result limit at first (``stream_bytes``), plus what
        #: ``send_more`` allowed, less what came.
        self.byte_credit = stream_bytes

    def start(self, now: float) -> None:
        """It has started at ``now`` (its run deadline counts from then)."""
        self.started = True
        if self.timeout is not None:
            self.run_deadline = now + self.timeout
