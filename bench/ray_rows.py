"""What placing sets on Ray costs (``python -m bench``'s Ray rows; skipped
without ``ray``).

A one-node Ray cluster on 127.0.0.1 only (``ray.cluster_utils.Cluster``,
no dashboard, no usage statistics), and beside it a host that runs the same
set here; per round, interleaved:

- one ``fh.call`` at a time, per-call median (the ratio: Ray / local);
- 64 ``fh.acall`` in flight, calls per second (the ratio: Ray / local);
- 10 sets placed (or started) to their first calls.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import statistics
import time
from typing import TYPE_CHECKING

from host import FunctionHost, Limits

if TYPE_CHECKING:
    from bench.__main__ import Bench

IN_FLIGHT = 64


def _sync_us(fh: FunctionHost, n: int) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter()
        fh.call("bench.add", {"a": i, "b": 1})
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _in_flight_per_s(fh: FunctionHost, n: int) -> float:
    async def run() -> float:
        start = time.perf_counter()
        for _ in range(max(1, n // IN_FLIGHT)):
            await asyncio.gather(
                *(fh.acall("bench.add", {"a": i, "b": 1}) for i in range(IN_FLIGHT))
            )
        return max(1, n // IN_FLIGHT) * IN_FLIGHT / (time.perf_counter() - start)

    return asyncio.run(run())


def _ten_sets_ms(fh: FunctionHost, set_path: str, tag: str) -> float:
    start = time.perf_counter()
    for k in range(10):
        fh.load_function_set(set_path, name=f"{tag}{k}")
    for k in range(10):
        fh.call(f"{tag}{k}.add", {"a": 1, "b": 1})
    return (time.perf_counter() - start) * 1e3


def run_ray(bench: Bench, set_path: str) -> None:
    if importlib.util.find_spec("ray") is None:
        print("no ray: the Ray rows are skipped (pip install 'fnhost[ray]')")
        return
    # Read when ray is imported: nodes stay on 127.0.0.1, nothing is reported anywhere.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Read by the raylet. It warns ("N PYTHON worker processes have been
    # started ... Nx the maximum expected startup concurrency") once the
    # node's Ray workers reach 4x the workers it may start at once, by
    # default at most the node's CPUs (1 here): these rows hold up to 52 actors,
    # one per set, each mostly waiting (num_cpus=0). Sets are placed one
    # at a time, so allowing 16 concurrent starts changes no figure; it
    # only moves the warning past what the rows hold. Other warnings and
    # errors still print.
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "16")
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    ray.init(address=cluster.address, _node_ip_address="127.0.0.1", logging_level=logging.ERROR)
    n = max(50, bench.calls // 10)
    hosts = {
        place: FunctionHost(
            builtin_dir=bench.empty,
            user_dirs=[],
            limits=Limits(timeout=60),
            placement=None if place == "local" else "ray",
            on_conflict="prefix",
        )
        for place in ("local", "ray")
    }
    try:
        for fh in hosts.values():
            fh.load_function_set(set_path, name="bench")
            fh.call("bench.add", {"a": 1, "b": 1})
        for r in range(bench.rounds):
            order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
            sync, flight, ten = {}, {}, {}
            for place in order:
                sync[place] = _sync_us(hosts[place], n)
                flight[place] = _in_flight_per_s(hosts[place], n * 2)
                ten[place] = _ten_sets_ms(hosts[place], set_path, f"r{r}s")
            bench.record("ray: fh.call (local)", median_us=sync["local"])
            bench.record("ray: fh.call", median_us=sync["ray"], ratio=sync["ray"] / sync["local"])
            bench.record("ray: fh.acall 64 in flight (local)", calls_per_s=flight["local"])
            bench.record(
                "ray: fh.acall 64 in flight",
                calls_per_s=flight["ray"],
                ratio=flight["ray"] / flight["local"],
            )
            bench.record("ray: 10 sets to first calls (local)", ms=ten["local"])
            bench.record(
                "ray: 10 sets placed to first calls", ms=ten["ray"], ratio=ten["ray"] / ten["local"]
            )
    finally:
        for fh in hosts.values():
            fh.close()
        ray.shutdown()
        cluster.shutdown()
