"""The host's end of one worker's pipes: who writes, who reads, who is woken.

No thread is dedicated to reading. A waiting caller becomes the *leader*:
it polls the response pipe and the worker's pidfd with its own deadline,
reads what is there and hands each reply to its waiter; other waiters sleep
on their own condition until their reply arrives or they are asked to lead
(a leader/follower scheme, ``host.wire.leadership``). An asyncio caller
takes the same role from its event loop's reader callback. This keeps
thread hand-offs off the hot path.

Several calls may be in the pipe at once (see ``host.workers.call_gate``). What
each message from the worker means (which call a reply answers, when the
next call starts, whether a cancel confirmation is legal, which calls never
started when the worker died or asked to be recycled) is decided by the
conversation's state machine, ``protocol.conversation.HostConversation``;
this module only moves bytes, holds the lock around that object, and wakes
the callers. What goes to the worker is written by
``host.wire.request_writer`` (in the conversation's order, several call
frames per write); this module reads and delivers what comes back.

Process exit is learned from the pidfd, never from pipe EOF (an escaped
grandchild may hold the pipe open forever). When the worker exits, or sends
a malformed frame, the leader drains what is left in the pipe, then calls
``on_broken`` exactly once; the owner fails every call still in flight.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from host.wire.channel_end import ChannelEnd
from host.wire.delivery import Delivery
from host.wire.leadership import Leadership
from host.wire.loop_watch import LoopWatch
from host.wire.pending import Pending
from host.wire.reply_reader import ReplyReader
from host.wire.request_writer import RequestWriter
from protocol import Notification, ProtocolViolation, Request
from protocol.conversation import HostConversation

logger = logging.getLogger("fnhost")

#: Without a pidfd (very old kernels) the leader polls the process this often.
EXIT_POLL_INTERVAL = 0.05


class Channel(ChannelEnd):
    """Requests out, replies in, for one worker process.

    Frames are read and decoded by ``host.wire.reply_reader`` (``max_frame_size``,
    ``decode_budget``): a reply over the budget fails its own call with
    ``result_too_large``; any other message over it breaks the channel.

    ``on_broken(violation)`` is called once, by whichever caller is leading
    when the worker exits (``violation is None``) or breaks the protocol;
    it must fail the remaining calls with ``fail_all`` and may kill the
    process. ``on_eof()`` is called once, by the leader, when the response
    pipe reaches EOF before the channel broke: the worker closed it (it
    exited, or user code closed the fd) and can never answer again; the
    exit itself is still learned from the pidfd. It must not block.
    Thread-safe; usable from several threads and event loops.
    """

    def __init__(
        self,
        *,
        read_fd: int,
        write_fd: int,
        pidfd: int | None,
        max_frame_size: int,
        decode_budget: int,
        on_broken: Callable[[ProtocolViolation | None], None],
        exited: Callable[[], bool],
        on_recycle: Callable[[Pending], None] | None = None,
        on_ask: Callable[[Pending, Request], None] | None = None,
        on_note: Callable[[Pending, Notification, int], None] | None = None,
        on_eof: Callable[[], None] | None = None,
    ) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.pidfd = pidfd
        self._reader = ReplyReader(read_fd, max_frame_size, decode_budget)
        self._on_broken = on_broken
        self._on_eof = on_eof
        self._exited = exited
        # One lock for the state. A follower sleeps on a lock of its own
        # (``Leadership``), so a reply wakes only its caller, and a leader
        # done leading wakes one follower that still waits to take over.
        self._lock = threading.Lock()
        # Held while a frame is written (taken before ``_lock``).
        self._write_lock = threading.Lock()
        self._broken = False
        #: A write was cut: what was raised, and the calls that never
        #: reached the worker (``_cut``).
        self._cut_by: tuple[str, set[Pending]] | None = None
        #: Who reads: one waiting caller at a time leads, the others follow.
        self._leadership = Leadership(
            self._lock, self._lead_once, lambda: self._broken and self.exit.done
        )
        #: The rules: what each message means, which calls are in flight.
        self._conversation = HostConversation()
        #: Calls, answers, cancels and notifications out, calls in batches.
        self._writer = RequestWriter(
            write_fd,
            self._write_lock,
            self._lock,
            self._conversation,
            broken=lambda: self._broken,
            usable=self._usable,
            read_while_full=self._read_while_full,
            cut=self._cut,
        )
        self._poller = select.poll()
        self._poller.register(read_fd, select.POLLIN)
        if pidfd is not None:
            self._poller.register(pidfd, select.POLLIN)
        #: The event loops watching our fds for their awaiting calls.
        self._loops = LoopWatch(
            self._lock,
            read_fd,
            pidfd,
            on_data=self._on_loop_data,
            on_exit=self._on_loop_exit,
            on_released=self.close,
        )
        self._fds_closed = False
        #: Completed by the first message: the ``ready``/``load_failed`` notification.
        self.handshake = Pending(0, "<start>")
        #: Completed once the worker's exit (or breakage) has been handled.
        self.exit = Pending(0, "<exit>")
        #: Each message to its waiter, as the conversation reads it.
        self._delivery = Delivery(
            self._lock,
            self._conversation,
            self._leadership,
            self.handshake,
            on_recycle,
            on_ask,
            on_note,
        )

    # -- writing (host.wire.request_writer) --------------------------------

    @property
    def probed(self) -> Notification | None:
        """The worker's sandbox report (``probed``), sent before user code ran."""
        return self._delivery.probed

    @property
    def broken(self) -> bool:
        return self._broken

    @property
    def dying(self) -> bool:
        """The worker asked to be recycled: it exits without starting more."""
        return self._conversation.recycling

    def send(self, pending: Pending, frame: bytes) -> None:
        """Register ``pending`` and write its request ``frame``.

        If no other call is in the pipe the call starts now: its
        ``run_deadline`` counts from here. Otherwise it waits in the pipe
        behind the others, and the write does not block (``host.workers.call_gate``
        keeps the pipe's contents below its capacity); a small frame may be
        written by another thread, with others (``request_writer``). If the worker is
        already broken, ``pending`` is failed with ``WorkerGone`` and nothing
        is sent. If the run deadline passes in the middle of writing a large
        frame the write stops there: the caller must treat that as its
        timeout and kill the worker.
        """
        self._writer.send(pending, frame)

    def answer(
        self, pending: Pending, request_id: int, frame: bytes, deadline: float | None
    ) -> bool:
        """Write the answer ``frame`` to ``pending``'s request ``request_id``.

        True once written, or dropped (nothing written) because the call has
        ended meanwhile (answered, or its worker gone). False if the worker
        did not read it all by ``deadline``: part of a frame may be in the
        pipe, so the caller must kill the worker.
        """
        return self._writer.answer(pending, request_id, frame, deadline)

    def try_send(
        self, pending: Pending, frame: bytes, loop: asyncio.AbstractEventLoop | None = None
    ) -> bool:
        """``send`` from an event loop's thread, which must never wait for
        the write lock: False, nothing registered or written, if the frame
        is large and another thread is writing (then ``send`` from a
        thread). A small frame is always taken: if ``pending`` does not
        start at once it is written on ``loop``'s next turn, with the calls
        the loop's other tasks send meanwhile (``request_writer``)."""
        return self._writer.try_send(pending, frame, loop)

    def cancel(self, pending: Pending, lock_timeout: float = 0.05) -> bool:
        """Ask the worker to skip ``pending`` if it has not started (it then
        answers "cancelled" at once, before starting anything else). True
        once the request is written; the tiny frame is written whole or not
        at all, so False leaves the stream intact and the caller may try
        again (``lock_timeout``: how long to wait for another writer)."""
        return self._writer.cancel(pending, lock_timeout)

    def stop(self, pending: Pending, lock_timeout: float = 0.05) -> bool:
        """Ask the worker to stop the running stream ``pending`` at its next
        item (it closes the generator and answers with an ordinary reply).
        True once written; False (the stream intact) if ``pending`` is not a
        running stream, was stopped already, or the pipe could not take the
        tiny frame within ``lock_timeout``: the caller may try again."""
        return self._writer.stop(pending, lock_timeout)

    def more(self, pending: Pending, n: int, nbytes: int, lock_timeout: float = 0.05) -> bool:
        """Let the stream ``pending`` send ``n`` more items of ``nbytes`` more
        bytes. True once written; False (nothing allowed) if it is no stream
        in flight or the frame could not be written within ``lock_timeout``:
        try again, or the worker waits for room until the call's timeout."""
        return self._writer.more(pending, n, nbytes, lock_timeout)

    @property
    def head(self) -> Pending | None:
        """The call the worker is running (the oldest unanswered), if any."""
        with self._lock:
            return self._conversation.head  # type: ignore[return-value]  # (only Pendings are sent)

    @property
    def head_hint(self) -> Pending | None:
        """``head`` read without the lock (every waiting call asks it when
        it waits): a hint of when to look again, which may be stale or, if
        the calls in flight changed during the read, another call in
        flight. Decide nothing on it but a wake-up time."""
        try:
            return self._conversation.head  # type: ignore[return-value]  # (only Pendings are sent)
        except RuntimeError:  # they changed during the read
            return self.head

    def notify(self, method: str, params: Any, timeout: float = 0.2) -> bool:
        """Best-effort notification (e.g. ``shutdown``) within ``timeout`` seconds.

        False if it could not be written in time (another thread is stuck
        writing a large argument, or the worker does not read): the caller
        should then kill the worker instead.
        """
        return self._writer.notify(method, params, timeout)

    # -- reading: the leader's work (whose turn: host.wire.leadership) ------

    def _read_while_full(self, ms: int) -> bool:
        """The request pipe is full and the worker may itself be blocked
        writing a reply: lead for up to ``ms`` milliseconds, reading (and
        handling an exit) until the pipe is writable. False, doing nothing,
        if another caller leads (it reads)."""
        if not self._leadership.try_lead():
            return False
        try:
            poller = select.poll()
            poller.register(self.write_fd, select.POLLOUT)
            poller.register(self.read_fd, select.POLLIN)
            if self.pidfd is not None:
                poller.register(self.pidfd, select.POLLIN)
            self._handle_events(poller.poll(ms))
        finally:
            self._leadership.release()
        return True

    def _lead_once(self, deadline: float | None) -> None:
        """Poll until something happens or ``deadline``; handle it. Leader only."""
        if self._broken:
            return
        if deadline is None:
            timeout = -1 if self.pidfd is not None else EXIT_POLL_INTERVAL
        else:
            timeout = max(0.0, deadline - time.monotonic())
            if self.pidfd is None:
                timeout = min(timeout, EXIT_POLL_INTERVAL)
        # poll() takes whole milliseconds, rounded up.
        ms = -1 if timeout == -1 else min(math.ceil(timeout * 1000), 2**31 - 1)
        self._handle_events(self._poller.poll(ms))
        if self.pidfd is None and not self._broken and self._exited():
            if self._pump():  # replies written just before the exit still count
                self._break(None)

    def _handle_events(self, events: list[tuple[int, int]]) -> None:
        exited = False
        for fd, _ in events:
            if fd == self.read_fd:
                if not self._pump():
                    return
            elif fd == self.pidfd:
                exited = True
        if exited and not self._broken:
            self._pump()  # replies written just before the exit still count
            if not self._broken:
                self._break(None)

    def _pump(self) -> bool:
        """Read what is available and deliver it. False once broken."""
        try:
            if self._reader.pump(self._delivery.deliver_all):
                self._poller.unregister(self.read_fd)  # at EOF: it stays readable
                if self._on_eof is not None:
                    # Once (unregistered now): the worker can never answer
                    # again, and its exit is on its way (the pidfd decides).
                    try:
                        self._on_eof()
                    except Exception:
                        logger.exception("handling a worker's closed pipe failed")
        except ProtocolViolation as exc:
            self._break(exc)
            return False
        return True

    # -- waiting -----------------------------------------------------------

    def wait(self, pending: Pending, deadline: float | None) -> bool:
        """Block until ``pending`` is done (True) or ``deadline`` passes (False).

        A deadline already in the past still gets one look at the pipe, so a
        reply (or a ``ready``) that is waiting there is never missed.
        """
        return self._leadership.wait(pending, deadline)

    def watch(
        self, pending: Pending, deadline: float | None, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future | None:
        """Arm an asyncio wait for ``pending`` on ``loop`` (the running loop):
        the future to await, resolved by its reply, its worker's end or
        ``deadline`` (then ``pending.done`` is still False); None if it is
        done already. Whatever the await does (it may be cancelled), call
        ``unwatch`` with the same arguments after it.

        A plain function, not a coroutine: the caller awaits the future
        itself (one coroutine less on every ``acall``'s way in and out).
        ``pending.future`` must have been created on ``loop``.
        """
        fut = pending.future
        assert fut is not None and fut.get_loop() is loop
        if pending.done:
            return None
        if fut.done():
            # The timer of an earlier wait resolved it: wait on a fresh one.
            with self._lock:
                if pending.done:
                    return None
                fut = pending.future = loop.create_future()
        loops = self._loops
        if not loops.attach(loop, self._usable, reading=not self._reader.eof):
            # Broken (or closed) already: its breakage handling completes
            # or has completed the call; wait for that off the loop.
            return loop.run_in_executor(None, self.wait, pending, deadline)
        if deadline is not None:
            # The loop's shared timer resolves the same future.
            loops.timer(loop).add(fut, deadline)
        return fut

    def unwatch(
        self, pending: Pending, fut: asyncio.Future, loop: asyncio.AbstractEventLoop
    ) -> None:
        """After awaiting what ``watch`` returned: stop watching for it."""
        if fut is pending.future:
            self._loops.release_wait(loop, fut)

    def _usable(self) -> bool:
        return not (self._broken or self._fds_closed)

    def _on_loop_data(self) -> None:
        """The reply pipe is readable: read and deliver (no extra poll)."""
        loop = asyncio.get_running_loop()
        if self._loops.idle_here(loop):
            return
        if not self._leadership.try_lead():
            return  # a thread is leading and will deliver our reply
        try:
            if not self._broken:
                self._delivery.loop = loop  # (only the leader delivers)
                try:
                    self._pump()
                finally:
                    self._delivery.loop = None
        finally:
            self._leadership.release()
        self._loops.stop_reading(self._reader.eof, self._broken)

    def _on_loop_exit(self) -> None:
        """The pidfd is readable: the worker exited."""
        if self._loops.idle_here(asyncio.get_running_loop()) or not self._leadership.try_lead():
            return
        try:
            if not self._broken:
                assert self.pidfd is not None  # only watched when there is one
                self._handle_events([(self.pidfd, select.POLLIN)])
        finally:
            self._leadership.release()
        self._loops.stop_reading(self._reader.eof, self._broken)

    def abandon(self, pending: Pending, on_exit: Callable[[], None] | None = None) -> bool:
        """Give up on ``pending`` unless it is already done (returns done).

        ``on_exit`` (only if not done) runs once when the call leaves the
        pipe: its reply read, or its worker gone.
        """
        with self._lock:
            if pending.done:
                return True
            pending.abandoned = True
            if on_exit is not None:
                pending.on_exit = on_exit
            return False

    def close(self) -> None:
        """Close the pipes and the pidfd; deferred while an event loop
        watches them (the last loop to let go closes them)."""
        if self._loops.release():
            return  # the running loop let go; it closed us if it was the last
        with self._write_lock, self._lock:
            if self._loops.busy or self._fds_closed:
                return
            self._fds_closed = True
        for fd in (self.read_fd, self.write_fd, self.pidfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
