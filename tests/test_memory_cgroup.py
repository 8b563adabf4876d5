"""All of a worker's memory under one limit: its own memory cgroup.

Attacks from the wall issue: under a 128 MiB ``memory_mb``, a worker used to
hold SysV shared memory it had detached, files in its tmpfs and a heap
together, far past the limit (none of the three counts in ``RLIMIT_AS``
alone). With a memory cgroup per worker the kernel counts them together
against ``memory_mb + disk_mb`` and its OOM killer ends the worker: the call
fails with ``OutOfMemory`` and the set, and the host, carry on.

What the tests check against the kernel, never against the worker's word:
``/proc/<pid>/cgroup`` and the cgroup's limit file, read from here.
"""

from __future__ import annotations

import contextlib
import os
import time

import pytest

from host import FunctionHost, Limits, OutOfMemory, Sandbox, WorkerCrashed
from protocol.memory_cgroup import limit_bytes, oom_kills, own_cgroup

from .conftest import both_start_methods

V1_MOUNT = "/sys/fs/cgroup/memory"
#: Whether this machine lets a host make memory cgroups, decided from here:
#: root, and cgroup v1's memory controller (this machine kind). Elsewhere the
#: tests check that the report says the layer is missing.
AVAILABLE = os.geteuid() == 0 and os.path.exists(os.path.join(V1_MOUNT, "memory.limit_in_bytes"))

HOG = """
import ctypes

def hog(shm_mb: int, tmp_mb: int, heap_mb: int) -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmdt.argtypes = [ctypes.c_void_p]
    done = 0
    while done < shm_mb:  # detached segments count in no rlimit
        sid = libc.shmget(0, 16 << 20, 0o600 | 0o1000)
        if sid < 0:
            return f"shmget refused at {done} MiB"
        addr = libc.shmat(sid, None, 0)
        ctypes.memset(addr, 1, 16 << 20)
        libc.shmdt(addr)
        done += 16
    with open("fill", "wb") as f:  # the private tmpfs: memory, not disk
        for _ in range(tmp_mb):
            f.write(b"x" * (1 << 20))
    heap = [bytearray(1 << 20) for _ in range(heap_mb)]
    return f"held {done} MiB shm, {tmp_mb} MiB tmpfs, {len(heap)} MiB heap"

def small() -> int:
    return len(bytearray(8 << 20))


def raise_my_limit() -> str:
    import os
    path = "/sys/fs/cgroup/memory" + [
        line.split(":", 2)[2]
        for line in open("/proc/self/cgroup").read().splitlines()
        if "memory" in line.split(":", 2)[1].split(",")
    ][0]
    try:
        for name in ("memory.memsw.limit_in_bytes", "memory.limit_in_bytes"):
            if os.path.exists(path + "/" + name):
                with open(path + "/" + name, "w") as f:
                    f.write("-1")  # (memory+swap first: it may not be below memory)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "raised"
"""

OTHER = """
def ping() -> str:
    return "pong"
"""

LIMITS = Limits(timeout=20.0, memory_mb=128, disk_mb=64)
#: 112 + 56 + 60 = 228 MiB, each part under its own cap (shmall and RLIMIT_AS
#: at 128, the tmpfs at 64), together past memory_mb + disk_mb = 192.
ATTACK = {"shm_mb": 112, "tmp_mb": 56, "heap_mb": 60}


