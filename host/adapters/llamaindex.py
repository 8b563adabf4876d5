"""fnhost's functions as LlamaIndex tools: ``FunctionAgent(tools=tools(fh), llm=...)``.

Each tool is an ``AsyncBaseTool`` whose ``metadata.get_parameters_dict()``
is fnhost's own JSON Schema (``fn_schema`` is ``None``: there is no pydantic
model, and none is derived), so ``to_openai_tool()`` and every LLM's tool
conversion hand the model that schema. ``call(**arguments)`` runs through
``fh.dispatch``, ``acall`` through ``fh.adispatch``. Both return a
``ToolOutput`` with dispatch's text as its content; a failed call sets
``is_error`` and keeps the ``CallError`` on ``.exception`` (for the
program, never shown to the model), and nothing is raised, so an agent's
run goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

try:
    from llama_index.core.tools import AsyncBaseTool, ToolMetadata, ToolOutput
except ImportError as exc:  # the framework is an optional extra
    raise ImportError(
        "host.adapters.llamaindex needs llama-index-core: pip install 'fnhost[llamaindex]'"
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
) -> list[HostTool]:
    """A LlamaIndex tool for each function ``fh`` exports now.

    ``names``: only these tools; ``timeout`` and ``max_result_chars``: per
    call, as in ``fh.dispatch``. Raises ``ValueError`` for an unknown name.
    The tools never raise: a failed call is a ``ToolOutput`` with
    ``is_error``. Sets loaded later need a new call.
    """
    return [
        HostTool(t)
        for t in hosted_tools(fh, names=names, timeout=timeout, max_result_chars=max_result_chars)
    ]


@dataclass
class SchemaMetadata(ToolMetadata):
    """``ToolMetadata`` that gives fnhost's parameter schema as it is (the base
    class would build one from a pydantic model and keep only some keys)."""

    parameters: dict[str, Any] = field(default_factory=dict)

    def get_parameters_dict(self) -> dict[str, Any]:
        return self.parameters

    @property
    def fn_schema_str(self) -> str:
        return json.dumps(self.parameters, ensure_ascii=False)


class HostTool(AsyncBaseTool):
    """One of a host's functions as a LlamaIndex tool (see the module)."""

    def __init__(self, hosted: HostedTool) -> None:
        self._hosted = hosted
        self._metadata = SchemaMetadata(
            description=hosted.description,
            name=hosted.name,
            fn_schema=None,
            parameters=hosted.parameters,
        )

    @property
    def metadata(self) -> ToolMetadata:
        return self._metadata

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """Run the call with ``fh.dispatch``: keyword arguments (as agents
        pass them) or one dict. Never raises for a failed call."""
        arguments = _arguments(args, kwargs)
        return self._output(arguments, self._hosted.run(arguments))

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """asyncio ``call`` (``fh.adispatch``)."""
        arguments = _arguments(args, kwargs)
        return self._output(arguments, await self._hosted.arun(arguments))

    def _output(self, arguments: Any, result: ToolResult) -> ToolOutput:
        return ToolOutput(
            tool_name=self._hosted.name,
            content=result.text,
            raw_input=arguments if isinstance(arguments, dict) else {"input": arguments},
            raw_output=result.text if result.is_error else result.value,
            is_error=result.is_error,
            exception=result.error if isinstance(result.error, Exception) else None,
        )


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Keyword arguments, or the one positional dict (or JSON text) of the
    legacy ``tool(input)`` call; anything else goes to the worker as it is,
    which refuses it as invalid arguments."""
    if not args:
        return kwargs
    if len(args) == 1 and not kwargs:
        return args[0]
    return [*args, kwargs] if kwargs else list(args)
