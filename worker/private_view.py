"""The filesystem a worker sees, built by the worker itself while it is
still root in its own mount namespace, before it drops privileges; see
``worker.enclosure``. ``prepare`` does the part that needs no request
(it may run ahead of one, in the zygote's spare), ``build`` the rest.

In order:

1. every mount propagation-private, then (``confine_writes``) every mount
   read-only, in one ``mount_setattr`` (writes, ``chmod``, ``chown``,
   renames outside the paths below fail with ``EROFS``);
2. one tmpfs, ``nosuid``/``nodev``, capped at ``disk_mb``, over the worker's
   directory: the new ``scratch`` and the worker's ``/dev/shm`` (a bind of
   ``shm`` beside it), both owned by the worker's uid. The host's directory
   beneath, with the capture files, is out of sight;
3. a ``/proc`` of the worker's PID namespace, and a new ``devpts`` instance
   (no terminal of the host's; ptys still work);
4. for a worker with its own uid (it reads only what others may):
   *revealing* — each path the worker must reach (its interpreter, import
   path, the set's directory, ``readable_paths``, its own directory) whose
   ancestors others cannot search (``/root`` is 0700) is cloned
   (``open_tree``), an empty read-only tmpfs is laid over the outermost
   such ancestor (hiding the rest of it: a root home's files are gone, not
   just unreadable), and the clone is attached again at the same path. The
   files keep their own modes: a set must be readable by others (``o+r``,
   and ``o+x`` on its directory);
5. ``writable_paths``: each a writable mount of its own; for a worker with
   its own uid and the syscall filter, an *idmapped* one (Linux 5.12+,
   ext4/xfs/btrfs/tmpfs...) in which files of the host's uid appear as the
   worker's: it acts as their owner there (it can write, and connect to
   the host's sockets in it), and what it writes belongs to the host's uid
   on disk (the filter refuses setuid and setgid bits). Without the filter
   the path is only made writable: the worker writes there what its uid
   may;
6. SysV shared memory of the namespace capped at ``memory_mb``
   (``kernel.shmall``), POSIX message queues at 16.

Nothing raises: each step's success is a field of ``View``, and a failed
step leaves the rest (a path that cannot be revealed stays unreachable and
the worker's import fails with a clear ``PermissionError``).
"""

from __future__ import annotations

import ctypes
import os

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 1 << 18
MNT_DETACH = 2
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
O_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_IDMAP = 0x00100000
CLONE_NEWUSER = 0x10000000
#: The same numbers on x86_64 and aarch64 (the generic table).
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442


class View:
    """What ``build`` achieved (each True only if the kernel agreed)."""

    __slots__ = ("private", "read_only", "tmpfs", "proc", "devpts", "revealed", "writable", "sysv")

    def __init__(self) -> None:
        self.private = self.read_only = self.tmpfs = self.proc = self.devpts = False
        self.revealed = self.writable = self.sysv = False


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


_libc: list[ctypes.CDLL] = []


def _c() -> ctypes.CDLL:
    if not _libc:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
        libc.mount.argtypes += [ctypes.c_ulong, ctypes.c_char_p]
        _libc.append(libc)
    return _libc[0]


def load() -> None:
    """Open libc now (the zygote calls it, so its children skip the work)."""
    try:
        _c()
    except OSError:
        pass


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> bool:
    encoded = data.encode() if data else None
    kind = fstype.encode() if fstype else None
    return _c().mount(source.encode(), target.encode(), kind, flags, encoded) == 0


def _setattr(fd: int, path: str, flags: int, attr: _MountAttr) -> bool:
    call = _c().syscall
    return (
        call(SYS_MOUNT_SETATTR, fd, path.encode(), ctypes.c_uint(flags), ctypes.byref(attr), 32)
        == 0
    )


def _clone_tree(path: str) -> int:
    """A detached copy of the mounts at ``path`` (with those beneath), or -1."""
    flags = ctypes.c_uint(OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC)
    return _c().syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), flags)


def _attach(fd: int, path: str) -> bool:
    call = _c().syscall
    flags = ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)
    return call(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, path.encode(), flags) == 0


