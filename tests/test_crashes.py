"""Crashes, hangs and protocol abuse end as errors; the host and other sets carry on."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from host import CallTimeout, Limits, ProtocolError, Sandbox, WorkerCrashed

from .conftest import (
    NO_PID_NAMESPACE,
    both_start_methods,
    outside_pid,
    process_alive,
    wait_for,
    worker_pids,
)

HOSTILE = """
import ctypes
import json
import os
import signal
import struct
import sys
import time

import msgpack


def pid() -> int:
    return os.getpid()


def echo(x: int) -> int:
    return x


def segfault() -> None:
    ctypes.string_at(0)


def abort() -> None:
    os.abort()


def exit_zero() -> None:
    os._exit(0)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def say_then_die(text: str) -> None:
    sys.stderr.write(text + "\\n")
    sys.stderr.flush()
    os._exit(9)


def spin() -> None:
    while True:
        pass


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def stubborn() -> None:
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(s, signal.SIG_IGN)
    while True:
        pass


def _protocol_fd() -> int:
    return json.loads(sys.argv[1])["out_fd"]


def forge_reply() -> str:
    # A well-formed reply to a request id that was never sent.
    body = msgpack.packb([1, 999999, None, {"value": "forged", "stdout": "", "stderr": ""}])
    os.write(_protocol_fd(), struct.pack(">I", len(body)) + body)
    time.sleep(5)
    return "genuine"


def close_pipe_and_stay() -> str:
    # The worker can never answer now, but it does not exit.
    os.close(_protocol_fd())
    time.sleep(120)
    return "never"


def garbage() -> str:
    os.write(_protocol_fd(), b"\\x00\\x00\\x00\\x05\\xc1\\xc1\\xc1\\xc1\\xc1")
    time.sleep(5)
    return "genuine"


def claim_cancelled() -> str:
    # "cancelled" is a worker's word only for a call the host cancelled.
    import sys
    frame = sys._getframe()
    while not hasattr(frame.f_locals.get("msg"), "msgid"):
        frame = frame.f_back
    msgid = frame.f_locals["msg"].msgid
    err = {"kind": "cancelled", "message": "x"}
    body = msgpack.packb([1, msgid, err, {"stdout": "", "stderr": ""}])
    os.write(_protocol_fd(), struct.pack(">I", len(body)) + body)
    time.sleep(5)
    return "genuine"


def answer_ahead(seconds: float) -> str:
    # Answer the call queued behind this one (the next request id) first.
    import sys
    time.sleep(seconds)
    frame = sys._getframe()
    while not hasattr(frame.f_locals.get("msg"), "msgid"):
        frame = frame.f_back
    msgid = frame.f_locals["msg"].msgid + 1
    body = msgpack.packb([1, msgid, None, {"value": "forged", "stdout": "", "stderr": ""}])
    os.write(_protocol_fd(), struct.pack(">I", len(body)) + body)
    time.sleep(5)
    return "genuine"


def claim_timeout() -> str:
    # A worker may not report host-only error kinds.
    body = msgpack.packb([1, 1, {"kind": "timeout", "message": "x"}, {}])
    os.write(_protocol_fd(), struct.pack(">I", len(body)) + body)
    time.sleep(5)
    return "genuine"
"""

OTHER = """
def ping() -> str:
    return "pong"
