"""Attacks on the wall between a worker and its host, each written against
a sentence of the README's sandbox section, with the default policy and a
real worker. Where a layer needs root (a private mount, IPC and PID
namespace), the test checks what the report says instead of the attack.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import tempfile
import time

import pytest

from host import Limits, Sandbox, WorkerCrashed
from tests.conftest import both_start_methods, process_tree, wait_for

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="private namespaces need a root host")

ATTACKS = r'''
import ctypes, errno, os, resource, signal


def _outcome(fn, *args):
    try:
        fn(*args)
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "ok"


def meddle(pids: list[int]) -> dict:
    """Try to change each process's limits, priority and CPU placement,
    each time to the value it already has (harmless if it goes through)."""
    out = {}
    for pid in pids:
        out[str(pid)] = [
            _outcome(resource.prlimit, pid, resource.RLIMIT_CORE),
            _outcome(os.setpriority, os.PRIO_PROCESS, pid, 0),
            _outcome(lambda: os.sched_setaffinity(pid, os.sched_getaffinity(pid))),
            _outcome(
                lambda: os.sched_setscheduler(
                    pid, os.sched_getscheduler(pid), os.sched_getparam(pid)
                )
            ),
            _outcome(os.kill, pid, 0),
        ]
    return out


def lease_on_stderr() -> str:
    """A write lease on the capture file would make the host's open() of it
    wait lease-break-time (45 s)."""
    import fcntl

    return _outcome(fcntl.fcntl, 2, 1024, fcntl.F_WRLCK)  # F_SETLEASE


def open_path(path: str) -> str:
    return _outcome(lambda: os.close(os.open(path, os.O_RDONLY | os.O_NOCTTY)))


def chmod(path: str, mode: int) -> str:
    return _outcome(os.chmod, path, mode)


def listing(path: str) -> list[str]:
    return sorted(os.listdir(path))


def open_pty() -> bool:
    a, b = os.openpty()
    os.close(a)
    os.close(b)
    return True


def memfd() -> str:
    return _outcome(os.memfd_create, "x")


def fill(path: str, mib: int) -> list:
    """Write ``mib`` MiB into ``path`` in 1 MiB files; (written, error)."""
    os.makedirs(path, exist_ok=True)
    block = b"x" * (1 << 20)
    for i in range(mib):
        try:
            with open(os.path.join(path, f"f{i}"), "wb") as f:
                f.write(block)
        except OSError as exc:
            return [i, errno.errorcode.get(exc.errno)]
    return [mib, "ok"]


def suid(path: str) -> list:
    """Try to leave a setuid/setgid file behind; the outcomes."""
    with open(path, "w") as f:
        f.write("#!/bin/sh\n")
    return [
        _outcome(os.chmod, path, 0o4755),
        _outcome(lambda: os.close(os.open(path + "2", os.O_CREAT | os.O_WRONLY, 0o6755))),
        _outcome(os.chmod, path, 0o755),
    ]


def try_suid(path: str) -> list:
    """Create a file, then give it the setuid bit; both outcomes."""
    created = _outcome(lambda: os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o755)))
    return [created, _outcome(os.chmod, path, 0o4755)]


def read_text(path: str) -> str:
    try:
        with open(path) as f:
            return "read " + f.read()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def home_flags() -> list[bool]:
    flags = os.statvfs(os.environ["HOME"]).f_flag
    return [bool(flags & os.ST_NOSUID), bool(flags & os.ST_NODEV)]


_libc = ctypes.CDLL(None, use_errno=True)


def shm_get(key: int, size: int, create: bool) -> str:
    flags = (0o1000 | 0o600) if create else 0  # IPC_CREAT
    if _libc.shmget(ctypes.c_int(key), ctypes.c_size_t(size), ctypes.c_int(flags)) < 0:
        return errno.errorcode.get(ctypes.get_errno())
    return "ok"


def pids_here() -> list[int]:
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())


def daemon_chain(marker: str) -> int:
    """A chain of daemons, each in a new session, each forking the next and
    exiting, forever: no process keeps one pid for long."""
    if os.fork() == 0:
        while True:
            os.setsid()
            _libc.prctl(15, marker.encode(), 0, 0, 0)  # PR_SET_NAME
            if os.fork():
                os._exit(0)
            import time
            time.sleep(0.01)
    return os.getpid()
'''


def _load(make_host, write_set, sandbox: Sandbox | None = None, **limits):
    fh = make_host(limits=Limits(timeout=10.0, sandbox=sandbox or Sandbox(), **limits))
    fh.load_function_set(write_set("attacks", ATTACKS))
    return fh


@needs_root
def test_the_host_and_other_workers_cannot_be_reached_by_pid(make_host, write_set):
    fh = _load(make_host, write_set)
    fh.load_function_set(write_set("sibling", "def hello() -> str:\n    return 'hi'\n"))
    sibling = process_tree(fh.function_sets["sibling"]["pid"])
    assert len(sibling) == 3  # warden, init, worker
    targets = [os.getpid(), *sibling]
    outcomes = fh.call("meddle", {"pids": targets})
    for pid in targets:
        assert outcomes[str(pid)] == ["ESRCH"] * 5, (pid, outcomes[str(pid)])
    assert fh.call("hello") == "hi"
    report = fh.protections("attacks")
    assert report["pid_namespace"] is True
    assert report["host_limits_protected"] is True


@needs_root
def test_the_worker_sees_only_its_own_processes(make_host, write_set):
    fh = _load(make_host, write_set)
    # init, and the worker under the pid number the host knows it by.
    assert fh.call("pids_here") == [1, fh.function_sets["attacks"]["pid"]]
    assert fh.protections("attacks")["private_proc"] is True


@needs_root
def test_the_hosts_terminals_are_absent_and_ptys_still_work(make_host, write_set):
    fh = _load(make_host, write_set)
    leader, follower = os.openpty()
    try:
        name = os.ttyname(follower)
        assert fh.call("open_path", {"path": name}) == "ENOENT"
    finally:
        os.close(leader)
        os.close(follower)
    assert fh.call("listing", {"path": "/dev/pts"}) == ["ptmx"]
    assert fh.call("open_pty") is True
    assert fh.protections("attacks")["private_devpts"] is True


@pytest.fixture
def world_readable_dir():
    """A directory every uid can reach (tmp_path is 0700: hidden from a
    worker with its own uid)."""
    path = tempfile.mkdtemp(prefix="fnhost-test-shared-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_root
@pytest.mark.parametrize("own_uid", [True, False])
def test_files_outside_scratch_cannot_be_chmod_ed(
    make_host, write_set, world_readable_dir, own_uid
):
    victim = os.path.join(world_readable_dir, "victim")
    with open(victim, "w") as f:
        f.write("root's")
    os.chmod(victim, 0o644)
    fh = _load(make_host, write_set, Sandbox(own_uid=own_uid))
    assert fh.call("chmod", {"path": victim, "mode": 0o777}) == "EROFS"
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o644
    assert fh.protections("attacks")["read_only_view"] is True


@needs_root
def test_with_its_own_uid_a_worker_reads_only_what_others_may(
    make_host, write_set, world_readable_dir, tmp_path
):
    private = os.path.join(world_readable_dir, "private")
    public = os.path.join(world_readable_dir, "public")
    for path, mode in ((private, 0o600), (public, 0o644)):
        with open(path, "w") as f:
            f.write("x")
        os.chmod(path, mode)
    hidden = tmp_path / "hidden.txt"  # tmp_path is 0700: covered, not there
    hidden.write_text("x")
    fh = _load(make_host, write_set)
    assert fh.call("open_path", {"path": private}) == "EACCES"
    assert fh.call("open_path", {"path": public}) == "ok"
    assert fh.call("open_path", {"path": str(hidden)}) == "ENOENT"
    # The root home (0700) is covered: its files are gone, not just unreadable.
    assert fh.call("listing", {"path": "/root"}) in ([], [".pyenv"])


@needs_root
def test_writable_paths_stay_writable_in_the_read_only_view(make_host, write_set, tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    fh = _load(make_host, write_set, Sandbox(writable_paths=(str(open_dir),)))
    assert fh.call("fill", {"path": str(open_dir / "d"), "mib": 1}) == [1, "ok"]
    assert (open_dir / "d" / "f0").stat().st_size == 1 << 20


@needs_root
def test_scratch_is_a_private_nosuid_tmpfs_capped_by_disk_mb(make_host, write_set):
    fh = _load(make_host, write_set, disk_mb=8)
    written, error = fh.call("fill", {"path": "big", "mib": 32})
    assert error == "ENOSPC" and written <= 8
    # /dev/shm shares the same budget: it is full too.
    assert fh.call("fill", {"path": "/dev/shm/more", "mib": 2})[1] == "ENOSPC"
    assert fh.call("home_flags") == [True, True]
    # The host's own scratch directory never sees the files.
    worker = process_tree(fh.function_sets["attacks"]["pid"])[-1]
    scratch = os.readlink(f"/proc/{worker}/cwd")
    assert scratch.endswith("/scratch") and os.listdir(scratch) == []
    assert fh.protections("attacks")["scratch_tmpfs"] is True


def test_memfd_is_refused(make_host, write_set):
    fh = _load(make_host, write_set)
    assert fh.call("memfd") == "EPERM"
    assert fh.protections("attacks")["memfd_refused"] is True


_libc = ctypes.CDLL(None, use_errno=True)


@needs_root
def test_sysv_shared_memory_is_private_capped_and_dies_with_the_worker(make_host, write_set):
    key = 0x0F4E0000 + os.getpid() % 0xFFFF
    host_segment = _libc.shmget(ctypes.c_int(key), ctypes.c_size_t(4096), ctypes.c_int(0o1600))
    assert host_segment >= 0
    try:
        fh = _load(make_host, write_set, memory_mb=128)
        assert fh.call("shm_get", {"key": key, "size": 0, "create": False}) == "ENOENT"
        # Within the cap, then past it (128 MiB in all).
        assert fh.call("shm_get", {"key": 1, "size": 64 << 20, "create": True}) == "ok"
        assert fh.call("shm_get", {"key": 2, "size": 96 << 20, "create": True}) == "ENOSPC"
        fh.close()
        with open("/proc/sysvipc/shm") as f:
            sizes = [line.split()[3] for line in f.read().splitlines()[1:]]
        assert str(64 << 20) not in sizes
    finally:
        _libc.shmctl(ctypes.c_int(host_segment), ctypes.c_int(0), None)  # IPC_RMID


def _processes_named(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == marker:
                        found.append(int(entry))
            except OSError:
                pass
    return found


@needs_root
def test_a_chain_of_daemons_dies_with_its_worker(make_host, write_set):
    marker = f"fnhd{os.getpid() % 100000}"
    fh = _load(make_host, write_set)
    fh.call("daemon_chain", {"marker": marker})
    assert wait_for(lambda: bool(_processes_named(marker)), 5.0)
    fh.close()
    assert wait_for(lambda: not _processes_named(marker), 5.0)
    time.sleep(0.3)  # a chain that survived would have forked again by now
    assert _processes_named(marker) == []


TAMPER = r"""
import sys

