"""A stream's items on their way from the worker to the code that reads them.

``call_stream`` and ``acall_stream`` (``host.api.calling``) run an ordinary
call (the same turn, timeout, errors and resend as ``call``) with a
``StreamSink``. Each ``item`` notification of the running call is handed to
the sink on the thread reading the worker's pipe (``Incarnation``); the
reader takes the items from the sink's queue, in order.

Flow control: the worker may send ``STREAM_WINDOW`` items, and the call's
result limit in bytes, before the host makes room for more, and the sink
makes room (``Channel.more``: items and bytes) as its reader takes them.
So the host never holds more than that of items nobody has taken, and a
slow reader slows the worker, whose waiting counts in the call's timeout.

A reader that stops early closes the sink: the running stream is told to
stop at its next item (``Channel.stop``; the worker closes the generator,
whose ``finally`` blocks run, and answers with an ordinary reply). A stream
that has not started yet is stopped at its first item; one that computes
for long without yielding runs on until its next item or its timeout.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

from host.wire.channel import Channel
from host.wire.pending import Pending
from protocol.messages import STREAM_WINDOW

#: How often a reader waiting for an item retries room it could not make
#: (the pipe's write lock was busy): seconds.
RETRY_ROOM = 0.05


class _End:
    """The call ended: its ``outcome`` (a ``CallResult``) or ``error``."""

    __slots__ = ("outcome", "error")

    def __init__(self, outcome: Any = None, error: BaseException | None = None) -> None:
        self.outcome = outcome
        self.error = error


class StreamSink:
    """The items of one streamed call, for one reader (a thread, or an
    event loop with ``loop``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._sync: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._async: asyncio.Queue[Any] | None = asyncio.Queue() if loop is not None else None
        self._lock = threading.Lock()
        self._where: tuple[Channel, Pending] | None = None
        self._taken = 0  # items taken that the worker has not been given room for
        self._taken_bytes = 0  # ... and their bytes
        self._sizes: collections.deque[int] = collections.deque()  # of the items queued
        #: The stream's first byte credit (the call's result limit; set by
        #: ``CallPath`` as it sends the call): room is given back in halves.
        self.byte_window = 0
        self.closed = False

    # -- from the thread reading the worker's pipe ---------------------------

    def received(self, value: Any, size: int, channel: Channel, pending: Pending) -> None:
        """An item (its message ``size`` bytes) of the running call
        ``pending`` on ``channel``."""
        with self._lock:
            self._where = (channel, pending)
            closed = self.closed
            if not closed:
                self._sizes.append(size)
        if closed:
            _stop(channel, pending)
            return
        self._put(value)

    def ended(self, outcome: Any = None, error: BaseException | None = None) -> None:
        """The call is over (its ``CallResult``, or the error it raised)."""
        self._put(_End(outcome, error))

    def _put(self, entry: Any) -> None:
        if self._async is None:
            self._sync.put(entry)
            return
        assert self._loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._async.put_nowait(entry)
        else:
            try:
                self._loop.call_soon_threadsafe(self._async.put_nowait, entry)
            except RuntimeError:
                pass  # the reader's loop is closed: nobody reads

    # -- from the reader ------------------------------------------------------

    def take(self) -> Any:
        """The next entry (blocking): an item, or ``_End``."""
        while True:
            try:
                entry = self._sync.get(timeout=RETRY_ROOM)
            except queue.Empty:
                self._make_room(force=True)
                continue
            self._count(entry)
            return entry

    async def take_async(self) -> Any:
        """``take`` for an event loop (never blocks it)."""
        assert self._async is not None
        while True:
            try:
                entry = await asyncio.wait_for(self._async.get(), RETRY_ROOM)
            except TimeoutError:
                self._make_room(force=True)
                continue
            self._count(entry)
            return entry

    def _count(self, entry: Any) -> None:
        if type(entry) is not _End:
            with self._lock:
                size = self._sizes.popleft() if self._sizes else 0
            self._taken += 1
            self._taken_bytes += size
            self._make_room()

    def _make_room(self, force: bool = False) -> None:
        """Give the worker room for what was taken: in halves of the window,
        in items or in bytes (or whatever is owed, when the reader is about
        to wait)."""
        taken, taken_bytes = self._taken, self._taken_bytes
        if taken == 0:
            return
        if not force and taken < STREAM_WINDOW // 2 and taken_bytes < self.byte_window // 2:
            return
        where = self._where
        if where is None:
            return
        channel, pending = where
        # An event loop must not wait for the pipe's lock: retried instead.
        lock_timeout = 0 if self._loop is not None else 0.05
        if channel.more(pending, taken, taken_bytes, lock_timeout=lock_timeout):
            self._taken = 0
            self._taken_bytes = 0

    def close(self) -> None:
        """The reader stops early: the running stream stops at its next item
        (one not started yet, at its first)."""
        with self._lock:
            self.closed = True
            where = self._where
        if where is not None:
            _stop(*where)


def _stop(channel: Channel, pending: Pending) -> None:
    """Stop the stream ``pending``: at once if the pipe's write lock is free
    (never waiting for it: this may run on an event loop or on the thread
    reading the pipe), else from a thread of its own, until it is written
    or the call has ended. Without it the worker would wait for room that
    never comes, until the call's timeout (or forever, without one)."""
    if channel.stop(pending, lock_timeout=0) or pending.done or pending.cancel_sent:
        return

    def retry() -> None:
        while not (pending.done or pending.cancel_sent or channel.broken):
            if channel.stop(pending, lock_timeout=RETRY_ROOM):
                return
            time.sleep(RETRY_ROOM / 10)  # (refused at once: not running yet)

    threading.Thread(target=retry, name="fnhost-stream-stop", daemon=True).start()


#: What ``_unwrap`` returns for a call that ended well.
_FINISHED = object()


def _unwrap(entry: Any) -> Any:
    """The item ``entry`` is, or ``_FINISHED`` at the call's good end;
    raises the call's error at its bad end."""
    if type(entry) is not _End:
        return entry
    if entry.error is not None:
        raise entry.error
    return _FINISHED


def iterate(run: Callable[[StreamSink], Any], name: str) -> Iterator[Any]:
    """The items of the call ``run(sink)`` makes (on a thread of its own,
    from the first ``next``), then its end: the iterator stops, or raises
    the call's error. Closing it early stops the stream (``close``)."""
    sink = StreamSink()

    def call() -> None:
        try:
            sink.ended(run(sink))
        except BaseException as exc:  # the call's error, raised to the reader
            sink.ended(error=exc)

    threading.Thread(target=call, name=f"fnhost-stream-{name}", daemon=True).start()
    try:
        while (item := _unwrap(sink.take())) is not _FINISHED:
            yield item
    finally:
        sink.close()


#: Streams whose reader stopped early, still running to their end.
_running: set[asyncio.Task[None]] = set()


async def iterate_async(
    run: Callable[[StreamSink], Coroutine[Any, Any, Any]],
) -> AsyncIterator[Any]:
    """``iterate`` for an event loop: the call runs as a task of the loop."""
    loop = asyncio.get_running_loop()
    sink = StreamSink(loop)

    async def call() -> None:
        try:
            sink.ended(await run(sink))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            sink.ended(error=exc)

    task = loop.create_task(call())
    try:
        while (item := _unwrap(await sink.take_async())) is not _FINISHED:
            yield item
    finally:
        sink.close()
        if not task.done():
            # It ends at its next item (or its timeout): keep it referenced.
            _running.add(task)
            task.add_done_callback(_running.discard)
