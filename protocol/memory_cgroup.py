"""The memory cgroup contract both ends share: names, files, limits, text.

Where the kernel lets the host make memory cgroups (a writable memory
controller, v1 or v2), every worker runs in one of its own,
``<parent>/w<pid>``, whose limit counts *all* the memory the worker holds:
its heap, its page cache, the pages of its private tmpfs (scratch and
``/dev/shm``), SysV shared memory it detached, ``memfd`` pages. Past the
limit the kernel's OOM killer ends the worker (the host reports
``OutOfMemory``), instead of the machine paying for it.

``parent`` (``WorkerConfig.memory_cgroup``) is a directory the host made
under its own cgroup (``host.launch.memory_cgroups``); ``pid`` is the
worker's pid as the host knows it (its warden's). The worker side joins and
limits it before any user code runs (``worker.memory_cgroup``), the host
reads its OOM count when the worker has died and removes it.

Nothing here touches a file: names, file names and parsing only.
"""

from typing import NamedTuple

#: The prefix of the directory a host makes for its workers' cgroups:
#: ``fnhost-<host pid>`` (a dead host's is swept by the next host).
PARENT_PREFIX = "fnhost-"


class ControllerFiles(NamedTuple):
    """The files of one version of the memory controller."""

    #: The hard limit, in bytes ("max": none).
    limit: str
    #: Memory plus swap (v1) or swap alone (v2); absent without swap accounting.
    swap: str
    #: Holds the line ``oom_kill <count>``.
    events: str


V1 = ControllerFiles("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.oom_control")
V2 = ControllerFiles("memory.max", "memory.swap.max", "memory.events")


def worker_dir_name(pid: int) -> str:
    """The name of the cgroup of the worker the host knows as ``pid``."""
    return f"w{pid}"


def limit_bytes(limits: dict[str, int | None]) -> int | None:
    """The cgroup limit for a worker's limits map (``WorkerConfig.limits``):
    ``memory_mb`` (its address space) plus ``disk_mb`` (its tmpfs, which is
    memory too), in bytes; ``None`` when ``memory_mb`` is unlimited."""
    memory_mb = limits.get("memory_mb")
    if memory_mb is None:
        return None
    return (memory_mb + (limits.get("disk_mb") or 0)) << 20


def swap_value(files: ControllerFiles, limit: int) -> str:
    """What to write to ``files.swap`` so that swap adds nothing to ``limit``."""
    return str(limit) if files is V1 else "0"


def oom_kills(text: str) -> int:
    """The ``oom_kill`` count in the text of ``ControllerFiles.events``
    (0 if the line is missing: a kernel too old to count)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def own_cgroup(proc_cgroup: str, version: int) -> str | None:
    """A process's memory cgroup path in the text of ``/proc/<pid>/cgroup``:
    the v1 line whose controllers include ``memory``, or the v2 line
    (``0::``); ``None`` if there is none."""
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if version == 1 and "memory" in parts[1].split(","):
            return parts[2]
        if version == 2 and parts[0] == "0" and parts[1] == "":
            return parts[2]
    return None


__all__ = [
    "PARENT_PREFIX",
    "V1",
    "V2",
    "ControllerFiles",
    "limit_bytes",
    "oom_kills",
    "own_cgroup",
    "swap_value",
    "worker_dir_name",
]