# At import time: find the start sequence's report on the stack and claim
# every layer (dicts of plain values are not tracked by gc; frames are).
frame = sys._getframe()
while frame is not None:
    report = frame.f_locals.get("protections")
    if isinstance(report, dict):
        for key in list(report):
            report[key] = True
        report["forged_layer"] = True
    frame = frame.f_back


def hello() -> str:
    return "hi"
"""


def test_user_code_cannot_edit_the_protections_report(make_host, write_set):
    fh = make_host(limits=Limits(timeout=10.0, sandbox=Sandbox(network=True)))
    fh.load_function_set(write_set("tamper", TAMPER))
    report = fh.protections("tamper")
    assert "forged_layer" not in report
    assert report["network_blocked"] is False  # network=True: not blocked


@needs_root
def test_own_uid_runs_the_worker_as_a_uid_of_its_own(make_host, write_set):
    # A set the worker's uid can reach (its uid reads only what others may).
    shared = tempfile.mkdtemp(prefix="fnhost-test-shared-", dir="/tmp")
    try:
        os.chmod(shared, 0o755)
        path = os.path.join(shared, "mine.py")
        with open(path, "w") as f:
            f.write("import os\ndef pid() -> int:\n    return os.getpid()\n")
        os.chmod(path, 0o644)
        fh = make_host(limits=Limits(timeout=10.0, sandbox=Sandbox(own_uid=True)))
        fh.load_function_set(path)
        warden = fh.function_sets["mine"]["pid"]
        uids = set()
        for pid in process_tree(warden):
            with open(f"/proc/{pid}/status") as f:
                line = next(x for x in f if x.startswith("Uid:"))
            uids.add(tuple(int(v) for v in line.split()[1:]))
        assert uids == {(0x70000000 + warden,) * 4}
        assert fh.protections("mine")["own_uid"] is True
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_the_report_says_own_uid_holds_only_for_a_root_host(make_host, write_set):
    fh = _load(make_host, write_set)
    assert fh.protections("attacks")["own_uid"] is ROOT
    fh2 = _load(make_host, write_set, Sandbox(own_uid=False))
    assert fh2.protections("attacks")["own_uid"] is False


@needs_root
@both_start_methods
def test_a_timeout_kills_the_whole_namespace_and_the_set_recovers(make_host, write_set):
    marker = f"fnht{os.getpid() % 100000}"
    source = ATTACKS + "\n\ndef hang() -> None:\n    import time\n    time.sleep(60)\n"
    fh = make_host(limits=Limits(timeout=1.0))
    fh.load_function_set(write_set("attacks", source))
    fh.call("daemon_chain", {"marker": marker})
    assert wait_for(lambda: bool(_processes_named(marker)), 5.0)
    with pytest.raises(Exception) as info:
        fh.call("hang")
    assert type(info.value).__name__ == "CallTimeout"
    assert wait_for(lambda: not _processes_named(marker), 5.0)
    assert fh.call("pids_here") == [1, fh.function_sets["attacks"]["pid"]]


def test_setuid_and_setgid_bits_are_refused_in_writable_paths(make_host, write_set, tmp_path):
    """A file the worker makes in a writable path can belong to the host's
    uid on disk (root, for a root host): with a setuid bit it would be a
    root binary for anyone outside the sandbox."""
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    fh = _load(make_host, write_set, Sandbox(writable_paths=(str(open_dir),)))
    assert fh.call("suid", {"path": str(open_dir / "tool")}) == ["EPERM", "EPERM", "ok"]
    made = list(open_dir.iterdir())
    assert made and not [p for p in made if p.stat().st_mode & 0o6000]


def test_a_worker_cannot_take_a_lease_the_host_would_wait_on(make_host, write_set):
    fh = _load(make_host, write_set)
    assert fh.call("lease_on_stderr") == "EPERM"


@needs_root
def test_without_the_filter_a_writable_path_is_not_mapped_to_the_host(
    make_host, write_set, tmp_path
):
    """The setuid refusal lives in the syscall filter: without it, a writable
    path is not idmapped (the worker writes there only what its own uid
    may), so no file the worker makes can be the host's root's."""
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    fh = _load(
        make_host, write_set, Sandbox(writable_paths=(str(open_dir),), restrict_syscalls=False)
    )
    created, _ = fh.call("try_suid", {"path": str(open_dir / "sh")})
    assert created == "EACCES"  # root's 0755 directory, and the worker is not root
    assert not [p for p in open_dir.iterdir() if p.stat().st_uid == 0]


@needs_root
def test_a_writable_path_that_is_also_a_cover_stays_writable(make_host, world_readable_dir):
    from pathlib import Path

    # 0700, with the set beneath it: the outermost directory others cannot
    # search above the set, so it is covered, and it is writable too.
    project = Path(world_readable_dir) / "project"
    project.mkdir(mode=0o700)
    tools = project / "tools"
    tools.mkdir(mode=0o755)
    (tools / "tool.py").write_text(ATTACKS)
    fh = make_host(limits=Limits(timeout=10.0, sandbox=Sandbox(writable_paths=(str(project),))))
    fh.load_function_set(str(tools / "tool.py"))
    assert fh.call("fill", {"path": str(project / "out"), "mib": 1}) == [1, "ok"]
    assert (project / "out" / "f0").stat().st_size == 1 << 20
    assert fh.protections("tool")["writable_paths_open"] is True


@needs_root
def test_a_set_in_a_private_directory_loads_but_its_neighbours_stay_hidden(make_host, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "tool.py").write_text(ATTACKS)
    os.chmod(private / "tool.py", 0o600)
    secret = private / "key"
    secret.write_text("s3cr3t")
    os.chmod(secret, 0o600)
    fh = make_host()
    fh.load_function_set(str(private / "tool.py"))  # its own module: readable
    assert fh.call("read_text", {"path": str(secret)}) == "ENOENT"
    assert fh.call("listing", {"path": str(private)}) == ["tool.py"]


FD_LISTER = """
import json
import os
import sys


