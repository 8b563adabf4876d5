"""The zygote's hand-over of a request to a spare (``worker.hand_over``),
against real processes playing the spare: what the spare is told, when it
may go on, and that one given up on is dead before a fresh fork could get
the request's fds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from protocol.zygote_control import encode_spawn_request
from tests.conftest import process_alive, wait_for
from worker.hand_over import (
    ACK,
    GO,
    GO_IF_LIMITED,
    LIMITED,
    WAIT,
    hand_over,
    spare_waits,
)
from worker.rehearsal import made_up_request

#: A stand-in for a spare: takes one request on the socket named by its
#: first argument, reports what it got on stdout, then answers (or not).
FAKE_SPARE = textwrap.dedent("""
    import socket, sys, time
    conn = socket.socket(fileno=int(sys.argv[1]))
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 8)
    print(data[:1].decode(), len(fds), flush=True)
    if sys.argv[2] == "answer":
        conn.send(b"k")
    time.sleep(30)
""")


def test_a_spare_waits_for_the_go_only_where_the_limit_is_not_settled():
    assert not spare_waits(GO, ACK) and not spare_waits(GO, LIMITED)
    assert not spare_waits(GO_IF_LIMITED, LIMITED)
    assert spare_waits(GO_IF_LIMITED, ACK)  # its limit from the fork is not in force
    assert spare_waits(WAIT, ACK) and spare_waits(WAIT, LIMITED)
    assert spare_waits(b"?", ACK)  # unknown: the safe way


@contextlib.contextmanager
def _spare(behaviour: str):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_SPARE, str(theirs.fileno()), behaviour],
        pass_fds=(theirs.fileno(),),
        stdout=subprocess.PIPE,
        text=True,
    )
    theirs.close()
    pipes = [*os.pipe(), *os.pipe()]
    try:
        yield proc, ours, pipes
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        proc.stdout.close()
        for fd in pipes:
            os.close(fd)


def _hand(proc, conn, pipes):
    request = made_up_request()  # no memory cgroup: nothing to settle
    return hand_over(proc.pid, conn, None, False, request, encode_spawn_request(request), pipes)


def test_a_spare_that_answers_is_told_to_go_on_at_once():
    with _spare("answer") as (proc, conn, pipes):
        assert _hand(proc, conn, pipes) == proc.pid
        mode, count = proc.stdout.readline().split()
        assert (mode.encode(), int(count)) == (GO, 4)
        assert process_alive(proc.pid)  # it serves: not killed


def test_a_silent_spare_is_killed_and_seen_dead_before_a_fresh_fork_may_serve():
    with _spare("silent") as (proc, conn, pipes):
        assert _hand(proc, conn, pipes) is None
        assert proc.stdout.readline().split()[0] == GO.decode()  # it had the request
        assert wait_for(lambda: proc.poll() is not None, 2.0)
        assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("behaviour", ["answer", "silent"])
def test_a_stopped_spare_is_killed_and_leaves_the_request_to_a_fresh_fork(behaviour):
    with _spare(behaviour) as (proc, conn, pipes):
        os.kill(proc.pid, signal.SIGSTOP)
        assert wait_for(lambda: _state(proc.pid) == "T", 2.0)
        assert _hand(proc, conn, pipes) is None
        os.kill(proc.pid, signal.SIGCONT)
        assert wait_for(lambda: proc.poll() is not None, 2.0)  # killed, not left stopped
        assert proc.stdout.read() == ""  # never acted on it


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
