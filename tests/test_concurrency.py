"""Many calls at once: threads, asyncio, pipelining, cancellation, close."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from host import CallTimeout, FunctionHost, HostClosed, Limits, Sandbox, WorkerCrashed
from host.workers.call_gate import PIPE_DEPTH

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


def wait_for_file(x: int, path: str) -> int:
    while not os.path.exists(path):
        time.sleep(0.01)
    return x


def touch(path: str) -> str:
    with open(path, "w") as f:
        f.write("ran")
    return "touched"


def exhaust() -> None:
    raise MemoryError("pretend")
"""


@pytest.fixture
def work(make_host, write_set, tmp_path):
    # ``touch`` writes its marker in tmp_path: "never ran" tests rely on it.
    sandbox = Sandbox(writable_paths=(str(tmp_path),))
    fh = make_host(on_conflict="prefix", limits=Limits(timeout=10.0, sandbox=sandbox))
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
    # No call timeout, and a call that outlives pytest-timeout: a close()
    # that waited for it instead of shutdown_grace would hang the test.
    fh = FunctionHost(
        builtin_dir=empty_dir, user_dirs=[], limits=Limits(timeout=None, shutdown_grace=0.3)
    )
    fh.load_function_set(write_set("work", WORK))
    assert worker_pids()
    outcome: list[object] = []

    def slow() -> None:
        try:
            outcome.append(fh.call("work.slow_echo", {"x": 1, "seconds": 600}))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)
    fh.close()
    thread.join()
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


# -- pipelining: several calls in one worker's pipe -----------------------------


def test_more_threads_than_the_pipe_holds_each_get_their_own_answer(work):
    """More threads than calls may wait in the pipe: the rest wait in the host."""
    handle = work._registry.sets["work"].handle
    threads = PIPE_DEPTH + 16

    def worker(k: int) -> list[object]:
        return [work.call("work.echo", {"x": k * 1000 + i}, timeout=20) for i in range(10)]

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(worker, range(threads)))
    assert results == [[k * 1000 + i for i in range(10)] for k in range(threads)]
    assert handle.load == 0  # every place in the pipe was given back


def test_bursts_of_threads_are_all_answered_without_a_deadline(make_host, write_set):
    """Bursts of 16 simultaneous calls with no timeout: when the last callers
    of a burst are all asleep, one of them must be woken to read. A lost
    wake-up leaves a call asleep forever (the futures' timeout fails the
    test); one used to hit about one burst in five."""
    fh = make_host(limits=Limits(timeout=None))
    fh.load_function_set(write_set("work", WORK))
    with ThreadPoolExecutor(16) as pool:
        for burst in range(60):
            barrier = threading.Barrier(16)

            def one(i: int, barrier: threading.Barrier = barrier) -> object:
                barrier.wait()
                return fh.call("echo", {"x": i})

            futures = [pool.submit(one, i) for i in range(16)]
            assert [f.result(timeout=20) for f in futures] == list(range(16)), burst


def test_a_call_cancelled_in_the_pipe_never_runs(work, tmp_path):
    """A, B and C have the same timeout T, so B and C go into the pipe behind
    A. A takes 0.4 T, then B 0.8 T: C's turn comes after its own deadline
    (T), so the host cancels it; the worker skips it (the file is never
    written) and C fails as "queued", without killing anyone."""
    marker = tmp_path / "ran"
    t = 3.0
    pid = work.function_sets["work"]["pid"]

    def call(name: str, args: dict) -> object:
        try:
            return work.call(name, args, timeout=t)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(3) as pool:
        a = pool.submit(call, "work.slow_echo", {"x": 1, "seconds": 0.4 * t})
        time.sleep(0.05)
        b = pool.submit(call, "work.slow_echo", {"x": 2, "seconds": 0.8 * t})
        time.sleep(0.05)
        c = pool.submit(call, "work.touch", {"path": str(marker)})
        assert a.result(timeout=20) == 1
        assert b.result(timeout=20) == 2
        outcome = c.result(timeout=20)
    assert isinstance(outcome, CallTimeout), outcome
    assert outcome.details["cause"] == "queued" and "did not start" in str(outcome)
    assert not marker.exists()
    assert work.function_sets["work"]["pid"] == pid
    assert work.call("work.echo", {"x": 5}) == 5


