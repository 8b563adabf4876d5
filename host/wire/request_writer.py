"""The host's writes to one worker: calls, answers, cancels, notifications.

Frames never interleave: only the holder of the channel's write lock
writes. Each frame is registered with the conversation
(``HostConversation.send_call``, ``send_answer``, ``send_cancel``,
``send_shutdown``) under the channel's state lock, and in that same critical
section it joins the *batch* (calls) or takes the batch ahead of it (the
others), so the order the conversation records is the order of the bytes
in the pipe.

Calls are batched, several frames per ``write``: a call whose frame is
small joins the batch, and whoever holds the write lock writes the whole
batch before letting go (it looks for more under the state lock, in the
same critical section that lets go, so no frame is ever left behind); if
nobody holds it, the caller takes it and writes. From threads this batches
the calls that come while another is writing; from an event loop, a call
that will not start now (others are ahead of it in the pipe) waits for the
end of the loop's turn (``call_soon``), so the calls a loop starts together
(``asyncio.gather``) cost the worker one wake-up instead of one each. A
call that starts at once is written at once.

When the pipe is full the worker may itself be blocked writing a reply,
so the channel keeps reading while the write waits (``read_while_full``).
A write stops at its deadline or when the worker is gone; a frame stopped
part-way leaves the stream unusable, which is why the callers kill the
worker then (see ``Channel``). The batch never needs a deadline: the calls
admitted to the pipe fit in it (``host.workers.call_gate``), so writing
them never waits for the worker.

A write that *raises* while the write lock is held (a signal handler's
``KeyboardInterrupt`` in the writing thread, typically while it waits for
room in a full pipe; an error from a callback run while it reads) may have
cut a frame part-way, dropped frames it took from the batch, or left
behind frames that others added for it to write. The writer then ``cut``s
the channel before the exception goes on, naming the calls whose frames
certainly never reached the worker (``host.wire.write_ledger``): the worker
is ended as broken, those calls go to the next worker, and the others fail
saying why (they may have run: none runs twice). So every frame either
reaches a worker or its caller gets an error; nobody waits for a reply
that cannot come. (Between two bytecodes around a lock's acquisition
Python itself gives no such guarantee; the windows left are those
instructions.)
"""

from __future__ import annotations

import asyncio
import math
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from host.wire.pending import Pending, WorkerGone
from host.wire.write_ledger import WriteLedger
from protocol import Notification, Verb, encode_cancel, encode_message
from protocol.conversation import HostConversation

#: A write waiting on a full pipe looks again this often: is the worker
#: gone, has the deadline passed?
WRITABLE_POLL_INTERVAL = 0.05
#: Call frames up to this size join the batch (the pipe writes up to
#: PIPE_BUF bytes whole); a larger one is written on its own, under its
#: call's run deadline.
BATCH_MAX = 4096
#: An event loop's batch is written when it holds this many calls, without
#: waiting for the end of the loop's turn: the worker starts on them while
#: the loop makes the next ones.
BATCH_CALLS = 16