def listing(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def prepare(confine_writes: bool) -> View:
    """The part of the view that needs nothing of the request (module steps
    1 and 3), made by the worker-to-be in its new namespaces: it may run
    ahead of the request (worker.enclosure). The rest is ``build``'s."""
    view = View()
    if not _mount("none", "/", None, MS_REC | MS_PRIVATE):
        return view
    view.private = True
    if confine_writes:
        view.read_only = _setattr(AT_FDCWD, "/", AT_RECURSIVE, _MountAttr(MOUNT_ATTR_RDONLY))
    # New mounts, after the read-only step: writable where they need to be.
    view.proc = _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666"):
        # A fresh instance holds no terminal but its multiplexer.
        view.devpts = _mount("/dev/pts/ptmx", "/dev/ptmx", None, MS_BIND)
        view.devpts = view.devpts and listing("/dev/pts") == ["ptmx"]
    return view


def build(
    view: View,
    policy: dict,
    limits: dict,
    scratch: str,
    uid: int | None,
    reach: list[str],
    granted: list[str],
) -> View:
    """Finish the view ``prepare`` began (see the module); the cwd is then
    the new scratch. Returns ``view``, completed.

    ``uid``: the worker's own uid, or None (it keeps the host's). ``reach``:
    the paths a worker with its own uid must be able to reach (interpreter,
    import path, the set's directory when others may search it,
    ``readable_paths``); ``granted``: files it must read whatever their
    modes (the set's module file).
    """
    if not view.private:
        return view
    owner = 0 if uid is None else uid
    writable = [p for p in policy.get("writable_paths") or () if os.path.exists(p)]
    workdir = os.path.dirname(scratch)
    disk_mb = int(limits.get("disk_mb") or 0)
    size = f"size={disk_mb}m," if disk_mb else ""
    if _mount("fnhost", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"{size}mode=0755"):
        try:
            shm = os.path.join(workdir, "shm")
            for path in (scratch, shm):
                os.mkdir(path, 0o700)
                os.chown(path, owner, owner)
            view.tmpfs = _mount(shm, "/dev/shm", None, MS_BIND)
            os.chdir(scratch)  # the old cwd is the host's directory beneath
            # The host's directory is covered: its capture files are not here.
            view.tmpfs = view.tmpfs and listing(workdir) == ["scratch", "shm"]
        except OSError:
            view.tmpfs = False
    if uid is None:
        view.revealed = True
        view.writable = all(_writable_again(path) for path in writable)
    else:
        placed = _place(
            [
                *[(p, REVEAL) for p in [*reach, workdir]],
                *[(p, READ) for p in granted],
                *[(p, WRITE) for p in writable],
            ],
            uid,
            idmap_writes=bool(policy.get("restrict_syscalls", True)),
        )
        view.revealed = view.writable = placed
    if view.proc:
        # SysV shared memory of this namespace, in pages: no more than the
        # memory limit (segments count in RLIMIT_AS only while attached).
        pages = (int(limits.get("memory_mb") or 512) << 20) // os.sysconf("SC_PAGE_SIZE")
        view.sysv = write_sysctl("kernel/shmall", str(pages)) and write_sysctl(
            "fs/mqueue/queues_max", "16"
        )
    return view


def open_to_others(path: str, need: int) -> bool:
    """Whether others (not owner, not group) have the ``need`` bits on
    ``path`` (a path that does not exist needs nothing opened)."""
    try:
        return (os.stat(path).st_mode & need) == need
    except OSError:
        return True  # nothing there to open up


#: What ``learn`` found, ahead of a request, about the paths every worker of
#: this zygote reaches: each one's real path, and whether others may search
#: each directory on the way. ``_place`` asks the kernel only about the
#: rest. The facts are the spare's, as its view was when it entered (the
#: view itself is that snapshot too); one gone stale can only leave a path
#: unrevealed (an import fails) or cover one more directory, never show
#: what the worker should not see: reveals are of the paths asked for only.
_searchable: dict[str, bool] = {}
_real: dict[str, str] = {}


def learn(paths: list[str]) -> None:
    """In a worker-to-be entered ahead (``worker.spare``), while it waits:
    learn the facts about ``paths`` (its interpreter, import path and the
    system's directories: ``confinement.readable_paths``) that its view
    will need, off the restart's path. An optimisation only: never raises
    (what it did not learn is asked for later)."""
    try:
        for path in paths:
            if not path or not os.path.exists(path):
                continue
            real = os.path.realpath(path)
            parts = real.split("/")
            for i in range(2, len(parts) + 1):
                ancestor = "/".join(parts[:i])
                _searchable[ancestor] = open_to_others(ancestor, 0o001)
            _real[path] = real
    except (OSError, ValueError):
        pass


def _search(path: str) -> bool:
    known = _searchable.get(path)
    return open_to_others(path, 0o001) if known is None else known


def _blocked_ancestor(path: str) -> str | None:
    """The outermost directory above ``path`` that others cannot search."""
    parts = path.split("/")
    for i in range(2, len(parts)):
        ancestor = "/".join(parts[:i])
        if not _search(ancestor):
            return ancestor
    return None


def _outermost(paths: list[str]) -> list[str]:
    """``paths`` without those beneath another one."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def _reached_through(path: str, root: str) -> bool:
    """``path`` is ``root``, or beneath it with every directory from
    ``root`` down to its parent searchable by others."""
    if path == root:
        return True
    if not path.startswith(root.rstrip("/") + "/"):
        return False
    parts = path.split("/")
    first = len(root.rstrip("/").split("/"))
    return all(_search("/".join(parts[:i])) for i in range(first, len(parts)))


def _realpath(path: str) -> str:
    """``os.path.realpath``, or what ``learn`` found (a learnt path exists)."""
    return _real.get(path) or os.path.realpath(path)


def _without_reached(paths: list[str]) -> list[str]:
    """``paths`` without those that revealing another one reveals too (not
    a worker directory in a 0700 ``tmp`` inside a reachable home: that one
    needs a reveal of its own)."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not any(_reached_through(path, k) for k in kept):
            kept.append(path)
    return kept


#: How a path is put into a worker's view (``_place``).
REVEAL, READ, WRITE = "reveal", "read", "write"


def _place(paths: list[tuple[str, str]], uid: int, idmap_writes: bool) -> bool:
    """Put each path into the view at its own name (module steps 4 and 5).

    ``paths``: (path, how) with ``how`` ``REVEAL`` (reachable; its files
    keep their modes: the worker reads what others may), ``READ`` (one
    file, the set's module: read-only and idmapped, readable whatever its
    mode; its directory, if others cannot search it, becomes an empty cover
    holding only this file) or ``WRITE`` (a
    writable mount; with ``idmap_writes``, idmapped so that files of the
    host's uid are the worker's there: it acts as their owner, which the
    syscall filter must keep from setting setuid bits, so the caller asks
    for it only when that filter is installed). A path is cloned when it
    has a blocked ancestor, and always for ``WRITE``. True if every path
    was placed and every writable one is a writable mount.
    """
    plan: list[tuple[str, str, str | None]] = []  # (path, how, blocked ancestor)
    # A file others may read needs no idmap: reaching it is enough.
    paths = [(p, REVEAL if how == READ and open_to_others(p, 0o004) else how) for p, how in paths]
    reveal = _without_reached([_realpath(p) for p, how in paths if how == REVEAL])
    others = sorted({(os.path.realpath(p), how) for p, how in paths if how != REVEAL})
    for path, how in [*[(p, REVEAL) for p in reveal], *others]:
        if not path or (path not in _searchable and not os.path.exists(path)):
            continue
        blocked = _blocked_ancestor(path)
        if blocked or how != REVEAL:
            plan.append((path, how, blocked))
    if not plan:
        return True
    userns = -1
    if any(how == READ or (how == WRITE and idmap_writes) for _, how, _ in plan):
        userns = _userns_mapping_root_to(uid)
    ok = True
    clones: list[tuple[str, str, bool, int]] = []
    for path, how, _ in plan:
        fd = _clone_tree(path)
        attr = None
        if how == READ:
            attr = _MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, 0, 0, max(userns, 0))
        elif how == WRITE and idmap_writes:
            # Files of the host's uid appear as the worker's; what it
            # writes lands as the host's uid on disk.
            attr = _MountAttr(MOUNT_ATTR_IDMAP, MOUNT_ATTR_RDONLY, 0, max(userns, 0))
        elif how == WRITE:
            attr = _MountAttr(0, MOUNT_ATTR_RDONLY, 0, 0)
        if fd >= 0 and attr is not None:
            idmapped = attr.attr_set & MOUNT_ATTR_IDMAP
            if (idmapped and userns < 0) or not _setattr(fd, "", AT_EMPTY_PATH, attr):
                os.close(fd)
                fd = -1
        ok = ok and fd >= 0
        clones.append((path, how, os.path.isdir(path), fd))
    if userns >= 0:
        os.close(userns)
    covers = _outermost([blocked for _, _, blocked in plan if blocked])
    for cover in covers:
        ok = _mount("fnhost", cover, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") and ok
    old_umask = os.umask(0o022)
    try:
        for path, _, is_dir, fd in clones:  # mount points, while the covers are writable
            if fd < 0:
                continue
            try:
                if is_dir:
                    os.makedirs(path, 0o755, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
                    if not os.path.exists(path):
                        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            except OSError:
                ok = False
    finally:
        os.umask(old_umask)
    for cover in covers:  # nothing may be written into the covers themselves
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        ok = _mount("none", cover, None, flags) and ok
    for path, how, _, fd in sorted(clones, key=lambda c: c[0].count("/")):
        if fd < 0:
            continue
        try:
            ok = _attach(fd, path) and ok
        finally:
            os.close(fd)
        if how == WRITE:
            ok = ok and not os.statvfs(path).f_flag & os.ST_RDONLY
    return ok


def _writable_again(path: str) -> bool:
    """``path`` a writable mount of its own in the read-only view."""
    return (
        _mount(path, path, None, MS_BIND | MS_REC)
        and _mount(path, path, None, MS_BIND | MS_REMOUNT)
        and not os.statvfs(path).f_flag & os.ST_RDONLY
    )


def _userns_mapping_root_to(uid: int) -> int:
    """An fd of a user namespace in which uid/gid 0 is ``uid`` outside (the
    idmap of a writable path), or -1. Costs a short-lived child."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(hold_w)
            _c().unshare(ctypes.c_int(CLONE_NEWUSER))
            os.write(ready_w, b"k")
            os.read(hold_r, 1)  # until the parent has the namespace's fd
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    fd = -1
    try:
        if os.read(ready_r, 1) == b"k":
            with open(f"/proc/{pid}/uid_map", "w") as f:
                f.write(f"0 {uid} 1\n")
            with open(f"/proc/{pid}/setgroups", "w") as f:
                f.write("deny")
            with open(f"/proc/{pid}/gid_map", "w") as f:
                f.write(f"0 {uid} 1\n")
            fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)
    return fd


def write_sysctl(name: str, value: str) -> bool:
    try:
        with open(f"/proc/sys/{name}", "w") as f:
            f.write(value)
        return True
    except OSError:
        return False
