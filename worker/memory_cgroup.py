"""The worker's own memory cgroup: joined, limited and checked before user code.

See ``protocol.memory_cgroup`` for the contract. Three callers, all trusted
code that runs before any user code, as the host's uid:

- a worker started fresh (forked by the zygote, or spawned) ``join``s
  ``<parent>/w<its pid>`` first thing and ``set_limit``s it, before its
  start sequence forks its warden's init and the worker proper, which are
  born inside. A process moving itself (single-threaded, cgroup v1) takes
  0.1 ms; moving another one takes the kernel ~10 ms here (an RCU grace
  period, during which forks machine-wide wait), so only the zygote's
  rescue of a spare that has not joined yet pays it;
- the zygote's spare ``join``s its own first thing, ahead of any request,
  and the zygote ``set_limit``s it when it hands the spare a request (the
  limit is the request's), once the spare is in (by its answer, at the
  latest); one whose own join failed is moved in by the zygote (it has no
  children yet: they will be born inside);
- the worker ``verify``s, after its namespaces and before its probes are
  reported, that the kernel has it in that cgroup under that limit.

Every function returns a failure as ``False``/``None``: the layer is then
reported missing (``memory_cgroup: false``), never claimed.
"""

from __future__ import annotations

import contextlib
import errno
import os

from protocol.memory_cgroup import V1, V2, ControllerFiles, own_cgroup, swap_value, worker_dir_name


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _files(directory: str) -> ControllerFiles:
    return V2 if os.path.exists(os.path.join(directory, V2.limit)) else V1


def join(parent: str, pid: int, process: int | None = None) -> str | None:
    """Make ``parent``'s cgroup for the worker known as ``pid`` (or take the
    one left by a dead worker of that pid) and move ``process`` (default:
    this one) into it; its path, or ``None`` if either step failed."""
    path = os.path.join(parent, worker_dir_name(pid))
    if _member(path, process or "self"):
        return path  # joined already (a spare, at its fork)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        # Left by a dead process of the same pid (its limit, its OOM count):
        # made anew, unless something is in it. Only by the process itself:
        # the zygote moving a spare in may meet the spare making it.
        if process is None:
            with contextlib.suppress(OSError):
                os.rmdir(path)
                os.mkdir(path, 0o755)
    except OSError:
        return None
    try:
        if process is None and _files(path) is V1 and _single_threaded():
            # cgroup v1 moves the writer itself ("0" to ``tasks``, one
            # thread: here the whole process) without the global lock whose
            # writers wait for an RCU grace period (~10 ms here, during which
            # every fork on the machine waits too): 0.1 ms.
            _write(os.path.join(path, "tasks"), "0")
        else:
            _write(os.path.join(path, "cgroup.procs"), str(process or os.getpid()))
    except OSError:
        return None
    return path


def _single_threaded() -> bool:
    """True if this process has one thread (``tasks`` moves only the writer)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def member(path: str, process: int) -> bool:
    """True if ``process`` is in the cgroup at ``path`` (the zygote, for a spare)."""
    return _member(path, process)


def _member(path: str, process: int | str = "self") -> bool:
    """True if ``process`` (default: this one) is in the cgroup at ``path``."""
    files = _files(path)
    try:
        with open(f"/proc/{process}/cgroup") as f:
            mine = own_cgroup(f.read(), 2 if files is V2 else 1)
    except OSError:
        return False
    return mine is not None and mine != "/" and path.endswith(mine)


def set_limit(path: str, limit: int) -> bool:
    """Limit the cgroup at ``path`` to ``limit`` bytes, swap included.
    True if the limit was written (swap accounting may be absent)."""
    files = _files(path)
    try:
        # v1: memory+swap may never be below memory: memory first when
        # lowering, memory+swap first when raising (EINVAL the other way).
        _write(os.path.join(path, files.limit), str(limit))
    except OSError as exc:
        if exc.errno != errno.EINVAL or files is not V1:
            return False
        try:
            _write(os.path.join(path, files.swap), swap_value(files, limit))
            _write(os.path.join(path, files.limit), str(limit))
        except OSError:
            return False
    try:
        _write(os.path.join(path, files.swap), swap_value(files, limit))
    except FileNotFoundError:
        pass  # no swap accounting: no swap to count
    except OSError:
        return False
    return True


def verify(parent: str, pid: int, limit: int) -> bool:
    """True if the kernel has this process in ``parent``'s cgroup for
    ``pid`` and that cgroup's limit is at most ``limit`` bytes."""
    path = os.path.join(parent, worker_dir_name(pid))
    files = _files(path)
    if not _member(path):
        return False
    try:
        with open(os.path.join(path, files.limit)) as f:
            value = f.read().strip()
    except OSError:
        return False
    return value.isdigit() and int(value) == limit


def locked(parent: str, pid: int) -> bool:
    """True if this process cannot change its cgroup's limit: opening the
    limit file for writing is refused (its own uid, a read-only view, a
    Landlock ruleset). A worker that may still write it (root, no
    namespaces) has no limit worth the name."""
    directory = os.path.join(parent, worker_dir_name(pid))
    path = os.path.join(directory, _files(directory).limit)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return True
    os.close(fd)
    return False


def remove(parent: str, pid: int) -> None:
    """Remove the cgroup of ``pid`` if it exists and is empty (the zygote,
    for the spares it reaps)."""
    try:
        os.rmdir(os.path.join(parent, worker_dir_name(pid)))
    except OSError:
        pass
