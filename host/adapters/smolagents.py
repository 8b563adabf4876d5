"""fnhost's functions as smolagents tools: ``ToolCallingAgent(tools=tools(fh), model=...)``.

smolagents describes a tool's arguments as ``inputs``, one entry per
parameter (``type``, ``description``, ``nullable``), and hands the model
those entries as the properties of a JSON Schema, with every parameter that
is not ``nullable`` required. Each entry here is the parameter's schema
from ``fh.tools(format="gemini")``, fnhost's OpenAPI-subset variant, which
is what that format needs: ``$defs`` inlined (smolagents keeps no
top-level definitions), ``nullable`` instead of null unions, a ``type`` on
every value. A parameter with a default is marked ``nullable`` so the
model may leave it out; ``null`` sent for it means the default, as in
OpenAI strict mode. Functions the gemini format cannot express (maps,
tuples, untyped values, recursive types) raise ``SchemaFormatError``.

smolagents runs tools synchronously: ``forward`` uses ``fh.dispatch``. It
returns dispatch's text, for a failed call its model-safe error text,
which the agent shows the model as the call's observation; nothing is
raised, so the run goes on. (smolagents checks each argument's top-level
JSON type against ``inputs`` before calling a tool and reports a mismatch
to the model itself; everything deeper is the worker's check, with
fnhost's text.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
    from smolagents import Tool
except ImportError as exc:  # the framework is an optional extra
    raise ImportError(
        "host.adapters.smolagents needs smolagents: pip install 'fnhost[smolagents]'"
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
) -> list[HostTool]:
    """A smolagents ``Tool`` for each function ``fh`` exports now.

    ``names``: only these tools; ``timeout`` and ``max_result_chars``: per
    call, as in ``fh.dispatch``. Raises ``ValueError`` for an unknown name
    and ``SchemaFormatError`` for a function the gemini format cannot
    express (see the module). The tools never raise for a failed call.
    Sets loaded later need a new call.
    """
    chosen = hosted_tools(
        fh, names=names, timeout=timeout, max_result_chars=max_result_chars, schema="gemini"
    )
    return [HostTool(t) for t in chosen]


def inputs(parameters: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """smolagents ``inputs`` from a gemini-format parameter schema (see the module)."""
    required = set(parameters.get("required", ()))
    found = {}
    for name, schema in parameters.get("properties", {}).items():
        entry = dict(schema)
        entry["type"] = _type(schema)
        entry.pop("anyOf", None)  # folded into "type" (smolagents re-reads it otherwise)
        entry.setdefault("description", "")
        if name not in required:
            entry["nullable"] = True
        found[name] = entry
    return found


def _type(schema: dict[str, Any]) -> str | list[str]:
    """A value's JSON type(s) as smolagents names them; ``"any"`` when the
    schema gives none (smolagents then shows the model a string)."""
    if "type" in schema:
        return schema["type"]
    branches = schema.get("anyOf", [])
    types = [b["type"] for b in branches if isinstance(b.get("type"), str)]
    if branches and len(types) == len(branches):
        unique = list(dict.fromkeys(types))
        return unique[0] if len(unique) == 1 else unique
    return "any"


class HostTool(Tool):
    """One of a host's functions as a smolagents tool (see the module)."""

    # forward takes the host function's arguments by name; smolagents would
    # otherwise compare its signature with ``inputs``.
    skip_forward_signature_validation = True

    def __init__(self, hosted: HostedTool) -> None:
        self.name = hosted.name
        self.description = hosted.description
        self.inputs = inputs(hosted.parameters)
        self.output_type = "string"
        self._hosted = hosted
        super().__init__()

    def forward(self, *args: Any, **kwargs: Any) -> str:
        """Run the call with ``fh.dispatch`` and return its text (an
        ``Error: ...`` text for a failed call). Positional arguments, as
        generated code may pass them, are matched to ``inputs`` in order."""
        if len(args) > len(self.inputs):
            return self._hosted.run(list(args)).text  # the worker refuses it, saying why
        return self._hosted.run(dict(zip(self.inputs, args, strict=False)) | kwargs).text