"""


@pytest.fixture
def hostile(fh, write_set):
    fh.load_function_set(write_set("hostile", HOSTILE))
    fh.load_function_set(write_set("other", OTHER))
    return fh


@pytest.mark.parametrize(
    "name,signal_name,exit_code",
    [
        ("segfault", "SIGSEGV", None),
        ("abort", "SIGABRT", None),
        ("kill_self", "SIGKILL", None),
        ("exit_zero", None, 0),
    ],
)
@both_start_methods
def test_crash_is_worker_crashed_then_restart(hostile, name, signal_name, exit_code):
    other_pid = hostile.function_sets["other"]["pid"]
    first = hostile.call("pid")
    with pytest.raises(WorkerCrashed) as info:
        hostile.call(name)
    err = info.value
    assert (err.kind, err.set_name, err.function) == ("worker_crashed", "hostile", name)
    assert err.signal == signal_name
    assert err.exit_code == exit_code
    assert (signal_name or f"status {exit_code}") in str(err)
    second = hostile.call("pid")
    assert second != first  # a new worker
    assert hostile.call("echo", {"x": 5}) == 5
    assert hostile.call("ping") == "pong"
    assert hostile.function_sets["other"]["pid"] == other_pid  # other sets untouched


@both_start_methods
def test_crash_error_carries_stderr_tail(hostile):
    with pytest.raises(WorkerCrashed) as info:
        hostile.call("say_then_die", {"text": "last words before dying"})
    assert info.value.exit_code == 9
    assert "last words before dying" in info.value.stderr_tail


@both_start_methods
def test_worker_restarts_by_itself(hostile):
    first = hostile.call("pid")
    with pytest.raises(WorkerCrashed):
        hostile.call("segfault")
    # Without any call, a new worker process appears.

    def restarted() -> bool:
        pid = hostile.function_sets["hostile"]["pid"]
        return pid not in (None, first) and pid in worker_pids()

    assert wait_for(restarted)


@both_start_methods
@pytest.mark.parametrize("name", ["spin", "stubborn"])
def test_timeout_kills_the_worker(hostile, name):
    first = hostile.call("pid")
    start = time.monotonic()
    with pytest.raises(CallTimeout) as info:
        hostile.call(name, timeout=0.5)
    elapsed = time.monotonic() - start
    assert info.value.kind == "timeout"
    assert (info.value.set_name, info.value.function) == ("hostile", name)
    assert "0.5s" in str(info.value)
    assert elapsed >= 0.5  # not before its deadline (after it: the function never ends)
    # The timed-out code does not keep running: its process is gone.
    assert wait_for(lambda: first not in worker_pids(), 2.0)
    assert hostile.call("pid") != first
    assert hostile.call("echo", {"x": 1}) == 1


def test_default_timeout_from_limits(make_host, write_set):
    fh = make_host(limits=Limits(timeout=0.3))
    fh.load_function_set(write_set("hostile", HOSTILE))
    with pytest.raises(CallTimeout):
        fh.call("sleep", {"seconds": 30})
    assert fh.call("sleep", {"seconds": 0.01}) == "slept"


def test_per_set_limits_override(fh, write_set):
    fh.load_function_set(write_set("hostile", HOSTILE), limits=Limits(timeout=0.3))
    with pytest.raises(CallTimeout):
        fh.call("sleep", {"seconds": 30})


@both_start_methods
def test_calls_in_flight_on_a_crashing_worker_all_fail(hostile):
    results: dict[str, object] = {}

    def slow() -> None:
        try:
            results["slow"] = hostile.call("sleep", {"seconds": 30})
        except Exception as exc:
            results["slow"] = exc

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)
    pid = hostile.function_sets["hostile"]["pid"]
    os.kill(pid, 9)  # from outside, as the OOM killer would
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(results["slow"], WorkerCrashed)
    assert results["slow"].signal == "SIGKILL"
    assert hostile.call("echo", {"x": 3}) == 3


@pytest.mark.parametrize("name", ["forge_reply", "garbage", "claim_timeout", "claim_cancelled"])
def test_protocol_abuse_is_protocol_error_and_restart(hostile, name):
    first = hostile.call("pid")
    with pytest.raises(ProtocolError) as info:
        hostile.call(name, timeout=10)
    assert info.value.kind == "protocol_error"
    assert info.value.set_name == "hostile"
    assert hostile.call("pid") != first
    assert hostile.call("echo", {"x": 4}) == 4


def test_a_reply_to_a_call_waiting_in_the_pipe_is_refused(hostile):
    """The worker answers the call queued behind the running one: that is a
    protocol error for the running call, and the queued call, which never
    started, runs on the restarted worker: no call gets another's answer."""
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(hostile.call, "answer_ahead", {"seconds": 0.3}, 10)
        time.sleep(0.1)  # it runs; this one goes into the pipe behind it
        assert hostile.call("echo", {"x": 11}, timeout=10) == 11
        with pytest.raises(ProtocolError) as info:
            first.result(timeout=10)
    assert "oldest unanswered" in str(info.value)


