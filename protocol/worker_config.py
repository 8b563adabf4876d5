"""The worker config: what the host tells each worker it starts.

Built by the host (``host.launch.launcher``), read by the worker's start sequence
(``worker.start``). It travels as JSON, the one argument of a spawned
worker (``python -I -m worker CONFIG``: user code may read ``out_fd``
there, and so do some tests), or inside a zygote spawn request
(``protocol.zygote_control``), where ``in_fd`` and ``out_fd`` are the
host's numbers and mean nothing to the zygote: the forked worker's copy
has the numbers its fds got there, and ``parent_pid``, by ``handed_over``.

The wire form is a map of exactly the fields of ``WorkerConfig`` (plus
``parent_pid`` only when set); ``WorkerConfig.from_wire`` refuses anything
else with a ``ProtocolViolation`` naming the field.

A ``NamedTuple``, not a dataclass, and no ``from __future__ import
annotations``: the worker imports this module on its start path, where a
dataclass costs about a millisecond to build and string annotations make
``NamedTuple`` compile each field's type (another millisecond).
"""

from typing import Any, NamedTuple

from protocol.errors import ProtocolViolation
from protocol.framing import MAX_FRAME_LIMIT
from protocol.wire_fields import (
    fields_of,
    flag,
    integer,
    optional_integer,
    optional_text,
    present,
    text,
    texts,
)

WHAT = "worker config"

#: The resource limits, in ``WorkerConfig.limits`` (``None``: unlimited).
#: ``disk_mb`` is the private tmpfs, not an rlimit (see ``worker.enclosure``).
LIMIT_FIELDS = (
    "memory_mb",
    "open_files",
    "file_size_mb",
    "cpu_seconds",
    "max_processes",
    "disk_mb",
)

#: The sandbox policy, in ``WorkerConfig.sandbox``: each field and its type.
#: The host builds it from its ``Sandbox`` (whose docstring says what each
#: field means); the worker's confinement reads it.
POLICY_FIELDS: dict[str, type] = {
    "network": bool,
    "confine_writes": bool,
    "writable_paths": list,
    "isolate_processes": bool,
    "user_namespace": bool,
    "restrict_syscalls": bool,
    "confine_reads": bool,
    "readable_paths": list,
    "own_uid": bool,
    "uid_base": int,
    "private_namespaces": bool,
    "egress": bool,
    "required": bool,
}

#: The egress door, in ``WorkerConfig.egress`` (``None``: no egress policy).
EGRESS_FIELDS = ("fd", "ca", "system_cafile", "allow")

_FIELDS = frozenset(
    {
        "in_fd",
        "out_fd",
        "host_pid",
        "host_uid",
        "set_name",
        "path",
        "module",
        "extra_sys_path",
        "limits",
        "max_frame_size",
        "max_result_bytes",
        "sandbox",
        "memory_cgroup",
        "egress",
        "parent_pid",
        "standby",
    }
)


