"""The stronger isolation layers (host.Sandbox): namespaces and Landlock.

Each test does the forbidden thing for real from inside a worker. What the
kernel of the machine running the tests offers is found out independently
(a throwaway child process tries the same system calls), so the tests hold
on machines with and without each layer: where a layer is available the
attempt must fail and ``fh.protections`` must say so; where it is not, the
report must say it is not in force. Nothing is assumed from configuration.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading

import pytest

from host import Limits, LoadError, Sandbox
from worker.landlock import abi_version

from .conftest import process_alive

# A root host's workers have their own PID namespace and a read-only view
# (worker/enclosure.py): the host's pids name nothing there (ESRCH), its
# /proc/<pid> is absent (ENOENT), and writes outside scratch meet a
# read-only mount (EROFS) before Landlock (EACCES).
WRITE_REFUSED = {"EACCES", "EROFS"}
SIGNAL_REFUSED = {"EPERM", "ESRCH"}
HIDDEN = {"EACCES", "ENOENT"}

LANDLOCK_ABI = abi_version()


def _namespaces_available() -> dict[str, bool]:
    code = (
        "import json; from worker.namespaces import isolate; "
        "r = isolate(user=True, network=True); "
        "print(json.dumps({'user': r.user, 'network': r.network}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


NAMESPACES = _namespaces_available()


def _seccomp_available() -> bool:
    with open("/proc/self/status") as f:
        return "Seccomp:" in f.read() and platform.machine() in ("x86_64", "aarch64")


SECCOMP_AVAILABLE = _seccomp_available()
# Claimed only with a layer that covers every IP path: an own network
# namespace, or (without one) seccomp refusing IP sockets.
NETWORK_BLOCKABLE = NAMESPACES["network"] or SECCOMP_AVAILABLE
# What a connection attempt from a default-policy worker must end with: its own
# network namespace says "unreachable"; Landlock alone says "permission denied".
OFFLINE = (
    "ENETUNREACH"
    if NAMESPACES["network"]
    else "EPERM"  # the socket itself is refused
    if SECCOMP_AVAILABLE
    else "EACCES"  # Landlock's TCP rule, not claimed as blocking the network
    if LANDLOCK_ABI >= 4
    else "connected"
)
# Landlock handles truncate(2) from ABI 3: only then are writes claimed confined.
WRITES_CONFINED = LANDLOCK_ABI >= 3
SCOPED_SIGNALS = LANDLOCK_ABI >= 6

PROBES = """
import ctypes
import errno
import os
import socket
import subprocess
import sys


def connect(port: int) -> str:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "connected"


