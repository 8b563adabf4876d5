"""Both ways a worker comes to life (zygote fork, fresh interpreter) give the
same isolation and the same behaviour."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import pytest

from host import Limits, Sandbox, WorkerCrashed
from worker.spare import SPARE_NAME
from worker.zygote import IDLE_AFTER

from .conftest import (
    NO_PID_NAMESPACE,
    host_view,
    outside_pid,
    process_alive,
    process_tree,
    spare_pids,
    wait_for,
    worker_pids,
    zygote_pids,
)

PROBE = """
import ctypes
import os
import resource

IMPORTED_BY = os.getpid()  # the module runs in the worker, never in the zygote


def facts() -> dict:
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "stdin": os.readlink("/proc/self/fd/0"),
        "as_limit": resource.getrlimit(resource.RLIMIT_AS)[0],
        "imported_by": IMPORTED_BY,
        "name": open("/proc/self/comm").read().strip(),
    }


def segfault() -> None:
    ctypes.string_at(0)
"""


@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_isolation_is_the_same_for_both_methods(make_host, write_set, method, monkeypatch):
    monkeypatch.setenv("FNHOST_TEST_SECRET", "s3cret")
    fh = make_host(start_method=method, env={"GIVEN": "1"})
    fh.load_function_set(write_set("probe", PROBE))
    facts = fh.call("facts")
    ppid, sid = host_view(facts["pid"])
    assert sid == facts["pid"]  # its own session
    assert facts["stdin"] == "/dev/null"
    assert "fnhost-probe-" in facts["cwd"] and facts["env"]["HOME"] == facts["cwd"]
    assert facts["env"]["GIVEN"] == "1" and "FNHOST_TEST_SECRET" not in facts["env"]
    assert facts["as_limit"] == 512 * 1024 * 1024
    assert facts["imported_by"] == facts["pid"]
    assert facts["name"] != SPARE_NAME  # a spare takes back its name as it becomes a worker
    if method == "zygote":
        assert ppid in zygote_pids()
    else:
        assert ppid == os.getpid()


@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_crash_reports_the_signal_and_restarts(make_host, write_set, method):
    fh = make_host(start_method=method)
    fh.load_function_set(write_set("probe", PROBE))
    first = fh.call("facts")["pid"]
    with pytest.raises(WorkerCrashed) as info:
        fh.call("segfault")
    assert info.value.signal == "SIGSEGV"  # the zygote forwards the exit status
    assert fh.call("facts")["pid"] != first


def _settled_spare() -> int:
    """The zygote's spare, once the idle preload has replaced the first one."""
    time.sleep(IDLE_AFTER + 0.3)
    assert wait_for(lambda: len(spare_pids()) == 1, 2.0)
    (spare,) = spare_pids()
    return spare


def test_the_next_worker_is_the_spare_forked_ahead(make_host, write_set):
    fh = make_host(start_method="zygote")
    fh.load_function_set(write_set("probe", PROBE))
    first = fh.call("facts")["pid"]
    # The zygote keeps one child forked ahead of the next request ...
    spare = _settled_spare()
    assert spare != first
    with pytest.raises(WorkerCrashed):
        fh.call("segfault")
    # ... and hands it the restart: that child survived the reaping of the
    # crashed worker (which kills the zygote's other children) and became
    # the new worker, and another spare replaced it.
    facts = fh.call("facts")
    assert facts["pid"] == spare and facts["name"] != SPARE_NAME
    assert wait_for(lambda: len(spare_pids()) == 1 and spare not in spare_pids(), 2.0)


def test_a_killed_spare_is_replaced_by_a_fresh_fork(make_host, write_set):
    fh = make_host(start_method="zygote")
    fh.load_function_set(write_set("probe", PROBE))
    first = fh.call("facts")["pid"]
    spare = _settled_spare()
    os.kill(spare, signal.SIGKILL)
    assert wait_for(lambda: not process_alive(spare), 2.0)
    with pytest.raises(WorkerCrashed):
        fh.call("segfault")
    facts = fh.call("facts")
    assert facts["pid"] not in (first, spare)
    ppid, sid = host_view(facts["pid"])
    assert ppid in zygote_pids() and sid == facts["pid"]


@pytest.mark.parametrize("stopped", ["warden", "worker-to-be"])
def test_a_stopped_spare_is_replaced_by_a_fresh_fork(make_host, write_set, stopped):
    fh = make_host(start_method="zygote")
    fh.load_function_set(write_set("probe", PROBE))
    first = fh.call("facts")["pid"]
    spare = _settled_spare()
    target = spare if stopped == "warden" else process_tree(spare)[-1]
    os.kill(target, signal.SIGSTOP)  # as a worker allowed to signal others could
    try:
        with pytest.raises(WorkerCrashed):
            fh.call("segfault")
        facts = fh.call("facts", timeout=5)
        assert facts["pid"] not in (first, spare)
        assert wait_for(lambda: not process_alive(spare), 2.0)  # killed, not left stopped
        assert wait_for(lambda: not process_alive(target), 2.0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGCONT)


