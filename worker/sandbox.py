"""The always-on containment a worker applies to itself before user code runs.

The host already started this process in its own session (``setsid``), with
a scratch directory as cwd and an environment built from an allow-list.
What is left has to happen inside the process: the parent-death signal,
resource limits, and moving stdin off anything the user could abuse.

Every step reports what it did, so the host can tell which protections are
in force instead of assuming them.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

MIB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    memory_mb: int | None
    open_files: int | None
    file_size_mb: int | None
    cpu_seconds: int | None
    max_processes: int | None = None  # set_process_limit, once the count is our own
    disk_mb: int | None = None  # the private tmpfs (worker.enclosure), not an rlimit


def _prctl(option: int, arg: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(host_pid: int) -> bool:
    """Ask the kernel to SIGKILL us when the host dies, then close the race.

    The host may have died between our fork and this call; in that case we
    have already been re-parented, so exit now. Returns whether the signal
    is armed.
    """
    armed = _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != host_pid:
        os._exit(70)
    return armed


def arm_parent_death() -> bool:
    """SIGKILL us when our parent dies (the caller checks for a parent that
    is already gone, which this cannot see)."""
    return _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def not_dumpable() -> bool:
    """No ptrace, /proc/<pid>/mem or environ by a process of the same uid
    without CAP_SYS_PTRACE (the warden and init of a worker)."""
    return _prctl(PR_SET_DUMPABLE, 0)


def dumpable() -> bool:
    return _prctl(PR_SET_DUMPABLE, 1)


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process, not to init."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def no_new_privileges() -> bool:
    """setuid binaries and file capabilities cannot raise our privileges."""
    return _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _set_limit(which: int, value: int) -> bool:
    try:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))
        return True
    except (ValueError, OSError):
        return False


def apply_limits(limits: SandboxLimits) -> dict[str, bool]:
    """Set rlimits (soft = hard, so user code cannot raise them again).

    ``RLIMIT_FSIZE`` would normally kill the process with ``SIGXFSZ``; we
    ignore that signal so an oversized write fails with ``OSError(EFBIG)``
    in the user's call instead.
    """
    applied = {"core": _set_limit(resource.RLIMIT_CORE, 0)}
    if limits.memory_mb:
        applied["memory"] = _set_limit(resource.RLIMIT_AS, limits.memory_mb * MIB)
    if limits.open_files:
        applied["open_files"] = _set_limit(resource.RLIMIT_NOFILE, limits.open_files)
    if limits.file_size_mb:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        applied["file_size"] = _set_limit(resource.RLIMIT_FSIZE, limits.file_size_mb * MIB)
    if limits.cpu_seconds:
        applied["cpu"] = _set_limit(resource.RLIMIT_CPU, limits.cpu_seconds)
    return applied


def set_process_limit(limit: int | None, own_count: bool) -> bool:
    """``RLIMIT_NPROC`` at ``limit``: the processes and threads (zombies
    included) of this process's uid in its user namespace. Set only with
    ``own_count``: a uid of the worker's own, or a user namespace of its
    own over a uid that is not root (the kernel exempts uid 0 from the
    limit, and without either the count is the host user's). Returns
    whether it is in force; False for ``limit`` None (unlimited) too."""
    if limit is None or not own_count:
        return False
    return _set_limit(resource.RLIMIT_NPROC, limit)


def detach_stdin() -> None:
    """Point fd 0 at /dev/null: user code cannot read the host's input."""
    fd = os.open(os.devnull, os.O_RDONLY)
    if fd != 0:
        os.dup2(fd, 0)
        os.close(fd)


def in_own_session() -> bool:
    return os.getsid(0) == os.getpid()


def close_inherited_fds(keep: set[int]) -> None:
    """Close every fd not in ``keep``, up to the open-files limit (without
    listing ``/proc``: ``close_range`` where the kernel has it)."""
    try:
        top = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    except (OSError, ValueError):
        top = 1 << 20
    if top == resource.RLIM_INFINITY or top > 1 << 20:
        top = 1 << 20
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, top)