def test_crash_loop_parks_the_set(make_host, write_set):
    fh = make_host(limits=Limits(crash_limit=3, crash_window=30.0))
    fh.load_function_set(write_set("hostile", HOSTILE))
    fh.load_function_set(write_set("other", OTHER))
    for _ in range(3):
        with pytest.raises(WorkerCrashed):
            fh.call("segfault")
    with pytest.raises(WorkerCrashed) as info:
        fh.call("echo", {"x": 1})
    assert "parked" in str(info.value)
    assert "3 times" in str(info.value)
    assert fh.call("ping") == "pong"


def test_each_crash_counts_once_towards_the_crash_limit(make_host, write_set):
    """A crash is counted when the worker's pipe closes (its replacement
    starts then) and must not be counted again when its exit is seen: two
    crashes under crash_limit=3 leave the set serving."""
    fh = make_host(limits=Limits(crash_limit=3, crash_window=30.0))
    fh.load_function_set(write_set("hostile", HOSTILE))
    for _ in range(2):
        with pytest.raises(WorkerCrashed) as info:
            fh.call("segfault")
        assert "parked" not in str(info.value)
    assert fh.call("echo", {"x": 1}) == 1


def test_a_worker_that_closes_its_pipe_and_stays_is_killed_as_a_protocol_error(
    make_host, write_set
):
    """With no call timeout, a worker that closed its end of the pipe but
    lives on used to hold its call forever: now it is killed after the reap
    grace, the call fails with ProtocolError saying why, and the replacement
    (started when the pipe closed) serves the next call."""
    fh = make_host(limits=Limits(timeout=None))
    fh.load_function_set(write_set("hostile", HOSTILE))
    old_pid = fh.function_sets["hostile"]["pid"]
    with pytest.raises(ProtocolError) as info:
        fh.call("close_pipe_and_stay")
    assert "closed its end of the pipe and did not exit" in str(info.value)
    assert info.value.signal == "SIGKILL"
    assert fh.call("echo", {"x": 2}) == 2
    assert fh.function_sets["hostile"]["pid"] != old_pid


def test_a_worker_that_closes_its_pipe_and_stays_is_killed_even_when_that_parks_the_set(
    make_host, write_set
):
    """The same worker, when its death parks the set (crash_limit=1): no
    replacement is started, and it must still not hold its call forever."""
    fh = make_host(limits=Limits(timeout=None, crash_limit=1, crash_window=60.0))
    fh.load_function_set(write_set("hostile", HOSTILE))
    with pytest.raises(ProtocolError) as info:
        fh.call("close_pipe_and_stay")
    assert "closed its end of the pipe and did not exit" in str(info.value)
    with pytest.raises(WorkerCrashed) as parked:
        fh.call("echo", {"x": 1})
    assert "parked" in str(parked.value)


def test_parked_set_recovers_after_window(make_host, write_set):
    fh = make_host(limits=Limits(crash_limit=2, crash_window=0.5))
    fh.load_function_set(write_set("hostile", HOSTILE))
    for _ in range(2):
        with pytest.raises(WorkerCrashed):
            fh.call("segfault")
    with pytest.raises(WorkerCrashed):
        fh.call("echo", {"x": 1})
    time.sleep(0.6)
    assert fh.call("echo", {"x": 2}) == 2


FAMILY = """
import json
import os
import subprocess
import sys
import time

_kept = []


def start_children() -> list[int]:
    # Children that stay in the worker's process group: a program, a fork
    # and the fork's own child.
    _kept.append(subprocess.Popen(["sleep", "60"]))
    r, w = os.pipe()
    if os.fork() == 0:
        if os.fork() == 0:
            os.write(w, f"{os.getpid()} ".encode())
            time.sleep(60)
            os._exit(0)
        os.write(w, f"{os.getpid()} ".encode())
        time.sleep(60)
        os._exit(0)
    os.close(w)
    data = b""
    while len(data.split()) < 2:
        data += os.read(r, 64)
    os.close(r)
    return [_kept[0].pid, *map(int, data.split())]


def start_daemon() -> int:
    # A program in a session of its own (out of the worker's process group)
    # that holds the reply pipe. (A plain fork would not: the worker closes
    # the protocol fds in forked children; an exec'd program gets what it
    # is passed.)
    out_fd = json.loads(sys.argv[1])["out_fd"]
    os.set_inheritable(out_fd, True)
    daemon = subprocess.Popen(["sleep", "600"], pass_fds=(out_fd,), start_new_session=True)
    return daemon.pid


def die_leaving_child() -> None:
    out_fd = json.loads(sys.argv[1])["out_fd"]
    os.set_inheritable(out_fd, True)
    subprocess.Popen(["sleep", "600"], pass_fds=(out_fd,))
    os._exit(5)


def die() -> None:
    os._exit(3)


def hang() -> None:
    time.sleep(600)


def pid() -> int:
    return os.getpid()
"""

