"""Calls batched into the pipe: several frames per write, and the guarantees
that must hold for every call of a batch (a crash or a timeout fails only
the running call; the others get their own answers)."""

from __future__ import annotations

import asyncio
import os
import threading
import types

import pytest

from host import CallTimeout, Limits, WorkerCrashed
from host.wire import request_writer

SET = """
import ctypes
import os
import time


def tagged(x: int) -> dict:
    return {"x": x, "pid": os.getpid()}


def segfault() -> None:
    ctypes.string_at(0)


def sleepy(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x
"""


@pytest.fixture
def piped(make_host, write_set):
    fh = make_host(limits=Limits(timeout=10.0))
    fh.load_function_set(write_set("piped", SET))
    return fh


def _channel(fh):
    return fh._registry.sets["piped"].handle.current.channel


def _outcome(coro):
    async def run():
        try:
            return await coro
        except Exception as exc:
            return exc

    return run()


def test_a_gather_of_calls_goes_to_the_worker_in_a_few_writes(piped, monkeypatch):
    """64 calls from one event loop: the first is written at once (it
    starts), the others in batches, not one write each."""
    fd = _channel(piped).write_fd
    writes: list[int] = []
    real = os

    def write(target: int, data) -> int:
        if target == fd:
            writes.append(len(data))
        return real.write(target, data)

    monkeypatch.setattr(request_writer, "os", types.SimpleNamespace(write=write))

    async def main() -> list[dict]:
        return await asyncio.gather(*(piped.acall("piped.tagged", {"x": i}) for i in range(64)))

    results = asyncio.run(main())
    assert [r["x"] for r in results] == list(range(64))
    assert 1 < len(writes) <= 8, writes  # (it was 64: one per call)
    assert sum(writes) > 64 * 20  # every frame went out


def test_a_crash_in_the_middle_of_a_batch_fails_only_that_call(piped):
    """The calls ahead of the crash are answered by the first worker, the
    crashing call fails with WorkerCrashed, and the calls behind it, which
    never started, run on the restarted worker: each gets its own answer."""
    first = piped.function_sets["piped"]["pid"]

    async def main() -> list[object]:
        calls = [
            piped.acall("piped.segfault") if i == 20 else piped.acall("piped.tagged", {"x": i})
            for i in range(48)
        ]
        return await asyncio.gather(*(_outcome(c) for c in calls))

    outcomes = asyncio.run(main())
    crashed = outcomes[20]
    assert isinstance(crashed, WorkerCrashed) and crashed.signal == "SIGSEGV", crashed
    for i, outcome in enumerate(outcomes):
        if i == 20:
            continue
        assert isinstance(outcome, dict), (i, outcome)
        assert outcome["x"] == i  # its own answer, never another call's
    pids = [outcomes[i]["pid"] for i in range(48) if i != 20]
    assert set(pids[:20]) == {first}  # ahead of the crash: the first worker
    assert first not in set(pids[20:])  # behind it: never started there


def test_a_crash_among_calls_from_threads_fails_only_that_call(piped):
    """Threads sending at once (their frames batched by whoever writes):
    exactly the crashing call fails; every other call gets its own answer."""
    outcomes: dict[int, object] = {}
    start = threading.Barrier(24)

    def one(i: int) -> None:
        start.wait(10)
        try:
            if i == 11:
                outcomes[i] = piped.call("piped.segfault")
            else:
                outcomes[i] = piped.call("piped.tagged", {"x": i})["x"]
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)  # a guard against hanging the suite, not a measure
    assert len(outcomes) == 24
    crashed = outcomes.pop(11)
    assert isinstance(crashed, WorkerCrashed) and crashed.signal == "SIGSEGV", crashed
    assert outcomes == {i: i for i in outcomes}


def test_a_timeout_in_the_middle_of_a_batch_fails_only_that_call(piped):
    """A batch cut by a timeout: the calls ahead are answered, the one
    that runs too long is a CallTimeout (its worker killed), and each call
    behind it either runs on the restarted worker with its own answer or,
    having waited past its timeout, is a CallTimeout "queued" (never run)."""
    first = piped.function_sets["piped"]["pid"]

    async def main() -> list[object]:
        calls = [
            piped.acall("piped.sleepy", {"x": i, "seconds": 30}, timeout=1.0)
            if i == 5
            else piped.acall("piped.tagged", {"x": i}, timeout=1.0)
            for i in range(16)
        ]
        return await asyncio.gather(*(_outcome(c) for c in calls))

    outcomes = asyncio.run(main())
    timed_out = outcomes[5]
    assert isinstance(timed_out, CallTimeout), timed_out
    assert timed_out.details.get("cause") != "queued"  # it ran, and was stopped
    for i in range(5):
        assert outcomes[i] == {"x": i, "pid": first}
    for i in range(6, 16):
        outcome = outcomes[i]
        if isinstance(outcome, CallTimeout):
            assert outcome.details["cause"] == "queued", outcome
        else:
            assert outcome["x"] == i and outcome["pid"] != first, (i, outcome)
    assert piped.call("piped.tagged", {"x": 99})["x"] == 99  # the set serves on
