"""The restart after a crash, with every sandbox layer: where each process of
a worker's tree lives (the warden outside the worker's namespaces, so that
its exit, the death the host sees, does not wait for their teardown), what
the crash's error says, what the replacement reports, and that nothing of
the crashed worker is left (docs/sandbox.md, "Start sequence")."""

from __future__ import annotations

import os
import time

import pytest

from host import Limits, Sandbox, WorkerCrashed
from tests.conftest import both_start_methods, process_alive, process_tree, wait_for

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="private namespaces need a root host")

CRASHER = """
import ctypes
import os
import time


def crash() -> None:
    ctypes.string_at(0)


def where() -> str:
    return os.getcwd()
"""


def _ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


@needs_root
@both_start_methods
def test_the_warden_stays_out_of_the_workers_mount_ipc_and_network_namespaces(fh, write_set):
    fh.load_function_set(write_set("crasher", CRASHER))
    fh.call("where")
    warden = fh.function_sets["crasher"]["pid"]
    tree = process_tree(warden)
    assert len(tree) == 3  # warden, init, worker
    _, init, worker = tree
    for kind in ("mnt", "ipc", "net"):
        assert _ns(worker, kind) != _ns("self", kind)  # the worker's own
        assert _ns(init, kind) == _ns(worker, kind)
        assert _ns(warden, kind) == _ns("self", kind)  # the warden's: the host's
    # The PID namespace is still the warden's to make: init is pid 1 in it.
    assert _ns(warden, "pid_for_children") == _ns(worker, "pid") != _ns("self", "pid")
    report = fh.protections("crasher")
    for layer in ("mount_namespace", "ipc_namespace", "pid_namespace", "network_namespace"):
        assert report[layer] is True, layer


@needs_root
@both_start_methods
def test_after_a_crash_the_error_names_its_cause_and_the_replacement_is_measured_anew(
    make_host, write_set
):
    fh = make_host(limits=Limits(sandbox=Sandbox(), crash_limit=100))
    fh.load_function_set(write_set("crasher", CRASHER))
    first = fh.call("where")
    old = fh.function_sets["crasher"]["pid"]
    old_tree = process_tree(old)
    before = fh.protections("crasher")
    for _ in range(3):
        with pytest.raises(WorkerCrashed) as info:
            fh.call("crash")
        err = info.value
        assert (err.set_name, err.function, err.signal) == ("crasher", "crash", "SIGSEGV")
        assert "SIGSEGV" in str(err) and "crash at crasher.py" in str(err)
    # Gone: removed by its reaper, a moment after the error came back.
    assert wait_for(lambda: not os.path.exists(first), 5.0)
    assert fh.call("where") != first
    new = fh.function_sets["crasher"]["pid"]
    assert new != old
    # The replacement's report is its own (measured before its user code),
    # and says what the first worker's said.
    assert fh.protections("crasher") == before
    assert wait_for(lambda: not any(process_alive(p) for p in old_tree))


V1_MOUNT = "/sys/fs/cgroup/memory"
CGROUPS = ROOT and os.path.exists(os.path.join(V1_MOUNT, "memory.limit_in_bytes"))


def _cgroup_limit(pid: int) -> int:
    """The memory limit of ``pid``'s v1 memory cgroup, read from here."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                with open(f"{V1_MOUNT}{path}/memory.limit_in_bytes") as limit:
                    return int(limit.read())
    raise LookupError(f"{pid} has no memory cgroup")


@pytest.mark.skipif(not CGROUPS, reason="needs root and cgroup v1's memory controller")
def test_restarts_from_spares_given_another_sets_limit_get_their_own(make_host, write_set):
    """A spare sets the last request's limit on its cgroup ahead, and the
    zygote then writes none for a request with the same limit: restarts of
    two sets with different limits, in turns, each under its own."""
    fh = make_host(on_conflict="prefix")
    mb = {"small": 96, "large": 160}
    for name, memory in mb.items():
        path = write_set(name, CRASHER)
        fh.load_function_set(path, limits=Limits(memory_mb=memory, disk_mb=32, crash_limit=100))
    for name in ["small", "small", "large", "small", "large", "large"]:
        time.sleep(0.15)  # the zygote's next spare is forked and waiting
        with pytest.raises(WorkerCrashed):
            fh.call(f"{name}.crash")
        fh.call(f"{name}.where")
        pid = fh.function_sets[name]["pid"]
        assert _cgroup_limit(pid) == (mb[name] + 32) << 20, name
        assert fh.protections(name)["memory_cgroup"] is True
