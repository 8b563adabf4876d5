"""The always-on containment: process lifetime, forks, limits, files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from host import UserFunctionError

from .conftest import both_start_methods, host_view, process_alive, wait_for

SANDBOXED = """
import os
import resource
import sys
import time


def fork_and_return() -> int:
    pid = os.fork()
    if pid == 0:
        time.sleep(0.2)
        return -1   # the child returns into the worker loop: it must never answer
    os.waitpid(pid, 0)
    return os.getpid()


def limits() -> dict:
    return {
        "core": resource.getrlimit(resource.RLIMIT_CORE),
        "as": resource.getrlimit(resource.RLIMIT_AS),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "fsize": resource.getrlimit(resource.RLIMIT_FSIZE),
    }


def session() -> dict:
    return {"sid": os.getsid(0), "pid": os.getpid(), "stdin": os.readlink("/proc/self/fd/0")}


def write_file(mb: int) -> int:
    with open("big.bin", "wb") as f:
        f.write(b"x" * (mb * 1024 * 1024))
    return mb


def read_stdin() -> str:
    return sys.stdin.read()
"""


@pytest.fixture
def sandboxed(fh, write_set):
    fh.load_function_set(write_set("sandboxed", SANDBOXED))
    return fh


def test_a_forked_child_never_answers(sandboxed):
    parent = sandboxed.call("fork_and_return")
    assert parent > 0
    assert sandboxed.call("fork_and_return") == parent  # same worker, no stray reply


@both_start_methods
def test_rlimits_are_applied(make_host, write_set):
    from host import Limits

    fh = make_host(limits=Limits(memory_mb=300, open_files=64, file_size_mb=2))
    fh.load_function_set(write_set("sandboxed", SANDBOXED))
    lim = fh.call("limits")
    mib = 1024 * 1024
    assert lim["core"] == [0, 0]
    assert lim["as"] == [300 * mib, 300 * mib]
    assert lim["nofile"] == [64, 64]
    assert lim["fsize"] == [2 * mib, 2 * mib]
    assert fh.call("write_file", {"mb": 1}) == 1
    with pytest.raises(UserFunctionError) as info:
        fh.call("write_file", {"mb": 4})
    assert info.value.remote_type == "OSError"  # EFBIG, not a SIGXFSZ death
    protections = fh.function_sets["sandboxed"]["protections"]
    assert protections["rlimit_memory"] and protections["rlimit_core"]
    assert protections["own_session"] and protections["parent_death_signal"]


def test_own_session_and_no_stdin(sandboxed):
    info = sandboxed.call("session")
    assert host_view(info["pid"])[1] == info["pid"]  # leads its own session
    assert info["stdin"] == "/dev/null"
    assert sandboxed.call("read_stdin") == ""


HOST_SCRIPT = """
import threading, time
from host import FunctionHost

def make():
    fh = FunctionHost(builtin_dir={empty!r}, user_dirs=[], start_method={start_method!r})
    fh.load_function_set({path!r})
    print(fh.function_sets["sleeper"]["pid"], flush=True)
    return fh

if {from_thread!r}:
    # Created and used from a thread that then exits: the parent-death
    # signal must not fire with that thread.
    box = []
    t = threading.Thread(target=lambda: box.append(make()))
    t.start()
    t.join()
else:
    fh = make()
time.sleep(60)
"""


@both_start_methods
@pytest.mark.parametrize("from_thread", [False, True])
def test_workers_die_with_the_host(write_set, empty_dir, from_thread, start_method):
    path = write_set("sleeper", "import time\n\ndef nap() -> None:\n    time.sleep(60)\n")
    script = HOST_SCRIPT.format(
        empty=str(empty_dir), path=str(path), from_thread=from_thread, start_method=start_method
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        time.sleep(0.3)
        assert process_alive(worker)  # survived the creating thread's exit
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert wait_for(lambda: not process_alive(worker), 1.0)
    finally:
        proc.kill()
        proc.wait()


@both_start_methods
def test_a_crashed_workers_scratch_dir_is_removed(fh, write_set):
    # (No core file can be written: RLIMIT_CORE is 0, see test_rlimits_are_applied.)
    from host import WorkerCrashed

    fh.load_function_set(
        write_set(
            "crasher",
            "import os\n\ndef boom() -> None:\n"
            "    os.abort()\n\ndef cwd() -> str:\n"
            "    return os.getcwd()\n",
        )
    )
    scratch = fh.call("cwd")
    with pytest.raises(WorkerCrashed):
        fh.call("boom")
    # The dead worker's scratch dir is gone: removed by its reaper, off the
    # crashed call's path, so at most a moment after its error.
    assert wait_for(lambda: not os.path.exists(scratch), 5.0)
