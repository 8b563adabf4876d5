"""fnhost's functions as pydantic-ai tools: ``Agent(model, tools=tools(fh))``.

Each tool is ``pydantic_ai.Tool.from_schema`` with fnhost's own parameter
schema (pydantic-ai adapts it per model, as it does for any tool) and an
async function, so ``agent.run``, ``agent.run_sync`` and streaming all use
``fh.adispatch`` without blocking the event loop. A successful call returns
dispatch's text; a failed one raises ``pydantic_ai.ToolFailed`` with
dispatch's model-safe text, which pydantic-ai sends to the model as a
failed tool result (``outcome="failed"``) without spending the tool's retry
budget: the run goes on, whatever happened in the worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
    from pydantic_ai import Tool, ToolFailed
except ImportError as exc:  # the framework is an optional extra
    raise ImportError(
        "host.adapters.pydantic_ai needs pydantic-ai: pip install 'fnhost[pydantic-ai]'"
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
) -> list[Tool[Any]]:
    """A pydantic-ai ``Tool`` for each function ``fh`` exports now.

    ``names``: only these tools; ``timeout`` and ``max_result_chars``: per
    call, as in ``fh.dispatch``. Raises ``ValueError`` for an unknown name;
    a tool never raises anything but ``ToolFailed`` (the model sees the
    failure as text). Sets loaded later need a new call.
    """
    return [
        _tool(t)
        for t in hosted_tools(fh, names=names, timeout=timeout, max_result_chars=max_result_chars)
    ]


def _tool(hosted: HostedTool) -> Tool[Any]:
    async def call(**arguments: Any) -> str:
        result = await hosted.arun(arguments)
        if result.is_error:
            raise ToolFailed(result.text)
        return result.text

    call.__name__ = hosted.name
    return Tool.from_schema(
        call, name=hosted.name, description=hosted.description, json_schema=hosted.parameters
    )
