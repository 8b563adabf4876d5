"""The host's writes to one worker: calls, answers, cancels, notifications.

One frame at a time, under the channel's write lock, so frames never
interleave; each is registered with the conversation
(``HostConversation.send_call``, ``send_answer``, ``send_cancel``,
``send_shutdown``) while that lock is held, so the order the conversation
records is the order of the frames in the pipe. When the pipe is full the
worker may itself be blocked writing a reply, so the channel keeps reading
while the write waits (``read_while_full``). A write stops at its deadline
or when the worker is gone; a frame stopped part-way leaves the stream
unusable, which is why the callers kill the worker then (see ``Channel``).
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from host.wire.pending import Pending, WorkerGone
from protocol import Notification, Verb, encode_cancel, encode_message
from protocol.conversation import HostConversation

#: A write waiting on a full pipe looks again this often: is the worker
#: gone, has the deadline passed?
WRITABLE_POLL_INTERVAL = 0.05


class RequestWriter:
    """Writes frames to one worker's request pipe (see the module docstring).

    ``write_lock`` is held while a frame is written, and taken before
    ``lock`` (the channel's state lock, which guards ``conversation``).
    ``broken()`` (asked under ``lock``): the worker is gone or broke the
    protocol, so nothing more is registered. ``usable()``: neither broken
    nor closed, else a write stops. ``read_while_full(ms)``: the pipe is
    full; read the worker's replies for up to ``ms`` milliseconds or until
    it drains, False (doing nothing) if another caller is reading.
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
    ) -> None:
        self.write_fd = write_fd
        self._write_lock = write_lock
        self._lock = lock
        self._conversation = conversation
        self._broken = broken
        self._usable = usable
        self._read_while_full = read_while_full

    def send(self, pending: Pending, frame: bytes) -> None:
        """``Channel.send`` (see there)."""
        with self._write_lock:
            self._send_locked(pending, frame)

    def _send_locked(self, pending: Pending, frame: bytes) -> None:
        with self._lock:
            # Broken, recycled or told to shut down (a reload, a close):
            # it will not start this call; the caller sends it elsewhere.
            # Registered in the same critical section as the broken check,
            # so a worker death from now on fails this call too.
            if self._broken() or not self._conversation.send_call(pending, time.monotonic()):
                pending.done = True
                pending.error = WorkerGone()
                return
        self._write_locked(frame, pending.run_deadline)

    def answer(
        self, pending: Pending, request_id: int, frame: bytes, deadline: float | None
    ) -> bool:
        """``Channel.answer`` (see there)."""
        with self._write_lock:
            with self._lock:
                if self._broken() or not self._conversation.send_answer(pending, request_id):
                    return True
            return self._write_locked(frame, deadline)

    def try_send(self, pending: Pending, frame: bytes) -> bool:
        """``Channel.try_send`` (see there)."""
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            self._send_locked(pending, frame)
        finally:
            self._write_lock.release()
        return True

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
            if self._write_locked(frame, time.monotonic()):
                return True
            with self._lock:
                self._conversation.cancel_unsent(pending)
            return False
        finally:
            self._write_lock.release()

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
            # Smaller than PIPE_BUF: written whole or not at all.
            if self._write_locked(frame, time.monotonic()):
                return True
            with self._lock:
                self._conversation.more_unsent(pending, n, nbytes)
            return False
        finally:
            self._write_lock.release()

    def notify(self, method: str, params: Any, timeout: float) -> bool:
        """``Channel.notify`` (see there)."""
        frame = encode_message(Notification(method, params))
        first_shutdown = False
        if method == Verb.SHUTDOWN:
            # Marked before the write: the worker answers the calls waiting in
            # its pipe "cancelled" (never started) and exits, maybe before
            # this thread runs again.
            with self._lock:
                first_shutdown = self._conversation.send_shutdown()
        if self._write(frame, time.monotonic() + timeout, lock_timeout=timeout):
            return True
        if first_shutdown:
            with self._lock:
                self._conversation.shutdown_unsent()  # not written at all
        return False

    def _write(self, frame: bytes, deadline: float | None, lock_timeout: float = -1) -> bool:
        """Write a whole frame; False if the deadline passed or the worker is gone."""
        if not self._write_lock.acquire(timeout=lock_timeout):
            return False
        try:
            return self._write_locked(frame, deadline)
        finally:
            self._write_lock.release()

    def _write_locked(self, frame: bytes, deadline: float | None) -> bool:
        view = memoryview(frame)
        while view and self._usable():
            try:
                view = view[os.write(self.write_fd, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError:
                return False  # the worker is gone; its exit fails the pending call
            # The pipe is full: the worker may itself be blocked writing a
            # reply, so keep reading while we wait to write.
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._wait_writable(deadline)
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
