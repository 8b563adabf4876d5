"""``fnhost doctor``: which isolation layers are in force here, probed, not assumed.

"active" means a worker started by this host just now applied the layer
and its system call succeeded (the worker reports each one). "available"
means the kernel or system offers it but this version of fnhost does not
use it yet. Nothing is reported from configuration alone.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from dataclasses import dataclass

from host.api.function_host import FunctionHost
from host.egress.policy import Egress
from host.errors import HostError
from host.launch.memory_cgroups import limit_of
from host.limits import Limits
from host.sandbox import Sandbox

SYS_LANDLOCK_CREATE_RULESET = 444  # x86_64 and aarch64
LANDLOCK_CREATE_RULESET_VERSION = 1

_PROBE = """
def probe() -> dict:
    import os
    return {"ppid": os.getppid(), "env": sorted(os.environ), "cwd": os.getcwd(),
            "home": os.environ.get("HOME")}
"""

_EGRESS_PROBE = """
def egress_probe() -> str:
    import socket
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(b"CONNECT fnhost-doctor.invalid:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    answer = s.recv(4096).decode("latin-1")
    s.close()
    return answer.split("\\r\\n", 1)[0]
"""


@dataclass(frozen=True)
class Layer:
    name: str
    status: str  # "active", "available", "unavailable"
    detail: str


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _landlock_abi() -> int | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        abi = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    except (OSError, AttributeError):
        return None
    return abi if abi > 0 else None


def _pidfd_works() -> bool:
    try:
        fd = os.pidfd_open(os.getpid())
    except (OSError, AttributeError):
        return False
    os.close(fd)
    return True


def _outside_view(pid: int) -> dict:
    """What the kernel shows the host of a worker's process tree (its
    warden ``pid`` and descendants): parent, uids, namespaces."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        children = _read(f"/proc/{p}/task/{p}/children") or ""
        todo += [int(c) for c in children.split()]
    uids = set()
    for p in tree:
        status = _read(f"/proc/{p}/status") or ""
        for line in status.splitlines():
            if line.startswith("Uid:"):
                uids |= {int(v) for v in line.split()[1:]}
    stat = (_read(f"/proc/{pid}/stat") or ") 0 0").rsplit(")", 1)[1].split()

    def ns(p: int, kind: str) -> str | None:
        try:
            return os.readlink(f"/proc/{p}/ns/{kind}")
        except OSError:
            return None

    inner = tree[-1]
    return {
        "memory_cgroup_limit": limit_of(inner),
        "ppid": int(stat[1]),
        "own_uid": bool(uids) and os.getuid() not in uids,
        "pid_namespace": ns(inner, "pid") not in (None, ns(os.getpid(), "pid")),
        "mount_namespace": ns(inner, "mnt") not in (None, ns(os.getpid(), "mnt")),
    }


def _egress_layer(fh: FunctionHost, probe: str) -> Layer:
    """A set with an empty allow-list: its worker must reach the proxy, and
    the proxy must refuse (see ``Sandbox(network=Egress(...))``)."""
    text = "egress proxy: allow-listed hosts only, credentials kept out of the worker"
    try:
        import cryptography  # noqa: F401
        import h11  # noqa: F401
    except ImportError as exc:
        return Layer("egress", "unavailable", f"{text}; pip install 'fnhost[egress]' ({exc.name})")
    limits = Limits(sandbox=Sandbox(network=Egress(allow=[])))
    try:
        fh.load_function_set(probe, limits=limits)
        first_line = fh.call("doctor_egress.egress_probe")
        door = fh.protections("doctor_egress").get("egress_only", False)
    except HostError as exc:
        return Layer("egress", "unavailable", f"{text}; {exc}")
    refused = "403 fnhost egress policy blocked" in first_line
    status = "active" if door and refused else "unavailable"
    return Layer("egress", status, f"{text} (probe: only loopback, proxy answered {first_line!r})")


