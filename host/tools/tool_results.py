"""Render a tool call's outcome as model-safe text and the provider's result message.

Pure functions, no provider SDK imports, no I/O. ``host.api.dispatch`` runs the
calls ``host.tools.tool_calls`` parsed and renders their outcomes with
``build_result``; the MCP server uses ``tool_error_text`` and ``result_text``; the
framework adapters (``host.adapters``) go through dispatch. ``tool_error_text``
is public (``host.tool_error_text``) for glue of a user's own.

Result messages, one per call, in the same provider's shape as the call:

- ``openai``: ``{"role": "tool", "tool_call_id", "content": text}``
- ``openai-responses``: ``{"type": "function_call_output", "call_id", "output": text}``
- ``anthropic``: ``{"type": "tool_result", "tool_use_id", "content": text, "is_error"}``
- ``gemini``: ``{"function_response": {"name", "response": {...}, "id"?}}``
  (``functionResponse`` when the call used that spelling); ``response`` is
  ``{"error": text}``, the result itself when it is an object, otherwise
  ``{"result": value}`` (``{"result": text}`` when the text was truncated).

Results become text: a string as it is, anything else compact JSON
(``ensure_ascii=False``; ``bytes`` as base64). Errors become one short,
model-actionable sentence starting with ``Error:`` (see ``tool_error_text``);
nothing internal (tracebacks, stderr, file paths) is ever included.
"""

from __future__ import annotations

import base64
import difflib
import json
import math
from collections.abc import Mapping, Sequence
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
from host.tools.tool_calls import ToolCall

if TYPE_CHECKING:
    from host.workers.call_result import CallResult

#: Default cap on a result's text, in characters (about 5,000 tokens): room for
#: a page of results, while one runaway tool cannot flood the context window.
#: MemGPT used 3000 (for 8k-token models); pass ``max_result_chars=3000`` to match.
DEFAULT_MAX_RESULT_CHARS = 20_000

#: ``max_result_chars`` key that applies to every function not named in the dict.
ANY_FUNCTION = "*"

#: How many available tool names an "unknown function" error lists.
_SUGGESTIONS = 8
#: Cap on a user exception's message inside an error text.
_MAX_EXCEPTION_CHARS = 1000

#: ``max_result_chars``: one cap for every function, or ``{name: cap}``.
MaxResultChars = int | None | Mapping[str, int | None]


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


class TooDeep(ValueError):
    """A value nested more than ``MAX_DEPTH`` lists and maps deep: it is not
    rendered for a model (the recursion of rendering it, and of a client
    reading it, is what a hostile set would aim at)."""


#: The deepest nesting of lists and maps rendered for a model. ``fh.call``
#: returns deeper values as they are; only the text for a model stops here.
MAX_DEPTH = 100


def jsonable(value: Any, _depth: int = 0) -> Any:
    """A result value as JSON data: ``bytes`` become base64 text, tuples lists.

    Raises ``TooDeep`` for lists and maps nested more than ``MAX_DEPTH`` deep."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if _depth >= MAX_DEPTH:
            raise TooDeep(f"a value nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, Mapping):
            return {
                k if isinstance(k, str) else str(k): jsonable(v, _depth + 1)
                for k, v in value.items()
            }
        return [jsonable(v, _depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN / Infinity are not JSON
    return value


def too_deep_text(name: str) -> str:
    """The error text for a result ``jsonable`` refused (``TooDeep``)."""
    return (
        f"Error: {name} returned a value nested more than {MAX_DEPTH} levels deep, "
        "which cannot be shown; ask for a flatter result."
    )


def result_text(value: Any) -> str:
    """A result as text: a string as it is, ``bytes`` as base64, anything else
    compact JSON. Raises ``TooDeep`` (see ``jsonable``)."""
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


def check_limit(max_result_chars: MaxResultChars) -> None:
    """Raise ``ValueError`` unless every cap is a non-negative int or ``None``."""
    values = (
        list(max_result_chars.values())
        if isinstance(max_result_chars, Mapping)
        else [max_result_chars]
    )
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"max_result_chars must be a non-negative int or None, not {v!r}")


def clip(text: str | None, limit: int) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``limit`` with ``…``."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_error_text(name: str, error: BaseException, available: Sequence[str] = ()) -> str:
    """The text a model is given for a failed tool call: the text ``dispatch``,
    ``fnhost mcp`` and the ``host.adapters`` send, for glue of your own.

    ``name`` is the tool as the model called it; ``error`` what ``call`` or
    ``acall`` raised; ``available`` the tool names an unknown-function error
    may suggest. Returns one short sentence starting with ``Error:``, on one
    line: invalid arguments name the path, what was expected and what was
    given; an unknown function lists up to 8 available names (closest
    first); timeouts, crashes, memory and protocol failures say so plainly,
    without tracebacks, stderr or paths (those stay on the exception); a
    user exception gives its type and message (at most 1000 characters).
    Any other exception (not a ``CallError``) gives a generic sentence that
    reveals nothing of it. Never raises.
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
        kind = clip(error.remote_type, 200) or "Exception"  # the worker names it
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
            tool_error_text(call.name, outcome, available),
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
    try:
        whole = result_text(outcome.value)
    except TooDeep as exc:
        text = too_deep_text(call.name)
        return ToolResult(
            result_message(call, text, is_error=True),
            call=call,
            text=text,
            error=exc,
            result=outcome,
            heartbeat_requested=heartbeat_requested,
        )
    text, cut = truncate(whole, limit_for(max_result_chars, call.name, qualified))
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
