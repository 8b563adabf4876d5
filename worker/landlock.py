"""Landlock: the kernel's unprivileged sandbox, applied by the worker to itself.

Landlock is a stackable LSM (Linux 5.13+) that any process may use on
itself after ``PR_SET_NO_NEW_PRIVS``; there is no library to install, only
three system calls, made here through ``ctypes``. Once the worker is
restricted, the restriction holds for it and every process it forks, and
cannot be lifted.

What the worker asks for, each as far as the kernel's Landlock ABI allows:

- filesystem (ABI 1+): creating, writing, renaming into and deleting files
  (truncating too from ABI 3) only beneath the scratch directory (plus
  ``/dev/null``, the worker's own capture files, and the paths a policy
  adds). Reading is left alone: user code needs the standard library and its
  own files. Landlock does not cover metadata: ``chmod``, ``chown`` (which
  also needs ownership), ``utime`` and extended attributes of the user's
  own files outside the scratch directory still work.
- network (ABI 4+): no TCP ``connect``/``bind`` at all, when the set has no
  network access (its own network namespace is the first line; this holds
  where namespaces are missing).
- scopes (ABI 6+): no signals to processes outside the worker's domain (the
  host, the zygote, other workers) and no connection to abstract Unix
  sockets outside it.
- ptrace (ABI 1+, implicit): a restricted process cannot ptrace or read the
  memory or ``/proc/<pid>/environ`` of any process outside its domain.

Failure: every step returns what it did; on a kernel without Landlock (or
with it disabled) nothing is restricted and ``confine`` says so. The
probes in ``worker.probes`` then show which claims really hold.
"""

from __future__ import annotations

import ctypes
import os
import stat
from dataclasses import dataclass

# System call numbers: the same on x86_64 and aarch64 (new calls share the
# generic table).
SYS_CREATE_RULESET = 444
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

# Filesystem access rights (linux/landlock.h).
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3

NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

_WRITE_RIGHTS_V1 = (
    FS_WRITE_FILE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_CHAR
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SOCK
    | FS_MAKE_FIFO
    | FS_MAKE_BLOCK
    | FS_MAKE_SYM
)
# Rights that make sense on a single file (the rest only on directories).
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is __attribute__((packed))
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass
class Confinement:
    """What ``confine`` put in force (all False when Landlock is missing)."""

    abi: int = 0
    restricted: bool = False
    filesystem: bool = False
    signals: bool = False
    reads: bool = False
    error: str | None = None


def abi_version() -> int:
    """The kernel's Landlock ABI (0: not available or disabled)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return 0
    version = libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), CREATE_RULESET_VERSION)
    return max(int(version), 0)


def confine(
    scratch: str,
    writable: list[str] | tuple[str, ...] = (),
    writable_fds: list[int] | tuple[int, ...] = (),
    confine_writes: bool = True,
    deny_tcp: bool = True,
    scope_processes: bool = True,
    readable: list[str] | None = None,
) -> Confinement:
    """Restrict this process (and its future children) with one Landlock ruleset.

    ``readable``: when given, reading files, listing directories and
    executing are restricted too, to these paths plus the scratch directory
    and ``writable``. Paths that do not exist are skipped. Must run after
    ``PR_SET_NO_NEW_PRIVS`` and while the process is single-threaded
    (Landlock restricts only the calling thread otherwise). Never raises: a
    failed step leaves the process as it was and is named in ``error``.
    """
    result = Confinement(abi=abi_version())
    if result.abi < 1:
        result.error = "Landlock is not available in this kernel"
        return result
    libc = ctypes.CDLL(None, use_errno=True)
    write_rights = _WRITE_RIGHTS_V1
    if result.abi >= 2:
        write_rights |= FS_REFER
    if result.abi >= 3:
        write_rights |= FS_TRUNCATE
    read_rights = FS_READ_FILE | FS_READ_DIR | FS_EXECUTE if readable is not None else 0
    own_rights = (write_rights if confine_writes else 0) | read_rights
    attr = _RulesetAttr(handled_access_fs=own_rights)
    size = 8  # ABI 1-3 know only the filesystem field
    if deny_tcp and result.abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
    if scope_processes and result.abi >= 6:
        attr.scoped = SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET
        size = 24
    if not (attr.handled_access_fs or attr.handled_access_net or attr.scoped):
        result.error = f"nothing requested is restricted by Landlock ABI {result.abi}"
        return result
    ruleset = libc.syscall(
        SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    if ruleset < 0:
        result.error = f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}"
        return result
    try:
        rules: list[tuple[int, int, str]] = []
        wanted = [(path, own_rights) for path in (scratch, "/dev/null", *writable)]
        wanted += [(path, read_rights) for path in readable or ()]
        for path, rights in wanted if own_rights else ():
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            rules.append((fd, rights, path))
        # The capture files (fd 1/2 and their duplicates): `open("/dev/stdout", "w")`
        # resolves to them, and writing there is the user's own output.
        for fd in writable_fds if confine_writes else ():
            rules.append((os.dup(fd), (FS_WRITE_FILE | FS_TRUNCATE) & write_rights, f"fd {fd}"))
        try:
            for fd, rights, path in rules:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    rights &= _FILE_RIGHTS
                rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
                if libc.syscall(
                    SYS_ADD_RULE,
                    ctypes.c_int(ruleset),
                    ctypes.c_int(RULE_PATH_BENEATH),
                    ctypes.byref(rule),
                    ctypes.c_uint32(0),
                ):
                    code = ctypes.get_errno()
                    if path == scratch:
                        result.error = f"landlock_add_rule({path}): {os.strerror(code)}"
                        return result
                    # Any other path that cannot carry a rule (a pipe or socket
                    # fd gives EBADFD) is left out: nothing is opened up by it.
        finally:
            for fd, _, _ in rules:
                os.close(fd)
        if libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)):
            result.error = f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}"
            return result
    finally:
        os.close(ruleset)
    result.restricted = True
    result.filesystem = bool(attr.handled_access_fs & write_rights)
    result.reads = bool(read_rights)
    result.signals = bool(attr.scoped)
    return result
