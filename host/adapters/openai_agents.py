"""fnhost's functions as OpenAI Agents SDK tools: ``Agent(..., tools=tools(fh))``.

Each tool is an ``agents.FunctionTool`` whose ``params_json_schema`` is
fnhost's own (``strict=True``: the schema of ``fh.tools(format="openai",
strict=True)``, with ``strict_json_schema`` on) and whose
``on_invoke_tool`` runs the model's JSON arguments with ``fh.adispatch``
(the SDK's tools are async only; ``Runner.run_sync`` works as well). The
tool returns dispatch's text, for a failed call its model-safe error text:
the SDK has no error flag on a function's output, and a raised exception
would end the run, so the model reads "Error: ..." and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
    from agents import FunctionTool
except ImportError as exc:  # the framework is an optional extra
    raise ImportError(
        "host.adapters.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'fnhost[openai-agents]'"
    ) from exc

from host import FunctionHost
from host.adapters.hosted_tools import HostedTool, hosted_tools
from host.tools.tool_results import DEFAULT_MAX_RESULT_CHARS, MaxResultChars


def tools(
    fh: FunctionHost,
    *,
    names: Iterable[str] | None = None,
    timeout: float | None = None,
    max_result_chars: MaxResultChars = DEFAULT_MAX_RESULT_CHARS,
    strict: bool = False,
) -> list[FunctionTool]:
    """An Agents SDK ``FunctionTool`` for each function ``fh`` exports now.

    ``names``: only these tools; ``timeout`` and ``max_result_chars``: per
    call, as in ``fh.dispatch``; ``strict``: OpenAI strict mode (every
    parameter required, optional ones nullable, ``null`` meaning the
    default). Raises ``ValueError`` for an unknown name and, with ``strict``,
    ``SchemaFormatError`` for a function strict mode cannot express. The
    tools never raise: a failed call returns its error text. Sets loaded
    later need a new call.
    """
    chosen = hosted_tools(
        fh,
        names=names,
        timeout=timeout,
        max_result_chars=max_result_chars,
        schema="openai-strict" if strict else "raw",
    )
    return [_tool(t, strict) for t in chosen]


def _tool(hosted: HostedTool, strict: bool) -> FunctionTool:
    async def invoke(context: Any, arguments: str) -> str:
        return (await hosted.arun(arguments)).text

    return FunctionTool(
        name=hosted.name,
        description=hosted.description,
        params_json_schema=hosted.parameters,
        on_invoke_tool=invoke,
        strict_json_schema=strict,
    )
