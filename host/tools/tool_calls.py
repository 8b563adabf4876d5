"""Parse a model's tool calls from any provider's shape; the heartbeat parameter.

Pure functions, no provider SDK imports: SDK objects are read by attribute
(duck-typed), plain dicts by key. Running the parsed calls is
``host.api.dispatch``'s; rendering their results ``host.tools.tool_results``'.

Tool-call shapes understood (detected automatically):

- ``openai``: Chat Completions ``message.tool_calls[i]``:
  ``{"id", "type": "function", "function": {"name", "arguments": "<json>"}}``.
- ``openai-responses``: Responses ``output`` items
  ``{"type": "function_call", "call_id", "name", "arguments": "<json>"}``.
- ``anthropic``: ``tool_use`` content blocks ``{"type": "tool_use", "id", "name", "input"}``.
- ``gemini``: parts ``{"function_call": {"name", "args", "id"?}}`` (the REST
  spelling ``functionCall`` too), or a bare ``FunctionCall`` (``.name``/``.args``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The injected heartbeat parameter (MemGPT's ``request_heartbeat``).
HEARTBEAT = "request_heartbeat"
HEARTBEAT_SCHEMA: dict[str, Any] = {
    "type": "boolean",
    "description": (
        "Request an immediate heartbeat after this function returns: set it to true "
        "if you want to send a follow-up message or call another function."
    ),
}
#: ``request_heartbeat="memgpt"``: the parameter as MemGPT's schemas have it
#: (required, with MemGPT's own description, so prompts written for it fit).
MEMGPT_HEARTBEAT_SCHEMA: dict[str, Any] = {
    "type": "boolean",
    "description": (
        "Request an immediate heartbeat after function execution. Set to 'true' if you "
        "want to send a follow-up message or run a follow-up function."
    ),
}
#: The functions that end the agent's turn, so take no heartbeat in MemGPT.
MEMGPT_HEARTBEAT_EXEMPT = ("send_message", "pause_heartbeats")
#: What ``FunctionHost(request_heartbeat=...)`` accepts.
HEARTBEAT_MODES = (False, True, "memgpt")

DISPATCH_FORMATS = ("openai", "openai-responses", "anthropic", "gemini")


@dataclass(frozen=True)
class ToolCall:
    """One tool call, parsed from any provider's shape.

    ``format`` is one of ``DISPATCH_FORMATS``; ``id`` the id the result
    message must echo (``call_id`` for Responses; Gemini's optional ``id``);
    ``name`` the function name the model used; ``arguments`` a dict when the
    model sent valid JSON for an object, otherwise what it sent (a string
    that is not valid JSON, a list, ...), left for the host to reject with
    ``InvalidArguments``. ``camel_case`` is set for Gemini REST payloads
    (``functionCall``), whose result must be ``functionResponse``.
    """

    format: str
    id: str | None
    name: str
    arguments: Any
    camel_case: bool = False


# -- parsing -------------------------------------------------------------------


def _field(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` for SDK objects; ``None`` if absent."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


#: Levels of SDK containers converted; deeper ones are left as they are (a
#: model's arguments that deep fail their checks or the function's own).
_MAX_PLAIN_DEPTH = 100


def _plain(value: Any, depth: int = 0) -> Any:
    """SDK containers (proto maps, repeated fields) -> dicts and lists."""
    if depth >= _MAX_PLAIN_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return [_plain(v, depth + 1) for v in value]
    return value


def _arguments(raw: Any) -> Any:
    """The model's arguments: a JSON string is parsed when it is valid JSON."""
    if raw is None:
        return {}
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).decode("utf-8", errors="replace")
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            return raw  # the host reports it as invalid JSON, with the parser's message
        return {} if parsed is None else parsed
    if hasattr(raw, "model_dump") and callable(raw.model_dump):
        raw = raw.model_dump()
    return _plain(raw)


