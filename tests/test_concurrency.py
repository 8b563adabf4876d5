"""Many calls at once: threads, asyncio, pipelining, cancellation, close."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from host import CallTimeout, FunctionHost, HostClosed, Limits, WorkerCrashed

from .conftest import wait_for, worker_pids

WORK = """
import asyncio
import ctypes
import os
import time


def echo(x: int) -> int:
    return x


def slow_echo(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


async def async_echo(x: int) -> int:
    await asyncio.sleep(0.001)
    return x


def pid() -> int:
    return os.getpid()


def segfault() -> None:
    ctypes.string_at(0)


def segfault_after(seconds: float) -> None:
    time.sleep(seconds)
    ctypes.string_at(0)
"""


@pytest.fixture
def work(make_host, write_set, tmp_path):
    fh = make_host(on_conflict="prefix")
    fh.load_function_set(write_set("work", WORK))
    other = tmp_path / "other"
    other.mkdir()
    fh.load_function_set(write_set("work2", WORK, directory=other))
    return fh


def test_concurrent_calls_from_threads_get_their_own_answers(work):
    def task(i: int) -> tuple[int, int]:
        name = "work.echo" if i % 2 else "work2.echo"
        return i, work.call(name, {"x": i})

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(task, range(2000)))
    assert all(i == got for i, got in results)
    assert len(results) == 2000


def test_concurrent_calls_from_asyncio(work):
    async def main() -> list[int]:
        calls = [
            work.acall("work.echo" if i % 2 else "work2.async_echo", {"x": i}) for i in range(1000)
        ]
        return await asyncio.gather(*calls)

    assert asyncio.run(main()) == list(range(1000))


def test_asyncio_and_threads_at_once(work):
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer() -> None:
        i = 0
        while not stop.is_set():
            try:
                assert work.call("work.echo", {"x": i}) == i
            except BaseException as exc:  # noqa: BLE001 - report any failure
                errors.append(exc)
                return
            i += 1

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()

    async def main() -> list[int]:
        return await asyncio.gather(*(work.acall("work.echo", {"x": i}) for i in range(500)))

    try:
        assert asyncio.run(main()) == list(range(500))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []


def test_pipelined_calls_complete_in_order_of_finish(work):
    async def main() -> tuple[list[int], list[int]]:
        order: list[int] = []

        async def one(x: int, seconds: float) -> int:
            value = await work.acall("work.slow_echo", {"x": x, "seconds": seconds})
            order.append(value)
            return value

        values = await asyncio.gather(one(1, 0.2), one(2, 0.0), one(3, 0.0))
        return values, order

    values, order = asyncio.run(main())
    assert values == [1, 2, 3]
    assert order == [1, 2, 3]  # one worker runs calls in sequence


def test_async_timeout(work):
    async def main() -> None:
        await work.acall("work.slow_echo", {"x": 1, "seconds": 30}, timeout=0.3)

    with pytest.raises(CallTimeout):
        asyncio.run(main())
    assert work.call("work.echo", {"x": 2}) == 2


def test_async_crash(work):
    async def main() -> None:
        await work.acall("work.segfault")

    with pytest.raises(WorkerCrashed) as info:
        asyncio.run(main())
    assert info.value.signal == "SIGSEGV"
    assert asyncio.run(work.acall("work.echo", {"x": 3})) == 3


def test_cancelled_acall_is_abandoned_and_later_calls_work(work):
    async def main() -> int:
        task = asyncio.create_task(work.acall("work.slow_echo", {"x": 1, "seconds": 0.3}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The worker finishes the abandoned call, then serves this one.
        return await work.acall("work.echo", {"x": 42})

    assert asyncio.run(main()) == 42
    assert work.call("work.echo", {"x": 43}) == 43


def test_calls_queued_behind_a_crash_run_on_the_restarted_worker(work):
    def call(name: str, args: dict) -> object:
        try:
            return work.call(name, args)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(6) as pool:
        crasher = pool.submit(call, "work.segfault_after", {"seconds": 0.4})
        time.sleep(0.1)  # the crasher is running; these queue behind it
        queued = [pool.submit(call, "work.echo", {"x": i}) for i in range(4)]
        other = pool.submit(call, "work2.echo", {"x": 7})
        outcomes = [f.result(timeout=10) for f in queued]
        crashed = crasher.result(timeout=10)
        assert other.result(timeout=10) == 7
    # Only the call that crashed the worker fails; each queued call gets its
    # own answer from the restarted worker.
    assert isinstance(crashed, WorkerCrashed) and crashed.function == "segfault_after"
    assert outcomes == [0, 1, 2, 3]


def test_a_call_that_times_out_in_the_queue_does_not_kill_the_running_one(work):
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(work.call, "work.slow_echo", {"x": 1, "seconds": 0.6})
        time.sleep(0.1)
        pid = work.function_sets["work"]["pid"]
        with pytest.raises(CallTimeout) as info:
            work.call("work.echo", {"x": 2}, timeout=0.2)
        assert info.value.details["cause"] == "queued"
        assert "did not start" in str(info.value)
        assert running.result(timeout=10) == 1  # undisturbed
    assert work.function_sets["work"]["pid"] == pid  # nobody was killed


def test_async_calls_queue_in_arrival_order(work):
    async def main() -> list[int]:
        order: list[int] = []

        async def one(x: int) -> None:
            order.append(await work.acall("work.slow_echo", {"x": x, "seconds": 0.05}))

        await asyncio.gather(*(one(x) for x in range(5)))
        return order

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_close_fails_calls_in_flight_and_leaves_no_process(write_set, empty_dir):
    fh = FunctionHost(
        builtin_dir=empty_dir, user_dirs=[], limits=Limits(timeout=30, shutdown_grace=0.3)
    )
    fh.load_function_set(write_set("work", WORK))
    assert worker_pids()
    outcome: list[object] = []

    def slow() -> None:
        try:
            outcome.append(fh.call("work.slow_echo", {"x": 1, "seconds": 30}))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)
    start = time.monotonic()
    fh.close()
    assert time.monotonic() - start < 5
    thread.join(5)
    assert isinstance(outcome[0], HostClosed)
    assert wait_for(lambda: not worker_pids(), 2.0)
    with pytest.raises(HostClosed):
        fh.call("work.echo", {"x": 1})


def test_close_lets_finishing_calls_complete_within_grace(write_set, empty_dir):
    fh = FunctionHost(builtin_dir=empty_dir, user_dirs=[], limits=Limits(shutdown_grace=2.0))
    fh.load_function_set(write_set("work", WORK))
    outcome: list[object] = []
    thread = threading.Thread(
        target=lambda: outcome.append(fh.call("work.slow_echo", {"x": 5, "seconds": 0.3}))
    )
    thread.start()
    time.sleep(0.1)
    fh.close()
    thread.join(5)
    assert outcome == [5]
    assert not worker_pids()
