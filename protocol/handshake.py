"""What the worker's handshake messages must hold: the ``probed`` report
(sent before any user code runs) and ``ready`` (its functions). The host
checks both before it trusts either (``host.workers.incarnation``), and
the schema cache checks a stored ``ready`` the same way.
"""

from __future__ import annotations

from typing import Any

from protocol.errors import ProtocolViolation
from protocol.messages import PROTOCOL_VERSION
from protocol.names import function_name_problem


def validate_probed(params: Any) -> dict[str, bool]:
    """Check the ``probed`` notification's params; return the report."""
    if not isinstance(params, dict):
        raise ProtocolViolation("probed params must be a map")
    report = params.get("protections")
    if not isinstance(report, dict) or not all(
        isinstance(k, str) and type(v) is bool for k, v in report.items()
    ):
        raise ProtocolViolation("probed.protections must map layer names to booleans")
    return report


def validate_ready(params: Any) -> dict[str, Any]:
    """Check the ``ready`` notification's params (raises ``ProtocolViolation``).

    Every exported function's name must obey ``protocol.names``'s rule: the
    host then fails the set's load rather than serve a worker that lied.
    """
    if not isinstance(params, dict):
        raise ProtocolViolation("ready params must be a map")
    version = params.get("protocol")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolViolation(
            f"worker speaks protocol {version!r}, host speaks {PROTOCOL_VERSION}"
        )
    if type(params.get("pid")) is not int:
        raise ProtocolViolation("ready must carry the worker pid")
    functions = params.get("functions")
    if not isinstance(functions, list):
        raise ProtocolViolation("ready.functions must be an array")
    seen = set()
    for fn in functions:
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ProtocolViolation("each ready.functions entry must be a map with a name")
        # A genuine worker skips such a function itself; one reported anyway
        # was forged by code in the worker, e.g. "other.get_weather" to take
        # the calls meant for set "other".
        problem = function_name_problem(fn["name"])
        if problem is not None:
            raise ProtocolViolation(f"function {fn['name'][:100]!r} cannot be exported: {problem}")
        if fn["name"] in seen:
            raise ProtocolViolation(f"function {fn['name']!r} reported twice")
        seen.add(fn["name"])
        if not isinstance(fn.get("parameters"), dict):
            raise ProtocolViolation(f"function {fn['name']!r} has no parameters schema")
        if not isinstance(fn.get("description"), str):
            raise ProtocolViolation(f"function {fn['name']!r} has no description string")
        warnings = fn.get("warnings", [])
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            raise ProtocolViolation(f"function {fn['name']!r}: warnings must be strings")
    skipped = params.get("skipped", [])
    if not isinstance(skipped, list) or not all(
        isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("reason"), str)
        for s in skipped
    ):
        raise ProtocolViolation("ready.skipped must be an array of {name, reason} maps")
    return params


__all__ = ["validate_probed", "validate_ready"]