def _describe_payload(payload: Any) -> str:
    if isinstance(payload, Mapping):
        keys = ", ".join(repr(k) for k in list(payload)[:8])
        return f"a dict with keys [{keys}]"
    return f"a {type(payload).__name__} object"


_EXPECTED = (
    "an OpenAI Chat Completions tool call ({'id', 'type': 'function', 'function': "
    "{'name', 'arguments'}}), an OpenAI Responses function_call item ({'type': "
    "'function_call', 'call_id', 'name', 'arguments'}), an Anthropic tool_use block "
    "({'type': 'tool_use', 'id', 'name', 'input'}) or a Gemini function call "
    "({'function_call': {'name', 'args'}} or an object with .name and .args)"
)


def _require_id(value: Any, what: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} has no {key!r}; the result message must echo it")
    return value


def _require_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} has no function name")
    return value


def parse_tool_call(payload: Any) -> ToolCall:
    """Parse one tool call as an SDK returns it (dict or SDK object).

    The format is detected from the payload's shape (see the module
    docstring). Arguments sent as a JSON string are parsed; invalid JSON is
    kept as the string, so the call fails with ``InvalidArguments`` later.
    Raises ``ValueError`` naming the accepted shapes when the payload is none
    of them, or when it lacks the id its result message must echo.
    """
    if payload is None or isinstance(payload, str | bytes | int | float | list | tuple):
        raise ValueError(f"not a tool call: expected {_EXPECTED}; got {_describe_payload(payload)}")
    kind = _field(payload, "type")
    function = _field(payload, "function")
    if function is not None and not isinstance(function, str) and kind in (None, "function"):
        what = "OpenAI tool call"
        return ToolCall(
            "openai",
            _require_id(_field(payload, "id"), what, "id"),
            _require_name(_field(function, "name"), what),
            _arguments(_field(function, "arguments")),
        )
    if kind == "function_call":
        what = "OpenAI Responses function_call item"
        return ToolCall(
            "openai-responses",
            _require_id(_field(payload, "call_id"), what, "call_id"),
            _require_name(_field(payload, "name"), what),
            _arguments(_field(payload, "arguments")),
        )
    if kind == "tool_use":
        what = "Anthropic tool_use block"
        return ToolCall(
            "anthropic",
            _require_id(_field(payload, "id"), what, "id"),
            _require_name(_field(payload, "name"), what),
            _arguments(_field(payload, "input")),
        )
    for key, camel in (("function_call", False), ("functionCall", True)):
        inner = _field(payload, key)
        if inner is not None and kind is None:
            return _gemini_call(inner, camel)
    if kind is None and _field(payload, "name") is not None and _has(payload, "args"):
        return _gemini_call(payload, False)
    if isinstance(kind, str):
        raise ValueError(
            f"unsupported tool call type {kind!r}: expected {_EXPECTED}; "
            f"got {_describe_payload(payload)}"
        )
    raise ValueError(
        f"unrecognised tool call: expected {_EXPECTED}; got {_describe_payload(payload)}"
    )


def _has(obj: Any, key: str) -> bool:
    return key in obj if isinstance(obj, Mapping) else hasattr(obj, key)


def _gemini_call(inner: Any, camel: bool) -> ToolCall:
    what = "Gemini function call"
    call_id = _field(inner, "id")
    return ToolCall(
        "gemini",
        call_id if isinstance(call_id, str) and call_id else None,
        _require_name(_field(inner, "name"), what),
        _arguments(_field(inner, "args")),
        camel_case=camel,
    )


def parse_tool_calls(payload: Any) -> tuple[list[ToolCall], bool]:
    """``(calls, is_batch)``: a ``list`` or ``tuple`` is a batch (the parallel
    calls of one model turn), anything else one call. Every call is parsed
    before any runs, so a bad payload raises ``ValueError`` with nothing done.
    """
    if isinstance(payload, list | tuple):
        calls = []
        for i, item in enumerate(payload):
            try:
                calls.append(parse_tool_call(item))
            except ValueError as exc:
                raise ValueError(f"tool call [{i}]: {exc}") from None
        return calls, True
    return [parse_tool_call(payload)], False