NAMESPACES = pytest.mark.parametrize(
    "sandbox", [Sandbox(), NO_PID_NAMESPACE], ids=["default", "no_pid_namespace"]
)


@both_start_methods
@NAMESPACES
def test_a_timeout_kills_every_child_in_the_workers_process_group(make_host, write_set, sandbox):
    fh = make_host(limits=Limits(timeout=10.0, sandbox=sandbox))
    fh.load_function_set(write_set("family", FAMILY))
    set_pid = fh.function_sets["family"]["pid"]
    children = [outside_pid(set_pid, inner) for inner in fh.call("start_children")]
    assert all(process_alive(child) for child in children)
    with pytest.raises(CallTimeout):
        fh.call("hang", timeout=0.5)
    assert wait_for(lambda: not any(process_alive(child) for child in children))
    assert fh.call("pid") > 0


def _holds_a_pipe(pid: int) -> bool:
    """``pid`` has a pipe open. An fd may close between the listing and its
    reading (while the daemon execs, its launcher's own status pipe goes):
    such an fd is skipped, not an error."""
    held = False
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            held = held or os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:")
        except FileNotFoundError:
            continue
    return held


@both_start_methods
def test_death_is_seen_from_the_pidfd_while_an_escaped_daemon_holds_the_pipe(
    make_host, write_set, start_method
):
    """The worker exits; its daemon, out of its process group and (without a
    PID namespace, under "spawn") out of anyone's reach, keeps the reply pipe
    open, so no EOF comes: the host must learn of the exit from the pidfd.
    Learned from EOF, the call would run into its timeout instead."""
    fh = make_host(limits=Limits(timeout=10.0, sandbox=NO_PID_NAMESPACE))
    fh.load_function_set(write_set("family", FAMILY))
    daemon = fh.call("start_daemon")
    try:
        assert _holds_a_pipe(daemon)
        with pytest.raises(WorkerCrashed) as info:
            fh.call("die", timeout=10)
        assert info.value.exit_code == 3
        if start_method == "spawn":
            # Nothing cleaned up: the pipe was still open when the exit was seen.
            assert process_alive(daemon) and _holds_a_pipe(daemon)
        else:
            # The zygote adopted the daemon and kills it with its worker.
            assert wait_for(lambda: not process_alive(daemon))
        assert fh.call("pid") > 0
    finally:
        if process_alive(daemon):
            os.kill(daemon, 9)


@both_start_methods
@NAMESPACES
def test_death_is_seen_even_when_a_child_holds_the_pipe(make_host, write_set, sandbox):
    fh = make_host(limits=Limits(timeout=10.0, sandbox=sandbox))
    fh.load_function_set(write_set("family", FAMILY))
    # Known from the exit, not from pipe EOF (which the child would delay
    # past the call's timeout: a CallTimeout, not this).
    with pytest.raises(WorkerCrashed) as info:
        fh.call("die_leaving_child", timeout=15)
    assert info.value.exit_code == 5
    assert fh.call("pid") > 0


@both_start_methods
def test_segfault_carries_the_python_traceback(hostile):
    with pytest.raises(WorkerCrashed) as info:
        hostile.call("segfault")
    assert info.value.traceback is not None
    assert "Fatal Python error: Segmentation fault" in info.value.traceback
    assert "in segfault" in info.value.traceback  # the user function's frame


def test_monkeypatched_os_functions_do_not_reach_the_protocol(fh, write_set):
    fh.load_function_set(
        write_set(
            "patcher",
            """
import os


def patch() -> str:
    os.write = lambda fd, data: len(data)   # would swallow every reply
    os._exit = lambda code: None
    return "patched"


def echo(x: int) -> int:
    return x
""",
        )
    )
    assert fh.call("patch") == "patched"
    assert fh.call("echo", {"x": 7}) == 7
