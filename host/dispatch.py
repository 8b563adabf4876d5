"""Dispatch model tool calls: parse each provider's tool call, render its result message.

Pure functions, no provider SDK imports: SDK objects are read by attribute
(duck-typed), plain dicts by key. ``FunctionHost.dispatch`` / ``adispatch``
glue them to real calls (``run_sync`` / ``run_async`` below).

Tool-call shapes understood (detected automatically):

- ``openai``: Chat Completions ``message.tool_calls[i]``:
  ``{"id", "type": "function", "function": {"name", "arguments": "<json>"}}``.
- ``openai-responses``: Responses ``output`` items
  ``{"type": "function_call", "call_id", "name", "arguments": "<json>"}``.
- ``anthropic``: ``tool_use`` content blocks ``{"type": "tool_use", "id", "name", "input"}``.
- ``gemini``: parts ``{"function_call": {"name", "args", "id"?}}`` (the REST
  spelling ``functionCall`` too), or a bare ``FunctionCall`` (``.name``/``.args``).

Result messages, one per call, in the same provider's shape:

- ``openai``: ``{"role": "tool", "tool_call_id", "content": text}``
- ``openai-responses``: ``{"type": "function_call_output", "call_id", "output": text}``
- ``anthropic``: ``{"type": "tool_result", "tool_use_id", "content": text, "is_error"}``
- ``gemini``: ``{"function_response": {"name", "response": {...}, "id"?}}``
  (``functionResponse`` when the call used that spelling); ``response`` is
  ``{"error": text}``, the result itself when it is an object, otherwise
  ``{"result": value}`` (``{"result": text}`` when the text was truncated).

Results become text: a string as it is, anything else compact JSON
(``ensure_ascii=False``; ``bytes`` as base64). Errors become one short,
model-actionable sentence starting with ``Error:`` (see ``error_text``);
nothing internal (tracebacks, stderr, file paths) is ever included.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host.errors import (
    CallError,
    CallTimeout,
    HostClosed,
    InvalidArguments,
    OutOfMemory,
    ProtocolError,
    ResultError,
    UnknownFunction,
    UserFunctionError,
    WorkerCrashed,
)

if TYPE_CHECKING:
    from host.function_host import FunctionHost
    from host.worker_handle import CallResult

log = logging.getLogger("fnhost.dispatch")

#: Default cap on a result's text, in characters (about 5,000 tokens): room for
#: a page of results, while one runaway tool cannot flood the context window.
#: MemGPT used 3000 (for 8k-token models); pass ``max_result_chars=3000`` to match.
DEFAULT_MAX_RESULT_CHARS = 20_000

#: ``max_result_chars`` key that applies to every function not named in the dict.
ANY_FUNCTION = "*"

#: The injected heartbeat parameter (MemGPT's ``request_heartbeat``).
HEARTBEAT = "request_heartbeat"
HEARTBEAT_SCHEMA: dict[str, Any] = {
    "type": "boolean",
    "description": (
        "Request an immediate heartbeat after this function returns: set it to true "
        "if you want to send a follow-up message or call another function."
    ),
}

DISPATCH_FORMATS = ("openai", "openai-responses", "anthropic", "gemini")

#: How many available tool names an "unknown function" error lists.
_SUGGESTIONS = 8
#: Cap on a user exception's message inside an error text.
_MAX_EXCEPTION_CHARS = 1000

#: ``max_result_chars``: one cap for every function, or ``{name: cap}``.
MaxResultChars = int | None | Mapping[str, int | None]


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


class ToolResult(dict):  # type: ignore[type-arg]
    """A provider's tool-result message (a plain ``dict``: append it to the
    conversation as it is), with what happened as attributes:

    - ``call``: the parsed ``ToolCall``;
    - ``value``: the function's return value (``None`` on error);
    - ``error``: the ``CallError`` (or unexpected exception) when the call failed;
    - ``result``: the ``CallResult`` (value, stdout, stderr) on success;
    - ``text``: the text sent to the model (after truncation);
    - ``is_error``: whether the call failed;
    - ``truncated``: how many characters were cut (0 if none);
    - ``heartbeat_requested``: whether the model set ``request_heartbeat``.
    """

    call: ToolCall
    value: Any
    error: BaseException | None
    result: CallResult | None
    text: str
    is_error: bool
    truncated: int
    heartbeat_requested: bool

    def __init__(
        self,
        message: Mapping[str, Any],
        *,
        call: ToolCall,
        text: str,
        value: Any = None,
        error: BaseException | None = None,
        result: CallResult | None = None,
        truncated: int = 0,
        heartbeat_requested: bool = False,
    ) -> None:
        super().__init__(message)
        self.call = call
        self.value = value
        self.error = error
        self.result = result
        self.text = text
        self.is_error = error is not None
        self.truncated = truncated
        self.heartbeat_requested = heartbeat_requested


# -- parsing -------------------------------------------------------------------


def _field(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` for SDK objects; ``None`` if absent."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _plain(value: Any) -> Any:
    """SDK containers (proto maps, repeated fields) -> dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return [_plain(v) for v in value]
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