def diagnose() -> list[Layer]:
    """Start a worker, read what it applied, and probe the rest of the system."""
    layers: list[Layer] = []
    workdir = tempfile.mkdtemp(prefix="fnhost-doctor-")
    probe = os.path.join(workdir, "doctor_probe.py")
    with open(probe, "w") as f:
        f.write(_PROBE)
    # A worker with a uid of its own reads only what others may.
    os.chmod(workdir, 0o755)
    os.chmod(probe, 0o644)
    empty = os.path.join(workdir, "empty")
    os.mkdir(empty)
    with FunctionHost(builtin_dir=empty, user_dirs=[]) as fh:
        fh.load_function_set(probe)
        facts = fh.call("probe")
        reported = dict(fh.function_sets["doctor_probe"]["protections"])
        pid = fh.function_sets["doctor_probe"]["pid"]
        outside = _outside_view(pid)
        forked = outside["ppid"] != os.getpid()
        # Checked from here, against the kernel, not taken from the worker.
        for key in ("own_uid", "pid_namespace", "mount_namespace"):
            if key in reported:
                reported[key] = reported[key] and outside[key]
        if "memory_cgroup" in reported:
            limits = fh.limits
            expected = ((limits.memory_mb or 0) + (limits.disk_mb or 0)) << 20
            limit = outside["memory_cgroup_limit"]
            reported["memory_cgroup"] = reported["memory_cgroup"] and (
                limit is not None and limit <= expected
            )
        egress_probe = os.path.join(workdir, "doctor_egress.py")
        with open(egress_probe, "w") as f:
            f.write(_EGRESS_PROBE)
        os.chmod(egress_probe, 0o644)
        layers.append(_egress_layer(fh, egress_probe))
    shutil.rmtree(workdir, ignore_errors=True)
    names = {
        "own_session": "own session (setsid); timeouts kill the process group",
        "parent_death_signal": "parent-death signal: workers die with the host",
        "no_new_privileges": "no_new_privs: no privilege gain through setuid binaries",
        "rlimit_memory": "address-space limit (Limits.memory_mb)",
        "rlimit_core": "no core files",
        "rlimit_open_files": "open-file limit",
        "rlimit_file_size": "file-size limit",
        "rlimit_cpu": "CPU-time limit",
        "rlimit_processes": "process and thread limit (Limits.max_processes), a count of its own",
        # The stronger layers of the default Sandbox policy: "active" only when
        # the worker's own attempt at the forbidden thing failed.
        "user_namespace": "own user namespace, nothing mapped: no capability on host or files",
        "network_namespace": "own network namespace",
        "landlock": f"Landlock ruleset applied (kernel ABI {_landlock_abi() or 0})",
        "seccomp": "probe: syscall filter refuses ptrace, namespaces, mounts, bpf...",
        "network_blocked": "probe: TCP to 127.0.0.1 fails (Sandbox.network=False)",
        "writes_confined": "probe: creating a file outside the scratch dir fails",
        "host_signals_blocked": "probe: kill(host, 0) fails (Landlock signal scope)",
        "host_memory_hidden": "probe: /proc/<host>/environ unreadable, no ptrace",
        "own_uid": "own uid and gid (root host or subuid range): seen from here on every process",
        "pid_namespace": "own PID namespace: host invisible (seen from here)",
        "mount_namespace": "own mount namespace (seen from here)",
        "ipc_namespace": "own IPC namespace: private SysV memory and queues",
        "read_only_view": "every mount read-only outside scratch and writable_paths",
        "scratch_tmpfs": "scratch and /dev/shm: one private tmpfs (Limits.disk_mb)",
        "private_devpts": "own /dev/pts: the host's terminals are absent",
        "private_proc": "own /proc: only the worker's processes",
        "sysv_memory_capped": "SysV shared memory capped at memory_mb",
        "host_limits_protected": "probe: prlimit on the host fails",
        "memfd_refused": "probe: memfd_create fails (memory no rlimit counts)",
        "memory_cgroup": "own memory cgroup: heap, tmpfs, shared memory under one limit "
        "(memory_mb + disk_mb; seen from here)",
    }
    for key, text in names.items():
        if key in reported:
            layers.append(Layer(key, "active" if reported[key] else "unavailable", text))
    # What the worker saw: only allow-listed variables, HOME = its scratch cwd.
    allowed = {"PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PYTHONUNBUFFERED"}
    clean = set(facts["env"]) <= allowed and facts["home"] == facts["cwd"]
    layers.append(
        Layer(
            "environment",
            "active" if clean else "unavailable",
            "allow-listed environment; scratch directory as cwd and HOME",
        )
    )
    layers.append(
        Layer(
            "pidfd",
            "active" if _pidfd_works() else "unavailable",
            "worker deaths seen from process exit, not pipe EOF",
        )
    )
    layers.append(
        Layer(
            "zygote",
            "active" if forked else "unavailable",
            "workers forked from a pre-loaded template process",
        )
    )
    # Offered by the system, not used by this version yet.
    bwrap = shutil.which("bwrap")
    layers.append(
        Layer(
            "bubblewrap",
            "available" if bwrap else "unavailable",
            f"{bwrap or 'bwrap not installed'}; not needed: the layers above are applied directly",
        )
    )
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    layers.append(
        Layer(
            "cgroup_v2",
            "available" if v2 else "unavailable",
            "unified cgroup hierarchy; not used yet" if v2 else "no unified cgroup v2 hierarchy",
        )
    )
    yama = _read("/proc/sys/kernel/yama/ptrace_scope")
    layers.append(
        Layer(
            "yama_ptrace",
            "active" if yama not in (None, "0") else "unavailable",
            f"ptrace_scope={yama}"
            if yama is not None
            else "no Yama: only Landlock (host_memory_hidden) keeps workers from ptrace",
        )
    )
    return layers
