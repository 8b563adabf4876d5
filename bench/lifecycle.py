"""Start, crash and timeout rows: a first set against a bare spawn, ten
sets, a crash's error and the next good call (with every layer of the wall
and a standby, host/workers/standby.py; without the standby; and without
it with layers taken away one group at a time), a timeout's overshoot, and
the same crash in a set with an environment of its own."""

from __future__ import annotations

import importlib.util
import time
from typing import TYPE_CHECKING

from bench.calls import add_args
from bench.floor import RawEcho
from host import CallError, FunctionHost, Limits, Sandbox
from host.environments import EnvironmentOptions

if TYPE_CHECKING:
    from bench.__main__ import Bench

#: Without a standby (the wall's cost is then on the restart's path), and
#: the wall taken down one group of layers at a time (``run_lifecycle``).
LAYER_STEPS = (
    ("no standby", Sandbox()),
    ("no standby, no own uid", Sandbox(own_uid=False)),
    ("no standby, no own uid or namespaces", Sandbox(own_uid=False, private_namespaces=False)),
    ("no standby, Sandbox.off()", Sandbox.off()),
)


#: Crashes measured per host and round, each on a worker that has served a
#: while (SETTLE): by then the zygote's spare, forked after the last start,
#: has entered its namespaces and rehearsed its start. A crash within a few
#: ms of a start finds the spare still at that and takes longer: measured
#: apart, as "right after a start".
CRASHES_PER_ROUND = 5
SETTLE = 0.1


def run_lifecycle(bench: Bench) -> None:
    """The start, crash and timeout rows (see the module)."""
    sets_dir = bench.root / "sets"
    sets_dir.mkdir()
    for k in range(10):
        (sets_dir / f"set{k}.py").write_text(f"def f{k}(x: int) -> int:\n    return x\n")
    for _ in range(bench.rounds):
        start = time.perf_counter()
        raw = RawEcho()
        raw.call({"function": "add", "arguments": add_args(1)})
        spawn = time.perf_counter() - start
        raw.close()
        bench.record("start: bare spawn + msgpack to first call", ms=spawn * 1e3)

        start = time.perf_counter()
        fh = FunctionHost(builtin_dir=bench.empty, user_dirs=[])
        fh.load_function_set(bench.set_path, name="bench")
        fh.call("add", add_args(1))
        one = time.perf_counter() - start
        bench.record("start: 1 set to first call", ms=one * 1e3, ratio=one / spawn)
        fh.close()

        start = time.perf_counter()
        fh = FunctionHost(builtin_dir=bench.empty, user_dirs=[sets_dir])
        fh.load_all_function_sets()
        for k in range(10):
            fh.call(f"f{k}", {"x": k})
        ten = time.perf_counter() - start
        bench.record("start: 10 sets to first calls", ms=ten * 1e3, ratio=ten / one)
        fh.close()

        # What each layer of the wall costs a restart: the same crash with
        # layers taken away one group at a time (the default row has all).
        for label, sandbox in LAYER_STEPS:
            with _crashing_host(bench, sandbox, standby=False) as other:
                for _ in range(CRASHES_PER_ROUND):
                    time.sleep(SETTLE)
                    _, good = _crash_then_call(other)
                    bench.record(f"crash -> next good call ({label})", ms=good * 1e3)

        fh = _crashing_host(bench, Sandbox())
        _, first = _crash_then_call(fh)
        bench.record("crash -> next good call, right after a start", ms=first * 1e3)
        for _ in range(CRASHES_PER_ROUND):
            time.sleep(SETTLE)
            error, good = _crash_then_call(fh)
            bench.record("crash -> error", ms=error * 1e3)
            bench.record("crash -> next good call", ms=good * 1e3)
        start = time.perf_counter()
        try:
            fh.call("sleep", {"seconds": 30}, timeout=0.2)
        except CallError:
            pass
        overshoot = time.perf_counter() - start - 0.2
        fh.call("add", add_args(1))
        after = time.perf_counter() - start - 0.2
        bench.record("timeout overshoot", ms=overshoot * 1e3)
        bench.record("timeout -> next good call", ms=after * 1e3)
        fh.close()


def _crashing_host(
    bench: Bench,
    sandbox: Sandbox,
    environments: EnvironmentOptions | None = None,
    standby: bool = True,
) -> FunctionHost:
    """A host with the bench set loaded and warm, that never parks it
    (in an environment of its own with ``environments``)."""
    limits = Limits(crash_limit=1000, sandbox=sandbox, standby=standby)
    fh = FunctionHost(
        builtin_dir=bench.empty, user_dirs=[], limits=limits, environments=environments
    )
    requirements: list[str] | None = [] if environments is not None else None
    fh.load_function_set(bench.set_path, name="bench", requirements=requirements)
    fh.call("add", add_args(1))
    return fh


# -- a set with an environment of its own ------------------------------------------


def run_environments(bench: Bench) -> None:
    """The bench set in an environment of its own (``requirements=[]``: an
    environment with no packages, so the figures are the environment's
    own cost, not a package's import): its first load (uv builds the
    environment), a second host's load (found in the cache), and a
    restart after a crash (its own zygote forks it)."""
    if importlib.util.find_spec("uv") is None:
        print("no uv: the environment rows are skipped (pip install 'fnhost[envs]')")
        return
    for k in range(bench.rounds):
        options = EnvironmentOptions(no_index=True, cache_dir=str(bench.root / f"envs{k}"))
        start = time.perf_counter()
        fh = _crashing_host(bench, Sandbox(), options)
        bench.record(
            "env: first load (build) to first call", ms=(time.perf_counter() - start) * 1e3
        )
        start = time.perf_counter()
        second = _crashing_host(bench, Sandbox(), options)
        bench.record(
            "env: second load (cached) to first call", ms=(time.perf_counter() - start) * 1e3
        )
        second.close()
        for _ in range(CRASHES_PER_ROUND):
            time.sleep(SETTLE)
            _, good = _crash_then_call(fh)
            bench.record("crash -> next good call (own environment)", ms=good * 1e3)
        fh.close()


def _crash_then_call(fh: FunctionHost) -> tuple[float, float]:
    """Seconds from a crashing call's start to its error, and to the
    next good call's answer."""
    start = time.perf_counter()
    try:
        fh.call("crash")
    except CallError:
        pass
    error = time.perf_counter() - start
    fh.call("add", add_args(1))
    return error, time.perf_counter() - start