def add_heartbeat(tool: dict[str, Any], fmt: str, strict: bool = False) -> dict[str, Any]:
    """Add the ``request_heartbeat`` boolean to a tool definition (in place; returned).

    ``tool`` is one ``tools(format=fmt)`` entry. The parameter is optional,
    except under OpenAI strict mode, where every property is required. A
    function that declares a ``request_heartbeat`` parameter itself is left
    as it is (its own parameter wins, and dispatch passes it through).
    """
    params = _parameters_of(tool, fmt)
    if params is None:
        return tool
    props = params.setdefault("properties", {})
    if HEARTBEAT in props:
        return tool
    props[HEARTBEAT] = dict(HEARTBEAT_SCHEMA)
    if strict:
        required = params.setdefault("required", [])
        if HEARTBEAT not in required:
            required.append(HEARTBEAT)
    return tool


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


# -- rendering -------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A result value as JSON data: ``bytes`` become base64 text, tuples lists."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN / Infinity are not JSON
    return value


def result_text(value: Any) -> str:
    """A result as text: a string as it is, ``bytes`` as base64, anything else compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return jsonable(value)
    return json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))


def truncate(text: str, limit: int | None) -> tuple[str, int]:
    """``(text, characters cut)``: keep the first ``limit`` characters and
    append a marker saying how many were cut. ``None`` keeps everything."""
    if limit is None or len(text) <= limit:
        return text, 0
    cut = len(text) - limit
    marker = f"\n[... truncated: {cut} of {len(text)} characters cut ...]"
    return text[:limit] + marker, cut


def limit_for(max_result_chars: MaxResultChars, *names: str | None) -> int | None:
    """The cap for a function: an int (or ``None``) applies to every function;
    a dict is looked up by each of ``names`` in turn (the name the model used,
    then ``set.func``), then ``"*"``, then ``DEFAULT_MAX_RESULT_CHARS``."""
    if not isinstance(max_result_chars, Mapping):
        return max_result_chars
    for name in (*names, ANY_FUNCTION):
        if name is not None and name in max_result_chars:
            return max_result_chars[name]
    return DEFAULT_MAX_RESULT_CHARS


def _check_limit(max_result_chars: MaxResultChars) -> None:
    values = (
        list(max_result_chars.values())
        if isinstance(max_result_chars, Mapping)
        else [max_result_chars]
    )
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"max_result_chars must be a non-negative int or None, not {v!r}")


def clip(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_text(name: str, error: BaseException, available: Sequence[str] = ()) -> str:
    """One short sentence a model can act on, naming the tool as the model called it.

    Invalid arguments name the path, what was expected and what was given;
    an unknown function lists up to 8 available names (closest first);
    timeouts, crashes, memory and protocol failures say so plainly, without
    tracebacks, stderr or paths; a user exception gives its type and message.
    """
    if isinstance(error, InvalidArguments):
        path, expected, got = error.path, error.expected, error.got
        if path and path != "$" and expected and got:
            where = f"{path}: expected {expected}, got {got}"
        else:
            where = error.message
        return (
            f"Error: invalid arguments for {name}: {clip(where, 600)}. "
            f"Fix the arguments and call {name} again."
        )
    if isinstance(error, UnknownFunction):
        names = list(dict.fromkeys(available))
        close = difflib.get_close_matches(name, names, n=_SUGGESTIONS, cutoff=0.5)
        shown = close + [n for n in sorted(names) if n not in close]
        listed = ", ".join(shown[:_SUGGESTIONS]) if shown else "none"
        if len(shown) > _SUGGESTIONS:
            listed += f" (and {len(shown) - _SUGGESTIONS} more)"
        return f"Error: there is no tool named {name!r}. Available tools: {listed}."
    if isinstance(error, UserFunctionError):
        kind = error.remote_type or "Exception"
        message = clip(error.message, _MAX_EXCEPTION_CHARS)
        return (
            f"Error: {name} raised {kind}: {message}" if message else f"Error: {name} raised {kind}"
        )
    if isinstance(error, CallTimeout):
        return (
            f"Error: {name} did not finish within its time limit and was stopped; "
            "it returned no result. Try a smaller request or a different approach."
        )
    if isinstance(error, WorkerCrashed):
        cause = error.details.get("cause")
        if cause == "parked":
            return (
                f"Error: {name} is temporarily unavailable after crashing repeatedly; "
                "do not retry it now."
            )
        if cause == "timeout":
            return (
                f"Error: {name} was stopped because another call running alongside it "
                "timed out; it returned no result. You may call it again."
            )
        if cause in ("recycle", "retired"):
            return (
                f"Error: {name} was interrupted because its worker was being replaced; "
                "it returned no result. You may call it again."
            )
        if error.signal:
            how = f"crashed ({error.signal})"
        elif error.exit_code is not None:
            how = f"crashed (its process exited with status {error.exit_code})"
        else:
            how = "crashed"
        return (
            f"Error: {name} {how} and returned no result. The tool may be broken; "
            "calling it again with the same arguments will probably fail the same way."
        )
    if isinstance(error, OutOfMemory):
        return f"Error: {name} ran out of memory and was stopped; it returned no result."
    if isinstance(error, ResultError):
        why = clip(error.message, 300)
        return f"Error: {name} ran, but its result could not be returned: {why}."
    if isinstance(error, ProtocolError):
        return f"Error: {name} failed inside the tool host and returned no result."
    if isinstance(error, HostClosed):
        return f"Error: {name} was not run: the tool host is shutting down."
    if isinstance(error, CallError):
        return f"Error: {name} failed ({error.kind}) and returned no result."
    return f"Error: {name} failed because of an internal error in the tool host."


def result_message(
    call: ToolCall,
    text: str,
    *,
    is_error: bool = False,
    value: Any = None,
    truncated: bool = False,
) -> dict[str, Any]:
    """The provider's tool-result message for ``call`` (see the module docstring).

    ``value`` is used only by Gemini, whose response is structured: an object
    result as it is, another value as ``{"result": value}``, an error as
    ``{"error": text}``, a truncated result as ``{"result": text}``.
    """
    if call.format == "openai":
        return {"role": "tool", "tool_call_id": call.id, "content": text}
    if call.format == "openai-responses":
        return {"type": "function_call_output", "call_id": call.id, "output": text}
    if call.format == "anthropic":
        return {
            "type": "tool_result",
            "tool_use_id": call.id,
            "content": text,
            "is_error": is_error,
        }
    if call.format == "gemini":
        if is_error:
            response: dict[str, Any] = {"error": text}
        elif truncated:
            response = {"result": text}
        else:
            data = jsonable(value)
            response = data if isinstance(data, dict) else {"result": data}
        body: dict[str, Any] = {"name": call.name, "response": response}
        if call.id is not None:
            body["id"] = call.id
        return {"functionResponse" if call.camel_case else "function_response": body}
    raise ValueError(f"unknown tool call format {call.format!r}")


def build_result(
    call: ToolCall,
    outcome: CallResult | BaseException,
    *,
    max_result_chars: MaxResultChars = DEFAULT_MAX_RESULT_CHARS,
    heartbeat_requested: bool = False,
    available: Sequence[str] = (),
) -> ToolResult:
    """Turn a call's outcome (a ``CallResult`` or the exception) into a ``ToolResult``."""
    if isinstance(outcome, BaseException):
        qualified = None
        if isinstance(outcome, CallError) and outcome.set_name and outcome.function:
            qualified = f"{outcome.set_name}.{outcome.function}"
        text, cut = truncate(
            error_text(call.name, outcome, available),
            limit_for(max_result_chars, call.name, qualified),
        )
        message = result_message(call, text, is_error=True)
        return ToolResult(
            message,
            call=call,
            text=text,
            error=outcome,
            truncated=cut,
            heartbeat_requested=heartbeat_requested,
        )
    qualified = f"{outcome.set_name}.{outcome.function}"
    text, cut = truncate(
        result_text(outcome.value), limit_for(max_result_chars, call.name, qualified)
    )
    message = result_message(call, text, value=outcome.value, truncated=bool(cut))
    return ToolResult(
        message,
        call=call,
        text=text,
        value=outcome.value,
        result=outcome,
        truncated=cut,
        heartbeat_requested=heartbeat_requested,
    )


