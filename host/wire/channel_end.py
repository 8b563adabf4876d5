"""How a channel ends: once, when its worker exits or breaks the protocol,
or when a write to it was cut part-way; then every call still on it fails
or goes to the next worker. ``Channel`` inherits this; its own file keeps
the reading, the writing and the waiting.

A cut write (``host.wire.request_writer``) ends the worker as broken too,
but its calls are not told apart by the worker's death: the calls whose
frames certainly never reached the worker (``host.wire.write_ledger``)
fail with ``WorkerGone`` (their callers send them to the next worker),
every other call with ``WriteInterrupted`` (it may have run: it is never
sent again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from host.wire.delivery import Delivery
from host.wire.pending import Pending, WorkerGone, WorkerLost, WriteInterrupted
from protocol import ProtocolViolation
from protocol.conversation import HostConversation

logger = logging.getLogger("fnhost")


class ChannelEnd:
    """The ending half of ``Channel`` (see the module)."""

    handshake: Pending
    exit: Pending
    _lock: threading.Lock
    _broken: bool
    _cut_by: tuple[str, set[Pending]] | None
    _conversation: HostConversation
    _delivery: Delivery
    _on_broken: Callable[[ProtocolViolation | None], None]

    def _cut(self, exc: BaseException, unreached: list[Pending]) -> None:
        """A write to the worker raised part-way (``request_writer``): the
        pipe may hold part of a frame, frames may be lost. End the worker
        as broken: the calls ``unreached`` (their frames certainly never
        reached it) go to the next worker (``WorkerGone``); every other call
        in flight may have reached it, and run, so it fails with
        ``WriteInterrupted`` saying what was raised."""
        text = str(exc)
        cause = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        self._break(
            ProtocolViolation(
                f"the host was interrupted while writing to the worker ({cause}); "
                "its request stream may be cut part-way"
            ),
            (cause, set(unreached)),
        )

    def _break(
        self, violation: ProtocolViolation | None, cut: tuple[str, set[Pending]] | None = None
    ) -> None:
        """End the channel once: ``on_broken``, then fail what is left.
        ``cut``: a write was cut (``_cut``), and which calls never reached
        the worker; ``fail_all`` decides their errors then."""
        with self._lock:
            if self._broken:
                return
            self._broken = True
            self._cut_by = cut
        try:
            self._on_broken(violation)
        except Exception:  # a bug in the owner must not leave calls hanging
            logger.exception("handling the end of a worker failed")
        finally:
            self.fail_all(lambda p: WorkerLost())
            self._delivery.complete(self.exit)

    def fail_all(self, make_error: Callable[[Pending], BaseException]) -> None:
        """Fail the handshake and every call in flight (used by ``on_broken``)."""
        with self._lock:
            pendings: list[Pending] = self._conversation.close()  # type: ignore[assignment]
            cut = self._cut_by
        for pending in pendings:
            if cut is None:
                error = make_error(pending)
            elif pending in cut[1]:
                error = WorkerGone()  # never reached the worker: sent again
            else:
                error = WriteInterrupted(cut[0])  # it may have run: not again
            self._delivery.complete(pending, error=error)
        if not self.handshake.done:
            self._delivery.complete(self.handshake, error=make_error(self.handshake))
