"""The worker config (``protocol.worker_config``): what the host builds is
what the worker reads, and every malformed field is refused by name.

No processes, except the last test: a worker started with a broken config.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from typing import Any

import pytest

from host.limits import Limits
from host.sandbox import Sandbox
from protocol import ProtocolViolation
from protocol.frame_limits import request_frame_limit
from protocol.framing import MAX_FRAME_LIMIT
from protocol.worker_config import LIMIT_FIELDS, POLICY_FIELDS, WorkerConfig


def make_config(**changes: Any) -> WorkerConfig:
    limits = Limits(memory_mb=256, cpu_seconds=None)
    fields: dict[str, Any] = {
        "in_fd": 5,
        "out_fd": 8,
        "host_pid": 1234,
        "host_uid": 1000,
        "set_name": "weather",
        "path": "/srv/sets/weather.py",
        "module": None,
        "extra_sys_path": ("/srv/lib", "/srv/more"),
        "limits": limits.worker_rlimits(),
        "max_frame_size": request_frame_limit(limits.max_argument_bytes),
        "max_result_bytes": limits.max_result_bytes,
        "sandbox": Sandbox(network=True, writable_paths=("/srv/out",)).worker_policy(),
        "memory_cgroup": "/sys/fs/cgroup/memory/fnhost-1234-1",
    }
    return WorkerConfig(**{**fields, **changes})


def good_wire() -> dict[str, Any]:
    return json.loads(json.dumps(make_config().to_wire()))


def test_round_trip_through_json_gives_the_same_config():
    config = make_config()
    assert WorkerConfig.from_wire(json.loads(json.dumps(config.to_wire()))) == config


def test_round_trip_of_a_module_set_with_a_parent():
    config = make_config(path=None, module="pkg.tools", parent_pid=99)
    wire = config.to_wire()
    assert wire["parent_pid"] == 99
    assert WorkerConfig.from_wire(json.loads(json.dumps(wire))) == config


def test_a_worker_without_a_memory_cgroup_says_so_on_the_wire():
    config = make_config(memory_cgroup=None)
    wire = config.to_wire()
    assert wire["memory_cgroup"] is None  # said, not left out
    assert WorkerConfig.from_wire(json.loads(json.dumps(wire))) == config


def test_the_wire_keeps_its_field_names():
    # User code and tests read ``out_fd`` from a worker's argv.
    wire = make_config().to_wire()
    assert wire["out_fd"] == 8 and wire["in_fd"] == 5
    assert "parent_pid" not in wire  # a plain spawn: only the zygote adds it
    assert wire["extra_sys_path"] == ["/srv/lib", "/srv/more"]


@pytest.mark.parametrize(
    "sandbox",
    [
        Sandbox(),
        Sandbox(network=True, confine_reads=True, readable_paths=("/a", "/b"), required=True),
        Sandbox(own_uid=False, private_namespaces=False, uid_base=5000),
    ],
)
def test_every_policy_the_host_builds_is_accepted(sandbox):
    config = make_config(sandbox=sandbox.worker_policy())
    assert WorkerConfig.from_wire(config.to_wire()).sandbox == sandbox.worker_policy()
    assert set(sandbox.worker_policy()) == set(POLICY_FIELDS)


def test_the_hosts_limits_are_exactly_the_limit_fields():
    assert tuple(Limits().worker_rlimits()) == LIMIT_FIELDS


def test_death_parent_and_forked():
    spawned = make_config()
    assert spawned.death_parent == 1234 and not spawned.forked
    forked = spawned.handed_over(in_fd=3, out_fd=4, parent_pid=777)
    assert (forked.in_fd, forked.out_fd, forked.parent_pid) == (3, 4, 777)
    assert forked.death_parent == 777 and forked.forked
    assert forked.handed_over(3, 4, 1234).forked is False  # the host itself
    assert spawned.in_fd == 5  # the original is unchanged


def _without(key: str) -> dict[str, Any]:
    wire = good_wire()
    del wire[key]
    return wire


def _with(path: str, value: Any) -> dict[str, Any]:
    wire = good_wire()
    *parents, last = path.split(".")
    target = wire
    for part in parents:
        target = target[part]
    target[last] = value
    return wire


def _without_nested(outer: str, key: str) -> dict[str, Any]:
    wire = good_wire()
    del wire[outer][key]
    return wire


REQUIRED = [
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
]


@pytest.mark.parametrize("key", REQUIRED)
def test_a_missing_field_is_named(key):
    with pytest.raises(ProtocolViolation, match=f"worker config lacks the field '{key}'"):
        WorkerConfig.from_wire(_without(key))


BAD_VALUES = [
    ("in_fd", "3", "'in_fd' must be an integer >= 0"),
    ("in_fd", -1, "'in_fd' must be an integer >= 0"),
    ("out_fd", True, "'out_fd' must be an integer >= 0, got bool"),
    ("out_fd", 4.0, "'out_fd' must be an integer >= 0, got float"),
    ("host_pid", 0, "'host_pid' must be an integer >= 1"),
    ("host_uid", None, "'host_uid' must be an integer >= 0, got NoneType"),
    ("set_name", 7, "'set_name' must be a string, got int"),
    ("path", b"/srv/x.py", "'path' must be a string, got bytes"),
    ("module", ["m"], "'module' must be a string, got list"),
    ("extra_sys_path", "/srv/lib", "'extra_sys_path' must be an array of strings"),
    ("extra_sys_path", ["/ok", 3], "'extra_sys_path' must be an array of strings"),
    ("max_frame_size", 0, "'max_frame_size' must be an integer >= 1"),
    ("max_frame_size", MAX_FRAME_LIMIT + 1, "'max_frame_size' must be at most"),
    ("max_result_bytes", -5, "'max_result_bytes' must be an integer >= 0"),
    ("memory_cgroup", 5, "'memory_cgroup' must be a string, got int"),
    ("parent_pid", "99", "'parent_pid' must be an integer >= 1"),
    ("parent_pid", 0, "'parent_pid' must be an integer >= 1"),
    ("limits", [256], "worker config 'limits' must be a map, got list"),
    ("limits.memory_mb", "256", "worker config 'limits': 'memory_mb' must be an integer"),
    ("limits.cpu_seconds", False, "worker config 'limits': 'cpu_seconds' must be an integer"),
    ("limits.swap_mb", 1, "worker config 'limits' has an unknown field 'swap_mb'"),
    ("sandbox", None, "worker config 'sandbox' must be a map, got NoneType"),
    ("sandbox.network", 1, "worker config 'sandbox': 'network' must be true or false, got int"),
    ("sandbox.required", "yes", "worker config 'sandbox': 'required' must be true or false"),
    ("sandbox.uid_base", -1, "worker config 'sandbox': 'uid_base' must be an integer >= 0"),
    ("sandbox.uid_base", True, "worker config 'sandbox': 'uid_base' must be an integer"),
    ("sandbox.writable_paths", "/tmp", "'writable_paths' must be an array of strings"),
    ("sandbox.readable_paths", [None], "'readable_paths' must be an array of strings"),
    ("sandbox.seccomp", True, "worker config 'sandbox' has an unknown field 'seccomp'"),
    ("colour", "blue", "worker config has an unknown field 'colour'"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_VALUES)
def test_a_malformed_field_is_named(path, value, message):
    with pytest.raises(ProtocolViolation, match=re.escape(message)):
        WorkerConfig.from_wire(_with(path, value))


@pytest.mark.parametrize("key", [*LIMIT_FIELDS])
def test_a_missing_limit_is_named(key):
    with pytest.raises(ProtocolViolation, match=f"'limits' lacks the field '{key}'"):
        WorkerConfig.from_wire(_without_nested("limits", key))


@pytest.mark.parametrize("key", [*POLICY_FIELDS])
def test_a_missing_policy_field_is_named(key):
    with pytest.raises(ProtocolViolation, match=f"'sandbox' lacks the field '{key}'"):
        WorkerConfig.from_wire(_without_nested("sandbox", key))


@pytest.mark.parametrize(
    ("path", "module"), [(None, None), ("/srv/x.py", "x")], ids=["neither", "both"]
)
def test_exactly_one_of_path_and_module(path, module):
    wire = _with("path", path)
    wire["module"] = module
    with pytest.raises(ProtocolViolation, match="exactly one of 'path' and 'module'"):
        WorkerConfig.from_wire(wire)


@pytest.mark.parametrize("wire", [None, [], "config", 3])
def test_a_config_that_is_not_a_map_is_refused(wire):
    with pytest.raises(ProtocolViolation, match="worker config must be a map"):
        WorkerConfig.from_wire(wire)


def test_from_wire_does_not_change_what_it_reads():
    wire = good_wire()
    before = copy.deepcopy(wire)
    WorkerConfig.from_wire(wire)
    assert wire == before


def test_a_worker_started_with_a_broken_config_exits_76_naming_the_field(tmp_path):
    wire = _without("max_result_bytes")
    proc = subprocess.run(
        [sys.executable, "-I", "-m", "worker", json.dumps(wire)],
        capture_output=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert proc.returncode == 76
    assert b"worker config lacks the field 'max_result_bytes'" in proc.stderr
    assert b"Traceback" not in proc.stderr
