"""What the kernel's process table (``/proc``) says of the zygote's
children: who they are and whether they run (``worker.zygote`` checks a
spare's tree before handing it a request, and finds the orphans it adopted).
"""

from __future__ import annotations

import os


def tree(pid: int) -> list[tuple[int, str]]:
    """``pid`` and its descendants, each with its state letter ("" for one
    gone meanwhile); each ``/proc/<pid>/stat`` is read once."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        letter = state(p)
        found.append((p, letter))
        todo += children(p) if letter else []
    return found


def state(pid: int) -> str:
    """A process's state letter (``/proc/<pid>/stat``), or "" if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return ""


def children(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (a single-threaded process).

    The kernel keeps the list (``/proc/<pid>/task/<tid>/children``, where
    built in); otherwise every process in /proc is read, which takes a
    millisecond per hundred processes, after every worker's exit.
    """
    try:
        with open(f"/proc/{parent}/task/{parent}/children", "rb") as f:
            return [int(pid) for pid in f.read().split()]
    except OSError:
        pass
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            found.append(int(entry))
    return found