def _cgroup_dir(pid: int) -> str | None:
    """The v1 memory cgroup directory of ``pid``, read from here."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return V1_MOUNT + path
    return None


def _limit(directory: str) -> int:
    with open(os.path.join(directory, "memory.limit_in_bytes")) as f:
        return int(f.read())


@both_start_methods
def test_each_worker_has_a_memory_cgroup_of_its_own_limited_to_memory_and_disk(
    make_host, write_set
):
    fh = make_host(limits=LIMITS)
    fh.load_function_set(write_set("hog", HOG))
    fh.load_function_set(write_set("other", OTHER))
    report = fh.protections("hog")
    assert report["memory_cgroup"] is AVAILABLE
    if not AVAILABLE:
        return
    pid = fh.function_sets["hog"]["pid"]
    directory = _cgroup_dir(pid)
    assert directory is not None and directory.endswith(f"/w{pid}")
    assert _limit(directory) == (128 + 64) << 20
    # The worker proper (below its warden and init) is inside too.
    with open(os.path.join(directory, "cgroup.procs")) as f:
        members = {int(p) for p in f.read().split()}
    assert pid in members and len(members) >= 2
    other = _cgroup_dir(fh.function_sets["other"]["pid"])
    assert other != directory


@pytest.mark.parametrize(
    ("sandbox", "claimed"),
    [(Sandbox(own_uid=False, private_namespaces=False), AVAILABLE), (Sandbox.off(), False)],
    ids=["no-namespaces", "off"],
)
def test_workers_of_other_policies_are_in_their_cgroups_after_restarts_too(
    make_host, write_set, sandbox, claimed
):
    """A policy the zygote's spare does not fit is started fresh, then (after
    the first such request) from a plain spare that joined its cgroup ahead:
    every incarnation is in a cgroup of its own under its limit. Under
    ``Sandbox.off()`` the worker is root with nothing in its way and could
    raise its own limit: the layer is there but not claimed."""
    fh = make_host(limits=Limits(timeout=20.0, memory_mb=128, disk_mb=64, sandbox=sandbox))
    fh.load_function_set(write_set("hog", HOG))
    seen = set()
    for _ in range(3):
        assert fh.protections("hog")["memory_cgroup"] is claimed
        pid = fh.function_sets["hog"]["pid"]
        if AVAILABLE:
            directory = _cgroup_dir(pid)
            assert directory is not None and directory.endswith(f"/w{pid}")
            assert _limit(directory) == (128 + 64) << 20
            seen.add(directory)
        os.kill(pid, 9)
        for _ in range(3):  # the first call may meet the dead worker
            try:
                assert fh.call("small") == 8 << 20
                break
            except WorkerCrashed:
                pass
        assert fh.function_sets["hog"]["pid"] != pid
    assert len(seen) == (3 if AVAILABLE else 0)
    if AVAILABLE:
        # The report tells the truth either way.
        assert (fh.call("raise_my_limit") == "raised") is (not claimed)


@both_start_methods
def test_shared_memory_tmpfs_and_heap_together_stop_at_the_limit(make_host, write_set):
    fh = make_host(limits=LIMITS)
    fh.load_function_set(write_set("hog", HOG))
    fh.load_function_set(write_set("other", OTHER))
    if not AVAILABLE:
        # Where the layer is missing the report says so, and the attack
        # holds all of it: nothing claims otherwise.
        assert fh.protections("hog")["memory_cgroup"] is False
        assert fh.call("hog", ATTACK).startswith("held 112 MiB shm")
        return
    with pytest.raises(OutOfMemory) as info:
        fh.call("hog", ATTACK)
    err = info.value
    assert err.set_name == "hog" and err.function == "hog"
    assert "OOM killer" in str(err) and "192 MiB" in str(err)
    assert err.signal == "SIGKILL"
    # The set restarts; the other set and the host never noticed.
    assert fh.call("small") == 8 << 20
    assert fh.call("ping") == "pong"


def test_without_the_layer_the_same_attack_holds_everything(make_host, write_set):
    """The control: the attack is real. With memory_cgroup=False the worker
    holds 228 MiB under memory_mb=128, disk_mb=64, and the report says the
    layer is off."""
    limits = Limits(timeout=20.0, memory_mb=128, disk_mb=64, sandbox=Sandbox(memory_cgroup=False))
    fh = make_host(limits=limits)
    fh.load_function_set(write_set("hog", HOG))
    assert fh.protections("hog")["memory_cgroup"] is False
    assert fh.call("hog", ATTACK) == "held 112 MiB shm, 56 MiB tmpfs, 60 MiB heap"


@pytest.mark.skipif(not AVAILABLE, reason="needs a root host with cgroup v1's memory controller")
def test_a_dead_workers_cgroup_and_the_hosts_directory_are_gone_by_close(make_host, write_set):
    """(Released as each worker is reaped, or retried until close if its
    namespace was still tearing down: only close is a guarantee.)"""
    fh = make_host(limits=LIMITS)
    fh.load_function_set(write_set("hog", HOG))
    first = _cgroup_dir(fh.function_sets["hog"]["pid"])
    assert first is not None and os.path.isdir(first)
    parent = os.path.dirname(first)
    with pytest.raises(OutOfMemory):
        fh.call("hog", ATTACK)
    assert fh.call("small") == 8 << 20
    # Released as the dead worker is reaped, or at close if its namespace
    # was still tearing down: never left behind.
    deadline = time.monotonic() + 5
    while os.path.isdir(first) and time.monotonic() < deadline:
        time.sleep(0.02)
    fh.close()
    assert not os.path.exists(first)
    assert not os.path.exists(parent)


@pytest.mark.skipif(not AVAILABLE, reason="needs a root host with cgroup v1's memory controller")
def test_a_dead_hosts_cgroups_are_swept_by_the_next_host(empty_dir):
    mine = _cgroup_dir(os.getpid())
    assert mine is not None
    # A host that was SIGKILLed leaves its directory: pid 2**22 + 1 is above
    # the kernel's pid_max, so no live process has it.
    stale = os.path.join(mine, f"fnhost-{2**22 + 1}-1")
    os.mkdir(stale)
    os.mkdir(os.path.join(stale, "w123"))
    with FunctionHost(builtin_dir=empty_dir, user_dirs=[]):
        assert not os.path.exists(stale)


# -- the shared contract (protocol.memory_cgroup), no process -------------------------


def test_the_limit_is_memory_plus_disk_and_none_without_a_memory_limit():
    assert limit_bytes({"memory_mb": 128, "disk_mb": 64}) == 192 << 20
    assert limit_bytes({"memory_mb": 128, "disk_mb": None}) == 128 << 20
    assert limit_bytes({"memory_mb": None, "disk_mb": 64}) is None


def test_the_oom_count_is_read_from_v1_and_v2_event_files():
    assert oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n") == 2
    assert oom_kills("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n") == 1
    assert oom_kills("oom_kill_disable 0\nunder_oom 0\n") == 0  # a kernel that does not count


def test_a_processes_memory_cgroup_is_found_in_proc_cgroup():
    text = "12:pids:/a\n4:memory,foo:/process_api/x/fnhost-9-1/w10\n0::/user.slice/s\n"
    assert own_cgroup(text, 1) == "/process_api/x/fnhost-9-1/w10"
    assert own_cgroup(text, 2) == "/user.slice/s"
    assert own_cgroup("3:cpu:/\n", 1) is None


@pytest.mark.skipif(not AVAILABLE, reason="needs a root host with cgroup v1's memory controller")
def test_a_stale_cgroup_of_the_same_pid_is_made_anew_and_limits_can_rise():
    """A dead worker's directory that stayed (its namespace was tearing down
    at release) must not hand its limit or its OOM count to the next
    process with that pid; and a limit above the old memory+swap limit is
    written in the order v1 requires."""
    from worker import memory_cgroup

    parent = os.path.join(_cgroup_dir(os.getpid()), f"fnhost-test-{os.getpid()}")
    os.mkdir(parent)
    go_r, go_w = os.pipe()
    back_r, back_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the new process of that pid joins its cgroup itself
        os.read(go_r, 1)
        joined = memory_cgroup.join(parent, os.getpid())
        os.write(back_w, str(_limit(joined) if joined else -1).encode())
        os.read(go_r, 1)
        os._exit(0)
    stale = os.path.join(parent, f"w{pid}")
    try:
        os.mkdir(stale)
        with open(os.path.join(stale, "memory.limit_in_bytes"), "w") as f:
            f.write(str(100 << 20))
        os.write(go_w, b"x")
        assert int(os.read(back_r, 64)) > 1 << 40  # made anew: no limit yet
        assert memory_cgroup.set_limit(stale, 100 << 20)
        assert memory_cgroup.set_limit(stale, 300 << 20)  # raising: memsw first
        assert _limit(stale) == 300 << 20
    finally:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
        for d in (os.path.join(parent, f"w{pid}"), parent):
            with contextlib.suppress(OSError):
                os.rmdir(d)


@pytest.mark.skipif(not AVAILABLE, reason="needs a root host with cgroup v1's memory controller")
def test_a_process_with_threads_joins_its_cgroup_with_every_thread():
    """A process moves itself through its v1 ``tasks`` file, which moves the
    writing thread only: with a second thread alive, every thread of it
    must still end up in the cgroup (not only the one that called ``join``)."""
    from worker import memory_cgroup

    parent = os.path.join(_cgroup_dir(os.getpid()), f"fnhost-test-t{os.getpid()}")
    os.mkdir(parent)
    back_r, back_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            import threading

            hold = threading.Event()
            other = threading.Thread(target=hold.wait)
            other.start()
            joined = memory_cgroup.join(parent, os.getpid())
            where = {
                _cgroup_dir_of_task(os.getpid(), tid)
                for tid in os.listdir(f"/proc/{os.getpid()}/task")
            }
            hold.set()
            other.join()
            os.write(back_w, repr((joined, sorted(where))).encode())
        finally:
            os._exit(0)
    try:
        os.close(back_w)
        joined, where = eval(os.read(back_r, 4096).decode())  # noqa: S307 - our own child
        assert joined == os.path.join(parent, f"w{pid}")
        assert where == [joined]  # both threads, not the caller's alone
    finally:
        os.waitpid(pid, 0)
        for d in (os.path.join(parent, f"w{pid}"), parent):
            with contextlib.suppress(OSError):
                os.rmdir(d)


@pytest.mark.skipif(not AVAILABLE, reason="needs a root host with cgroup v1's memory controller")
def test_a_single_threaded_process_joins_its_cgroup_itself_and_a_spare_is_checked():
    """The move of a single-threaded process by itself (``tasks``), and the
    zygote's check that a spare has joined (``member``)."""
    from worker import memory_cgroup

    parent = os.path.join(_cgroup_dir(os.getpid()), f"fnhost-test-s{os.getpid()}")
    os.mkdir(parent)
    go_r, go_w = os.pipe()
    back_r, back_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.read(go_r, 1)
            joined = memory_cgroup.join(parent, os.getpid())
            os.write(back_w, (joined or "-").encode())
            os.read(go_r, 1)
        finally:
            os._exit(0)
    path = os.path.join(parent, f"w{pid}")
    try:
        assert not memory_cgroup.member(parent, pid)
        os.write(go_w, b"x")
        assert os.read(back_r, 4096).decode() == path
        assert _cgroup_dir(pid) == path
        assert memory_cgroup.member(path, pid)
    finally:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
        for d in (path, parent):
            with contextlib.suppress(OSError):
                os.rmdir(d)


def _cgroup_dir_of_task(pid: int, tid: str) -> str | None:
    with open(f"/proc/{pid}/task/{tid}/cgroup") as f:
        for line in f.read().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return V1_MOUNT + path
    return None
