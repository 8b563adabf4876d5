"""``python -m bench [--quick] [--rounds N] [--calls N] [--json PATH]``

Measures in one run, interleaving the contenders in rounds (and, within a
round, in short slices that take turns); reports medians
and p99 of per-call times, and ratios computed within each round (then the
median ratio over rounds), so a noisy neighbour shifts both sides alike.

The sync floor is measured twice per round: interleaved with the others in
this process ("floor sync", beside fnhost's hosts, pools and their threads)
and in a fresh interpreter that loads nothing else ("floor sync, clean
process", ``bench.floor``; its ratio is clean / interleaved), there also
with client and echo pinned to one CPU ("..., one CPU"): on this project's
VMs a wake-up on the other CPU costs ~60 µs per round trip, and the
scheduler places a pair either way, so unpinned figures are bimodal (~25
or ~90 µs). Sync ratios and the p99 target use the best of the three: the
best the machine does. The pipelined floor (64 in flight) batches as a
pipelining client would (``bench.floor.pipelined``: 64 frames in one write,
the echo answers each read's frames in one write), measured in the same
three places; throughput ratios use the best.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.calls import run_calls
from bench.density import run_density
from bench.egress import run_egress
from bench.lifecycle import run_environments, run_lifecycle
from bench.ray_rows import run_ray
from bench.schema_memory import run_schema_and_memory
from bench.table import print_table

HERE = Path(__file__).resolve().parent
SET_PATH = str(HERE / "functions.py")


class Bench:
    """The rows of one run: each ``run_*`` function records samples here
    (``record``); ``summary`` gives the median of each figure."""

    def __init__(self, calls: int, rounds: int, root: Path) -> None:
        self.calls = calls
        self.rounds = rounds
        self.rows: dict[str, dict] = {}
        self.root = root  # scratch files of this run, removed at its end
        self.empty = str(root / "empty")  # a built-in dir with no sets
        self.set_path = SET_PATH  # the bench's own set (bench/functions.py)
        os.mkdir(self.empty)

    def record(self, name: str, **values: float) -> None:
        row = self.rows.setdefault(name, {"samples": {}})
        for key, value in values.items():
            row["samples"].setdefault(key, []).append(value)

    def summary(self) -> dict:
        out = {}
        for name, row in self.rows.items():
            out[name] = {k: statistics.median(v) for k, v in row["samples"].items()}
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--json", default="bench-results.json", help="where to write JSON")
    args = parser.parse_args(argv)
    logging.getLogger("fnhost").setLevel(logging.ERROR)  # crashes here are on purpose
    rounds = args.rounds or (1 if args.quick else 5)
    calls = args.calls or (200 if args.quick else 3000)
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {rounds} rounds x {calls} calls",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="fnhost-bench-") as root:
        bench = Bench(calls, rounds, Path(root))
        run_calls(bench)
        run_lifecycle(bench)
        run_environments(bench)
        run_schema_and_memory(bench)
        run_density(bench, 100 if args.quick else 1000)
        run_egress(bench, SET_PATH)
        run_ray(bench, SET_PATH)
    summary = bench.summary()
    print_table(summary)
    Path(args.json).write_text(
        json.dumps({"rounds": rounds, "calls": calls, "results": summary}, indent=2)
    )
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
