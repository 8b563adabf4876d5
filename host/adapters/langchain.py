"""fnhost's functions as LangChain tools: ``model.bind_tools(tools(fh))``.

Each tool is a ``langchain_core.tools.StructuredTool`` whose ``args_schema``
is fnhost's own JSON Schema (a dict, which LangChain passes to the model as
it is and does not re-validate: the worker checks the arguments). ``invoke``
runs the call with ``fh.dispatch``, ``ainvoke`` with ``fh.adispatch``. A
failed call raises ``ToolException`` with dispatch's model-safe text, which
the tool turns into its output (``handle_tool_error=True``): invoked with a
tool call, a ``ToolMessage`` with ``status="error"``. Nothing else escapes,
so an agent loop carries on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
    from langchain_core.tools import StructuredTool, ToolException
except ImportError as exc:  # the framework is an optional extra
    raise ImportError(
        "host.adapters.langchain needs langchain-core: pip install 'fnhost[langchain]'"
    ) from exc

from host import FunctionHost, ToolResult
from host.adapters.hosted_tools import HostedTool, hosted_tools
from host.tools.tool_results import DEFAULT_MAX_RESULT_CHARS, MaxResultChars


def tools(
    fh: FunctionHost,
    *,
    names: Iterable[str] | None = None,
    timeout: float | None = None,
    max_result_chars: MaxResultChars = DEFAULT_MAX_RESULT_CHARS,
) -> list[StructuredTool]:
    """A LangChain ``StructuredTool`` for each function ``fh`` exports now.

    ``names``: only these tools; ``timeout`` and ``max_result_chars``: per
    call, as in ``fh.dispatch``. Raises ``ValueError`` for an unknown name.
    The tools return dispatch's text; a failed call is an error output
    (``status="error"``), never an exception. Sets loaded later need a new call.
    """
    return [
        _tool(t)
        for t in hosted_tools(fh, names=names, timeout=timeout, max_result_chars=max_result_chars)
    ]


def _text(result: ToolResult) -> str:
    if result.is_error:
        raise ToolException(result.text)
    return result.text


def _tool(hosted: HostedTool) -> StructuredTool:
    def call(**arguments: Any) -> str:
        return _text(hosted.run(arguments))

    async def acall(**arguments: Any) -> str:
        return _text(await hosted.arun(arguments))

    return StructuredTool(
        name=hosted.name,
        description=hosted.description,
        args_schema=hosted.parameters,
        func=call,
        coroutine=acall,
        handle_tool_error=True,
    )