def fds() -> list:
    config = json.loads(sys.argv[1])
    mine = {config["in_fd"], config["out_fd"]}
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own fd, closed by now
        if fd not in mine and target.startswith(("socket:", "pipe:", "anon_inode:")):
            found.append(f"{fd} -> {target}")
    return found
"""


@both_start_methods
def test_a_worker_holds_no_socket_or_pipe_but_its_own(make_host, write_set, tmp_path):
    """A worker that held the zygote's end of a spare's socket could send that
    spare a request of its own making (its own policy, pipes it holds) and
    get a worker without the sandbox. With a plain spare present (a set whose
    policy the spare does not fit came first), no worker of either policy
    holds a socket, or a pipe other than its two protocol pipes."""
    fh = make_host(on_conflict="prefix")
    plain = tmp_path / "plain"
    plain.mkdir()
    fh.load_function_set(
        write_set("weak", FD_LISTER, directory=plain),
        limits=Limits(timeout=10.0, sandbox=Sandbox(own_uid=False)),
    )
    fh.load_function_set(write_set("strong", FD_LISTER))
    for name in ("weak", "strong"):
        assert fh.call(f"{name}.fds") == []
        # And a worker restarted from a spare.
        old = fh.function_sets[name]["pid"]
        os.kill(old, 9)
        listed: list = ["(no call answered)"]

        def answered_by_a_new_worker(
            name: str = name, old: int = old, listed: list = listed
        ) -> bool:
            with contextlib.suppress(WorkerCrashed):
                listed[:] = fh.call(f"{name}.fds")
                return fh.function_sets[name]["pid"] != old
            return False

        assert wait_for(answered_by_a_new_worker, 20)
        assert listed == []


PID_HOG = """
import os
import threading


