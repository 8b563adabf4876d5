"""The targets each row is judged against, and the printed table."""

from __future__ import annotations

from bench.density import TARGETS as DENSITY_TARGETS

TARGETS = {
    "fh.call": ("ratio", "<=", 2.0, "median <= 2x the best sync floor"),
    "fh.acall": ("ratio", "<", 1.0, "faster than the asyncio floor"),
    # Issue 20's targets for pipelined calls and the first start.
    "fh.call 64 threads": ("ratio", ">=", 0.25, ">= 25% of floor calls/s"),
    "fh.acall 64 in flight": ("ratio", ">=", 0.5, ">= 50% of floor calls/s"),
    "bytes round trip 64 MB fh.call": ("ratio", ">=", 0.5, ">= 50% of floor bytes/s"),
    "start: 1 set to first call": ("ratio", "<=", 1.5, "<= 1.5x bare spawn"),
    "start: 10 sets to first calls": ("ratio", "<=", 3.0, "<= 3x one set"),
    "crash -> error": ("ms", "<=", 5.0, "<= 5 ms"),
    "crash -> next good call": ("ms", "<=", 10.0, "<= 10 ms"),
    "crash -> next good call (own environment)": ("ms", "<=", 10.0, "<= 10 ms"),
    "timeout -> next good call": ("ms", "<=", 10.0, "<= 10 ms"),
    "schema: load 2000 functions": ("ms", "<=", 1000.0, "<= 1 s"),
    "idle worker memory": ("pss_mb", "<=", 10.0, "PSS <= 10 MB"),
    **DENSITY_TARGETS,
}


def print_table(summary: dict) -> None:
    print(f"\n{'measure':<40} {'figures':<44} target")
    for name, values in summary.items():
        figures = ", ".join(f"{k}={v:.3g}" for k, v in values.items())
        target = ""
        if name in TARGETS:
            key, op, bound, text = TARGETS[name]
            value = values.get(key)
            ok = (
                value is not None
                and {"<=": value <= bound, "<": value < bound, ">=": value >= bound}[op]
            )
            target = f"{text}: {'met' if ok else 'NOT met'}"
        print(f"{name:<40} {figures:<44} {target}")
    slow = summary.get("ProcessPoolExecutor(1)", {}).get("median_us")
    fast = summary.get("fh.call", {}).get("median_us")
    if slow and fast:
        print(
            f"{'fh.call vs ProcessPoolExecutor':<40} {slow / fast:.1f}x faster"
            f"{'':<26} >= 10x: {'met' if slow / fast >= 10 else 'NOT met'}"
        )
    host_p99 = summary.get("fh.call", {}).get("p99_us")
    floors = [
        summary.get(name, {}).get("p99_us")
        for name in (
            "floor sync",
            "floor sync, clean process",
            "floor sync, clean process, one CPU",
        )
    ]
    floor_p99 = min((f for f in floors if f), default=None)
    if host_p99 and floor_p99:
        ratio = host_p99 / floor_p99
        print(
            f"{'fh.call p99 vs sync floor p99':<40} {ratio:.2f}x"
            f"{'':<33} <= 3x: {'met' if ratio <= 3 else 'NOT met'}"
        )
