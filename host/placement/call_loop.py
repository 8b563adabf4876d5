"""The asyncio side of a set's actor: where the driver's ``acall``s run on
the node, so that the driver can cancel one as a local caller cancels its
task.

A threaded Ray actor runs each method call on a thread of its own and
cannot interrupt it. ``CallLoop`` runs each cancellable call as an asyncio
task on one event loop (a daemon thread of the actor, started on first
use), under an id the driver chose; the actor's ``cancel(id)`` cancels that
task and returns once the task has ended, so once the worker's own
``acall`` has done what a cancelled local ``acall`` does
(``host/workers/call_path.py``): a call still waiting for its turn has left
the queue or the worker has been told to skip it; one that has started
runs to its end under its timeout (its reply dropped), or with
``stop_on_cancel`` its worker has been killed (and is restarting).

A cancel can reach the actor before the call it names (Ray runs a
threaded actor's methods concurrently): it is kept, and that call is
cancelled as soon as it arrives. Such early cancels are bounded
(``EARLY_CANCELS``): one for a call that had already finished is never
claimed, and the oldest are dropped.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Cancels kept for calls not (yet) seen; the oldest go first.
EARLY_CANCELS = 4096
#: Seconds a cancel waits for its call's task to end (it ends at once: the
#: cancelled path never blocks the loop; this only bounds a wedged loop).
CANCEL_WAIT = 5.0


class CallCancelled(Exception):
    """The call was cancelled by the driver before or while it ran."""


class _Call:
    """One call on the loop: its task (set on the loop thread) and its end."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.ended = threading.Event()


class CallLoop:
    """Cancellable calls on one event loop thread (see the module docstring). Thread-safe."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: dict[int, _Call] = {}
        self._early: OrderedDict[int, None] = OrderedDict()

    def run(self, call_id: int, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run the coroutine ``make()`` on the loop under ``call_id`` and wait
        for its result; raises what it raises, or ``CallCancelled`` if
        ``cancel(call_id)`` came before or while it ran."""
        call = _Call()

        def begin() -> None:  # on the loop's thread
            call.task = asyncio.get_running_loop().create_task(make())
            call.task.add_done_callback(lambda _: call.ended.set())

        with self._lock:
            if call_id in self._early:
                del self._early[call_id]
                raise CallCancelled(call_id)
            self._running[call_id] = call
            # Under the lock: a cancel that finds the call queues its
            # task.cancel after begin(), so the task exists by then.
            self._started().call_soon_threadsafe(begin)
        try:
            call.ended.wait()
        finally:
            with self._lock:
                self._running.pop(call_id, None)
        task = call.task
        assert task is not None
        if task.cancelled():
            raise CallCancelled(call_id)
        result: T = task.result()  # (done: raises what the call raised)
        return result

    def cancel(self, call_id: int) -> None:
        """Cancel call ``call_id`` and wait (up to ``CANCEL_WAIT``) until its
        task has ended; or, if it has not arrived, cancel it when it does."""
        with self._lock:
            call = self._running.get(call_id)
            if call is None:
                self._early[call_id] = None
                while len(self._early) > EARLY_CANCELS:
                    self._early.popitem(last=False)
                return
            loop = self._started()
            loop.call_soon_threadsafe(lambda: call.task is not None and call.task.cancel())
        call.ended.wait(CANCEL_WAIT)

    def _started(self) -> asyncio.AbstractEventLoop:
        """The loop (started on first use; called under the lock)."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name=f"fnhost-calls-{self._name}", daemon=True
            ).start()
            self._loop = loop
        return self._loop

    def close(self) -> None:
        """Stop the loop (the calls on it have been answered or failed by then)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
