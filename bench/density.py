"""The density rows: many one-function sets in one host (issue 20's 1,000 sets).

Measured, in order, on ``count`` generated sets in a user dir:

- **cold load**: ``load_all_function_sets`` with an empty schema cache
  (every set imported by its own worker), then the time to one call of
  each, the PSS of every process of this host (workers and their wardens
  and inits, the zygote and its spares) with every worker alive, and the
  descriptors the host holds;
- **warm load**: a second host over the same files with the cache the
  first one wrote: no worker is started until a set is called; then one
  call of each (each starts its worker: restart cost per set);
- **idle**: a host with ``Limits(idle_timeout=...)`` after calls to a few
  sets: how many workers are still alive once the idle ones have stopped.

Only what runs under this process is counted (``/proc/<pid>/task/*/children``
from the bench process down).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.process_memory import descendants, pss_mb
from host import FunctionHost, Limits

SET = '''
def add_{n}(x: int) -> int:
    """Add {n} to a number.

    Args:
        x: the number
    """
    return x + {n}
'''

#: Sets called in the idle row (the "active" ones), and its idle timeout.
ACTIVE = 10
IDLE_TIMEOUT = 1.0

TARGETS = {
    # Per set, so that --quick (100 sets) is judged as 1,000 would be.
    "density: warm load": ("per_set_ms", "<=", 2.0, "<= 2 s per 1,000 sets, warm cache"),
    "density: every worker alive": ("per_set_mb", "<=", 2.048, "<= 2 GB PSS per 1,000 sets"),
    "density: idle_timeout": ("alive", "<=", float(ACTIVE), "only the active sets alive"),
}


def _host(root: Path, sets: Path, cache: Path, **kwargs: Any) -> FunctionHost:
    return FunctionHost(builtin_dir=root / "empty", user_dirs=[sets], schema_cache=cache, **kwargs)


def _call_each(fh: FunctionHost, count: int) -> float:
    t = time.perf_counter()
    for n in range(count):
        if fh.call(f"add_{n}", {"x": 1}) != n + 1:
            raise AssertionError(f"add_{n} answered wrong")
    return time.perf_counter() - t


def run_density(bench: Any, count: int) -> None:
    """Record the density rows on ``bench`` (``bench.record``, ``bench.root``)."""
    root: Path = bench.root
    sets = root / "density-sets"
    sets.mkdir()
    for n in range(count):
        (sets / f"s{n}.py").write_text(SET.format(n=n))
    cache = root / "density-cache"
    print(f"density: {count} sets", flush=True)

    t = time.perf_counter()
    with _host(root, sets, cache) as fh:
        fh.load_all_function_sets()
        load = time.perf_counter() - t
        if fh.load_errors:
            raise AssertionError(f"load errors: {list(fh.load_errors.items())[:3]}")
        calls = _call_each(fh, count)
        procs = descendants(os.getpid())
        pss = pss_mb(procs)
        fds = len(os.listdir("/proc/self/fd"))
        alive = sum(1 for s in fh.function_sets.values() if s["pid"] is not None)
    bench.record("density: cold load", s=load, sets=count)
    bench.record("density: a call to each, all alive", s=calls, per_set_ms=calls / count * 1e3)
    bench.record(
        "density: every worker alive",
        pss_mb=pss,
        per_set_mb=pss / count,
        processes=len(procs),
        alive=alive,
        host_fds=fds,
    )

    t = time.perf_counter()
    with _host(root, sets, cache) as fh:
        fh.load_all_function_sets()
        load = time.perf_counter() - t
        started = sum(1 for s in fh.function_sets.values() if s["pid"] is not None)
        calls = _call_each(fh, count)
    bench.record(
        "density: warm load", s=load, per_set_ms=load / count * 1e3, workers_started=started
    )
    bench.record("density: first call of each, warm", s=calls, per_set_ms=calls / count * 1e3)

    limits = Limits(idle_timeout=IDLE_TIMEOUT)
    with _host(root, sets, cache, limits=limits) as fh:
        fh.load_all_function_sets()
        _call_each(fh, count)  # every worker started
        deadline = time.monotonic() + IDLE_TIMEOUT * 3
        while time.monotonic() < deadline:
            for n in range(ACTIVE):  # the active sets keep being called
                fh.call(f"add_{n}", {"x": 1})
            time.sleep(IDLE_TIMEOUT / 4)
        alive = sum(1 for s in fh.function_sets.values() if s["pid"] is not None)
        pss = pss_mb(descendants(os.getpid()))
    bench.record("density: idle_timeout", alive=alive, active=ACTIVE, pss_mb=pss)
