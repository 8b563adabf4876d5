"""A seccomp filter the worker installs on itself, last before user code.

Landlock and namespaces (``worker.confinement``) decide what a worker may
touch; this filter removes system calls a tool has no business making and
that widen the kernel's attack surface or reach other processes:

- refused outright (``EPERM``): ``ptrace``, ``process_vm_readv/writev``,
  ``tkill``, ``pidfd_send_signal``; new namespaces and mounts (``unshare``,
  ``setns``, ``mount`` and the new mount API, ``pivot_root``); ``bpf``,
  ``perf_event_open``, ``userfaultfd``, keyrings, ``open_by_handle_at``,
  ``memfd_create`` (its pages are memory no rlimit counts);
- a file mode with the setuid or setgid bit (``chmod``, ``fchmod(at)``,
  ``open(at)``/``creat`` with ``O_CREAT``, ``mknod(at)``): ``EPERM``, since
  a worker's files in an idmapped writable path belong to the host's uid on
  disk; ``openat2``: ``ENOSYS``;
  kernel modules, ``kexec``, ``reboot``, swap, ``acct``, ``iopl``/``ioperm``;
  any call from another ABI (32-bit or x32 on x86_64);
- ``clone`` with a namespace flag: ``EPERM``; ``clone3``: ``ENOSYS`` (its
  flags live in memory a filter cannot read; glibc then falls back to
  ``clone``, as it does under Docker's default profile);
- ``kill``/``tgkill``/``rt_(tg)sigqueueinfo`` aimed at the host, the zygote,
  their process groups or at every process (``-1``), ``fcntl(F_SETLEASE)``
  (a lease makes the host's ``open`` of that file wait 45 s), and ``fcntl(F_SETOWN)``
  (SIGIO to anyone): ``EPERM``. Other targets (the worker's own children)
  are allowed. This narrows signals on kernels whose Landlock cannot scope
  them (before 6.12) but does not close them: a host *thread*'s id is a
  valid ``kill`` target too, so ``host_signals_blocked`` is only claimed
  with Landlock's scoping;
- sockets of any family but Unix, IPv4/IPv6 and routing netlink (so
  ``AF_VSOCK``, which no network namespace confines, ``AF_PACKET``,
  ``AF_ALG``, netlink beyond routing...), socket pairs of any family but
  Unix, and ``io_uring``: ``EPERM``; with
  ``deny_inet``, IPv4/IPv6 sockets too.

The filter is raw classic BPF built here (no libseccomp dependency), for
x86_64 and aarch64; on other machines ``install`` reports it unavailable.
It needs ``PR_SET_NO_NEW_PRIVS`` and a single-threaded process, and it is
inherited by every child and cannot be removed.
"""

from __future__ import annotations

import ctypes
import errno
import os

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

# Syscall numbers per architecture (x86_64 table; aarch64 uses the generic one).
_NUMBERS = {
    "x86_64": {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "tkill": 200,
        "pidfd_send_signal": 424, "mount": 165, "umount2": 166, "unshare": 272,
        "setns": 308, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "keyctl": 250, "add_key": 248,
        "request_key": 249, "open_by_handle_at": 304, "pivot_root": 155, "swapon": 167,
        "swapoff": 168, "reboot": 169, "acct": 163, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
        "mount_setattr": 442, "iopl": 172, "ioperm": 173, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427,
        "kill": 62, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
        "fcntl": 72, "socket": 41, "socketpair": 53, "clone": 56, "clone3": 435,
        "memfd_create": 319, "openat2": 437,
    },
    "aarch64": {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "tkill": 130,
        "pidfd_send_signal": 424, "mount": 40, "umount2": 39, "unshare": 97,
        "setns": 268, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "keyctl": 219, "add_key": 217,
        "request_key": 218, "open_by_handle_at": 265, "pivot_root": 41, "swapon": 224,
        "swapoff": 225, "reboot": 142, "acct": 89, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
        "mount_setattr": 442, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427,
        "kill": 129, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
        "fcntl": 25, "socket": 198, "socketpair": 199, "clone": 220, "clone3": 435,
        "memfd_create": 279, "openat2": 437,
    },
}  # fmt: skip
_SIGNALS = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
#: Calls that take a file mode, and which argument holds it: a mode with the
#: setuid or setgid bit is refused. In a writable path mapped to the host's
#: uid (worker/private_view.py) such a file would be the host's on disk: a
#: setuid-root binary for anyone who runs it outside the sandbox.
_MODE_ARGUMENT = {
    "x86_64": {
        "chmod": (90, 1), "fchmod": (91, 1), "fchmodat": (268, 2), "fchmodat2": (452, 2),
        "open": (2, 2), "openat": (257, 3), "creat": (85, 1), "mknod": (133, 1),
        "mknodat": (259, 2),
    },
    "aarch64": {
        "fchmod": (52, 1), "fchmodat": (53, 2), "fchmodat2": (452, 2), "openat": (56, 3),
        "mknodat": (33, 2),
    },
}  # fmt: skip
S_ISUID_ISGID = 0o6000
_SPECIAL = {*_SIGNALS, "fcntl", "socket", "socketpair", "clone", "clone3", "openat2"}
F_SETOWN, F_SETOWN_EX = 8, 15
F_SETLEASE = 1024
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
NETLINK_ROUTE = 0
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NAMESPACE_FLAGS = 0x7E020000