class RequestWriter:
    """Writes frames to one worker's request pipe (see the module docstring).

    ``write_lock`` is held while frames are written, and taken before
    ``lock`` (the channel's state lock, which guards ``conversation`` and
    the batch), except without waiting. ``broken()`` (asked under ``lock``):
    the worker is gone or broke the protocol, so nothing more is registered.
    ``usable()``: neither broken nor closed, else a write stops.
    ``read_while_full(ms)``: the pipe is full; read the worker's replies for
    up to ``ms`` milliseconds or until it drains, False (doing nothing) if
    another caller is reading. ``cut(exc, unreached)``: a write raised
    ``exc`` part-way (write lock held): end the worker as broken; the calls
    ``unreached`` never reached it (see the module docstring).
    """

    def __init__(
        self,
        write_fd: int,
        write_lock: threading.Lock,
        lock: threading.Lock,
        conversation: HostConversation,
        *,
        broken: Callable[[], bool],
        usable: Callable[[], bool],
        read_while_full: Callable[[int], bool],
        cut: Callable[[BaseException, list[Pending]], None],
    ) -> None:
        self.write_fd = write_fd
        self._write_lock = write_lock
        self._lock = lock
        self._conversation = conversation
        self._broken = broken
        self._usable = usable
        self._read_while_full = read_while_full
        self._cut = cut
        #: Call frames registered and not written yet, in order (under ``lock``).
        self._batch: list[bytes] = []
        #: Its calls, and those of the bytes being written (``write_ledger``).
        self._ledger = WriteLedger()
        #: The event loops with a flush of the batch scheduled (under ``lock``).
        self._flushing: set[asyncio.AbstractEventLoop] = set()

    # -- calls -----------------------------------------------------------------

    def send(self, pending: Pending, frame: bytes) -> None:
        """``Channel.send`` (see there)."""
        if len(frame) > BATCH_MAX:
            self._write_lock.acquire()
            self._send_alone(pending, frame)
            return
        with self._lock:
            if not self._register(pending):
                return
            self._batch.append(frame)
            self._ledger.add(pending, len(frame))
            # Held: its holder writes the batch before it lets go.
            if not self._write_lock.acquire(blocking=False):
                return
        self._release()

    def try_send(
        self, pending: Pending, frame: bytes, loop: asyncio.AbstractEventLoop | None = None
    ) -> bool:
        """``Channel.try_send`` (see there). ``loop``: the running loop, on
        whose next turn a call that does not start now is written."""
        if len(frame) > BATCH_MAX:
            if not self._write_lock.acquire(blocking=False):
                return False
            self._send_alone(pending, frame)
            return True
        with self._lock:
            if not self._register(pending):
                return True
            self._batch.append(frame)
            self._ledger.add(pending, len(frame))
            if loop is not None and not pending.started and len(self._batch) < BATCH_CALLS:
                # Calls are ahead of it: it cannot start before the loop's
                # next turn anyway, and the calls its other tasks send until
                # then go in the same write.
                if loop in self._flushing:
                    return True
                # Scheduled before it is marked: marked without a flush to
                # come, the loop's next calls would wait for none.
                loop.call_soon(self._flush, loop)
                self._flushing.add(loop)
                return True
            if not self._write_lock.acquire(blocking=False):
                return True
        self._release()
        return True

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``'s next turn: write the batch (unless a writer is at it)."""
        with self._lock:
            self._flushing.discard(loop)
            if not self._batch or not self._write_lock.acquire(blocking=False):
                return
        self._release()

    def _forget_closed_loops(self) -> None:
        """A loop closed before its turn came never runs its flush (its
        frames go with the next write, as now): forget it (``lock`` held)."""
        flushing = self._flushing
        if any(loop.is_closed() for loop in flushing):
            self._flushing = {loop for loop in flushing if not loop.is_closed()}

    def _cut_off(self, exc: BaseException) -> None:
        """A write raised ``exc`` part-way (write lock held): ``cut``, with
        the calls that certainly did not reach the worker."""
        with self._lock:
            unreached = self._ledger.unreached()
        self._cut(exc, unreached)

    def _register(self, pending: Pending) -> bool:
        """Take the call into the conversation (``lock`` held). False (the
        call failed with ``WorkerGone``) if the worker will not run it."""
        # Broken, recycled or told to shut down (a reload, a close): it will
        # not start this call; the caller sends it elsewhere. Registered in
        # the same critical section as the broken check, so a worker death
        # from now on fails this call too.
        if self._broken() or not self._conversation.send_call(pending, time.monotonic()):
            pending.done = True
            pending.error = WorkerGone()
            return False
        return True

    def _send_alone(self, pending: Pending, frame: bytes) -> None:
        """A large call, write lock held (released here): the batch ahead of
        it, then its frame, stopped at its run deadline."""
        try:
            with self._lock:
                if not self._register(pending):
                    return
                ahead = self._take_batch()
            if ahead is None or self._write_locked(ahead, None):
                self._ledger.hold(pending, len(frame))
                self._write_locked(frame, pending.run_deadline)
        except BaseException as exc:
            self._cut_off(exc)  # part of it may be in the pipe, or lost
            raise
        finally:
            self._release()

    def _take_batch(self) -> bytes | None:
        """The batch's bytes, emptied (``lock`` held); None if empty."""
        batch = self._batch
        if not batch:
            return None
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        self._ledger.take()
        batch.clear()
        return data

    def _release(self) -> None:
        """Let go of the write lock, writing first the batch that came
        meanwhile. The last look and the letting go are one critical
        section of ``lock``, where a call joining the batch finds the write
        lock held or takes it: no frame is left behind.

        If anything is raised before the write lock is let go while frames
        are in hand or wait in the batch (others added them for this thread
        to write), the channel is cut first (see the module docstring)."""
        held = True
        data = None
        batch = self._batch
        try:
            while True:
                with self._lock:
                    if not batch:
                        # (No check for signals between these two.)
                        held = False
                        self._write_lock.release()
                        return
                    data = batch[0] if len(batch) == 1 else b"".join(batch)
                    self._ledger.take()
                    batch.clear()
                    if self._flushing:
                        self._forget_closed_loops()
                # (Stops only once the worker is gone: its calls fail then.)
                self._write_locked(data, None)
                data = None
        except BaseException as exc:
            if held:
                try:
                    if data is not None or batch:
                        self._cut_off(exc)
                finally:
                    self._write_lock.release()
            raise

    # -- answers, cancels, notifications ---------------------------------------

    def answer(
        self, pending: Pending, request_id: int, frame: bytes, deadline: float | None
    ) -> bool:
        """``Channel.answer`` (see there)."""
        self._write_lock.acquire()
        try:
            with self._lock:
                if self._broken() or not self._conversation.send_answer(pending, request_id):
                    return True
                ahead = self._take_batch()
            return self._write_after(ahead, frame, deadline)
        except BaseException as exc:
            self._cut_off(exc)  # part of it may be in the pipe, or lost
            raise
        finally:
            self._release()

    def cancel(self, pending: Pending, lock_timeout: float) -> bool:
        """``Channel.cancel`` (see there)."""
        conversation = self._conversation
        return self._write_cancel(pending, conversation.send_cancel, lock_timeout)

    def stop(self, pending: Pending, lock_timeout: float) -> bool:
        """``Channel.stop`` (see there)."""
        conversation = self._conversation
        return self._write_cancel(pending, conversation.send_stop, lock_timeout)

    def _write_cancel(
        self, pending: Pending, allowed: Callable[[Pending], bool], lock_timeout: float
    ) -> bool:
        """Write ``pending``'s ``cancel`` if ``allowed(pending)`` (the
        conversation's ``send_cancel`` or ``send_stop``, which marks it sent)."""
        frame = encode_cancel(pending.msgid)
        if not self._write_lock.acquire(timeout=lock_timeout):
            return False
        try:
            with self._lock:
                # (Marked sent before the write: the confirmation may be read
                # before this thread runs again.)
                if pending.done or self._broken() or not allowed(pending):
                    return False
                ahead = self._take_batch()
            if self._write_after(ahead, frame, time.monotonic()):
                return True
            with self._lock:
                self._conversation.cancel_unsent(pending)
            return False
        except BaseException as exc:
            self._cut_off(exc)  # part of it may be in the pipe, or lost
            raise
        finally:
            self._release()

    def more(self, pending: Pending, n: int, nbytes: int, lock_timeout: float) -> bool:
        """``Channel.more`` (see there)."""
        params = {"msgid": pending.msgid, "n": n, "bytes": nbytes}
        frame = encode_message(Notification(Verb.MORE, params))
        if not self._write_lock.acquire(timeout=lock_timeout):
            return False
        try:
            with self._lock:
                # (Counted before the write: the items may come at once.)
                if (
                    pending.done
                    or self._broken()
                    or not self._conversation.send_more(pending, n, nbytes)
                ):
                    return False
                ahead = self._take_batch()
            # Smaller than PIPE_BUF: written whole or not at all.
            if self._write_after(ahead, frame, time.monotonic()):
                return True
            with self._lock:
                self._conversation.more_unsent(pending, n, nbytes)
            return False
        except BaseException as exc:
            self._cut_off(exc)  # part of it may be in the pipe, or lost
            raise
        finally:
            self._release()

    def notify(self, method: str, params: Any, timeout: float) -> bool:
        """``Channel.notify`` (see there)."""
        frame = encode_message(Notification(method, params))
        first_shutdown = False
        if method == Verb.SHUTDOWN:
            # Marked before the write: the worker answers the calls waiting in
            # its pipe "cancelled" (never started) and exits, maybe before
            # this thread runs again. (No call is registered after it; those
            # before it are in the pipe or the batch, written ahead of it.)
            with self._lock:
                first_shutdown = self._conversation.send_shutdown()
        if self._write(frame, time.monotonic() + timeout, lock_timeout=timeout):
            return True
        if first_shutdown:
            with self._lock:
                self._conversation.shutdown_unsent()  # not written at all
        return False

    def _write(self, frame: bytes, deadline: float | None, lock_timeout: float = -1) -> bool:
        """Write the batch, then a whole frame; False if the deadline passed
        or the worker is gone."""
        if not self._write_lock.acquire(timeout=lock_timeout):
            return False
        try:
            with self._lock:
                ahead = self._take_batch()
            return self._write_after(ahead, frame, deadline)
        except BaseException as exc:
            self._cut_off(exc)  # part of it may be in the pipe, or lost
            raise
        finally:
            self._release()

    # -- bytes -----------------------------------------------------------------

    def _write_after(self, ahead: bytes | None, frame: bytes, deadline: float | None) -> bool:
        """Write the batch ``ahead`` (without a deadline: it fits), then
        ``frame`` by ``deadline``. Write lock held."""
        if ahead is not None and not self._write_locked(ahead, None):
            return False
        return self._write_locked(frame, deadline)

    def _write_locked(self, frame: bytes, deadline: float | None) -> bool:
        """Write ``frame`` by ``deadline``; False if it passed or the worker
        is gone. Counts what went out in the ledger (``write_ledger``), and
        ends the write in hand there unless it raises."""
        view = memoryview(frame)
        ledger = self._ledger
        while view and self._usable():
            try:
                ledger.writing = True
                written = os.write(self.write_fd, view)
                ledger.sent += written
                ledger.writing = False
                view = view[written:]
                continue
            except BlockingIOError:
                ledger.writing = False
            except OSError:
                ledger.done()
                return False  # the worker is gone; its exit fails the pending call
            # The pipe is full: the worker may itself be blocked writing a
            # reply, so keep reading while we wait to write.
            if deadline is not None and time.monotonic() >= deadline:
                ledger.done()
                return False
            self._wait_writable(deadline)
        ledger.done()
        return not view

    def _wait_writable(self, deadline: float | None) -> None:
        timeout = WRITABLE_POLL_INTERVAL
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        if not self._read_while_full(_ms(timeout)):
            poller = select.poll()
            poller.register(self.write_fd, select.POLLOUT)
            poller.poll(_ms(timeout))


def _ms(seconds: float) -> int:
    """poll() milliseconds: rounded up, capped at what poll() accepts."""
    return min(math.ceil(seconds * 1000), 2**31 - 1)