class WorkerConfig(NamedTuple):
    """One worker's start parameters.

    - ``in_fd`` / ``out_fd``: the worker's ends of the request and reply pipes.
    - ``host_pid``, ``host_uid``: the host process and its uid.
    - ``set_name``; ``path`` (a file) or ``module`` (an importable name):
      exactly one is set. ``extra_sys_path``: entries the worker appends to
      ``sys.path`` (the host's, for a set named by module).
    - ``limits``: ``LIMIT_FIELDS``; ``sandbox``: ``POLICY_FIELDS``.
    - ``max_frame_size``: the largest request frame the worker accepts
      (``frame_limits.request_frame_limit``); ``max_result_bytes``: the
      largest reply frame it sends with a result.
    - ``memory_cgroup``: the directory under which the worker joins (or,
      forked ahead by the zygote, has joined) a memory cgroup of its own
      (``protocol.memory_cgroup``); ``None``: none (unavailable, or the
      policy says no).
    - ``egress``: for a set whose network is an egress policy, ``EGRESS_FIELDS``:
      ``fd``, the worker's end of its door socket (``worker.egress_door``);
      ``ca``, PEM certificates its bundle adds to the system's (``None``:
      none); ``system_cafile``, the system's bundle; ``allow``, the
      allow-list as written (for error messages). ``None`` otherwise.
    - ``parent_pid``: the process whose death must kill the worker, when it
      is not the host (the zygote, for a worker it forked).
    - ``standby``: a set's standby (``host.workers.standby``): after its
      ``probed`` report the worker waits for the host's ``load`` before it
      imports the set (wire form: present only when true).
    """

    in_fd: int
    out_fd: int
    host_pid: int
    host_uid: int
    set_name: str
    path: str | None
    module: str | None
    extra_sys_path: tuple[str, ...]
    limits: dict[str, int | None]
    max_frame_size: int
    max_result_bytes: int
    sandbox: dict[str, Any]
    memory_cgroup: str | None = None
    egress: dict[str, Any] | None = None
    parent_pid: int | None = None
    standby: bool = False

    @property
    def death_parent(self) -> int:
        """The process whose death must kill the worker: the host for a
        plain spawn, the zygote for a forked worker."""
        return self.host_pid if self.parent_pid is None else self.parent_pid

    @property
    def forked(self) -> bool:
        """Forked by the zygote (a subreaper, which kills the worker's
        orphans), not spawned by the host."""
        return self.death_parent != self.host_pid

    def handed_over(
        self, in_fd: int, out_fd: int, parent_pid: int, egress_fd: int | None = None
    ) -> "WorkerConfig":
        """This config as a worker forked by ``parent_pid`` sees it, its
        pipes at ``in_fd`` and ``out_fd`` (its door socket at ``egress_fd``)."""
        egress = self.egress
        if egress is not None and egress_fd is not None:
            egress = {**egress, "fd": egress_fd}
        return self._replace(in_fd=in_fd, out_fd=out_fd, parent_pid=parent_pid, egress=egress)

    @property
    def fd_count(self) -> int:
        """How many fds a zygote spawn request for this config carries:
        the pipes and capture files, and the door socket of an egress set."""
        return 4 if self.egress is None else 5

    def to_wire(self) -> dict[str, Any]:
        """The JSON- and msgpack-ready map (``parent_pid`` only when set)."""
        wire = self._asdict()
        wire["extra_sys_path"] = list(self.extra_sys_path)
        if self.parent_pid is None:
            del wire["parent_pid"]
        if not self.standby:
            del wire["standby"]
        return wire

    @classmethod
    def from_wire(cls, wire: object) -> "WorkerConfig":
        """The config in ``wire`` (a decoded map), checked field by field.

        Raises ``ProtocolViolation`` naming the first field that is missing,
        unknown or of the wrong type or range; the worker cannot start then
        (the host and the worker disagree on the contract).
        """
        fields = fields_of(wire, WHAT, _FIELDS)
        path = optional_text(fields, "path", WHAT)
        module = optional_text(fields, "module", WHAT)
        if (path is None) == (module is None):
            raise ProtocolViolation(
                f"{WHAT}: exactly one of 'path' and 'module' must be set, "
                f"got path={path!r}, module={module!r}"
            )
        max_frame_size = integer(fields, "max_frame_size", WHAT, minimum=1)
        if max_frame_size > MAX_FRAME_LIMIT:
            raise ProtocolViolation(
                f"{WHAT}: 'max_frame_size' must be at most {MAX_FRAME_LIMIT}, got {max_frame_size}"
            )
        return cls(
            in_fd=integer(fields, "in_fd", WHAT, minimum=0),
            out_fd=integer(fields, "out_fd", WHAT, minimum=0),
            host_pid=integer(fields, "host_pid", WHAT, minimum=1),
            host_uid=integer(fields, "host_uid", WHAT, minimum=0),
            set_name=text(fields, "set_name", WHAT),
            path=path,
            module=module,
            extra_sys_path=tuple(texts(fields, "extra_sys_path", WHAT)),
            limits=_limits(present(fields, "limits", WHAT)),
            max_frame_size=max_frame_size,
            max_result_bytes=integer(fields, "max_result_bytes", WHAT, minimum=0),
            sandbox=_policy(present(fields, "sandbox", WHAT)),
            memory_cgroup=optional_text(fields, "memory_cgroup", WHAT),
            egress=_egress(fields.get("egress")),
            parent_pid=optional_integer(fields, "parent_pid", WHAT, minimum=1),
            standby="standby" in fields and flag(fields, "standby", WHAT),
        )


def _limits(wire: object) -> dict[str, int | None]:
    what = f"{WHAT} 'limits'"
    fields = fields_of(wire, what, LIMIT_FIELDS)
    limits: dict[str, int | None] = {}
    for key in LIMIT_FIELDS:
        present(fields, key, what)  # None (unlimited) is said, not left out
        limits[key] = optional_integer(fields, key, what)
    return limits


def _egress(wire: object) -> dict[str, Any] | None:
    if wire is None:
        return None
    what = f"{WHAT} 'egress'"
    fields = fields_of(wire, what, EGRESS_FIELDS)
    return {
        "fd": integer(fields, "fd", what, minimum=0),
        "ca": optional_text(fields, "ca", what),
        "system_cafile": optional_text(fields, "system_cafile", what),
        "allow": texts(fields, "allow", what),
    }


def _policy(wire: object) -> dict[str, Any]:
    what = f"{WHAT} 'sandbox'"
    fields = fields_of(wire, what, POLICY_FIELDS)
    for key, kind in POLICY_FIELDS.items():
        if kind is bool:
            flag(fields, key, what)
        elif kind is int:
            integer(fields, key, what, minimum=0)
        else:
            texts(fields, key, what)
    return fields


__all__ = ["LIMIT_FIELDS", "POLICY_FIELDS", "WorkerConfig"]