# Classic BPF opcodes.
_LD_W_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

# struct seccomp_data: nr, arch, then args[6] as u64 (low words, little-endian).
_OFF_NR, _OFF_ARCH, _OFF_ARG0, _OFF_ARG1, _OFF_ARG2 = 0, 4, 16, 24, 32


class _Filter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def _assemble(code: list[tuple]) -> list[tuple[int, int, int, int]]:
    """Resolve labels: entries are ``("label", name)`` or
    ``(op, k, jt_label_or_0, jf_label_or_0)``; jumps go forward only."""
    positions: dict[str, int] = {}
    index = 0
    for entry in code:
        if entry[0] == "label":
            positions[entry[1]] = index
        else:
            index += 1
    out: list[tuple[int, int, int, int]] = []
    for entry in code:
        if entry[0] == "label":
            continue
        op, k, jt, jf = entry
        here = len(out) + 1  # jumps count from the next instruction
        jt = jt if isinstance(jt, int) else positions[jt] - here
        jf = jf if isinstance(jf, int) else positions[jf] - here
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise ValueError(f"jump out of a BPF instruction's range at {len(out)}")
        out.append((op, jt, jf, k & 0xFFFFFFFF))
    return out


def build(
    machine: str, protected_pids: set[int], deny_inet: bool = False
) -> list[tuple[int, int, int, int]]:
    """The filter program as (code, jt, jf, k) tuples, for tests and ``install``.

    ``deny_inet``: refuse IPv4/IPv6 sockets altogether (the network claim of
    a worker that could not get its own network namespace: Landlock's TCP
    rules leave UDP, MPTCP and TCP fast open through).
    """
    numbers = _NUMBERS[machine]
    code: list[tuple] = [
        (_LD_W_ABS, _OFF_ARCH, 0, 0),
        (_JEQ, AUDIT_ARCH[machine], 0, "deny"),
        (_LD_W_ABS, _OFF_NR, 0, 0),
    ]
    if machine == "x86_64":
        code.append((_JGE, X32_SYSCALL_BIT, "deny", 0))
    for name, nr in numbers.items():
        if name not in _SPECIAL:
            code.append((_JEQ, nr, "deny", 0))
    code.append((_JEQ, numbers["clone3"], "enosys", 0))
    # openat2 carries its mode in memory a filter cannot read: ENOSYS, and
    # callers fall back to openat (as under Docker's default profile).
    code.append((_JEQ, numbers["openat2"], "enosys", 0))
    for name, (nr, _) in _MODE_ARGUMENT[machine].items():
        code.append((_JEQ, nr, f"mode_{name}", 0))
    code += [(_JEQ, numbers[name], "signal", 0) for name in _SIGNALS]
    code += [
        (_JEQ, numbers["fcntl"], "fcntl", 0),
        (_JEQ, numbers["socket"], "socket", 0),
        (_JEQ, numbers["socketpair"], "socketpair", 0),
        (_JEQ, numbers["clone"], "clone", 0),
        (_RET, RET_ALLOW, 0, 0),
        # F_SETOWN would let SIGIO/SIGURG reach any process (the host).
        ("label", "fcntl"),
        (_LD_W_ABS, _OFF_ARG1, 0, 0),
        (_JEQ, F_SETOWN, "deny", 0),
        (_JEQ, F_SETOWN_EX, "deny", 0),
        # A lease on a file the host opens later (its capture files, a set's
        # file) makes the host's open() wait lease-break-time (45 s).
        (_JEQ, F_SETLEASE, "deny", 0),
        (_RET, RET_ALLOW, 0, 0),
        # Socket families are allowed by name: Unix, IPv4/IPv6 (unless
        # deny_inet) and routing netlink. The rest either reach past a
        # network namespace (AF_VSOCK: the VM's host, CID 2) or are kernel
        # attack surface a user namespace opens (netlink beyond routing:
        # nf_tables, xfrm; AF_PACKET, AF_ALG...). Routing netlink is what
        # getaddrinfo() uses.
        # A pair is of Unix sockets only: other families' pairs (AF_TIPC...)
        # reach the same kernel code as their sockets.
        ("label", "socketpair"),
        (_LD_W_ABS, _OFF_ARG0, 0, 0),
        (_JEQ, AF_UNIX, "allow", "deny"),
        ("label", "socket"),
        (_LD_W_ABS, _OFF_ARG0, 0, 0),
        (_JEQ, AF_UNIX, "allow", 0),
        (_JEQ, AF_NETLINK, 0, "inet"),
        (_LD_W_ABS, _OFF_ARG2, 0, 0),
        (_JEQ, NETLINK_ROUTE, "allow", "deny"),
        ("label", "inet"),
    ]
    if deny_inet:
        code += [(_RET, RET_ERRNO | errno.EPERM, 0, 0)]
    else:
        code += [(_JEQ, AF_INET, "allow", 0), (_JEQ, AF_INET6, "allow", "deny")]
    code += [
        ("label", "allow"),
        (_RET, RET_ALLOW, 0, 0),
        # kill/tgkill/rt_(tg)sigqueueinfo: the target (thread group) is arg0.
        ("label", "signal"),
        (_LD_W_ABS, _OFF_ARG0, 0, 0),
    ]
    targets = {-1}
    for pid in protected_pids:
        targets |= {pid, -pid}
    for target in sorted(targets):
        code.append((_JEQ, target, "deny", 0))
    code += [
        (_RET, RET_ALLOW, 0, 0),
        ("label", "clone"),
        (_LD_W_ABS, _OFF_ARG0, 0, 0),
        (_JSET, CLONE_NAMESPACE_FLAGS, "deny", 0),
        (_RET, RET_ALLOW, 0, 0),
    ]
    for name, (_, arg) in _MODE_ARGUMENT[machine].items():
        code += [
            ("label", f"mode_{name}"),
            (_LD_W_ABS, _OFF_ARG0 + 8 * arg, 0, 0),
            (_JSET, S_ISUID_ISGID, "deny", 0),
            (_RET, RET_ALLOW, 0, 0),
        ]
    code += [
        ("label", "deny"),
        (_RET, RET_ERRNO | errno.EPERM, 0, 0),
        ("label", "enosys"),
        (_RET, RET_ERRNO | errno.ENOSYS, 0, 0),
    ]
    return _assemble(code)