# -- heartbeat -------------------------------------------------------------------


def _parameters_of(tool: dict[str, Any], fmt: str) -> dict[str, Any] | None:
    if fmt == "openai":
        return tool.get("function", {}).get("parameters")
    if fmt == "anthropic":
        return tool.get("input_schema")
    if fmt == "mcp":
        return tool.get("inputSchema")
    return tool.get("parameters")


def tool_name(tool: dict[str, Any], fmt: str) -> str:
    """The name a ``tools(format=fmt)`` entry publishes."""
    if fmt == "openai":
        return str(tool.get("function", {}).get("name", ""))
    return str(tool.get("name", ""))


def add_heartbeat(
    tool: dict[str, Any], fmt: str, strict: bool = False, *, memgpt: bool = False
) -> dict[str, Any]:
    """Add the ``request_heartbeat`` boolean to a tool definition (in place; returned).

    ``tool`` is one ``tools(format=fmt)`` entry. The parameter is optional,
    except under OpenAI strict mode, where every property is required, and
    with ``memgpt``: then it is required with MemGPT's description, as
    MemGPT's own schemas have it. A function that declares a
    ``request_heartbeat`` parameter itself is left as it is (its own
    parameter wins, and dispatch passes it through).
    """
    params = _parameters_of(tool, fmt)
    if params is None:
        return tool
    props = params.setdefault("properties", {})
    if HEARTBEAT in props:
        return tool
    props[HEARTBEAT] = dict(MEMGPT_HEARTBEAT_SCHEMA if memgpt else HEARTBEAT_SCHEMA)
    if strict or memgpt:
        required = params.setdefault("required", [])
        if HEARTBEAT not in required:
            required.append(HEARTBEAT)
    return tool


def check_heartbeat_options(
    mode: Any, exempt: Iterable[str] | None
) -> tuple[bool | str, frozenset[str]]:
    """``FunctionHost``'s ``request_heartbeat`` and ``heartbeat_exempt``, checked.

    Returns the mode and the names of the tools that get no heartbeat
    parameter: ``exempt`` as given, or by default MemGPT's turn-ending
    functions under ``"memgpt"`` and none under ``True``. Raises
    ``ValueError`` for another mode, ``exempt`` without a heartbeat mode,
    or ``exempt`` that is not a collection of names.
    """
    if not (mode is True or mode is False or mode == "memgpt"):
        raise ValueError(f"request_heartbeat must be False, True or 'memgpt', not {mode!r}")
    if exempt is None:
        return mode, frozenset(MEMGPT_HEARTBEAT_EXEMPT if mode == "memgpt" else ())
    if not mode:
        raise ValueError("heartbeat_exempt= needs request_heartbeat=True or 'memgpt'")
    wrong = f"heartbeat_exempt must be a collection of function names, not {exempt!r}"
    if isinstance(exempt, str) or not isinstance(exempt, Iterable):
        raise ValueError(wrong)
    names = tuple(exempt)
    if not all(isinstance(n, str) for n in names):
        raise ValueError(wrong)
    return mode, frozenset(names)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def strip_heartbeat(arguments: Any, declared: bool) -> tuple[Any, bool]:
    """``(arguments without request_heartbeat, whether it was requested)``.

    When the function declares a ``request_heartbeat`` parameter itself
    (``declared``), the argument is reported but left in place.
    """
    if not isinstance(arguments, dict) or HEARTBEAT not in arguments:
        return arguments, False
    requested = _truthy(arguments[HEARTBEAT])
    if declared:
        return arguments, requested
    rest = {k: v for k, v in arguments.items() if k != HEARTBEAT}
    return rest, requested
