"""The zygote's control messages (``protocol.zygote_control``): each shape
round-trips, keeps its documented wire form, and a malformed one is refused
by name; the last tests talk to a real zygote in the raw.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from protocol import ProtocolViolation
from protocol.zygote_control import (
    SPAWN_FDS,
    BadSpawnRequest,
    Exited,
    Spawned,
    SpawnFailed,
    SpawnRequest,
    ZygoteConfig,
    decode_reply,
    decode_spawn_request,
    encode_reply,
    encode_spawn_request,
)
from tests.test_worker_config import good_wire, make_config


def a_request() -> SpawnRequest:
    return SpawnRequest(7, make_config(), {"PATH": "/usr/bin", "HOME": "/s"}, "/s")


def test_zygote_config_round_trip():
    config = ZygoteConfig(control_fd=9, host_pid=4242)
    assert config.to_wire() == {"control_fd": 9, "host_pid": 4242, "memory_cgroup": None}
    assert ZygoteConfig.from_wire(json.loads(json.dumps(config.to_wire()))) == config
    with_cgroup = config._replace(memory_cgroup="/sys/fs/cgroup/memory/fnhost-4242-1")
    assert ZygoteConfig.from_wire(json.loads(json.dumps(with_cgroup.to_wire()))) == with_cgroup


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"host_pid": 1}, "zygote config lacks the field 'control_fd'"),
        ({"control_fd": 3}, "zygote config lacks the field 'host_pid'"),
        ({"control_fd": "3", "host_pid": 1}, "'control_fd' must be an integer >= 0, got str"),
        ({"control_fd": 3, "host_pid": 0}, "'host_pid' must be an integer >= 1"),
        ({"control_fd": 3, "host_pid": 1, "x": 0}, "zygote config has an unknown field 'x'"),
        ([3, 1], "zygote config must be a map, got list"),
    ],
)
def test_zygote_config_malformed_field_is_named(wire, message):
    with pytest.raises(ProtocolViolation, match=re.escape(message)):
        ZygoteConfig.from_wire(wire)


def test_spawn_request_round_trip():
    request = a_request()
    assert decode_spawn_request(encode_spawn_request(request)) == request


def test_spawn_request_wire_form():
    wire = msgpack.unpackb(encode_spawn_request(a_request()))
    assert set(wire) == {"id", "config", "env", "cwd"}
    assert wire["id"] == 7 and wire["cwd"] == "/s"
    assert wire["config"] == make_config().to_wire() | {"extra_sys_path": ["/srv/lib", "/srv/more"]}


def _request_wire(**changes: Any) -> bytes:
    wire: dict[str, Any] = {"id": 7, "config": good_wire(), "env": {"A": "b"}, "cwd": "/s"}
    wire.update(changes)
    return msgpack.packb({k: v for k, v in wire.items() if v is not _GONE})


_GONE = object()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cwd": _GONE}, "zygote spawn request lacks the field 'cwd'"),
        ({"cwd": 3}, "zygote spawn request: 'cwd' must be a string, got int"),
        ({"env": {"A": 1}}, "'env' must be a map of strings to strings"),
        ({"env": ["A=b"]}, "'env' must be a map of strings to strings"),
        ({"config": _GONE}, "zygote spawn request lacks the field 'config'"),
        ({"config": {**good_wire(), "in_fd": "3"}}, "worker config: 'in_fd' must be an integer"),
        ({"extra": 1}, "zygote spawn request has an unknown field 'extra'"),
    ],
)
def test_a_bad_request_with_an_id_can_still_be_answered(changes, message):
    with pytest.raises(BadSpawnRequest, match=re.escape(message)) as info:
        decode_spawn_request(_request_wire(**changes))
    assert info.value.request_id == 7


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_request_wire(id=_GONE), "zygote spawn request lacks the field 'id'"),
        (_request_wire(id="7"), "zygote spawn request: 'id' must be an integer, got str"),
        (_request_wire(id=True, cwd=3), "'id' must be an integer, got bool"),
        (msgpack.packb([7, {}, {}, "/"]), "zygote spawn request must be a map, got list"),
        (b"\xc1", "frame is not valid msgpack"),
    ],
)
def test_a_request_without_a_readable_id_cannot_be_answered(data, message):
    with pytest.raises(BadSpawnRequest, match=re.escape(message)) as info:
        decode_spawn_request(data)
    assert info.value.request_id is None


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (Spawned(3, 1200), {"id": 3, "pid": 1200}),
        (SpawnFailed(4, "fork failed: EAGAIN"), {"id": 4, "error": "fork failed: EAGAIN"}),
        (Exited(1200, -9), {"exit": 1200, "status": -9}),
    ],
)
def test_replies_round_trip_in_their_documented_form(reply, wire):
    assert msgpack.unpackb(encode_reply(reply)) == wire
    assert decode_reply(encode_reply(reply)) == reply
    assert type(decode_reply(encode_reply(reply))) is type(reply)


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"exit": 5}, "zygote exit report lacks the field 'status'"),
        ({"exit": "5", "status": 0}, "zygote exit report: 'exit' must be an integer >= 1"),
        ({"exit": 5, "status": 1.5}, "zygote exit report: 'status' must be an integer, got float"),
        ({"exit": 5, "status": 0, "id": 1}, "zygote exit report has an unknown field 'id'"),
        ({"pid": 5}, "zygote spawn reply lacks the field 'id'"),
        ({"id": 1, "pid": -5}, "zygote spawn reply: 'pid' must be an integer >= 1"),
        ({"id": None, "error": "x"}, "zygote spawn failure: 'id' must be an integer"),
        ({"id": 1, "error": 3}, "zygote spawn failure: 'error' must be a string, got int"),
        ({"id": 1}, "a zygote message must be a map with 'exit', 'pid' or 'error'"),
        ([1, 2], "a zygote message must be a map with 'exit', 'pid' or 'error', got list"),
    ],
)
def test_a_malformed_reply_is_named(wire, message):
    with pytest.raises(ProtocolViolation, match=re.escape(message)):
        decode_reply(msgpack.packb(wire))


def test_a_reply_that_is_not_msgpack_is_a_violation():
    with pytest.raises(ProtocolViolation, match="not valid msgpack"):
        decode_reply(b"\xc1")


# -- a real zygote, spoken to in the raw ---------------------------------------


@pytest.fixture
def raw_zygote() -> Iterator[tuple[socket.socket, subprocess.Popen]]:
    """A zygote started as ``host.launch.zygote`` starts one, without its client."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    config = ZygoteConfig(control_fd=theirs.fileno(), host_pid=os.getpid())
    proc = subprocess.Popen(
        [sys.executable, "-I", "-m", "worker.zygote", json.dumps(config.to_wire())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(theirs.fileno(),),
        cwd="/",
        start_new_session=True,
    )
    theirs.close()
    yield ours, proc
    ours.close()  # EOF: the zygote kills its children and exits
    proc.wait(10)


def _send(sock: socket.socket, data: bytes) -> None:
    fds = [os.open(os.devnull, os.O_RDWR) for _ in range(SPAWN_FDS)]
    try:
        socket.send_fds(sock, [data], fds)
    finally:
        for fd in fds:
            os.close(fd)


def _receive(sock: socket.socket) -> bytes:
    ready, _, _ = select.select([sock], [], [], 30)
    assert ready, "the zygote did not answer"
    return sock.recv(1 << 16)


def test_the_zygote_answers_a_malformed_request_naming_the_field(raw_zygote):
    sock, proc = raw_zygote
    _send(sock, _request_wire(id=41, cwd=_GONE))
    reply = decode_reply(_receive(sock))
    assert isinstance(reply, SpawnFailed) and reply.id == 41
    assert "lacks the field 'cwd'" in reply.error
    assert proc.poll() is None  # still serving


def test_the_zygote_stops_on_a_request_it_cannot_answer(raw_zygote):
    sock, proc = raw_zygote
    _send(sock, msgpack.packb(["not", "a", "map"]))
    assert _receive(sock) == b""  # EOF: no answer can name the request
    assert proc.wait(10) == 0