#: Programs built ahead (by the zygote, so that its forked workers only make
#: the system call): (protected pids, deny_inet) -> (program, its filters).
_prepared: dict[tuple[frozenset[int], bool], tuple[_Program, ctypes.Array]] = {}
_libc: list[ctypes.CDLL] = []


def _c_library() -> ctypes.CDLL:
    """libc, opened once (raises ``OSError`` if it cannot be)."""
    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    return _libc[0]


def prepare(protected_pids: set[int], deny_inet: bool = False) -> _Program:
    """The filter program for ``install``, built once per argument pair and
    kept (about a millisecond of Python per build)."""
    key = (frozenset(protected_pids), deny_inet)
    ready = _prepared.get(key)
    if ready is None:
        program = build(os.uname().machine, protected_pids, deny_inet)
        filters = (_Filter * len(program))(*[_Filter(*entry) for entry in program])
        ready = _prepared[key] = (_Program(len(program), filters), filters)
    return ready[0]


def prepare_ahead(protected_pids: set[int]) -> None:
    """Build both programs for ``protected_pids`` and open libc now, so that
    a process forked later only makes the system call. Never raises."""
    if os.uname().machine not in _NUMBERS:
        return
    for deny_inet in (False, True):
        prepare(protected_pids, deny_inet)
    try:
        _c_library()
    except OSError:
        pass


def install(protected_pids: set[int], deny_inet: bool = False) -> str | None:
    """Install the filter on this process; ``None`` on success, else why not.

    ``protected_pids``: processes (and, negated, process groups) that
    ``kill``/``tgkill`` must not reach. Never raises.
    """
    machine = os.uname().machine
    if machine not in _NUMBERS:
        return f"no syscall table for {machine}"
    prog = prepare(protected_pids, deny_inet)
    try:
        libc = _c_library()
    except OSError as exc:
        return str(exc)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        return f"prctl(PR_SET_SECCOMP): {os.strerror(ctypes.get_errno())}"
    return None


def active() -> bool:
    """Probe: ``unshare(0)`` is a harmless no-op everywhere except under
    this filter, which refuses it with ``EPERM``."""
    libc = _c_library()
    return libc.unshare(ctypes.c_int(0)) != 0 and ctypes.get_errno() == errno.EPERM
