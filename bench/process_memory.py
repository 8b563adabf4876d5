"""What processes cost, read from ``/proc``: a process's RSS and PSS, its
private pages, its parent, children and name, and every process below one."""

from __future__ import annotations

import os


def memory_mb(pid: int) -> tuple[float, float]:
    """RSS and PSS of ``pid`` in MiB (``smaps_rollup``)."""
    rss = pss = 0.0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    return rss, pss


def private_mb(pid: int) -> float:
    """Private (clean and dirty) pages of ``pid`` in MiB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(line.split()[1]) / 1024 for line in f if line.startswith("Private_"))


def pss_mb(pids: list[int]) -> float:
    """Total PSS of ``pids`` in MiB; processes gone meanwhile count 0."""
    total = 0.0
    for pid in pids:
        try:
            total += memory_mb(pid)[1]
        except OSError:
            continue
    return total


def parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def name(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children of each of its threads, down)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
        if p != pid:
            found.append(p)
    return found
