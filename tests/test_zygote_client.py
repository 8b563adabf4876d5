"""The host's client of the zygote (``host.launch.zygote.Zygote``) against
a stand-in zygote process: a worker's exit status is read while a spawn on
another thread still waits for its reply (a crashed call's error waited
for the replacement's spawn to be answered when one lock covered both)."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
from pathlib import Path

from host.launch.zygote import Zygote
from worker.rehearsal import made_up_request

#: Reads one spawn request, reports that worker 4242 exited (SIGSEGV), and
#: answers the request only once the file named by $GO exists.
FAKE_ZYGOTE = textwrap.dedent("""
    import json, os, socket, sys, time
    sys.path[:0] = [os.environ["ROOT"]]
    from protocol.zygote_control import Exited, Spawned, encode_reply
    from protocol.framing import unpack
    conn = socket.socket(fileno=json.loads(sys.argv[-1])["control_fd"])
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 8)
    conn.send(encode_reply(Exited(4242, -11)))
    while not os.path.exists(os.environ["GO"]):
        time.sleep(0.01)
    conn.send(encode_reply(Spawned(unpack(data)["id"], 4343)))
    conn.recv(1)  # until the host closes
""")


def test_an_exit_status_is_not_held_up_behind_a_spawn_waiting_for_its_reply(tmp_path: Path):
    go = tmp_path / "go"
    root = str(Path(__file__).resolve().parent.parent)
    zygote = Zygote(
        os.getpid(),
        {"GO": str(go), "ROOT": root, "PATH": "/usr/bin:/bin"},
        argv=[sys.executable, "-c", FAKE_ZYGOTE],
    )
    pipes = [*os.pipe(), *os.pipe()]
    spawned: list[object] = []

    def spawn() -> None:
        try:
            spawned.append(zygote.spawn(made_up_request().config, {}, "/", tuple(pipes)))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            spawned.append(exc)

    thread = threading.Thread(target=spawn)
    try:
        thread.start()
        # The spawn is answered only after this returns: waiting behind it
        # would hold both until the spawn's timeout, which then fails.
        assert zygote.wait_status(4242, timeout=20.0) == -11
        go.touch()
        thread.join(30)
        assert spawned == [4343]
    finally:
        go.touch()
        thread.join(30)
        zygote.close()
        for fd in pipes:
            os.close(fd)
