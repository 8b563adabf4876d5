"""The stronger isolation layers, in order, and the probes that verify them.

``worker.sandbox`` holds the always-on layers (session, parent-death
signal, rlimits, no-new-privs). This module adds what the kernel may or
may not offer, as the set's policy asks (``host.Sandbox``):

1. namespaces (``worker.namespaces``): a user namespace (no capabilities
   over the host) and, for a set without network access, a network
   namespace;
2. Landlock (``worker.landlock``): writes only beneath the scratch
   directory, no TCP without network access, no signals to or ptrace of
   processes outside the worker;
3. a seccomp filter (``worker.seccomp``): no ptrace, namespaces, mounts,
   bpf, keyrings..., no signals to the host or zygote;
4. probes: each claim is then tried for real, from inside the worker, and
   reported as in force only when the attempt failed the right way AND the
   layer that covers every other path to the same thing is in place (a
   probe tries one path):

   - ``network_blocked``: a TCP connection to 127.0.0.1 fails with
     "network unreachable" or "permission denied";
   - ``writes_confined``: creating a file next to the scratch directory
     fails with "permission denied";
   - ``reads_confined`` (only when the policy asks): listing the directory
     that holds the scratch directory fails with "permission denied";
   - ``host_signals_blocked``: ``kill(host, 0)`` (and the zygote's pid)
     fails with "operation not permitted";
   - ``host_memory_hidden``: reading ``/proc/<host>/environ`` fails with
     "permission denied".

On failure nothing raises here; ``apply`` returns the report and the names
of requested claims that do not hold, and the start sequence decides (a
policy with ``required`` turns them into a load failure).
"""

from __future__ import annotations

import _socket  # not socket: 3 ms less for a spawned worker
import errno
import os
import resource
import sys

from worker import egress_door, landlock, namespaces, seccomp
from worker.enclosure import Enclosure
from worker.loader import environment_site_packages


def protected_pids(host_pid: int, parent_pid: int) -> set[int]:
    """The host, the zygote and their process groups: what no signal from
    the worker may reach (a worker then removes its own group)."""
    pids = {host_pid, parent_pid}
    for pid in (host_pid, parent_pid):
        try:
            pids.add(os.getpgid(pid))
        except OSError:
            pass
    pids.discard(0)
    return pids


def prepare(host_pid: int, parent_pid: int) -> None:
    """Build ahead what ``apply`` would build for a worker of these parents
    (the zygote calls it once, so its forked workers skip that work)."""
    seccomp.prepare_ahead(protected_pids(host_pid, parent_pid))
    seccomp.prepare_ahead(set())  # a worker in its own PID namespace


#: What a worker confined for reads may still read, besides its import path
#: (sys.path, the interpreter's prefix), its scratch directory and the set's
#: directory: system binaries and libraries, devices, /proc (other processes'
#: environ and memory stay behind Landlock's ptrace rule), and the parts of
#: /etc that name resolution, TLS, time zones and user lookups need.
SYSTEM_READABLE = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/dev",
    "/proc",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/passwd",
    "/etc/group",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/mime.types",
    "/etc/os-release",
)


def readable_paths(extra: list[str]) -> list[str]:
    """The paths a worker confined for reads may read (``extra``: the set's
    directory, its extra import paths, the policy's ``readable_paths``)."""
    interpreter = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)}
    site_packages = environment_site_packages()  # joins sys.path only inside the wall
    if site_packages is not None:
        interpreter.add(site_packages)
    return [*filter(None, sys.path), *sorted(interpreter), *SYSTEM_READABLE, *extra]


def _connect_refused() -> bool:
    try:
        probe = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    except OSError as exc:  # seccomp refuses IP sockets without a namespace
        return exc.errno in (errno.EACCES, errno.EPERM)
    try:
        probe.settimeout(0.5)
        probe.connect(("127.0.0.1", 9))
    except OSError as exc:
        return exc.errno in (errno.ENETUNREACH, errno.EACCES, errno.EPERM)
    finally:
        probe.close()
    return False


