"""Limits(workers=N): several workers for one set, calls to the least loaded."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from host import Limits, Sandbox, WorkerCrashed

from .conftest import wait_for, worker_pids

CPU = """
import ctypes
import os
import time


def pid() -> int:
    return os.getpid()


def slow_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def meet(rendezvous: str, me: str, parties: int) -> list:
    # Arrive, then wait for every party: [pid, True] only if they all run at once.
    open(os.path.join(rendezvous, me), "w").close()
    deadline = time.monotonic() + 8  # one after another, the first one waits alone
    while len(os.listdir(rendezvous)) < parties:
        if time.monotonic() > deadline:
            return [os.getpid(), False]
        time.sleep(0.01)
    return [os.getpid(), True]


def segfault() -> None:
    ctypes.string_at(0)
"""


@pytest.fixture
def pool(make_host, write_set, rendezvous):
    sandbox = Sandbox(writable_paths=(str(rendezvous),))
    fh = make_host(limits=Limits(workers=2, timeout=10, sandbox=sandbox))
    fh.load_function_set(write_set("cpu", CPU))
    return fh


def test_a_pool_has_distinct_workers(pool):
    pids = pool.function_sets["cpu"]["pids"]
    assert len(pids) == 2 and len(set(pids)) == 2
    assert set(pids) <= worker_pids()


def test_a_busy_worker_is_passed_over(pool):
    with ThreadPoolExecutor(1) as ex:
        busy = ex.submit(pool.call, "slow_pid", {"seconds": 0.6})
        time.sleep(0.15)  # the first worker is running it
        other = pool.call("pid")  # goes to the idle worker, without waiting
        assert other != busy.result(timeout=10)


def test_calls_run_in_parallel_across_the_pool(pool, rendezvous):
    """Each call waits until both have started: only concurrent calls meet."""

    def meet(me: str) -> list:
        return pool.call("meet", {"rendezvous": str(rendezvous), "me": me, "parties": 2})

    with ThreadPoolExecutor(2) as ex:
        (pid_a, met_a), (pid_b, met_b) = ex.map(meet, ["a", "b"])
    assert met_a and met_b  # neither waited for the other to finish
    assert pid_a != pid_b


def test_a_crash_in_one_worker_leaves_the_other_serving(pool):
    results: list[object] = []
    with ThreadPoolExecutor(1) as ex:
        slow = ex.submit(pool.call, "slow_pid", {"seconds": 0.5})
        time.sleep(0.1)
        with pytest.raises(WorkerCrashed):
            pool.call("segfault")  # on the idle worker
        results.append(slow.result(timeout=10))  # undisturbed
    assert results[0] in pool.function_sets["cpu"]["pids"]  # that worker was not restarted
    assert pool.call("pid") > 0


def test_a_parked_worker_is_passed_over_while_another_serves(make_host, write_set):
    """After a crash loop parks one member, calls go to the healthy one
    instead of failing as "parked" (the parked member has no calls, so the
    least-loaded choice alone would always pick it)."""
    fh = make_host(limits=Limits(workers=2, timeout=10, crash_limit=1, crash_window=60.0))
    fh.load_function_set(write_set("cpu", CPU))
    with pytest.raises(WorkerCrashed):
        fh.call("segfault")  # the first member dies once: parked for 60 s
    assert wait_for(lambda: None in fh.function_sets["cpu"]["pids"], 5.0)
    survivors = {fh.call("pid") for _ in range(5)}
    assert len(survivors) == 1 and survivors <= set(fh.function_sets["cpu"]["pids"])


def test_a_pool_whose_members_are_all_parked_fails_fast(make_host, write_set):
    fh = make_host(limits=Limits(workers=2, timeout=10, crash_limit=1, crash_window=60.0))
    fh.load_function_set(write_set("cpu", CPU))
    for _ in range(2):
        with pytest.raises(WorkerCrashed):
            fh.call("segfault")
    with pytest.raises(WorkerCrashed) as info:
        fh.call("pid")
    assert info.value.details["cause"] == "parked"


def test_reload_replaces_every_worker(pool, write_set, sets_dir):
    before = set(pool.function_sets["cpu"]["pids"])
    (sets_dir / "cpu.py").write_text(CPU + "\n\ndef extra() -> int:\n    return 7\n")
    assert pool.reload("cpu")["added"] == ["extra"]
    assert pool.call("extra") == 7
    after = set(pool.function_sets["cpu"]["pids"])
    assert len(after) == 2 and not (before & after)
    assert wait_for(lambda: not (before & worker_pids()), 5.0)


def test_pool_threads_share_the_work(pool):
    seen: set[int] = set()
    lock = threading.Lock()

    def work(_: int) -> None:
        pid = pool.call("slow_pid", {"seconds": 0.05})
        with lock:
            seen.add(pid)

    with ThreadPoolExecutor(4) as ex:
        list(ex.map(work, range(20)))
    assert seen == set(pool.function_sets["cpu"]["pids"])
    assert os.getpid() not in seen