# -- running (used by FunctionHost.dispatch / adispatch) ---------------------------
#
# A batch is grouped by function set: groups run concurrently, and the calls
# of one group run one after another. A worker runs one call at a time
# anyway, so this costs no concurrency; what it buys is isolation: a call
# that crashes or times out kills its worker, and calls pipelined behind it
# would die with it (and be reported as crashes they did not cause).


def _check_options(timeout: float | None, max_result_chars: MaxResultChars) -> None:
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be positive")
    _check_limit(max_result_chars)


def _groups(host: FunctionHost, calls: list[ToolCall]) -> list[list[int]]:
    """Indices of ``calls`` grouped by the function set each call resolves to."""
    groups: dict[object, list[int]] = {}
    for i, call in enumerate(calls):
        key = host._set_of(call.name)
        groups.setdefault(key if key is not None else ("unresolved", i), []).append(i)
    return list(groups.values())


def _prepare(host: FunctionHost, call: ToolCall) -> tuple[Any, bool]:
    if not host.request_heartbeat:
        return call.arguments, False
    return strip_heartbeat(call.arguments, host._declares_parameter(call.name, HEARTBEAT))


def _finish(
    host: FunctionHost,
    call: ToolCall,
    outcome: CallResult | BaseException,
    heartbeat: bool,
    max_result_chars: MaxResultChars,
) -> ToolResult:
    available: list[str] = []
    if isinstance(outcome, UnknownFunction):
        try:
            available = list(host.schemas())
        except Exception:  # the error text then lists no names; never fail the dispatch
            available = []
    elif isinstance(outcome, BaseException) and not isinstance(outcome, CallError):
        log.error("dispatching %s failed unexpectedly", call.name, exc_info=outcome)
    return build_result(
        call,
        outcome,
        max_result_chars=max_result_chars,
        heartbeat_requested=heartbeat,
        available=available,
    )


