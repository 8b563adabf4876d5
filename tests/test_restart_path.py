"""The restart after a crash, with every sandbox layer: where each process of
a worker's tree lives (the warden outside the worker's namespaces, so that
its exit, the death the host sees, does not wait for their teardown), what
the crash's error says, what the replacement reports, and that nothing of
the crashed worker is left (docs/sandbox.md, "Start sequence")."""

from __future__ import annotations

import os

import pytest

from host import Limits, Sandbox, WorkerCrashed
from tests.conftest import both_start_methods, process_alive, process_tree, wait_for

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="private namespaces need a root host")

CRASHER = """
import ctypes
import os


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
    assert not os.path.exists(first)  # gone when the error came back
    assert fh.call("where") != first
    new = fh.function_sets["crasher"]["pid"]
    assert new != old
    # The replacement's report is its own (measured before its user code),
    # and says what the first worker's said.
    assert fh.protections("crasher") == before
    assert wait_for(lambda: not any(process_alive(p) for p in old_tree))