def test_a_cancelled_acall_waiting_in_the_pipe_is_skipped(work, tmp_path):
    marker = tmp_path / "ran"

    async def main() -> object:
        running = asyncio.create_task(work.acall("work.slow_echo", {"x": 1, "seconds": 0.5}))
        await asyncio.sleep(0.1)
        queued = asyncio.create_task(work.acall("work.touch", {"path": str(marker)}))
        await asyncio.sleep(0.1)  # it is in the pipe, behind the running call
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert await running == 1
        return await work.acall("work.echo", {"x": 9})

    assert asyncio.run(main()) == 9
    assert not marker.exists()
    # Its place in the pipe was given back: many calls still fit.
    assert asyncio.run(_gather_echo(work, 40)) == list(range(40))


async def _gather_echo(fh: FunctionHost, n: int) -> list[object]:
    return await asyncio.gather(*(fh.acall("work.echo", {"x": i}, timeout=10) for i in range(n)))


def test_a_longer_timeout_ahead_keeps_a_call_out_of_the_pipe(work, tmp_path):
    """A call is sent behind another only if that one cannot run longer than
    its own timeout: this one, shorter, waits in the host and fails at its
    own deadline, not after the long call, and never runs."""
    marker = tmp_path / "ran"
    gate = tmp_path / "gate"
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(work.call, "work.wait_for_file", {"x": 1, "path": str(gate)}, 10)
        time.sleep(0.1)
        try:
            with pytest.raises(CallTimeout) as info:
                work.call("work.touch", {"path": str(marker)}, timeout=0.3)
            # Failed before the long call ended (it waits for the gate), so
            # at its own deadline.
            assert not long.done()
        finally:
            gate.touch()
        assert long.result(timeout=10) == 1
    assert info.value.details["cause"] == "queued"
    assert not marker.exists()


def test_a_cancel_is_confirmed_ahead_of_the_calls_before_it(work, tmp_path):
    """R runs; X and then C wait in the pipe; C's task is cancelled. The
    worker confirms C's cancel as soon as R ends, before X starts (a reply
    out of order, allowed only for a cancel the host sent); X then runs."""
    marker = tmp_path / "ran"
    pid = work.function_sets["work"]["pid"]
    handle = work._registry.sets["work"].handle

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        r = asyncio.create_task(work.acall("work.slow_echo", {"x": 1, "seconds": 0.5}))
        await asyncio.sleep(0.05)
        x = asyncio.create_task(work.acall("work.slow_echo", {"x": 2, "seconds": 1.5}))
        await asyncio.sleep(0.05)
        c = asyncio.create_task(work.acall("work.touch", {"path": str(marker)}))
        await asyncio.sleep(0.1)
        c.cancel()
        with pytest.raises(asyncio.CancelledError):
            await c
        first = await r
        # C keeps its place in the pipe until its confirmation is read: that
        # happens while X runs, not after it (as an in-order reply would).
        assert await loop.run_in_executor(None, wait_for, lambda: handle.load == 1, 1.0)
        assert not x.done()
        return [first, await x]

    assert asyncio.run(main()) == [1, 2]
    assert not marker.exists()
    assert work.function_sets["work"]["pid"] == pid  # no protocol error, nobody killed


def test_calls_with_different_timeouts_never_share_the_pipe(work):
    """W1 (short timeout) and W2 (long, slow) both wait while H runs. When H
    ends they must not both go into the pipe: had W2 gone in first, W1 would
    wait out W2's run and fail "queued". W1 goes alone, and runs."""

    async def main() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        h = loop.run_in_executor(
            None, lambda: work.call("work.slow_echo", {"x": 0, "seconds": 0.3}, timeout=5)
        )
        await asyncio.sleep(0.1)
        w1 = asyncio.create_task(work.acall("work.echo", {"x": 1}, timeout=1))
        await asyncio.sleep(0.05)
        w2 = loop.run_in_executor(
            None, lambda: work.call("work.slow_echo", {"x": 2, "seconds": 3}, timeout=30)
        )
        await h
        return await w1, await w2

    for _ in range(3):
        assert asyncio.run(main()) == (1, 2)