def hold(n: int) -> dict:
    kids, error = [], None
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError as exc:
            error = exc.errno
            break
        if pid == 0:
            os._exit(0)
        kids.append(pid)  # never reaped until the end: zombies hold their pids
    held = len(kids)
    for pid in kids:
        os.waitpid(pid, 0)
    return {"held": held, "error": error}


def threads(n: int) -> int:
    stop = threading.Event()
    started = []
    try:
        for _ in range(n):
            t = threading.Thread(target=stop.wait)
            t.start()
            started.append(t)
    except RuntimeError:
        pass
    stop.set()
    for t in started:
        t.join()
    return len(started)
"""


def test_a_worker_cannot_hold_more_pids_than_its_process_limit(make_host, write_set):
    """Unreaped children (zombies) each hold a pid of the machine's
    ``pid_max``; a worker past ``max_processes`` gets EAGAIN instead, and
    threads count too. Its next call still works, and so does a new set."""
    fh = make_host(limits=Limits(timeout=60, max_processes=64))
    fh.load_function_set(write_set("pidhog", PID_HOG))
    assert fh.protections("pidhog")["rlimit_processes"] is True
    out = fh.call("hold", {"n": 1000})
    assert out["error"] == errno.EAGAIN
    assert out["held"] < 64
    assert fh.call("threads", {"n": 1000}) < 64
    assert fh.call("hold", {"n": 10}) == {"held": 10, "error": None}


def test_the_default_process_limit_is_in_force(make_host, write_set):
    fh = make_host()
    fh.load_function_set(write_set("pidhog", PID_HOG))
    assert fh.protections("pidhog")["rlimit_processes"] is True
    out = fh.call("hold", {"n": 2048})
    assert out["error"] == errno.EAGAIN and out["held"] < Limits().max_processes


def test_the_process_limit_is_not_claimed_for_a_worker_that_is_root_to_the_kernel(
    make_host, write_set
):
    """A root host's worker without its own uid is uid 0 outside its user
    namespace, which the kernel exempts from RLIMIT_NPROC: no claim there.
    (A host that is not root: its uid, in the worker's own namespace, is
    bounded.) Either way the claim is what the kernel does."""
    fh = make_host(limits=Limits(timeout=60, max_processes=16, sandbox=Sandbox(own_uid=False)))
    fh.load_function_set(write_set("pidhog", PID_HOG))
    claimed = fh.protections("pidhog")["rlimit_processes"]
    assert claimed is (os.geteuid() != 0)
    out = fh.call("hold", {"n": 40})
    if claimed:
        assert out["error"] == errno.EAGAIN and out["held"] < 16
    else:
        assert out == {"held": 40, "error": None}