def connect_from_child(port: int) -> str:
    code = (
        "import socket, errno\\n"
        "try:\\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\\n"
        "    print('connected')\\n"
        "except OSError as e:\\n"
        "    print(errno.errorcode.get(e.errno, e.errno))\\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.stdout.strip()


def write(path: str) -> str:
    try:
        with open(path, "w") as f:
            f.write("escaped")
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "written"


def write_from_child(path: str) -> int:
    return subprocess.run(["sh", "-c", f"echo escaped > {path}"], capture_output=True).returncode


def scratch_work() -> dict:
    import tempfile
    with open("here.txt", "w") as f:
        f.write("ok")
    os.rename("here.txt", "there.txt")
    os.mkdir("sub")
    with tempfile.NamedTemporaryFile(dir=None) as t:
        t.write(b"x")
        tmp = t.name
    with open("/dev/null", "w") as f:
        f.write("discarded")
    with open("/dev/stdout", "w") as f:
        f.write("through /dev/stdout")
    os.remove("there.txt")
    return {"tmp_in_cwd": os.path.dirname(tmp) == os.getcwd(), "files": sorted(os.listdir("."))}


def send(pid: int, sig: int) -> str:
    try:
        os.kill(pid, sig)
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "sent"


def read_environ(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return "read " + str(len(f.read()))
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def seize(pid: int) -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    PTRACE_SEIZE, PTRACE_DETACH = 0x4206, 17
    if libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0:
        libc.ptrace(PTRACE_DETACH, pid, None, None)
        return "seized"
    return errno.errorcode.get(ctypes.get_errno(), "?")


def my_pid() -> int:
    return os.getpid()


def other_routes(host_pid: int, host_tid: int, udp_port: int) -> dict:
    # Ways to reach the host that kill(host, 0) does not try.
    libc = ctypes.CDLL(None, use_errno=True)

    def outcome(ret: int) -> str:
        return "allowed" if ret == 0 else errno.errorcode[ctypes.get_errno()]

    out = {"kill_thread": outcome(libc.kill(host_tid, 0))}
    info = (ctypes.c_int * 32)()
    info[0], info[2] = 0, -1  # si_signo 0, si_code SI_QUEUE
    SYS_rt_sigqueueinfo = 129 if os.uname().machine == "x86_64" else 138
    out["sigqueue"] = outcome(libc.syscall(SYS_rt_sigqueueinfo, host_pid, 0, info))
    r, w = os.pipe()
    F_SETOWN = 8
    out["setown"] = outcome(libc.fcntl(r, F_SETOWN, host_pid))
    os.close(r)
    os.close(w)
    try:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.sendto(b"x", ("127.0.0.1", udp_port))
        out["udp"] = "sent"
    except OSError as exc:
        out["udp"] = errno.errorcode.get(exc.errno, str(exc.errno))
    return out


def filtered_calls() -> dict:
    import threading
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}
    child = subprocess.Popen(["sleep", "30"])  # clone3 -> ENOSYS -> clone: still works
    PTRACE_SEIZE, PTRACE_DETACH = 0x4206, 17
    if libc.ptrace(PTRACE_SEIZE, child.pid, None, None) == 0:
        libc.ptrace(PTRACE_DETACH, child.pid, None, None)
        out["ptrace_own_child"] = "seized"
    else:
        out["ptrace_own_child"] = errno.errorcode[ctypes.get_errno()]
    child.kill()
    out["child_status"] = child.wait()
    CLONE_NEWUSER = 0x10000000
    if libc.unshare(CLONE_NEWUSER) == 0:
        out["unshare"] = "unshared"
    else:
        out["unshare"] = errno.errorcode[ctypes.get_errno()]
    box = []
    t = threading.Thread(target=box.append, args=(1,))
    t.start()
    t.join()
    out["thread"] = box == [1]
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    out["fork_status"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return out


def my_uid() -> int:
    return os.getuid()


def uid_map() -> str:
    with open("/proc/self/uid_map") as f:
        return " ".join(f.read().split())
"""

METHODS = pytest.mark.parametrize("start_method", ["zygote", "spawn"])


@pytest.fixture
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def victim():
    """A process outside every worker, that a worker tries to signal or trace."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _load(make_host, write_set, sandbox: Sandbox | None = None, start_method: str = "zygote"):
    limits = Limits(timeout=10) if sandbox is None else Limits(timeout=10, sandbox=sandbox)
    fh = make_host(limits=limits, start_method=start_method)
    fh.load_function_set(write_set("probes", PROBES))
    return fh


# -- network -----------------------------------------------------------------


@METHODS
def test_default_policy_makes_localhost_unreachable(make_host, write_set, listener, start_method):
    fh = _load(make_host, write_set, start_method=start_method)
    outcome = fh.call("connect", {"port": listener})
    report = fh.protections("probes")
    assert outcome == OFFLINE
    assert report["network_blocked"] is NETWORK_BLOCKABLE
    assert report["network_namespace"] is NAMESPACES["network"]


def test_a_subprocess_of_the_worker_is_offline_too(make_host, write_set, listener):
    fh = _load(make_host, write_set)
    assert fh.call("connect_from_child", {"port": listener}) == OFFLINE


def test_network_true_reaches_the_host_network(make_host, write_set, listener):
    fh = _load(make_host, write_set, Sandbox(network=True))
    assert fh.call("connect", {"port": listener}) == "connected"
    report = fh.protections("probes")
    assert report["network_blocked"] is False
    assert report["network_namespace"] is False


# -- filesystem --------------------------------------------------------------


@METHODS
def test_writes_outside_the_scratch_dir_are_refused(make_host, write_set, tmp_path, start_method):
    fh = _load(make_host, write_set, start_method=start_method)
    target = tmp_path / "escaped.txt"
    outcome = fh.call("write", {"path": str(target)})
    report = fh.protections("probes")
    if LANDLOCK_ABI >= 1:
        assert outcome in WRITE_REFUSED
        assert not target.exists()
        assert report["writes_confined"] is WRITES_CONFINED
        assert report["landlock"] is True
    else:
        assert outcome == "written"
        assert report["writes_confined"] is False


def test_a_subprocess_cannot_write_outside_either(make_host, write_set, tmp_path):
    fh = _load(make_host, write_set)
    target = tmp_path / "escaped-by-shell.txt"
    status = fh.call("write_from_child", {"path": str(target)})
    if LANDLOCK_ABI >= 1:
        assert status != 0
        assert not target.exists()
    else:
        assert status == 0 and target.exists()


def test_the_scratch_dir_tempfiles_devnull_and_stdout_stay_writable(make_host, write_set):
    fh = _load(make_host, write_set)
    result = fh.call_detailed("scratch_work")
    assert result.value == {"tmp_in_cwd": True, "files": ["sub"]}
    assert result.stdout == "through /dev/stdout"


def test_writable_paths_are_opened_to_the_worker(make_host, write_set, tmp_path):
    allowed = tmp_path / "shared"
    allowed.mkdir()
    fh = _load(make_host, write_set, Sandbox(writable_paths=(allowed,)))
    assert fh.call("write", {"path": str(allowed / "out.txt")}) == "written"
    assert (allowed / "out.txt").read_text() == "escaped"
    if LANDLOCK_ABI >= 1:
        assert fh.call("write", {"path": str(tmp_path / "next-door.txt")}) in WRITE_REFUSED


def test_confine_writes_false_leaves_the_filesystem_open(make_host, write_set, tmp_path):
    # Without its own uid: with one, the worker writes only what its uid may.
    fh = _load(make_host, write_set, Sandbox(confine_writes=False, own_uid=False))
    assert fh.call("write", {"path": str(tmp_path / "free.txt")}) == "written"
    assert fh.protections("probes")["writes_confined"] is False


# -- other processes ---------------------------------------------------------


@METHODS
def test_the_worker_cannot_signal_the_host_or_other_processes(
    make_host, write_set, victim, start_method
):
    fh = _load(make_host, write_set, start_method=start_method)
    host_reply = fh.call("send", {"pid": os.getpid(), "sig": 0})
    victim_reply = fh.call("send", {"pid": victim, "sig": int(signal.SIGKILL)})
    report = fh.protections("probes")
    if SCOPED_SIGNALS:
        assert host_reply in SIGNAL_REFUSED
        assert victim_reply in SIGNAL_REFUSED
        assert process_alive(victim)
        assert report["host_signals_blocked"] is True
    else:
        # seccomp refuses kill() aimed at the host's pid, but a host thread's
        # id would get through: not claimed without Landlock's scoping.
        assert host_reply in (SIGNAL_REFUSED if SECCOMP_AVAILABLE else {"sent"})
        assert report["host_signals_blocked"] is False


def test_workers_of_different_sets_cannot_signal_each_other(make_host, write_set):
    fh = make_host()
    fh.load_function_set(write_set("one", PROBES))
    fh.load_function_set(
        write_set("two", "import os\ndef pid_of_two() -> int:\n    return os.getpid()\n")
    )
    other = fh.call("pid_of_two")
    reply = fh.call("send", {"pid": other, "sig": int(signal.SIGKILL)})
    if SCOPED_SIGNALS:
        assert reply in SIGNAL_REFUSED
        assert fh.call("pid_of_two") == other
    else:
        assert reply == "sent"


def test_host_environment_and_memory_are_out_of_reach(make_host, write_set, monkeypatch, victim):
    monkeypatch.setenv("FNHOST_TEST_SECRET", "s3cr3t-token")
    fh = _load(make_host, write_set)
    reply = fh.call("read_environ", {"pid": os.getpid()})
    report = fh.protections("probes")
    if LANDLOCK_ABI >= 1:
        assert reply in HIDDEN
        assert fh.call("read_environ", {"pid": victim}) in HIDDEN
        assert fh.call("seize", {"pid": os.getpid()}) in SIGNAL_REFUSED
        assert report["host_memory_hidden"] is True
    else:
        assert reply.startswith("read ")
        assert report["host_memory_hidden"] is False


def test_a_worker_can_still_manage_its_own_children(make_host, write_set):
    """Scoping stops signals leaving the worker's domain, not within it."""
    source = (
        "import os, signal, subprocess\n"
        "def kill_child() -> int:\n"
        "    p = subprocess.Popen(['sleep', '30'])\n"
        "    os.kill(p.pid, signal.SIGTERM)\n"
        "    return p.wait()\n"
    )
    fh = make_host()
    fh.load_function_set(write_set("parent", source))
    assert fh.call("kill_child") == -signal.SIGTERM


# -- user namespace ----------------------------------------------------------


def test_the_worker_runs_in_its_own_user_namespace(make_host, write_set):
    fh = _load(make_host, write_set)
    mapping = fh.call("uid_map")
    report = fh.protections("probes")
    if NAMESPACES["user"]:
        assert mapping == ""  # nothing mapped: no capability applies to any file
        assert fh.call("my_uid") == 65534  # the overflow id
        assert report["user_namespace"] is True
        assert fh.call("send", {"pid": fh.call("my_pid"), "sig": 0}) == "sent"
    else:
        assert mapping == "0 0 4294967295"
        assert report["user_namespace"] is False


# -- policy ------------------------------------------------------------------


def test_sandbox_off_reports_no_stronger_layer(make_host, write_set, listener, tmp_path):
    fh = _load(make_host, write_set, Sandbox.off())
    report = fh.protections("probes")
    for claim in (
        "seccomp",
        "network_blocked",
        "writes_confined",
        "host_signals_blocked",
        "host_memory_hidden",
        "user_namespace",
        "network_namespace",
        "landlock",
    ):
        assert report[claim] is False, claim
    assert fh.call("connect", {"port": listener}) == "connected"
    assert fh.call("write", {"path": str(tmp_path / "open.txt")}) == "written"
    assert report["no_new_privileges"] is True  # the always-on layers stay


def test_required_policy_loads_when_every_layer_holds(make_host, write_set):
    available = NETWORK_BLOCKABLE and LANDLOCK_ABI >= 6 and NAMESPACES["user"] and SECCOMP_AVAILABLE
    sandbox = Sandbox(required=True)
    if available:
        fh = _load(make_host, write_set, sandbox)
        report = fh.protections("probes")
        assert all(
            report[k]
            for k in (
                "network_blocked",
                "writes_confined",
                "host_signals_blocked",
                "host_memory_hidden",
                "user_namespace",
            )
        )
    else:
        with pytest.raises(LoadError, match="sandbox policy requires"):
            _load(make_host, write_set, sandbox)


def test_required_policy_refuses_a_claim_that_does_not_hold(make_host, write_set, tmp_path):
    """A readable path that covers the scratch dir's parent makes 'reads
    confined' untrue; the probe sees it and the load fails."""
    sandbox = Sandbox(confine_reads=True, readable_paths=("/",), required=True)
    with pytest.raises(LoadError) as info:
        _load(make_host, write_set, sandbox)
    assert "reads_confined" in str(info.value)
    assert info.value.remote_type == "SandboxUnavailable"


def test_sandbox_rejects_a_single_string_as_writable_paths():
    with pytest.raises(TypeError):
        Sandbox(writable_paths="/tmp")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Sandbox(readable_paths="/tmp")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Limits(sandbox={"network": True})  # type: ignore[arg-type]


# -- command line ------------------------------------------------------------


def _fnhost_call(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host", "call", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_network_and_writable_options(write_set, tmp_path, listener):
    path = str(write_set("probes", PROBES))
    offline = _fnhost_call(path, "--no-builtins", "connect", json.dumps({"port": listener}))
    online = _fnhost_call(
        path, "--no-builtins", "--network", "connect", json.dumps({"port": listener})
    )
    assert online.returncode == 0, online.stderr
    assert json.loads(online.stdout) == "connected"
    assert json.loads(offline.stdout) == OFFLINE

    target = str(tmp_path / "cli-out.txt")
    args = json.dumps({"path": target})
    refused = _fnhost_call(path, "--no-builtins", "write", args)
    allowed = _fnhost_call(path, "--no-builtins", "--writable", str(tmp_path), "write", args)
    assert json.loads(refused.stdout) in (WRITE_REFUSED if LANDLOCK_ABI >= 1 else {"written"})
    assert json.loads(allowed.stdout) == "written"


def test_doctor_reports_the_layers_this_kernel_offers():
    done = subprocess.run(
        [sys.executable, "-m", "host", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    status = {layer["name"]: layer["status"] for layer in json.loads(done.stdout)}
    expected = {
        "landlock": LANDLOCK_ABI >= 1,
        "writes_confined": WRITES_CONFINED,
        "host_memory_hidden": LANDLOCK_ABI >= 1,
        "host_signals_blocked": SCOPED_SIGNALS,
        "network_blocked": NETWORK_BLOCKABLE,
        "network_namespace": NAMESPACES["network"],
        "user_namespace": NAMESPACES["user"],
        "seccomp": SECCOMP_AVAILABLE,
    }
    for name, active in expected.items():
        assert status[name] == ("active" if active else "unavailable"), name


# -- seccomp -----------------------------------------------------------------


def test_seccomp_refuses_ptrace_and_namespaces_but_not_forks_or_threads(make_host, write_set):
    fh = _load(make_host, write_set)
    out = fh.call("filtered_calls")
    assert out["thread"] is True
    assert out["fork_status"] == 7
    assert out["child_status"] == -signal.SIGKILL
    report = fh.protections("probes")
    if SECCOMP_AVAILABLE:
        assert report["seccomp"] is True
        # Landlock alone would allow tracing one's own child: this is the filter.
        assert out["ptrace_own_child"] == "EPERM"
        assert out["unshare"] == "EPERM"
    else:
        assert report["seccomp"] is False


def test_without_the_filter_the_same_calls_go_through(make_host, write_set):
    fh = _load(make_host, write_set, Sandbox(restrict_syscalls=False))
    out = fh.call("filtered_calls")
    assert fh.protections("probes")["seccomp"] is False
    assert out["ptrace_own_child"] == "seized"
    if NAMESPACES["user"]:
        # Even without the filter: nothing is mapped in the worker's user
        # namespace, and the kernel refuses a nested one to an unmapped uid.
        assert out["unshare"] == "EPERM"


SOCKET_FAMILIES = """
import errno
import socket


def families() -> dict:
    out = {}
    for name, family, kind in (
        ("unix", socket.AF_UNIX, socket.SOCK_STREAM),
        ("inet", socket.AF_INET, socket.SOCK_STREAM),
        ("vsock", 40, socket.SOCK_STREAM),
        ("packet", 17, socket.SOCK_RAW),
        ("alg", 38, socket.SOCK_SEQPACKET),
        ("can", 29, socket.SOCK_RAW),
    ):
        try:
            socket.socket(family, kind).close()
            out[name] = "created"
        except OSError as exc:
            out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
    for name, family in (("unix_pair", socket.AF_UNIX), ("vsock_pair", 40), ("tipc_pair", 30)):
        try:
            for s in socket.socketpair(family, socket.SOCK_STREAM):
                s.close()
            out[name] = "created"
        except OSError as exc:
            out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
    return out
"""


def test_sockets_of_families_no_namespace_confines_are_refused(make_host, write_set):
    """AF_VSOCK is not confined by the worker's network namespace (on a VM
    it reaches the VM's host, CID 2); AF_PACKET, AF_ALG and AF_CAN are
    kernel surface no function needs. Unix and IPv4 sockets still work."""
    fh = make_host(limits=Limits(timeout=10))
    fh.load_function_set(write_set("families", SOCKET_FAMILIES))
    out = fh.call("families")
    assert out["unix"] == "created" and out["unix_pair"] == "created"
    assert out["inet"] == "created"  # its own network namespace: loopback only
    if SECCOMP_AVAILABLE:
        assert fh.protections("families")["seccomp"] is True
        refused = ("vsock", "packet", "alg", "can", "vsock_pair", "tipc_pair")
        assert {k: out[k] for k in refused} == dict.fromkeys(refused, "EPERM")


def _run_bpf(program, nr: int, arch: int, *args: int) -> int:
    """A classic-BPF interpreter for the few opcodes the filter uses."""
    data = {0: nr, 4: arch}
    for i, arg in enumerate((*args, 0, 0, 0, 0)[:4]):
        data[16 + 8 * i] = arg & 0xFFFFFFFF
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == 0x20:
            acc = data[k]
        elif code == 0x06:
            return k
        else:
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_filter_program_decides_each_case(machine):
    from worker import seccomp

    host, zygote = 4242, 4343
    program = seccomp.build(machine, {host, zygote})
    nrs = seccomp._NUMBERS[machine]
    arch = seccomp.AUDIT_ARCH[machine]
    allow = seccomp.RET_ALLOW
    eperm = seccomp.RET_ERRNO | errno.EPERM
    enosys = seccomp.RET_ERRNO | errno.ENOSYS
    cases = [
        (nrs["ptrace"], 0, eperm),
        (nrs["unshare"], 0, eperm),
        (nrs["bpf"], 0, eperm),
        (nrs["clone3"], 0, enosys),
        (nrs["clone"], 0x11 | 0x01000000 | 0x00200000, allow),  # fork's flags
        (nrs["clone"], 0x11 | 0x10000000, eperm),  # CLONE_NEWUSER
        (nrs["clone"], 0x11 | 0x40000000, eperm),  # CLONE_NEWNET
        (nrs["kill"], host, eperm),
        (nrs["kill"], -host, eperm),
        (nrs["kill"], zygote, eperm),
        (nrs["kill"], -1, eperm),
        (nrs["kill"], 999, allow),
        (nrs["kill"], 0, allow),
        (nrs["tgkill"], host, eperm),
        (nrs["tgkill"], 999, allow),
        (0, 0, allow),  # read / io_setup: everything else passes
    ]
    cases += [
        (nrs["rt_sigqueueinfo"], host, eperm),
        (nrs["rt_tgsigqueueinfo"], zygote, eperm),
        (nrs["rt_sigqueueinfo"], 999, allow),
        (nrs["io_uring_setup"], 8, eperm),
    ]
    for nr, arg0, expected in cases:
        assert _run_bpf(program, nr, arch, arg0) == expected, (nr, arg0)
    F_SETFL, F_SETOWN, F_SETOWN_EX = 4, 8, 15
    F_SETLEASE = 1024
    for cmd, expected in (
        (F_SETOWN, eperm),
        (F_SETOWN_EX, eperm),
        (F_SETLEASE, eperm),
        (F_SETFL, allow),
    ):
        assert _run_bpf(program, nrs["fcntl"], arch, 3, cmd) == expected, cmd
    AF_INET, AF_INET6, AF_UNIX, AF_NETLINK = 2, 10, 1, 16
    NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
    offline = seccomp.build(machine, {host}, deny_inet=True)
    for family, proto, default, denied_inet in (
        (AF_INET, 0, allow, eperm),
        (AF_INET6, 0, allow, eperm),
        (AF_UNIX, 0, allow, allow),  # asyncio and multiprocessing need socketpairs
        (AF_NETLINK, NETLINK_ROUTE, allow, allow),  # getaddrinfo(AI_ADDRCONFIG)
        (AF_NETLINK, NETLINK_NETFILTER, eperm, eperm),
        # No network namespace confines vsock (a VM's host is CID 2); the
        # other families are attack surface no function needs.
        (40, 0, eperm, eperm),  # AF_VSOCK
        (17, 0, eperm, eperm),  # AF_PACKET
        (38, 0, eperm, eperm),  # AF_ALG
        (31, 0, eperm, eperm),  # AF_BLUETOOTH
        (29, 0, eperm, eperm),  # AF_CAN
        (44, 0, eperm, eperm),  # AF_XDP
    ):
        args = (family, 1, proto)
        assert _run_bpf(program, nrs["socket"], arch, *args) == default, args
        assert _run_bpf(offline, nrs["socket"], arch, *args) == denied_inet, args
        pair = allow if family == AF_UNIX else eperm  # pairs: Unix only
        assert _run_bpf(program, nrs["socketpair"], arch, *args) == pair, args
    # File modes with setuid/setgid bits; openat2's mode is out of sight.
    modes = seccomp._MODE_ARGUMENT[machine]
    for name in ("fchmod", "fchmodat", "openat", "mknodat"):
        nr, position = modes[name]
        for mode, expected in ((0o4755, eperm), (0o2755, eperm), (0o755, allow)):
            args = [3, 0, 0, 0]
            args[position] = mode
            assert _run_bpf(program, nr, arch, *args) == expected, (name, oct(mode))
    assert _run_bpf(program, nrs["openat2"], arch, 3) == enosys
    assert _run_bpf(program, nrs["memfd_create"], arch, 0) == eperm
    assert _run_bpf(program, nrs["kill"], 0x40000003, 999) == eperm  # i386 ABI
    if machine == "x86_64":
        assert _run_bpf(program, 0x40000000 | 1, arch) == eperm  # x32 ABI


def test_other_routes_to_the_host_are_closed_where_claimed(make_host, write_set):
    """kill() of a host *thread*, rt_sigqueueinfo, F_SETOWN (SIGIO) and UDP:
    the paths a probe does not try, closed wherever the claim is made."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="host-thread")
    thread.start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.3)
    try:
        fh = _load(make_host, write_set)
        port = udp.getsockname()[1]
        args = {"host_pid": os.getpid(), "host_tid": thread.native_id, "udp_port": port}
        out = fh.call("other_routes", args)
        report = fh.protections("probes")
        try:
            udp.recvfrom(16)
            received = True
        except TimeoutError:
            received = False
    finally:
        stop.set()
        thread.join()
        udp.close()
    if report["host_signals_blocked"]:
        assert out["kill_thread"] in SIGNAL_REFUSED
        assert out["sigqueue"] in SIGNAL_REFUSED
    if SECCOMP_AVAILABLE:
        assert out["setown"] == "EPERM"
    if report["network_blocked"]:
        assert out["udp"] in ("ENETUNREACH", "EPERM") and not received
    else:
        assert out["udp"] == "sent" and received
    # On this machine kind every layer is there; make the test say so when not.
    assert report["host_signals_blocked"] is SCOPED_SIGNALS
    assert report["network_blocked"] is NETWORK_BLOCKABLE


# -- reads (opt-in) ------------------------------------------------------------

READER = """
import errno
import json
import os
import sqlite3
import ssl
import subprocess


def read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return "read " + str(len(f.read(64)))
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def listing(path: str) -> str:
    try:
        return "listed " + str(len(os.listdir(path)))
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def run_true() -> int:
    return subprocess.run(["true"]).returncode
"""


def test_reads_are_not_confined_by_default(make_host, write_set, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    # A root host's workers have their own uid and read only what others may
    # (tests/test_wall.py); without it, what the host's user may.
    fh = make_host(limits=Limits(timeout=10, sandbox=Sandbox(own_uid=False)))
    fh.load_function_set(write_set("reader", READER))
    assert fh.call("read", {"path": str(secret)}) == "read 6"
    assert fh.protections("reader")["reads_confined"] is False


@METHODS
def test_confine_reads_keeps_other_files_out_of_reach(make_host, write_set, tmp_path, start_method):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("data")
    sandbox = Sandbox(confine_reads=True, readable_paths=(shared,))
    fh = make_host(limits=Limits(timeout=10, sandbox=sandbox), start_method=start_method)
    path = write_set("reader", READER)  # imports json, sqlite3, ssl after confinement
    fh.load_function_set(path)
    report = fh.protections("reader")
    if LANDLOCK_ABI >= 1:
        assert fh.call("read", {"path": str(secret)}) in HIDDEN
        assert fh.call("listing", {"path": str(tmp_path)}) in HIDDEN
        assert report["reads_confined"] is True
    else:
        assert fh.call("read", {"path": str(secret)}) == "read 6"
        assert report["reads_confined"] is False
    # What a tool needs stays readable: its own directory, readable_paths,
    # system files for name resolution, binaries for subprocesses.
    assert fh.call("read", {"path": str(path)}).startswith("read ")
    assert fh.call("read", {"path": str(shared / "data.txt")}) == "read 4"
    assert fh.call("read", {"path": "/etc/hosts"}).startswith("read ")
    assert fh.call("run_true") == 0


def test_cli_confine_reads_and_readable(write_set, tmp_path):
    path = str(write_set("reader", READER))
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    args = json.dumps({"path": str(secret)})
    open_ = _fnhost_call(path, "--no-builtins", "read", args)
    confined = _fnhost_call(path, "--no-builtins", "--confine-reads", "read", args)
    allowed = _fnhost_call(path, "--no-builtins", "--readable", str(secret), "read", args)
    # A root host's worker has its own uid: tmp_path (0700) is out of sight.
    assert json.loads(open_.stdout) in (HIDDEN if os.geteuid() == 0 else {"read 6"})
    assert json.loads(confined.stdout) in (HIDDEN if LANDLOCK_ABI >= 1 else {"read 6"})
    assert json.loads(allowed.stdout) == "read 6"
