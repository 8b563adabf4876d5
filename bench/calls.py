"""Latency and throughput rows, interleaved in rounds: the raw msgpack
echo (the floor: in this process, and in a clean one with nothing else
loaded), ``fh.call``/``fh.acall``, the stdlib's process pools, 64 calls in
flight from threads and from asyncio, and bytes round trips."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

from bench import functions
from bench.floor import RawEcho, clean_floor, pipelined
from host import FunctionHost, Limits

if TYPE_CHECKING:
    from bench.__main__ import Bench

#: Turns each contender takes per round (see ``run_calls``).
SLICES = 20
#: Turns each throughput contender takes per round.
THROUGHPUT_SLICES = 5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def per_call(fn: Callable[[int], object], n: int) -> list[float]:
    times = []
    clock = time.perf_counter
    for i in range(n):
        start = clock()
        fn(i)
        times.append(clock() - start)
    return times


def per_call_async(make: Callable[[int], Awaitable[object]], n: int) -> list[float]:
    async def run() -> list[float]:
        times = []
        clock = time.perf_counter
        for i in range(n):
            start = clock()
            await make(i)
            times.append(clock() - start)
        return times

    return asyncio.run(run())


def add_args(i: int) -> dict:
    return {"a": i, "b": 1}


def run_calls(bench: Bench) -> None:
    """Latency and throughput rows, interleaved in rounds (see the module)."""
    raw = RawEcho()
    fh = FunctionHost(
        builtin_dir=bench.empty,
        user_dirs=[],
        limits=Limits(timeout=60, max_result_mb=80, memory_mb=1024),
    )
    fh.load_function_set(bench.set_path, name="bench")
    pooled = FunctionHost(
        builtin_dir=bench.empty,
        user_dirs=[],
        limits=Limits(timeout=60, workers=os.cpu_count() or 2),
    )
    pooled.load_function_set(bench.set_path, name="bench")
    ppe = ProcessPoolExecutor(1)
    pool = multiprocessing.get_context("fork").Pool(1)
    n = bench.calls
    # Each round runs the contenders in short slices, taking turns, so
    # that a neighbour's burst on this shared machine lands on all of
    # them alike (blocks of a few thousand calls each gave ratios that
    # moved by +-20% from run to run).
    k = max(10, n // SLICES)
    slow = max(5, n // 4 // SLICES)
    contenders: dict[str, Callable[[], list[float]]] = {
        "floor sync": lambda: per_call(
            lambda i: raw.call({"function": "add", "arguments": add_args(i)}), k
        ),
        "floor asyncio": lambda: _raw_async(raw, k),
        "fh.call": lambda: per_call(lambda i: fh.call("add", add_args(i)), k),
        "fh.acall": lambda: per_call_async(lambda i: fh.acall("add", add_args(i)), k),
        "ProcessPoolExecutor(1)": lambda: per_call(
            lambda i: ppe.submit(functions.add, i, 1).result(), slow
        ),
        "multiprocessing.Pool(1)": lambda: per_call(
            lambda i: pool.apply(functions.add, (i, 1)), slow
        ),
    }
    threads = {id(h): ThreadPoolExecutor(64) for h in (fh, pooled)}  # kept: no start-up per slice
    m = max(64, n * 4 // THROUGHPUT_SLICES)
    throughput: dict[str, Callable[[], tuple[int, float]]] = {
        "floor pipelined 64": lambda: _floor_slice(raw, m),
        "fh.call 64 threads": lambda: _threads(fh, threads[id(fh)], m),
        "fh.acall 64 in flight": lambda: _asyncio64(fh, m),
        "fh.call 64 threads, workers=cpus": lambda: _threads(pooled, threads[id(pooled)], m),
        "fh.acall 64 in flight, workers=cpus": lambda: _asyncio64(pooled, m),
    }
    for _ in range(3):  # warm-up
        for fn in contenders.values():
            fn()
    for r in range(bench.rounds):
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for s in range(SLICES):
            order = list(contenders.items())
            turn = (r + s) % len(order)
            for name, fn in order[turn:] + order[:turn]:
                samples[name] += fn()
        medians = {}
        for name, times in samples.items():
            medians[name] = statistics.median(times)
            bench.record(name, median_us=medians[name] * 1e6, p99_us=percentile(times, 0.99) * 1e6)
        # The floor in a fresh interpreter with nothing else loaded (no
        # fnhost, no threads, no workers or pools beside it): the best
        # the machine does. Sync ratios are to the better of the two.
        best_sync = medians["floor sync"]
        clean_pipelined = []
        for label, one_cpu in (("", False), (", one CPU", True)):
            clean = clean_floor(k * SLICES, one_cpu)
            bench.record(
                f"floor sync, clean process{label}",
                median_us=clean["median_us"],
                p99_us=clean["p99_us"],
                ratio=clean["median_us"] / (medians["floor sync"] * 1e6),
            )
            bench.record(
                f"floor pipelined 64, clean process{label}",
                calls_per_s=clean["pipelined_per_s"],
            )
            best_sync = min(best_sync, clean["median_us"] / 1e6)
            clean_pipelined.append(clean["pipelined_per_s"])
        for name in contenders:
            floor = medians["floor asyncio"] if "acall" in name else best_sync
            bench.record(name, ratio=medians[name] / floor)
        # Throughput in slices that take turns too; the floor is the best of
        # the interleaved one and the clean processes' (best_pipelined).
        done = {name: [0, 0.0] for name in throughput}
        for s in range(THROUGHPUT_SLICES):
            turns = list(throughput.items())
            turn = (r + s) % len(turns)
            for name, slice_fn in turns[turn:] + turns[:turn]:
                calls, seconds = slice_fn()
                done[name][0] += calls
                done[name][1] += seconds
        rates = {name: calls / seconds for name, (calls, seconds) in done.items()}
        best_pipelined = max(rates["floor pipelined 64"], *clean_pipelined)
        for name, rate in rates.items():
            bench.record(name, calls_per_s=rate, ratio=rate / best_pipelined)
    for size, label in ((1 << 20, "1 MB"), (64 << 20, "64 MB")):
        payload = os.urandom(size)
        reps = max(1, min(20, (256 << 20) // size // 4))
        for _ in range(bench.rounds):
            t_floor = min(per_call(partial(_floor_bytes, raw, payload), reps))
            t_host = min(per_call(partial(_host_bytes, fh, payload), reps))
            bench.record(f"bytes round trip {label} floor", mb_per_s=2 * size / t_floor / 1e6)
            bench.record(
                f"bytes round trip {label} fh.call",
                mb_per_s=2 * size / t_host / 1e6,
                ratio=t_floor / t_host,
            )
    fh.close()
    pooled.close()
    raw.close()
    ppe.shutdown()
    for ex in threads.values():
        ex.shutdown()
    pool.terminate()


def _floor_bytes(raw: RawEcho, payload: bytes, i: int) -> object:
    return raw.call_large(payload)


def _host_bytes(fh: FunctionHost, payload: bytes, i: int) -> object:
    return fh.call("echo_bytes", {"data": payload})


def _raw_async(raw: RawEcho, n: int) -> list[float]:
    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        times = []
        for i in range(n):
            start = time.perf_counter()
            await raw.acall(loop, {"function": "add", "arguments": add_args(i)})
            times.append(time.perf_counter() - start)
        return times

    return asyncio.run(run())


def _floor_slice(raw: RawEcho, n: int) -> tuple[int, float]:
    calls = max(1, n // 64) * 64
    return calls, calls / pipelined(raw, calls)


def _threads(fh: FunctionHost, ex: ThreadPoolExecutor, n: int) -> tuple[int, float]:
    per = max(1, n // 64)

    def work(_: int) -> None:
        for i in range(per):
            fh.call("add", add_args(i))

    start = time.perf_counter()
    list(ex.map(work, range(64)))
    return per * 64, time.perf_counter() - start


def _asyncio64(fh: FunctionHost, n: int) -> tuple[int, float]:
    async def run() -> tuple[int, float]:
        start = time.perf_counter()
        for _ in range(max(1, n // 64)):
            await asyncio.gather(*(fh.acall("add", add_args(i)) for i in range(64)))
        return max(1, n // 64) * 64, time.perf_counter() - start

    return asyncio.run(run())
