"""The host's side of its workers' memory cgroups (``protocol.memory_cgroup``).

One ``MemoryCgroups`` per launcher: a directory ``fnhost-<pid>-<n>`` under
the host's own memory cgroup, in which each worker makes ``w<pid>``. The
host reads a dead worker's OOM count from it (its death is then
``OutOfMemory``) and removes it; ``close`` removes what is left and the
directory itself; a later host removes those of hosts that died.

Available where the host may write its own cgroup: root with cgroup v1's
memory controller (this machine kind), or cgroup v2 where the memory
controller can be enabled below the host's cgroup (v2 refuses it for a
cgroup that holds processes, such as a plain login session's: it then
needs a delegated subtree). Anywhere else ``parent`` is ``None``, ``why``
says why, and the workers report ``memory_cgroup: false``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import queue
import threading
import time

from protocol.memory_cgroup import (
    PARENT_PREFIX,
    V1,
    V2,
    ControllerFiles,
    oom_kills,
    own_cgroup,
    worker_dir_name,
)

logger = logging.getLogger("fnhost")

#: How long ``close`` retries a cgroup whose last processes are still exiting.
CLOSE_RETRY_SECONDS = 0.5

_serial = itertools.count(1)


class MemoryCgroups:
    """The cgroups of one launcher's workers. Never raises."""

    def __init__(self) -> None:
        #: The directory the workers' cgroups are made in, or None.
        self.parent: str | None = None
        #: Why there is none (for the log and ``fnhost doctor``).
        self.why = ""
        #: Workers' cgroups that were busy when released (retried at close).
        self._left: set[str] = set()
        self._lock = threading.Lock()
        #: Released cgroups, removed by ``_remover`` (started on first use).
        self._released: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._remover: threading.Thread | None = None
        try:
            self.parent = _make_parent()
        except OSError as exc:
            self.why = f"{exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})"
            logger.debug("no memory cgroups for workers: %s", self.why)

    def worker_dir(self, pid: int) -> str | None:
        """The cgroup directory of the worker known as ``pid``, or None."""
        parent = self.parent  # (read once: close() may clear it meanwhile)
        return None if parent is None else os.path.join(parent, worker_dir_name(pid))

    def oom_killed(self, pid: int) -> str | None:
        """Once the worker has died, before ``release``: ``"limit"`` if the
        kernel's OOM killer killed a process in ``pid``'s cgroup after the
        cgroup reached its limit, ``"machine"`` if it did while the cgroup
        was under it (the whole machine was short), else None."""
        path = self.worker_dir(pid)
        if path is None:
            return None
        for files in (V1, V2):
            try:
                with open(os.path.join(path, files.events)) as f:
                    events = f.read()
            except OSError:
                continue
            if oom_kills(events) == 0:
                return None
            return "limit" if _limit_reached(path, files, events) else "machine"
        return None

    def _take_left(self) -> list[str]:
        with self._lock:
            left = list(self._left)
            self._left.clear()
        return left

    def release(self, pid: int) -> None:
        """Have ``pid``'s cgroup removed (its processes are gone), on a
        thread of its own: an ``rmdir`` waits while any process on the
        machine is being moved between cgroups (a spare joining its own
        takes the kernel ~12 ms), and the caller may be a crashed call's.
        One still busy (a namespace tearing down) is retried at ``close``."""
        path = self.worker_dir(pid)
        if path is None:
            return
        with self._lock:
            if self._remover is None:
                self._remover = threading.Thread(
                    target=self._remove_released, name="fnhost-cgroups", daemon=True
                )
                self._remover.start()
        self._released.put(path)

    def _remove_released(self) -> None:
        while True:
            path = self._released.get()
            if path is None:
                return
            # Those busy before (a namespace was tearing down) are tried again.
            for each in [path, *self._take_left()]:
                try:
                    os.rmdir(each)
                except FileNotFoundError:
                    pass
                except OSError:
                    with self._lock:
                        self._left.add(each)

    def close(self) -> None:
        """Remove every worker's cgroup and the directory (the workers have
        exited: ``Launcher.close`` stops the zygote first). What stays busy
        past ``CLOSE_RETRY_SECONDS`` is logged and left to the next host."""
        if self.parent is None:
            return
        remover = self._remover
        if remover is not None:
            self._released.put(None)
            remover.join(CLOSE_RETRY_SECONDS)
        deadline = time.monotonic() + CLOSE_RETRY_SECONDS
        while True:
            busy = _remove_parent(self.parent)
            if not busy or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if busy:
            logger.warning("could not remove memory cgroup %s: %s", self.parent, busy)
        self.parent = None


