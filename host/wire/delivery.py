"""Each message from a worker to whoever waits for it.

The conversation (``protocol.conversation.HostConversation``) says what a
message means; this module completes the call it answers (its thread is
woken through ``host.wire.leadership``, its event loop's future resolved),
hands a progress report, a stream's item or a request of the running call
to the channel's owner, and completes the handshake. It runs on whichever
caller is reading the pipe (``host.wire.channel``), under the channel's lock
only while the conversation's state moves.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from host.wire.leadership import Leadership
from host.wire.pending import Pending, wake_future
from protocol import Notification, ProtocolViolation, Request, Response
from protocol.conversation import Answered, Asked, HostConversation, Noted, Probed


class Delivery:
    """Delivers one worker's messages (see the module docstring).

    ``on_recycle(pending)``: the reply to ``pending`` asked for the worker
    to be replaced. ``on_ask(pending, request)``: the running call asks
    something (it must not block: the answer comes later). ``on_note(pending,
    note, size)``: a progress report, log line or stream item of the running
    call. ``handshake``: completed by ``ready`` or ``load_failed``.
    """

    def __init__(
        self,
        lock: threading.Lock,
        conversation: HostConversation,
        leadership: Leadership,
        handshake: Pending,
        on_recycle: Callable[[Pending], None] | None,
        on_ask: Callable[[Pending, Request], None] | None,
        on_note: Callable[[Pending, Notification, int], None] | None,
    ) -> None:
        self._lock = lock
        self._conversation = conversation
        self._leadership = leadership
        self._handshake = handshake
        self._on_recycle = on_recycle
        self._on_ask = on_ask
        self._on_note = on_note
        #: The worker's sandbox report (``probed``), sent before user code ran.
        self.probed: Notification | None = None
        #: The event loop whose reader callback is delivering now, if any
        #: (``deliver`` resolves its futures directly, without asking which
        #: loop runs; only the reading caller delivers).
        self.loop: asyncio.AbstractEventLoop | None = None

    def deliver_all(self, items: list[tuple[Any, int]]) -> None:
        """``deliver`` each (message, size) in order; the state of a run of
        replies moves under one acquisition of the lock (the leader does
        not take it once per reply while the callers compete for it), and
        their waiters are woken after. Raises as ``deliver`` does, once the
        messages before the offending one have been delivered."""
        i, n = 0, len(items)
        receive = self._conversation.receive
        while i < n:
            if type(items[i][0]) is not Response:
                self.deliver(*items[i])
                i += 1
                continue
            answered: list[tuple[Answered, Pending, bool, Any]] = []
            try:
                with self._lock:
                    now = time.monotonic()
                    while i < n and type(items[i][0]) is Response:
                        msg, size = items[i]
                        event: Answered = receive(msg, now, size)  # type: ignore[assignment]  # (a reply's)
                        i += 1
                        pending: Pending = event.call  # type: ignore[assignment]  # (only Pendings are sent)
                        completed = not pending.done
                        if completed:
                            pending.result = msg
                            pending.done = True
                            if pending.cond:
                                self._leadership.wake(pending)
                        answered.append((event, pending, completed, pending.future))
            finally:
                for event, pending, completed, fut in answered:
                    self._after_answer(event, pending, completed, fut)

    def _after_answer(self, event: Answered, pending: Pending, completed: bool, fut: Any) -> None:
        """A reply's work outside the lock: the recycle, the gate, the future."""
        if event.recycle and self._on_recycle is not None:
            self._on_recycle(pending)
        if pending.on_exit is not None:
            pending.on_exit()
        if completed and fut is not None and not pending.abandoned:
            if fut.get_loop() is self.loop:
                # wake_future inlined: its own loop is reading, here.
                if not fut.done():
                    fut.set_result(None)
            else:
                wake_future(fut, self.loop)

    def deliver(self, msg: Any, size: int = 0) -> None:
        """Hand one message (of ``size`` bytes) to its waiter, as the
        conversation reads it. Raises ``ProtocolViolation`` (nothing
        delivered) if it breaks a rule."""
        with self._lock:
            event = self._conversation.receive(msg, time.monotonic(), size)
            if type(event) is Answered:
                pending: Pending = event.call  # type: ignore[assignment]  # (only Pendings are sent)
                completed = not pending.done
                if completed:
                    # complete() inlined: this is every reply's path.
                    pending.result = msg
                    pending.done = True
                    if pending.cond:
                        self._leadership.wake(pending)
                fut = pending.future  # read under the lock: wait_async may renew it
        if type(event) is Answered:
            self._after_answer(event, pending, completed, fut)
        elif type(event) is Noted:
            if self._on_note is not None:
                noted: Pending = event.call  # type: ignore[assignment]  # (only Pendings are sent)
                self._on_note(noted, event.note, event.size)
        elif type(event) is Asked:
            asking: Pending = event.call  # type: ignore[assignment]  # (only Pendings are sent)
            if self._on_ask is None:
                raise ProtocolViolation("a request from the worker, which nobody answers here")
            self._on_ask(asking, event.request)  # (it must not block: the answer comes later)
        elif type(event) is Probed:
            self.probed = msg  # the report comes first, before user code could write frames
        else:
            self.complete(self._handshake, result=msg)  # ready or load_failed

    def complete(
        self, pending: Pending, result: Any = None, error: BaseException | None = None
    ) -> None:
        """Complete ``pending`` with ``result`` or ``error`` and wake its
        waiter, unless it is done already."""
        with self._lock:
            if pending.done:
                return
            pending.result = result
            pending.error = error
            pending.done = True
            if pending.cond:
                self._leadership.wake(pending)
            fut = pending.future
        if pending.on_exit is not None:
            pending.on_exit()
        if fut is not None and not pending.abandoned:
            wake_future(fut)  # (any thread may complete a call: no loop hint)
