"""A host's tools as every framework adapter sees them: name, description,
fnhost's own parameter schema, and a way to run a call.

A call goes through ``fh.dispatch`` (``fh.adispatch`` on asyncio) as an
Anthropic-shaped ``tool_use`` block, the one shape whose arguments may be a
dict or JSON text. So an adapter gets exactly what ``dispatch`` gives: the
model-safe text (``host.tool_error_text`` for a failure), the result cap
(``max_result_chars``), the heartbeat parameter stripped, and never an
exception for a failed call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from host import FunctionHost, ToolResult
from host.tools.tool_results import DEFAULT_MAX_RESULT_CHARS, MaxResultChars

#: The id of the tool-call block an adapter dispatches (no provider sees it).
_CALL_ID = "fnhost-adapter"


@dataclass(frozen=True)
class HostedTool:
    """One exported function of a host, as an adapter presents it.

    ``parameters`` is fnhost's JSON Schema of the arguments (its OpenAI
    strict or gemini variant when asked for, see ``hosted_tools``);
    ``description`` is ``""`` for a function without a docstring.
    """

    host: FunctionHost
    name: str
    description: str
    parameters: dict[str, Any]
    timeout: float | None
    max_result_chars: MaxResultChars

    def _block(self, arguments: Any) -> dict[str, Any]:
        return {"type": "tool_use", "id": _CALL_ID, "name": self.name, "input": arguments}

    def run(self, arguments: Any) -> ToolResult:
        """Run one call (``arguments``: a dict, JSON text or ``None``) and
        return dispatch's ``ToolResult`` (``.text``, ``.is_error``, ``.value``).

        A failed call is an error result, never an exception; a closed host
        too (its text says the host is shutting down).
        """
        result = self.host.dispatch(
            self._block(arguments), timeout=self.timeout, max_result_chars=self.max_result_chars
        )
        assert isinstance(result, ToolResult)  # one call in, one result out
        return result

    async def arun(self, arguments: Any) -> ToolResult:
        """asyncio ``run`` (``fh.adispatch``): never blocks the event loop."""
        result = await self.host.adispatch(
            self._block(arguments), timeout=self.timeout, max_result_chars=self.max_result_chars
        )
        assert isinstance(result, ToolResult)
        return result


#: Which of fnhost's schemas an adapter takes: the canonical one (``raw``),
#: OpenAI strict mode's variant, or the OpenAPI subset of ``gemini``
#: (``$defs`` inlined, ``nullable`` for null unions).
SCHEMAS = ("raw", "openai-strict", "gemini")


def hosted_tools(
    fh: FunctionHost,
    *,
    names: Iterable[str] | None = None,
    timeout: float | None = None,
    max_result_chars: MaxResultChars = DEFAULT_MAX_RESULT_CHARS,
    schema: str = "raw",
) -> list[HostedTool]:
    """The host's exported functions now loaded, as ``HostedTool`` objects.

    ``names``: only these tools (the names ``fh.tools()`` lists), in this
    order; ``None`` for all. ``timeout`` and ``max_result_chars`` apply to
    each call as in ``fh.dispatch``. ``schema``: the parameters of
    ``fh.tools(format="raw")`` (the canonical schema), of
    ``fh.tools(format="openai", strict=True)`` (``"openai-strict"``) or of
    ``fh.tools(format="gemini")``.

    Raises ``ValueError`` for a name the host does not export (listing the
    ones it does) or an unknown ``schema``, and ``SchemaFormatError`` when a
    function cannot be expressed in that schema (strict or gemini).
    Functions loaded later are not included: build the tools again after
    loading or reloading sets.
    """
    if schema == "openai-strict":
        definitions = [t["function"] for t in fh.tools(format="openai", strict=True)]
    elif schema in ("raw", "gemini"):
        definitions = fh.tools(format=schema)
    else:
        raise ValueError(f"unknown schema {schema!r}: expected one of {', '.join(SCHEMAS)}")
    found = {t["name"]: (t.get("description") or "", t["parameters"]) for t in definitions}
    if names is None:
        chosen = list(found)
    else:
        chosen = list(names)
        missing = [n for n in chosen if n not in found]
        if missing:
            available = ", ".join(sorted(found)) or "none"
            raise ValueError(f"no tool named {', '.join(map(repr, missing))}; tools: {available}")
    return [
        HostedTool(fh, name, found[name][0], found[name][1], timeout, max_result_chars)
        for name in chosen
    ]