def _make_parent() -> str:
    """Make this launcher's directory under the host's memory cgroup (after
    sweeping those of dead hosts there: a listing, cheap enough for every
    host). Raises ``OSError`` saying why not."""
    base, version = _own_memory_cgroup()
    if version == 2:
        _enable_memory(base)
    _sweep(base)
    parent = os.path.join(base, f"{PARENT_PREFIX}{os.getpid()}-{next(_serial)}")
    os.mkdir(parent, 0o755)
    try:
        if version == 2:
            _enable_memory(parent)
        limit = V2.limit if version == 2 else V1.limit
        if not os.path.exists(os.path.join(parent, limit)):
            raise OSError(errno.ENOTSUP, "the memory controller is not enabled", parent)
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(parent)
        raise
    return parent


def _limit_reached(path: str, files: ControllerFiles, events: str) -> bool:
    """Whether the cgroup at ``path`` reached its limit: v2 counts it as
    ``max`` in ``memory.events``; v1 (whose ``failcnt`` this kernel does not
    keep) shows its peak in ``memory.max_usage_in_bytes``."""
    if files is V2:
        for line in events.splitlines():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit():
                return int(value) > 0
        return False
    try:
        with open(os.path.join(path, "memory.max_usage_in_bytes")) as f:
            peak = int(f.read().strip())
        with open(os.path.join(path, V1.limit)) as f:
            limit = int(f.read().strip())
    except (OSError, ValueError):
        return False
    return peak >= limit


def limit_of(pid: int) -> int | None:
    """The memory limit, in bytes, of the cgroup process ``pid`` is in, as
    the kernel shows it from here (``fnhost doctor``); ``None`` if it has
    none, or it cannot be read."""
    try:
        directory, version = _memory_cgroup_of(str(pid))
        with open(os.path.join(directory, V2.limit if version == 2 else V1.limit)) as f:
            value = f.read().strip()
    except OSError:
        return None
    if not value.isdigit() or int(value) >= 1 << 62:  # "max", or v1's "unlimited"
        return None
    return int(value)


def _own_memory_cgroup() -> tuple[str, int]:
    return _memory_cgroup_of("self")


def _memory_cgroup_of(pid: str) -> tuple[str, int]:
    """(directory, version) of process ``pid``'s memory cgroup. ``OSError``
    if there is no mounted memory controller."""
    with open(f"/proc/{pid}/cgroup") as f:
        proc_cgroup = f.read()
    with open("/proc/self/mountinfo") as f:
        mounts = f.read().splitlines()
    for line in mounts:
        head, _, tail = line.partition(" - ")
        fields, extra = head.split(), tail.split()
        if len(fields) < 5 or len(extra) < 3:
            continue
        root, point, fstype, options = fields[3], fields[4], extra[0], extra[2].split(",")
        if fstype == "cgroup" and "memory" in options:
            version = 1
        elif fstype == "cgroup2":
            version = 2
        else:
            continue
        mine = own_cgroup(proc_cgroup, version)
        if mine is None:
            continue
        if root != "/" and (mine == root or mine.startswith(root + "/")):
            mine = mine[len(root) :]  # a cgroup namespace: paths start at its root
        directory = os.path.normpath(point + "/" + mine)
        if version == 2:
            with contextlib.suppress(OSError), open(f"{directory}/cgroup.controllers") as f:
                if "memory" in f.read().split():
                    return directory, 2
            continue
        return directory, 1
    raise OSError(errno.ENOENT, "no memory cgroup controller is mounted", "/proc/self/mountinfo")


def _enable_memory(directory: str) -> None:
    """cgroup v2: let ``directory``'s children have memory limits."""
    path = os.path.join(directory, "cgroup.subtree_control")
    with open(path) as f:
        if "memory" in f.read().split():
            return
    with open(path, "w") as f:
        f.write("+memory")


def _remove_parent(parent: str) -> list[str]:
    """Remove the workers' cgroups in ``parent``, then ``parent``; the
    names that stayed (busy)."""
    busy = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(parent):
            if entry.is_dir(follow_symlinks=False):
                try:
                    os.rmdir(entry.path)
                except OSError:
                    busy.append(entry.name)
    try:
        os.rmdir(parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        busy.append(f"{os.path.basename(parent)} ({exc.strerror})")
    return busy


def _sweep(base: str) -> None:
    """Remove the directories of hosts that died here (a SIGKILLed host
    cannot clean up). Never raises."""
    try:
        entries = os.listdir(base)
    except OSError:
        return
    for name in entries:
        if not name.startswith(PARENT_PREFIX):
            continue
        pid = name[len(PARENT_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue
        busy = _remove_parent(os.path.join(base, name))
        if busy:
            logger.warning("could not remove a dead host's memory cgroup %s: %s", name, busy)