def _write_refused(directory: str) -> bool:
    path = os.path.join(directory, f".fnhost-write-probe-{os.getpid()}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except PermissionError:
        return True
    except OSError:
        return False
    os.close(fd)
    os.unlink(path)
    return False


def _read_refused(directory: str) -> bool:
    try:
        os.listdir(directory)
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def _signal_refused(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except ProcessLookupError:
        return True  # not visible from here: cannot be signalled either
    return False


def _environ_hidden(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            f.read(1)
    except (PermissionError, ProcessLookupError, FileNotFoundError):
        return True
    except OSError:
        return False
    return False


def _limits_refused(pid: int) -> bool:
    """``prlimit`` on ``pid`` (read only: a refused read means a refused
    write; the kernel checks the same ids for both)."""
    try:
        resource.prlimit(pid, resource.RLIMIT_CORE)
    except (PermissionError, ProcessLookupError):
        return True
    except OSError:
        return False
    return False


def _host_hidden(pid: int) -> bool:
    """The host's pid names no process here (another PID namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _uid_fixed(host_uid: int) -> bool:
    """Our uid is not the host's and cannot become it again."""
    if os.getuid() == host_uid or os.geteuid() == host_uid:
        return False
    try:
        os.setresuid(host_uid, host_uid, host_uid)
    except OSError:  # EPERM; EINVAL in a user namespace that does not map it
        return True
    return False


def _memfd_refused() -> bool:
    try:
        fd = os.memfd_create("fnhost-probe")
    except PermissionError:
        return True
    except OSError:
        return False
    os.close(fd)
    return False


def probe(host_pid: int, parent_pid: int, scratch: str) -> dict[str, bool]:
    """Try each thing a confined worker must not be able to do (cheap: a
    handful of system calls, no waiting)."""
    outside = os.path.dirname(os.path.abspath(scratch))
    pids = {host_pid, parent_pid}
    return {
        "network_blocked": _connect_refused(),
        "writes_confined": _write_refused(outside),
        "reads_confined": _read_refused(outside),
        "host_signals_blocked": all(_signal_refused(p) for p in pids),
        "host_memory_hidden": _environ_hidden(host_pid),
        "host_limits_protected": all(_limits_refused(p) for p in pids),
        "host_invisible": all(_host_hidden(p) for p in pids),
        "memfd_refused": _memfd_refused(),
    }


def apply(
    policy: dict,
    host_pid: int,
    parent_pid: int,
    scratch: str,
    capture_fds: list[int],
    set_paths: list[str] | tuple[str, ...] = (),
    enclosed: Enclosure | None = None,
    host_uid: int = 0,
    egress_fd: int | None = None,
) -> tuple[dict[str, bool], list[str]]:
    """Apply the policy's layers, probe them; return (report, unmet claims).

    ``policy`` keys (all optional; the defaults are the strict ones):
    ``network`` (bool, default False), ``confine_writes`` (True),
    ``writable_paths`` (list), ``isolate_processes`` (True),
    ``user_namespace`` (True), ``restrict_syscalls`` (True),
    ``confine_reads`` (False), ``readable_paths`` (list). ``set_paths``: the
    set's directory and import paths, readable when reads are confined.
    ``enclosed``: what ``worker.enclosure`` set up before (own uid, mount,
    IPC, PID and network namespaces); ``host_uid``: the host's uid.
    ``egress_fd``: an egress set's door socket, if ``enclosed`` did not
    open the door already (it is opened here in the network namespace made
    here, or closed).
    """
    enclosed = enclosed or Enclosure()
    network = bool(policy.get("network", False))
    confine_writes = bool(policy.get("confine_writes", True))
    isolate = bool(policy.get("isolate_processes", True))
    user_ns = bool(policy.get("user_namespace", True))
    confine_reads = bool(policy.get("confine_reads", False))

    # A worker still in the user namespace that maps it to root (a host that
    # is not root: worker.enclosure) must leave it, whatever the policy says.
    ns = namespaces.isolate(
        user=user_ns or enclosed.mapped, network=not network and not enclosed.network
    )
    egress = bool(policy.get("egress", False))
    door = enclosed.door
    if egress_fd is not None and door is None:
        if egress and ns.network:  # ours since isolate: we hold its capabilities
            door = egress_door.open_door(egress_fd) or ""
        else:
            os.close(egress_fd)
    ns.network = ns.network or enclosed.network
    report = {"user_namespace": ns.user, "network_namespace": ns.network, **enclosed.report()}
    writable = list(policy.get("writable_paths") or ())
    if enclosed.view.tmpfs:
        writable.append("/dev/shm")  # private, and inside the disk_mb budget
    if enclosed.view.devpts:
        writable += ["/dev/ptmx", "/dev/pts"]  # a private instance: ptys work
    confined = landlock.Confinement()
    if confine_writes or confine_reads or isolate or not network:
        confined = landlock.confine(
            scratch,
            writable=writable,
            writable_fds=capture_fds,
            confine_writes=confine_writes,
            # A network namespace already answers "network unreachable";
            # without one, seccomp refuses IP sockets and Landlock's TCP rule
            # stays as a second line.
            deny_tcp=not network and not ns.network,
            scope_processes=isolate,
            readable=readable_paths([*set_paths, *(policy.get("readable_paths") or ())])
            if confine_reads
            else None,
        )
    report["landlock"] = confined.restricted
    filtered = bool(policy.get("restrict_syscalls", True))
    seccomp_error = None
    if filtered:
        # Signalling our own group stays possible.
        pids = protected_pids(host_pid, parent_pid) - {os.getpgid(0)}
        if enclosed.namespaces:
            pids = set()  # the host's pids name other processes (or none) in here
        seccomp_error = seccomp.install(pids, deny_inet=not network and not ns.network)
    report["seccomp"] = filtered and seccomp_error is None and seccomp.active()
    probes = probe(host_pid, parent_pid, scratch)
    # A claim needs its probe to have been refused AND the layer that makes
    # it hold for every path, not only the one the probe tried.
    report["network_blocked"] = probes["network_blocked"] and (
        ns.network or (not network and report["seccomp"])  # no IP sockets at all
    )
    # truncate(2) is a write too: Landlock handles it from ABI 3.
    report["writes_confined"] = (
        probes["writes_confined"] and confined.filesystem and confined.abi >= 3
    )
    report["reads_confined"] = probes["reads_confined"] and confined.reads
    # seccomp alone cannot refuse a host *thread*'s id; Landlock's scope can.
    report["host_signals_blocked"] = probes["host_signals_blocked"] and confined.signals
    report["host_memory_hidden"] = probes["host_memory_hidden"] and (
        confined.restricted or (enclosed.own_uid and enclosed.view.proc)
    )
    report["own_uid"] = enclosed.own_uid and _uid_fixed(host_uid)
    report["host_limits_protected"] = probes["host_limits_protected"] and (
        report["own_uid"] or enclosed.namespaces
    )
    # A PID namespace: the host, the zygote and other workers have no pid here.
    report["pid_namespace"] = enclosed.namespaces and probes["host_invisible"]
    report["memfd_refused"] = probes["memfd_refused"] and report["seccomp"]
    if egress:
        # The only way out is the door: loopback alone, no route, and the
        # listener handed to the host's proxy.
        report["egress_only"] = ns.network and door == "" and egress_door.probe()

    unmet = []
    if user_ns and not ns.user:
        unmet.append(f"user_namespace ({ns.error})")
    if filtered and not report["seccomp"]:
        unmet.append(f"seccomp ({seccomp_error or 'the probe was not refused'})")
    if egress and not report["egress_only"]:
        unmet.append(f"egress_only ({door or 'no network namespace of its own'})")
    wanted = {
        "network_blocked": not network and not egress,
        "writes_confined": confine_writes,
        "reads_confined": confine_reads,
        "host_signals_blocked": isolate,
        "host_memory_hidden": isolate,
        "own_uid": bool(policy.get("own_uid", True)) and host_uid == 0,
        "pid_namespace": bool(policy.get("private_namespaces", True)) and host_uid == 0,
    }
    for claim, asked in wanted.items():
        if asked and not report[claim]:
            unmet.append(claim + (f" ({confined.error})" if confined.error else ""))
    return report, unmet
