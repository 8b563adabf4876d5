"""The MCP shape of a function's result: ``outputSchema`` (which MCP
requires to be an object at the top) and whether a value goes into
``structuredContent`` as it is or wrapped as ``{"result": ...}``. Pure
functions of the canonical schema; ``host.tools.formats`` uses them for the
``mcp`` format, the MCP server for each result."""

from __future__ import annotations

from typing import Any, TypeGuard

JSON = dict[str, Any]


#: Keywords left out of an output schema: regular expressions the set chose,
#: which whoever checks a result against the schema (the MCP server does)
#: would run on it, and one that backtracks catastrophically (``^(a+)+$``)
#: takes seconds per character. Input patterns are checked by the worker.
_UNCHECKED_OUTPUT_KEYWORDS = ("pattern", "patternProperties")


#: Keywords whose value maps names (a property called "pattern") to schemas.
_NAMED_SCHEMAS = ("properties", "$defs", "definitions", "dependentSchemas")
#: Keywords whose value is data, not a schema (a default may hold "pattern").
_DATA_KEYWORDS = ("enum", "const", "default", "examples")


def _without_patterns(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key in _UNCHECKED_OUTPUT_KEYWORDS:
                continue
            if key in _DATA_KEYWORDS:
                out[key] = value
            elif key in _NAMED_SCHEMAS and isinstance(value, dict):
                out[key] = {name: _without_patterns(v) for name, v in value.items()}
            else:
                out[key] = _without_patterns(value)
        return out
    if isinstance(schema, list):
        return [_without_patterns(v) for v in schema]
    return schema


def mcp_output_schema(returns: JSON) -> JSON:
    """MCP requires ``{"type": "object", ...}`` at the top of an output schema.

    An object result is used as it is (a top-level ``$ref`` to an object
    definition is inlined, ``$defs`` kept for nested references); anything
    else is wrapped as ``{"result": ...}``, and its value must be wrapped the
    same way (``mcp_wraps_result`` tells which). ``pattern`` and
    ``patternProperties`` are left out (see ``_UNCHECKED_OUTPUT_KEYWORDS``).
    """
    returns = _without_patterns(returns)
    target = _resolve_top(returns)
    if _is_object(target):
        out = {k: v for k, v in target.items() if k != "$defs"}
        if returns.get("$defs"):
            out["$defs"] = returns["$defs"]
        if "description" in returns and "description" not in out:
            out["description"] = returns["description"]
        return out
    defs = returns.pop("$defs", None)
    wrapped: JSON = {
        "type": "object",
        "properties": {"result": returns},
        "required": ["result"],
        "additionalProperties": False,
    }
    if defs:
        wrapped["$defs"] = defs
    return wrapped


def mcp_wraps_result(returns: JSON) -> bool:
    """True when ``mcp_output_schema(returns)`` wraps the result as ``{"result": ...}``.

    A server sends a function's value as ``structuredContent`` as it is when
    this is False (the return type is an object) and as ``{"result": value}``
    when it is True. Pure; never raises for a schema the worker built (an
    unresolvable ``$ref`` counts as "not an object", so it is wrapped).
    """
    return not _is_object(_resolve_top(returns))


def _is_object(target: JSON | None) -> TypeGuard[JSON]:
    """The one rule both functions above follow: is the (resolved) return an object?"""
    return target is not None and target.get("type") == "object"


def _resolve_top(schema: JSON) -> JSON | None:
    """Follow top-level ``$ref``s and one-member ``anyOf`` wrappers."""
    defs = schema.get("$defs", {})
    seen = set()
    while True:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name in seen or name not in defs:
                return None
            seen.add(name)
            schema = defs[name]
        elif isinstance(schema.get("anyOf"), list) and len(schema["anyOf"]) == 1:
            schema = schema["anyOf"][0]
        else:
            return schema