def test_an_abandoned_running_call_still_times_out(work):
    """The task awaiting a running call is cancelled and nobody waits behind
    it: a watchdog still kills the worker at the call's deadline, so the set
    does not stay blocked (calls with another timeout could never enter)."""
    pid = work.function_sets["work"]["pid"]

    async def main() -> None:
        task = asyncio.create_task(
            work.acall("work.slow_echo", {"x": 1, "seconds": 3600}, timeout=1)
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    # Shorter timeouts wait in the host until the abandoned call is killed
    # (about 0.8 s from now), then run on the restarted worker.
    outcomes: list[object] = []
    for _ in range(8):
        try:
            outcomes.append(work.call("work.echo", {"x": 7}, timeout=0.5))
            break
        except CallTimeout as exc:
            outcomes.append(exc.details.get("cause"))
    assert outcomes[-1] == 7, outcomes
    assert work.function_sets["work"]["pid"] != pid


def test_calls_behind_an_out_of_memory_recycle_run_on_the_new_worker(work):
    from host import OutOfMemory

    def call(function: str, args: dict) -> object:
        try:
            return work.call(function, args, timeout=10)
        except Exception as exc:
            return exc

    pid = work.function_sets["work"]["pid"]
    with ThreadPoolExecutor(3) as pool:
        slow = pool.submit(call, "work.slow_echo", {"x": 0, "seconds": 0.3})
        time.sleep(0.05)
        oom = pool.submit(call, "work.exhaust", {})
        time.sleep(0.05)
        behind = pool.submit(call, "work.slow_echo", {"x": 2, "seconds": 0.2})
        assert slow.result(timeout=20) == 0
        assert isinstance(oom.result(timeout=20), OutOfMemory)
        assert behind.result(timeout=20) == 2  # not killed with the recycled worker
    assert work.function_sets["work"]["pid"] != pid


def test_touch_writes_its_marker(work, tmp_path):
    """The control for the "never ran" tests: when touch runs, the file is there."""
    assert work.call("work.touch", {"path": str(tmp_path / "control")}) == "touched"
    assert (tmp_path / "control").read_text() == "ran"


@pytest.mark.parametrize("how", ["reload", "close"])
def test_calls_waiting_in_the_pipe_at_a_reload_or_close_never_run_there(work, tmp_path, how):
    """R runs; X and Y wait in the pipe when the worker is told to shut down.
    It answers them "not started" before exiting: on a reload they run on
    the new worker, on a close they fail with HostClosed, and never run."""
    out: dict[str, object] = {}

    def call(key: str, function: str, args: dict) -> None:
        try:
            out[key] = work.call(function, args)
        except Exception as exc:
            out[key] = exc

    threads = [
        threading.Thread(target=call, args=("R", "work.slow_echo", {"x": 0, "seconds": 0.5}))
    ]
    threads += [
        threading.Thread(target=call, args=(k, "work.touch", {"path": str(tmp_path / k)}))
        for k in "XY"
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    if how == "reload":
        work.reload("work")
    else:
        work.close()
    for thread in threads:
        thread.join(20)
    assert out["R"] == 0
    if how == "reload":
        assert out["X"] == out["Y"] == "touched", out
        assert (tmp_path / "X").exists() and (tmp_path / "Y").exists()
    else:
        assert isinstance(out["X"], HostClosed) and isinstance(out["Y"], HostClosed), out
        assert not (tmp_path / "X").exists() and not (tmp_path / "Y").exists()


def test_calls_racing_many_reloads_all_run_once(work, tmp_path):
    """Threads call while the set is reloaded again and again: every call
    runs exactly once, on one worker or the other. (A call written to the
    old worker after its shutdown once failed as crashed; a reviewer's
    stress script hit that about once per 50 reloads, this shorter run
    only sometimes.)"""
    stop = threading.Event()
    failures: list[object] = []
    done: list[str] = []

    def caller(k: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            marker = tmp_path / f"m{k}-{n}"
            try:
                assert work.call("work.touch", {"path": str(marker)}) == "touched"
                done.append(str(marker))
            except Exception as exc:
                failures.append((exc, marker.exists()))

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(40):
            work.reload("work")
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert done and all(Path(m).exists() for m in done)


def test_an_idle_event_loop_stops_watching_when_threads_call(work):
    """After an acall, the loop keeps the worker's readers for its next call;
    once replies arrive with no call waiting on that loop, it lets go, so
    sync callers are not raced (or made to spin) by an idle loop."""
    channel = work._registry.sets["work"].handle.current.channel
    events: list[int] = []
    watch = channel._loops  # the LoopWatch: it registers on_data with the loop
    real = watch._on_data

    def counting() -> None:
        events.append(1)
        real()

    watch._on_data = counting
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        future = asyncio.run_coroutine_threadsafe(work.acall("work.echo", {"x": 1}), loop)
        assert future.result(10) == 1
        before = len(events)
        assert before >= 1  # the acall's reply came through the loop's reader
        assert [work.call("work.echo", {"x": i}) for i in range(200)] == list(range(200))
        assert len(events) - before <= 2
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_finished_event_loops_are_not_kept(work):
    channel = work._registry.sets["work"].handle.current.channel
    for i in range(5):
        assert asyncio.run(work.acall("work.echo", {"x": i})) == i
        assert work.call("work.echo", {"x": i}) == i
    assert len(channel._loops._watched) <= 1  # at most the last one, already closed


def test_each_async_call_times_out_at_its_own_deadline(work):
    """Deadlines go through the channels' shared loop timers (see the next
    test for the timer itself): each call is killed at its own run deadline,
    the later-started, shorter one first."""

    async def main() -> list[tuple[str, object]]:
        order: list[tuple[str, object]] = []

        async def one(name: str, set_name: str, timeout: float) -> None:
            try:
                await work.acall(f"{set_name}.slow_echo", {"x": 1, "seconds": 30}, timeout=timeout)
            except CallTimeout as exc:
                order.append((name, exc.details.get("cause")))

        long = asyncio.create_task(one("long", "work", 1.5))
        await asyncio.sleep(0.05)
        short = asyncio.create_task(one("short", "work2", 0.3))
        await asyncio.gather(long, short)
        return order

    # Both ran and were killed at their run deadline ("queued" would mean
    # they never started), the short one first.
    assert asyncio.run(main()) == [("short", None), ("long", None)]


def test_deadline_timer_resolves_each_future_at_its_deadline():
    from host.wire.deadline_timer import DeadlineTimer

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        timer = DeadlineTimer(loop)
        now = time.monotonic()
        futures = {name: loop.create_future() for name in ("late", "early", "removed", "mid")}
        order: list[str] = []
        for name, fut in futures.items():
            fut.add_done_callback(lambda f, name=name: order.append(name))
        timer.add(futures["late"], now + 0.3)
        timer.add(futures["early"], now + 0.05)  # earlier than the armed time
        timer.add(futures["removed"], now + 0.1)
        timer.add(futures["mid"], now + 0.15)
        timer.remove(futures["removed"])
        await asyncio.wait_for(futures["late"], 5)
        assert time.monotonic() >= now + 0.3
        assert not futures["removed"].done()
        return order

    assert asyncio.run(main()) == ["early", "mid", "late"]


def test_stop_on_cancel_kills_the_running_call_and_the_next_call_works(work):
    """With ``stop_on_cancel``, a cancelled acall whose function is running
    does not hold its set until the timeout: its worker is killed at once
    and restarted; the call behind it (sent, never started) runs there."""

    async def main() -> tuple[int, int]:
        pid = work.function_sets["work"]["pid"]
        # No timeout: only the kill on cancel can free the worker.
        running = asyncio.ensure_future(
            work.acall("work.slow_echo", {"x": 1, "seconds": 600}, math.inf, stop_on_cancel=True)
        )
        await asyncio.sleep(0.3)  # it runs
        behind = asyncio.ensure_future(work.acall("work.echo", {"x": 2}))
        await asyncio.sleep(0.05)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        value = await behind  # (without the kill: never, and pytest-timeout fails it)
        return value, pid

    value, old_pid = asyncio.run(main())
    assert value == 2
    assert work.function_sets["work"]["pid"] != old_pid
    assert work.call("work.echo", {"x": 3}) == 3
