"""Subordinate ids for a host that is not root: one user namespace in which
the host's uid and gid are 0 and the ranges ``/etc/subuid`` and
``/etc/subgid`` grant the host's user are mapped from 1 on. Each worker
enters it (``setns``, a system call) and takes an id of the range of its
own (``worker.enclosure``): a uid and gid that are not the host's, so the
kernel refuses it what only the host's uid may do, and it reads only what
others may.

Only ``newuidmap`` and ``newgidmap`` (Debian's ``uidmap`` package, setuid
root) may write such a map, and only from outside the namespace. So
``prepare`` forks a short-lived child that unshares a user namespace and
waits on a pipe; this process, still outside, runs both tools on it (side
by side), reads back the maps the kernel shows from here, keeps an fd of
the namespace and lets the child go. The zygote does this once as it
starts (every worker it forks inherits the fd); a spawned worker does it
for itself. The tools are setuid: it must happen before ``no_new_privs``.

The namespace is owned by the host's uid: the host (and the zygote) may
signal and wait for every process in it, as before. The fd grants that
power to whoever holds it, so every process that enters the namespace or
declines it closes its copy (``release``) before any user code runs.

Nothing raises: without a range in both files, without both tools
(setuid root), or where the kernel or a tool refuses, ``enter`` returns
None and workers keep the host's uid (its report says ``own_uid: False``);
``failure()`` says why.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import stat

CLONE_NEWUSER = 0x10000000
TOOL_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")


class Grant:
    """The first range of subordinate uids and of gids of the host's user,
    and the host's own ids (0 inside the namespace)."""

    __slots__ = ("host_uid", "host_gid", "uid", "uid_count", "gid", "gid_count")

    def __init__(self, host_uid: int, host_gid: int, uids: tuple[int, int], gids: tuple[int, int]):
        self.host_uid, self.host_gid = host_uid, host_gid
        self.uid, self.uid_count = uids
        self.gid, self.gid_count = gids

    def worker_id(self, pid: int) -> int:
        """The uid and gid (inside the namespace) of the worker whose warden
        is ``pid``: ``1 + pid % size``, outside ``first + pid % size``. Two
        live workers share it only if their pids differ by a multiple of the
        smaller range's size (never, when it is at least ``kernel.pid_max``)."""
        return 1 + pid % min(self.uid_count, self.gid_count)

    def uid_map(self) -> list[str]:
        return ["0", str(self.host_uid), "1", "1", str(self.uid), str(self.uid_count)]

    def gid_map(self) -> list[str]:
        return ["0", str(self.host_gid), "1", "1", str(self.gid), str(self.gid_count)]


def _first_range(path: str, names: tuple[str, ...]) -> tuple[int, int] | None:
    """The first ``name:start:count`` line of ``path`` for one of ``names``."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in names and fields[1].isdigit() and fields[2].isdigit():
            start, count = int(fields[1]), int(fields[2])
            if count > 0:
                return start, count
    return None


def granted(uid: int, gid: int) -> Grant | None:
    """What ``/etc/subuid`` and ``/etc/subgid`` grant user ``uid`` (by name
    or number), or None without a passwd entry or a range in either file."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return None  # newuidmap refuses a user it cannot name
    names = (name, str(uid))
    uids = _first_range("/etc/subuid", names)
    gids = _first_range("/etc/subgid", names)
    if uids is None or gids is None:
        return None
    return Grant(uid, gid, uids, gids)


def tools() -> tuple[str, str] | None:
    """Paths of ``newuidmap`` and ``newgidmap`` if both are setuid root."""
    found = []
    for tool in ("newuidmap", "newgidmap"):
        for directory in TOOL_DIRS:
            path = os.path.join(directory, tool)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if st.st_uid == 0 and st.st_mode & stat.S_ISUID:
                found.append(path)
                break
        else:
            return None
    return found[0], found[1]


class _Held:
    """The namespace's fd this process holds (-1: none), and its grant."""

    fd = -1
    grant: Grant | None = None
    failure = ""
    tried = False


_held = _Held()


def failure() -> str:
    """Why ``prepare`` made no namespace ("" if it did, or never tried)."""
    return _held.failure


def prepare() -> None:
    """Make the namespace once, for this process and its future forks: only
    for a host that is not root, with a range and the tools. Takes two runs
    of setuid tools (a few ms); a second call does nothing."""
    if _held.tried or os.geteuid() == 0:
        return
    _held.tried = True
    grant = granted(os.getuid(), os.getgid())
    if grant is None:
        _held.failure = "no range for this user in /etc/subuid and /etc/subgid"
        return
    paths = tools()
    if paths is None:
        _held.failure = "newuidmap/newgidmap (package uidmap) missing or not setuid root"
        return
    try:
        _held.fd = _make(grant, paths)
        _held.grant = grant
    except OSError as exc:
        _held.failure = str(exc)


def release() -> None:
    """Close this process's copy of the namespace's fd (no user code may
    hold it: its holder may enter the namespace as root)."""
    if _held.fd >= 0:
        try:
            os.close(_held.fd)
        except OSError:
            pass
    _held.fd = -1


def enter() -> Grant | None:
    """Enter the namespace (root in it, with every capability over the
    namespaces made from it and none over the host's), then ``release``.
    The grant, or None if there is none or ``setns`` failed."""
    fd, grant = _held.fd, _held.grant
    _held.fd = -1
    if fd < 0 or grant is None:
        return None
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWUSER) != 0:
            return None
    finally:
        os.close(fd)
    return grant if os.geteuid() == 0 else None


def outside(inside: int, kind: str = "uid") -> int | None:
    """Which id ``inside`` (in our user namespace) is in its parent, as the
    kernel's map says (``/proc/self/uid_map``); None if unmapped."""
    try:
        with open(f"/proc/self/{kind}_map") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        first, lower, count = (int(v) for v in line.split())
        if first <= inside < first + count:
            return lower + inside - first
    return None


def _make(grant: Grant, paths: tuple[str, str]) -> int:
    """A user namespace mapped by the tools (see the module); its fd.
    Raises ``OSError`` naming what failed."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for fd in (ready_r, ready_w, hold_r, hold_w):
            os.close(fd)
        raise
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(hold_w)
            unshared = ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWUSER) == 0
            os.write(ready_w, b"k" if unshared else b"n")
            os.read(hold_r, 1)  # until the parent has the namespace's fd
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"k":
            raise OSError("unshare(CLONE_NEWUSER) refused")
        err_r, err_w = os.pipe()
        try:
            spawned = [
                _spawn(tool, [os.path.basename(tool), str(pid), *ids], err_w)
                for tool, ids in zip(paths, (grant.uid_map(), grant.gid_map()), strict=True)
            ]
        finally:
            os.close(err_w)
        statuses = [os.waitpid(p, 0)[1] for p in spawned]
        with os.fdopen(err_r, "rb") as f:
            said = f.read(4096).decode(errors="replace").strip()
        if any(statuses):
            raise OSError(f"newuidmap/newgidmap failed: {said or statuses}")
        # The maps as the kernel shows them from here (outside): exactly
        # the host's ids at 0 and the ranges from 1.
        for kind, ids in (("uid", grant.uid_map()), ("gid", grant.gid_map())):
            with open(f"/proc/{pid}/{kind}_map") as f:
                shown = f.read().split()
            if shown != ids:
                raise OSError(f"{kind}_map is {shown}, not {ids}")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)


def _spawn(path: str, argv: list[str], err_w: int) -> int:
    """Run a tool with stdin and stdout on /dev/null, stderr to ``err_w``."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]
    return os.posix_spawn(path, argv, {}, file_actions=actions)