def test_the_idle_preload_replaces_the_spare_and_reaps_the_old_one(make_host, write_set):
    fh = make_host(start_method="zygote")
    fh.load_function_set(write_set("probe", PROBE))
    fh.call("facts")
    assert wait_for(lambda: len(spare_pids()) == 1, 2.0)
    (old,) = spare_pids()
    new = _settled_spare()
    assert new != old
    (zygote,) = zygote_pids()
    with open(f"/proc/{zygote}/task/{zygote}/children") as f:
        assert str(old) not in f.read().split()  # exited and reaped: no zombie


PEEK = """
import os
import sys

AT_IMPORT = {}
for _fd in os.listdir("/proc/self/fd"):
    try:
        AT_IMPORT[_fd] = os.readlink(f"/proc/self/fd/{_fd}")
    except FileNotFoundError:
        pass


def fds_at_import() -> dict:
    return AT_IMPORT


def fds() -> dict:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the listing's own fd, closed by now
            pass
    return found


def held_requests() -> list:
    # What the frames below this call hold: the zygote's loop, for a worker
    # that was a spare.
    found = []
    frame = sys._getframe()
    while frame is not None:
        for name in ("request", "data"):
            value = frame.f_locals.get(name)
            if value is not None:
                found.append(repr(value)[:300])
        frame = frame.f_back
    return found
"""


def test_a_worker_holds_no_other_sets_spawn_request(make_host, write_set):
    fh = make_host(start_method="zygote")
    fh.load_function_set(write_set("alpha", PEEK.replace("def ", "def a_")))
    # The spare forked after alpha's request was served (SPARE_DELAY later)
    # takes beta's.
    assert wait_for(lambda: len(spare_pids()) == 1, 2.0)
    (spare,) = spare_pids()
    fh.load_function_set(write_set("beta", PEEK.replace("def ", "def b_")))
    assert fh.function_sets["beta"]["pid"] == spare
    held = fh.call("b_held_requests")
    assert not any("alpha" in h for h in held), held


def test_workers_and_spares_hold_no_zygote_fds(make_host, write_set):
    fh = make_host(start_method="zygote")
    fh.load_function_set(write_set("peek", PEEK))
    fds = fh.call("fds")
    # What user code sees as it is imported: the same, nothing more (no pipe
    # to the warden, no socket to the zygote, no namespace fd).
    at_import = fh.call("fds_at_import")
    assert sorted(
        t.split(":")[0] for t in at_import.values() if ":" in t and not t.startswith("/")
    ) == [
        "pipe",
        "pipe",
    ], at_import
    # stdin, the capture files as stdout/stderr, the two protocol pipes:
    # no socket (the zygote's control socket carries
    # other workers' requests) and no other pipe (the zygote's wake pipe).
    assert not [t for t in fds.values() if t.startswith("socket:")], fds
    assert len([t for t in fds.values() if t.startswith("pipe:")]) == 2, fds
    assert wait_for(lambda: len(spare_pids()) == 1, 2.0)
    (spare,) = spare_pids()
    (zygote,) = zygote_pids()

    def held(pid: int) -> list[str]:
        return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]

    # The zygote's own sockets and pipes (control socket, wake pipe), minus
    # the spare's socket to it, which the spare shares by design.
    mine = set(held(spare))
    theirs = {t for t in held(zygote) if t.startswith(("socket:", "pipe:"))}
    shared = mine & theirs
    assert len(shared) <= 1 and all(t.startswith("socket:") for t in shared), shared
    # stdin/stdout/stderr (/dev/null), its socket to the zygote and, entered
    # ahead (worker/enclosure.py), a socket to its worker-to-be and two pipes
    # to its init. Its init and worker-to-be hold none of the zygote's.
    assert sorted(t for t in mine if not t.startswith(("socket:", "pipe:"))) == ["/dev/null"]
    below = [p for p in _children_of(spare)] + [
        c for p in _children_of(spare) for c in _children_of(p)
    ]
    for pid in below:
        assert not set(held(pid)) & theirs, (pid, held(pid))