def run_sync(
    host: FunctionHost,
    payload: Any,
    timeout: float | None,
    max_result_chars: MaxResultChars,
) -> ToolResult | list[ToolResult]:
    """``FunctionHost.dispatch``: parse, run (a batch's sets on threads), render."""
    _check_options(timeout, max_result_chars)
    calls, batch = parse_tool_calls(payload)
    results: list[ToolResult | None] = [None] * len(calls)

    def run(call: ToolCall) -> ToolResult:
        arguments, heartbeat = _prepare(host, call)
        try:
            outcome: CallResult | BaseException = host.call_detailed(call.name, arguments, timeout)
        except Exception as exc:
            outcome = exc
        return _finish(host, call, outcome, heartbeat, max_result_chars)

    def run_group(indices: list[int]) -> None:
        for i in indices:
            results[i] = run(calls[i])

    groups = _groups(host, calls)
    if len(groups) <= 1:
        for group in groups:
            run_group(group)
    else:
        with ThreadPoolExecutor(min(len(groups), 32), thread_name_prefix="fnhost-dispatch") as pool:
            for future in [pool.submit(run_group, g) for g in groups]:
                future.result()
    done = [r for r in results if r is not None]
    return done if batch else done[0]


async def run_async(
    host: FunctionHost,
    payload: Any,
    timeout: float | None,
    max_result_chars: MaxResultChars,
) -> ToolResult | list[ToolResult]:
    """``FunctionHost.adispatch``: parse, run (a batch's sets with ``asyncio.gather``), render."""
    _check_options(timeout, max_result_chars)
    calls, batch = parse_tool_calls(payload)
    results: list[ToolResult | None] = [None] * len(calls)

    async def run(call: ToolCall) -> ToolResult:
        arguments, heartbeat = _prepare(host, call)
        try:
            outcome: CallResult | BaseException = await host.acall_detailed(
                call.name, arguments, timeout
            )
        except Exception as exc:
            outcome = exc
        return _finish(host, call, outcome, heartbeat, max_result_chars)

    async def run_group(indices: list[int]) -> None:
        for i in indices:
            results[i] = await run(calls[i])

    await asyncio.gather(*(run_group(g) for g in _groups(host, calls)))
    done = [r for r in results if r is not None]
    return done if batch else done[0]
