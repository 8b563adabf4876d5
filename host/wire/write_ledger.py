"""Which calls' frames have reached a worker's pipe, while they are written.

The request writer (``host.wire.request_writer``) keeps the calls of its
batch here as their frames join it, takes them *in hand* with the batch's
bytes, and counts the bytes each write puts in the pipe. If a write raises
part-way (a signal handler's ``KeyboardInterrupt`` in the writing thread),
``unreached`` names the calls whose frames certainly never reached the
worker: they cannot have started, and go to the next worker. Every other
call may have reached it (and run), so its caller gets an error instead:
no call is ever run twice.

Certainly is the point: the byte count is exact only when the exception
did not strike during a write (``writing``), typically while the writer
waited for room in a full pipe. Python may run a signal handler right after
``os.write`` returns, before its count is kept; then every frame in hand
is taken as reached.

Not thread-safe: the batch's calls change under the channel's lock, the
rest only while the write lock is held.
"""

from __future__ import annotations

from host.wire.pending import Pending

_NONE: list[tuple[Pending, int]] = []


class WriteLedger:
    """The calls whose frames wait in the batch or are being written."""

    __slots__ = ("batched", "in_hand", "sent", "writing")

    def __init__(self) -> None:
        #: (call, frame size) of the frames in the batch, in order.
        self.batched: list[tuple[Pending, int]] = []
        #: ... of the frames in the bytes being written now, in order.
        self.in_hand: list[tuple[Pending, int]] = _NONE
        #: Bytes of those written so far.
        self.sent = 0
        #: A write is under way: ``sent`` may be short of what went out.
        self.writing = False

    def add(self, call: Pending, size: int) -> None:
        """``call``'s frame of ``size`` bytes joined the batch."""
        self.batched.append((call, size))

    def take(self) -> None:
        """The batch's bytes were taken to be written."""
        self.in_hand = self.batched
        self.batched = []
        self.sent = 0

    def hold(self, call: Pending, size: int) -> None:
        """``call``'s frame (not batched) is about to be written."""
        self.in_hand = [(call, size)]
        self.sent = 0

    def done(self) -> None:
        """The write in hand ended (written, stopped, or the worker gone:
        then its end decides what happens to the calls)."""
        self.in_hand = _NONE

    def unreached(self) -> list[Pending]:
        """The calls whose frames certainly did not reach the worker: those
        in the batch, and those in hand beyond what was certainly written
        (a frame written in part cannot be read, so it cannot have run)."""
        calls = [call for call, _ in self.batched]
        if not self.writing:
            sent = self.sent
            for call, size in self.in_hand:
                if sent >= size:
                    sent -= size
                else:
                    calls.append(call)
                    sent = 0
        return calls