def test_a_dead_zygote_is_replaced(make_host, write_set):
    fh = make_host(start_method="zygote")
    fh.load_function_set(write_set("probe", PROBE))
    (zygote,) = zygote_pids()
    worker = fh.call("facts")["pid"]
    os.kill(zygote, signal.SIGKILL)
    # Its workers die with it (parent-death signal) ...
    assert wait_for(lambda: worker not in worker_pids(), 10.0)
    # ... and the next calls get a worker from a new zygote.
    answered: dict = {}

    def new_worker_answers() -> bool:
        try:
            answered.update(fh.call("facts"))
        except WorkerCrashed:
            return False
        return True

    assert wait_for(new_worker_answers, 20.0)
    assert answered["pid"] != worker
    assert zygote_pids() and zygote not in zygote_pids()


DAEMON = '''
import os
import time


def start_daemon() -> int:
    """Double-fork a setsid daemon that escapes the worker's process group."""
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, str(os.getpid()).encode())
            time.sleep(60)
            os._exit(0)
        os._exit(0)
    os.close(w)
    pid = int(os.read(r, 32))
    os.close(r)
    return pid


def start_nested_daemon() -> int:
    """A child that stays in the worker's process group, and its own child
    in a session of its own, which is orphaned only when that child dies."""
    r, w = os.pipe()
    if os.fork() == 0:
        if os.fork() == 0:
            os.setsid()
            os.write(w, str(os.getpid()).encode())
            time.sleep(60)
            os._exit(0)
        time.sleep(60)
        os._exit(0)
    os.close(w)
    pid = int(os.read(r, 32))
    os.close(r)
    return pid


def die() -> None:
    os._exit(3)
'''


def _children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


#: With a PID namespace the kernel kills what is left with the worker; without
#: one, the zygote (a subreaper) must.
SANDBOXES = pytest.mark.parametrize(
    "sandbox", [Sandbox(), NO_PID_NAMESPACE], ids=["default", "no_pid_namespace"]
)
DAEMONS = pytest.mark.parametrize("starter", ["start_daemon", "start_nested_daemon"])


@SANDBOXES
@DAEMONS
def test_an_escaped_daemon_dies_when_its_worker_dies(make_host, write_set, sandbox, starter):
    fh = make_host(start_method="zygote", limits=Limits(timeout=10.0, sandbox=sandbox))
    fh.load_function_set(write_set("daemons", DAEMON))
    daemon = outside_pid(fh.function_sets["daemons"]["pid"], fh.call(starter))
    assert process_alive(daemon)
    with pytest.raises(WorkerCrashed):
        fh.call("die")
    assert wait_for(lambda: not process_alive(daemon), 2.0)


@SANDBOXES
def test_an_escaped_daemon_dies_when_the_host_closes(make_host, write_set, sandbox):
    fh = make_host(start_method="zygote", limits=Limits(timeout=10.0, sandbox=sandbox))
    fh.load_function_set(write_set("daemons", DAEMON))
    daemon = outside_pid(fh.function_sets["daemons"]["pid"], fh.call("start_daemon"))
    assert process_alive(daemon)
    fh.close()
    assert wait_for(lambda: not process_alive(daemon), 2.0)


@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_protections_report_what_the_worker_applied(make_host, write_set, method):
    fh = make_host(start_method=method)
    fh.load_function_set(write_set("probe", PROBE))
    report = fh.protections("probe")
    for layer in (
        "own_session",
        "parent_death_signal",
        "no_new_privileges",
        "rlimit_memory",
        "rlimit_core",
        "death_seen_by_pidfd",
    ):
        assert report[layer] is True, layer
    assert report["forked_from_zygote"] is (method == "zygote")
    with pytest.raises(KeyError):
        fh.protections("nope")


def test_a_host_closed_while_its_zygote_starts_leaves_no_process_behind(make_host):
    # The zygote starts in the background as the host is made; closed at
    # once, it is still importing (or not even running its loop).
    fh = make_host(start_method="zygote")
    fh.close()
    assert not zygote_pids()
    assert wait_for(lambda: not spare_pids() and not worker_pids(), 5.0)


def test_the_first_set_loads_when_the_zygote_cannot_start(make_host, write_set, monkeypatch):
    # A zygote that exits as it starts (a broken interpreter, say): the first
    # load waits for it, finds it gone twice, and spawns the worker instead.
    from host.launch import launcher

    class Broken(launcher.Zygote):
        def __init__(self, host_pid, env, memory_cgroup=None, argv=None) -> None:
            exits = [sys.executable, "-I", "-c", "import sys; sys.exit(3)"]
            super().__init__(host_pid, env, memory_cgroup, argv=exits)

    monkeypatch.setattr(launcher, "Zygote", Broken)
    fh = make_host(start_method="zygote")
    fh.load_function_set(write_set("alpha", "def ping() -> str:\n    return 'pong'\n"))
    assert fh.call("ping") == "pong"
    pid = fh.function_sets["alpha"]["pid"]
    with open(f"/proc/{pid}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()  # spawned by us
    assert not zygote_pids()
