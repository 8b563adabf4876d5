"""A write to the worker's pipe that raises in the middle of a batch (a
KeyboardInterrupt or an error while the holder of the write lock writes
other callers' frames): no call is ever silently dropped. Every frame
either reaches a worker or its caller gets a clear error; nobody waits for
a reply that cannot come.

The exception is provoked deterministically by raising from ``os.write``
as ``host.wire.request_writer`` sees it (what a signal handler raising in
the writing thread, or a failing write, does there)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import types
import weakref

import pytest

from host import Limits, WorkerCrashed
from host.wire import request_writer

SET = """
import os


def tagged(x: int) -> dict:
    return {"x": x, "pid": os.getpid()}
"""


class Interrupted(BaseException):
    """What a signal handler raises in the writing thread (KeyboardInterrupt's kind)."""


@pytest.fixture
def piped(make_host, write_set):
    fh = make_host(limits=Limits(timeout=5.0))
    fh.load_function_set(write_set("piped", SET))
    return fh


def _channel(fh):
    return fh._registry.sets["piped"].handle.current.channel


def _raising_write(monkeypatch, fd: int, raise_on: int, exc: BaseException, before=None):
    """``os.write`` for request_writer that raises ``exc`` on the
    ``raise_on``-th write to ``fd`` (0-based) once armed; ``before(n)`` runs
    before each armed write."""
    state = {"armed": False, "n": 0, "raised": 0}
    real = os.write

    def write(target: int, data) -> int:
        if target == fd and state["armed"]:
            n = state["n"]
            state["n"] += 1
            if before is not None:
                before(n)
            if n == raise_on:
                state["raised"] += 1
                raise exc
        return real(target, data)

    monkeypatch.setattr(request_writer, "os", types.SimpleNamespace(write=write))
    return state


def test_an_interrupt_while_writing_other_threads_frames_loses_none(piped, monkeypatch):
    """The thread holding the write lock writes its own frame, then the
    frames four other threads added meanwhile; an interrupt in that second
    write reaches its thread, and each of the four calls still gets its own
    answer (from the replaced worker: the stream may hold part of a frame),
    instead of waiting for a reply that cannot come."""
    channel = _channel(piped)
    first = piped.function_sets["piped"]["pid"]
    joined = threading.Event()

    def before(n: int) -> None:
        if n == 0:
            # Holding the write lock: wait for the others to join the batch.
            joined.wait(10)

    state = _raising_write(monkeypatch, channel.write_fd, 1, Interrupted(), before)
    state["armed"] = True
    outcomes: dict[int, object] = {}

    def one(i: int) -> None:
        try:
            outcomes[i] = piped.call("piped.tagged", {"x": i})
        except BaseException as exc:  # noqa: BLE001 (the interrupt is what we look for)
            outcomes[i] = exc

    holder = threading.Thread(target=one, args=(0,))
    holder.start()
    while state["n"] == 0:
        time.sleep(0.001)
    others = [threading.Thread(target=one, args=(i,)) for i in range(1, 5)]
    for t in others:
        t.start()
    while len(channel._writer._batch) < 4:
        time.sleep(0.001)
    joined.set()
    for t in [holder, *others]:
        t.join(30)  # a guard against hanging the suite, not a measure
    assert state["raised"] == 1
    assert isinstance(outcomes[0], Interrupted), outcomes[0]
    for i in range(1, 5):
        assert isinstance(outcomes[i], dict), (i, outcomes[i])
        assert outcomes[i]["x"] == i
        assert outcomes[i]["pid"] != first  # the cut stream's worker was replaced
    monkeypatch.undo()
    assert piped.call("piped.tagged", {"x": 9})["x"] == 9


def test_an_error_in_an_event_loop_s_batch_write_loses_none(piped, monkeypatch):
    """A gather's first call is written at once, the others in one write on
    the loop's next turn; that write fails with an error the loop only logs.
    The calls it carried run on the replaced worker; the running one gets
    its answer or a WorkerCrashed that says why. None times out."""
    channel = _channel(piped)
    first = piped.function_sets["piped"]["pid"]
    state = _raising_write(monkeypatch, channel.write_fd, 1, RuntimeError("write failed"))

    async def main() -> list[object]:
        state["armed"] = True

        async def one(i: int) -> object:
            try:
                return await piped.acall("piped.tagged", {"x": i}, timeout=3.0)
            except Exception as exc:
                return exc

        return await asyncio.gather(*(one(i) for i in range(8)))

    outcomes = asyncio.run(main())
    assert state["raised"] == 1
    head = outcomes[0]
    if isinstance(head, WorkerCrashed):
        assert head.details.get("cause") == "interrupted", head
        assert "RuntimeError" in str(head) and "piped" in str(head), head
    else:
        assert head == {"x": 0, "pid": first}, head
    for i in range(1, 8):
        assert isinstance(outcomes[i], dict), (i, outcomes[i])
        assert outcomes[i]["x"] == i and outcomes[i]["pid"] != first


def test_a_loop_closed_with_its_batch_unwritten_is_not_kept(piped):
    """A loop closed before its turn wrote the batch (its tasks gone): the
    frames go out with the next write, and the writer does not keep the
    closed loop."""
    loop = asyncio.new_event_loop()

    async def start_and_leave() -> None:
        for i in range(4):
            asyncio.ensure_future(piped.acall("piped.tagged", {"x": i}))
        await asyncio.sleep(0)  # they send; the batch waits for the loop's next turn
        asyncio.get_running_loop().stop()  # which never comes

    loop.run_until_complete(start_and_leave())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    # The next call writes what was left and is answered after it.
    assert piped.call("piped.tagged", {"x": 9})["x"] == 9
    assert asyncio.run(piped.acall("piped.tagged", {"x": 10}))["x"] == 10
    for _ in range(3):
        gc.collect()
    assert gone() is None
