"""The zygote's control messages: what the host (``host.launch.zygote``) and the
zygote (``worker.zygote``) say to each other over their socket.

The zygote is started as ``python -I -m worker.zygote CONFIG`` with
``ZygoteConfig`` as JSON; the host's end of a Unix SEQPACKET socket pair is
the other end of its ``control_fd``. Then, one msgpack map per datagram:

- host -> zygote: ``SpawnRequest`` ``{"id", "config", "env", "cwd"}``, with
  ``SPAWN_FDS`` fds passed alongside (SCM_RIGHTS, done by each end's I/O
  code), in this order: the worker's request pipe (read end), its reply
  pipe (write end), its stdout and its stderr capture files; for a worker
  of an egress set, its door socket as a fifth (``WorkerConfig.fd_count``).
- zygote -> host: for each request, by its ``id``, ``Spawned``
  ``{"id", "pid"}`` or ``SpawnFailed`` ``{"id", "error"}``; and, for each
  worker that exits, ``Exited`` ``{"exit": pid, "status": returncode}``
  (negative: the signal number), since only its parent can reap it.

No ``from __future__ import annotations`` here: see ``worker_config``.

Decoding checks every field: ``ProtocolViolation`` (``BadSpawnRequest`` for
a request) names the first thing that is wrong.
"""

from typing import Any, NamedTuple

from protocol.errors import ProtocolViolation
from protocol.framing import pack, unpack
from protocol.wire_fields import (
    describe,
    fields_of,
    integer,
    optional_text,
    present,
    text,
    text_map,
)
from protocol.worker_config import WorkerConfig

#: How many fds travel with a ``SpawnRequest`` (see the module docstring),
#: and at most (an egress set's door socket is a fifth).
SPAWN_FDS = 4
MAX_SPAWN_FDS = 5


class ZygoteConfig(NamedTuple):
    """The zygote's start parameters: its end of the control socket, the
    host, whose death must kill it, and the directory of its workers'
    memory cgroups, which its spares join ahead (``None``: none)."""

    control_fd: int
    host_pid: int
    memory_cgroup: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready map."""
        return self._asdict()

    @classmethod
    def from_wire(cls, wire: object) -> "ZygoteConfig":
        """The config in ``wire`` (a decoded map); ``ProtocolViolation``
        naming the field that is missing, unknown or wrong."""
        what = "zygote config"
        fields = fields_of(wire, what, cls._fields)
        return cls(
            control_fd=integer(fields, "control_fd", what, minimum=0),
            host_pid=integer(fields, "host_pid", what, minimum=1),
            memory_cgroup=optional_text(fields, "memory_cgroup", what),
        )


class SpawnRequest(NamedTuple):
    """Fork a worker with ``config``, exactly the environment ``env``, in
    the directory ``cwd``; the reply names ``id``."""

    id: int
    config: WorkerConfig
    env: dict[str, str]
    cwd: str


class Spawned(NamedTuple):
    """The worker of request ``id`` runs as ``pid`` (the zygote's child)."""

    id: int
    pid: int


class SpawnFailed(NamedTuple):
    """The zygote could not fork a worker for request ``id``; ``error`` says why."""

    id: int
    error: str


class Exited(NamedTuple):
    """Worker ``pid`` exited with ``status`` (as ``Popen.returncode``)."""

    pid: int
    status: int


ZygoteReply = Spawned | SpawnFailed | Exited


class BadSpawnRequest(ProtocolViolation):
    """A spawn request the zygote cannot serve. ``request_id``: its ``id``
    if that much could be read (then the zygote answers ``SpawnFailed``),
    else ``None`` (the zygote cannot answer: it stops, as on a closed socket)."""

    def __init__(self, message: str, request_id: int | None) -> None:
        super().__init__(message)
        self.request_id = request_id


def encode_spawn_request(request: SpawnRequest) -> bytes:
    """One datagram for ``request`` (its fds go alongside)."""
    return pack(
        {
            "id": request.id,
            "config": request.config.to_wire(),
            "env": request.env,
            "cwd": request.cwd,
        }
    )


def decode_spawn_request(data: bytes) -> SpawnRequest:
    """The request in one datagram from the host.

    Raises ``BadSpawnRequest`` naming what is wrong (its ``request_id`` says
    whether the zygote can still answer).
    """
    what = "zygote spawn request"
    request_id: int | None = None
    try:
        wire = unpack(data)
        if isinstance(wire, dict) and type(wire.get("id")) is int:
            request_id = wire["id"]  # answerable, whatever else is wrong
        fields = fields_of(wire, what, SpawnRequest._fields)
        return SpawnRequest(
            id=integer(fields, "id", what),
            config=WorkerConfig.from_wire(present(fields, "config", what)),
            env=text_map(fields, "env", what),
            cwd=text(fields, "cwd", what),
        )
    except BadSpawnRequest:
        raise
    except ProtocolViolation as exc:
        raise BadSpawnRequest(str(exc), request_id) from None


def encode_reply(reply: ZygoteReply) -> bytes:
    """One datagram for ``reply``."""
    if isinstance(reply, Exited):
        return pack({"exit": reply.pid, "status": reply.status})
    return pack(reply._asdict())


def decode_reply(data: bytes) -> ZygoteReply:
    """The message in one datagram from the zygote.

    Raises ``ProtocolViolation`` naming what is wrong; the host then treats
    the zygote as broken (it falls back to spawning workers itself).
    """
    obj = unpack(data)
    if isinstance(obj, dict) and "exit" in obj:
        what = "zygote exit report"
        fields = fields_of(obj, what, ("exit", "status"))
        return Exited(integer(fields, "exit", what, minimum=1), integer(fields, "status", what))
    if isinstance(obj, dict) and "pid" in obj:
        what = "zygote spawn reply"
        fields = fields_of(obj, what, Spawned._fields)
        return Spawned(integer(fields, "id", what), integer(fields, "pid", what, minimum=1))
    if isinstance(obj, dict) and "error" in obj:
        what = "zygote spawn failure"
        fields = fields_of(obj, what, SpawnFailed._fields)
        return SpawnFailed(integer(fields, "id", what), text(fields, "error", what))
    raise ProtocolViolation(
        f"a zygote message must be a map with 'exit', 'pid' or 'error', got {describe(obj)}"
    )
