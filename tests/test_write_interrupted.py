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
import fcntl
import gc
import os
import signal
import struct
import termios
import threading
import time
import types
import weakref

import pytest

from host import Limits, WorkerCrashed
from host.wire import request_writer

SET = """
import os


import time


def tagged(x: int, pad: str = "") -> dict:
    return {"x": x, "pid": os.getpid()}


def sleepy(seconds: float) -> None:
    time.sleep(seconds)
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


def _pipe_bytes(fd: int) -> int:
    """Bytes waiting in the pipe of ``fd`` (either end)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_an_interrupt_while_waiting_for_room_in_the_pipe_loses_no_frame(piped):
    """The worker is busy and its pipe is full: the main thread, holding the
    write lock, waits for room with its own frame in hand and three
    other threads' frames in the batch behind it. A signal handler raises
    there. The interrupt reaches the main thread; the three calls whose
    frames never reached the worker run on its replacement and get their
    own answers (before, they waited for ever); the calls that had reached
    the worker (it may have run them) get their answer or a WorkerCrashed
    saying why, never a second run. Nothing hangs."""
    channel = _channel(piped)
    first = piped.function_sets["piped"]["pid"]
    pad = "p" * 1500  # a frame of ~1.6 KB: the third does not fit in a 4 KiB pipe
    outcomes: dict[str, object] = {}

    def one(key: str, function: str, args: dict) -> None:
        try:
            outcomes[key] = piped.call(f"piped.{function}", args, timeout=None)
        except BaseException as exc:  # noqa: BLE001 (what each call ends with)
            outcomes[key] = exc

    def start(key: str, function: str, args: dict) -> threading.Thread:
        thread = threading.Thread(target=one, args=(key, function, args))
        thread.start()
        return thread

    threads = [start("running", "sleepy", {"seconds": 3.0})]
    while piped._registry.sets["piped"].handle.current.channel.head is None:
        time.sleep(0.001)
    time.sleep(0.1)  # the worker has read it and is running it
    fcntl.fcntl(channel.write_fd, fcntl.F_SETPIPE_SZ, 4096)
    for i in range(2):
        waiting = _pipe_bytes(channel.write_fd)
        threads.append(start(f"queued{i}", "tagged", {"x": i, "pad": pad}))
        while _pipe_bytes(channel.write_fd) == waiting:  # it is in the pipe
            time.sleep(0.001)

    sending = threading.Event()

    def interrupt() -> None:
        while not (sending.is_set() and channel._write_lock.locked()):
            time.sleep(0.001)  # the main thread holds the write lock, waiting for room
        for i in range(3):
            threads.append(start(f"behind{i}", "tagged", {"x": 10 + i, "pad": pad}))
        while len(channel._writer._batch) < 3:
            time.sleep(0.001)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    def handler(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        interrupter = threading.Thread(target=interrupt)
        interrupter.start()
        sending.set()
        one("main", "tagged", {"x": 99, "pad": pad})
        interrupter.join(30)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    for thread in threads:
        thread.join(30)  # a guard against hanging the suite, not a measure
    assert not any(thread.is_alive() for thread in threads), outcomes
    assert isinstance(outcomes.pop("main"), Interrupted)
    for i in range(3):
        answer = outcomes.pop(f"behind{i}")
        assert isinstance(answer, dict), answer
        assert answer["x"] == 10 + i and answer["pid"] != first
    for key, outcome in outcomes.items():  # they had reached the worker
        if isinstance(outcome, WorkerCrashed):
            assert outcome.details.get("cause") == "interrupted", outcome
            assert "Interrupted" in str(outcome) and "piped." in str(outcome), outcome
        else:
            assert key != "running" and outcome["pid"] == first, (key, outcome)
    assert piped.call("piped.tagged", {"x": 7})["x"] == 7


def test_an_error_in_an_event_loop_s_batch_write_loses_none(piped, monkeypatch):
    """A gather's first call is written at once, the others in one write on
    the loop's next turn; that write fails with an error the loop only logs
    (the frames it carried lost, before). Each call gets its answer or a
    WorkerCrashed that says why; none waits for its timeout (before: a
    CallTimeout), and the worker is replaced."""
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
    for i, outcome in enumerate(outcomes):
        # Their frames were in hand when the write failed: each may have
        # reached the worker (and run), so none is sent again.
        if isinstance(outcome, WorkerCrashed):
            assert outcome.details.get("cause") == "interrupted", (i, outcome)
            assert "RuntimeError" in str(outcome) and "piped.tagged" in str(outcome), outcome
        else:
            assert outcome == {"x": i, "pid": first}, (i, outcome)
    monkeypatch.undo()
    assert piped.call("piped.tagged", {"x": 9})["pid"] != first  # replaced, serving


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
