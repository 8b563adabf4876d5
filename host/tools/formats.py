"""Tool definitions in each provider's shape: pure functions of the canonical schema.

The canonical schema (JSON Schema 2020-12, built in the worker) is the
truth; each format is a transformation of it that either keeps the meaning
or raises ``SchemaFormatError`` naming the function, the parameter and the
reason. Nothing here does I/O.

- ``raw``: ``{name, description, parameters, returns}`` as built.
- ``openai``: Chat Completions ``{"type": "function", "function": {...}}``.
- ``openai-responses``: Responses API ``{"type": "function", "name", ...}``.
- ``anthropic``: ``{name, description, input_schema}``.
- ``gemini``: a function declaration in the OpenAPI-3.0 subset: ``$defs``
  inlined (a recursive type, or more than ``MAX_INLINED_BYTES`` of inlined
  definitions, is an error), ``nullable`` instead of null unions, no maps,
  no tuples, string enums only. (No other format inlines: they keep
  ``$defs`` and ``$ref`` as they are.)
- ``mcp``: an MCP ``Tool``: ``{name, description, inputSchema, outputSchema}``
  (a non-object result is wrapped as ``{"result": ...}``).

OpenAI strict mode (``strict=True``): every property is required; a
parameter that was optional becomes nullable (``anyOf [..., {"type":
"null"}]``) with its default moved into the description, and at call time
``null`` means "use the default" (the worker applies it); ``default`` keys
are removed; a ``$ref`` with siblings is wrapped; maps, ``**kwargs``,
untyped values and fixed tuples are errors.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from host.errors import SchemaFormatError
from host.tools.mcp_schema import mcp_output_schema

JSON = dict[str, Any]
FORMATS = ("raw", "openai", "openai-responses", "anthropic", "gemini", "mcp")

#: The deepest nesting of a function's schema (its ``parameters`` and
#: ``returns``, in JSON lists and maps) a host accepts at load: every format
#: walks schemas recursively, so one set's 700-deep ``list[list[...]]`` would
#: take every set's tool list down. Deeper functions are skipped with a reason.
MAX_SCHEMA_DEPTH = 64


def schema_too_deep(schema: Any, limit: int = MAX_SCHEMA_DEPTH) -> bool:
    """Whether ``schema`` nests lists and maps more than ``limit`` deep
    (walked without recursion, so any depth is safe to ask about)."""
    todo: list[tuple[Any, int]] = [(schema, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            items = value.values() if isinstance(value, dict) else value
            todo.extend((v, depth + 1) for v in items)
    return False


#: ``format`` values OpenAI strict mode accepts.
OPENAI_FORMATS = {
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
}
#: ``format`` values Gemini accepts on strings.
GEMINI_FORMATS = {"date-time", "enum"}
#: The most definitions (JSON bytes) one function's Gemini schema may inline.
#: Real schemas inline to a few KB; a megabyte is about 250,000 tokens, far
#: beyond what a model is given for all its tools.
MAX_INLINED_BYTES = 1 << 20

_FORMAT_WORDS = {"path": "a file system path", "decimal": "a decimal number written as a string"}


def tool_definition(info: JSON, name: str, fmt: str, strict: bool = False) -> JSON:
    """One function's tool definition in ``fmt`` (see the module docstring).

    ``info`` is the function's canonical description from the worker
    (``name``, ``description``, ``parameters``, ``returns``); ``name`` is
    the name to publish (it differs from ``info["name"]`` for prefixed
    exports). Raises ``SchemaFormatError`` or ``ValueError`` (unknown format,
    or ``strict`` where the format has no strict mode).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if strict and fmt not in ("openai", "openai-responses"):
        raise ValueError(f"strict mode exists only for openai formats, not {fmt!r}")
    description = info.get("description") or ""
    params = copy.deepcopy(info["parameters"])
    if fmt == "raw":
        return {
            "name": name,
            "description": description,
            "parameters": params,
            "returns": copy.deepcopy(info.get("returns")),
        }
    if fmt in ("openai", "openai-responses"):
        if strict:
            params = openai_strict(params, fmt, name)
        body = {"name": name, "description": description, "parameters": params}
        if fmt == "openai":
            if strict:
                body["strict"] = True
            return {"type": "function", "function": body}
        # The Responses API takes a function tool as strict unless told not to.
        return {"type": "function", **body, "strict": strict}
    if fmt == "anthropic":
        return {"name": name, "description": description, "input_schema": params}
    if fmt == "gemini":
        return {"name": name, "description": description, "parameters": gemini_schema(params, name)}
    tool: JSON = {"name": name, "description": description, "inputSchema": params}
    returns = info.get("returns")
    if returns is not None:
        tool["outputSchema"] = mcp_output_schema(copy.deepcopy(returns))
    return tool


# -- helpers -------------------------------------------------------------------


def _param_name(path: str) -> str:
    return path or "(all parameters)"


_TYPED_KEYS = ("type", "anyOf", "oneOf", "allOf", "$ref", "enum", "const", "not")


def _untyped(schema: JSON) -> bool:
    """True for ``{}`` (Any / no annotation), with or without a description."""
    return not any(key in schema for key in _TYPED_KEYS)


def _describe(schema: JSON, extra: str) -> None:
    text = schema.get("description", "").rstrip()
    if text and not text.endswith((".", "!", "?", ":")):
        text += "."
    schema["description"] = f"{text} {extra}" if text else extra


def _refuse_untyped_and_tuples(
    schema: JSON, path: str, fail: Callable[[str, str], None], target: str
) -> None:
    """What neither OpenAI strict mode nor Gemini can express."""
    if _untyped(schema):
        fail(path, f"accepts any JSON value; {target} needs a type (add an annotation)")
    if "prefixItems" in schema:
        fail(path, f"is a fixed-length tuple, which {target} cannot express")
    if schema.get("type") == "array" and "items" not in schema:
        fail(path, "is an array without an item type (use list[T])")


def _fold_into_description(schema: JSON, allowed_formats: set[str]) -> None:
    """Keywords a target does not take, but a model should know, as words."""
    if schema.pop("uniqueItems", None):
        _describe(schema, "Items must be unique.")
    if schema.pop("contentEncoding", None) == "base64":
        _describe(schema, "Base64-encoded.")
    fmt_value = schema.get("format")
    if fmt_value is not None and fmt_value not in allowed_formats:
        schema.pop("format")
        _describe(schema, f"Format: {_FORMAT_WORDS.get(fmt_value, fmt_value)}.")


def _default_text(value: Any) -> str:
    return f"Default: {json.dumps(value, ensure_ascii=False)}."


def _wrap_ref(schema: JSON) -> JSON:
    """``{"$ref": ..., siblings}`` -> ``{"anyOf": [{"$ref": ...}], siblings}``."""
    if "$ref" in schema and len(schema) > 1:
        ref = schema.pop("$ref")
        return {"anyOf": [{"$ref": ref}], **schema}
    return schema


def _walk_children(schema: JSON, path: str, visit: Callable[[JSON, str], JSON]) -> None:
    """Apply ``visit`` to every subschema of ``schema`` (in place), tracking paths."""
    for key in ("properties",):
        if isinstance(schema.get(key), dict):
            schema[key] = {
                k: visit(v, f"{path}.{k}" if path else k) for k, v in schema[key].items()
            }
    if isinstance(schema.get("items"), dict):
        schema["items"] = visit(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = visit(schema["additionalProperties"], f"{path}{{}}")
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            schema[key] = [visit(s, path) for s in schema[key]]


# -- OpenAI strict ---------------------------------------------------------------


def openai_strict(params: JSON, fmt: str, function: str) -> JSON:
    """Rewrite a parameters schema for OpenAI strict mode (see module docstring)."""

    def fail(path: str, reason: str) -> None:
        raise SchemaFormatError(f"{fmt} (strict)", function, _param_name(path), reason)

    def visit(schema: JSON, path: str) -> JSON:
        _refuse_untyped_and_tuples(schema, path, fail, "strict mode")
        schema.pop("default", None)
        _fold_into_description(schema, OPENAI_FORMATS)
        if schema.get("type") == "object" or "properties" in schema:
            extra = schema.get("additionalProperties")
            if (
                isinstance(extra, dict)
                or extra is True
                or (extra is None and "properties" not in schema)
            ):
                fail(
                    path,
                    "is a map with free-form keys (dict or **kwargs), which strict "
                    "mode cannot express",
                )
            _strict_object(schema, path, visit)
        else:
            _walk_children(schema, path, visit)
        return _wrap_ref(schema)

    params = visit(params, "")
    for name, definition in list(params.get("$defs", {}).items()):
        params["$defs"][name] = visit(definition, f"$defs.{name}")
    return params


def _strict_object(schema: JSON, path: str, visit: Callable[[JSON, str], JSON]) -> None:
    props: JSON = schema.get("properties", {})
    required = set(schema.get("required", []))
    new_props: JSON = {}
    for key, prop in props.items():
        sub = f"{path}.{key}" if path else key
        default_known = "default" in prop
        default = prop.get("default")
        prop = visit(prop, sub)
        if key not in required:
            prop = _nullable(prop)
            if default_known and default is not None:
                _describe(prop, _default_text(default))
        new_props[key] = prop
    schema["properties"] = new_props
    schema["required"] = list(new_props)
    schema["additionalProperties"] = False


def _nullable(schema: JSON) -> JSON:
    """``schema`` or null; a description stays on the outside."""
    description = schema.pop("description", None)
    if "anyOf" in schema and len(schema) == 1:
        members = schema["anyOf"]
        if {"type": "null"} not in members:
            members.append({"type": "null"})
        out = schema
    elif schema.get("type") == "null":
        out = schema
    else:
        out = {"anyOf": [schema, {"type": "null"}]}
    if description:
        out["description"] = description
    return out


# -- Gemini ------------------------------------------------------------------------


def gemini_schema(params: JSON, function: str) -> JSON:
    """Rewrite a parameters schema into Gemini's OpenAPI-3.0 subset.

    Raises ``SchemaFormatError`` for what Gemini cannot express, and when
    inlining the ``$defs`` would copy more than ``MAX_INLINED_BYTES`` of
    definitions (a type used twice by a type used twice ... 20 levels deep
    is 2**20 copies; the error comes before they are made).
    """
    defs = params.pop("$defs", {})
    # What one copy of each definition costs (its nested $refs are charged
    # when they are inlined in turn).
    sizes = {name: len(json.dumps(d, default=repr)) for name, d in defs.items()}
    copies: dict[str, int] = {}
    inlined = 0

    def fail(path: str, reason: str) -> None:
        raise SchemaFormatError("gemini", function, _param_name(path), reason)

    def visit(schema: JSON, path: str, seen: tuple[str, ...] = (), depth: int = 0) -> JSON:
        nonlocal inlined
        if depth > MAX_SCHEMA_DEPTH:  # $refs chained past what the load check sees
            fail(
                _top_level(path),
                f"nests more than {MAX_SCHEMA_DEPTH} levels deep once its definitions are inlined",
            )
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name in seen:
                fail(path, f"has the recursive type {name}, which Gemini cannot express")
            if name not in defs:
                fail(path, f"refers to an unknown definition {name}")
            inlined += sizes[name]
            copies[name] = copies.get(name, 0) + 1
            if inlined > MAX_INLINED_BYTES:
                most = max(copies, key=copies.__getitem__)
                fail(
                    _top_level(path),
                    f"would need more than {MAX_INLINED_BYTES} bytes of inlined definitions "
                    f"(Gemini takes no $ref, so each use is a copy: {most} was copied "
                    f"{copies[most]} times so far); use each type fewer times",
                )
            inner = visit(copy.deepcopy(defs[name]), path, (*seen, name), depth + 1)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return {**inner, **rest}
        if "anyOf" in schema:
            members = schema.pop("anyOf")
            non_null = [visit(m, path, seen, depth + 1) for m in members if m != {"type": "null"}]
            nullable = len(non_null) < len(members)
            if len(non_null) == 1:  # X | None, or a lone wrapped $ref
                merged = {**non_null[0], **schema}
                if nullable:
                    merged["nullable"] = True
                return _gemini_default(merged)
            if nullable:
                schema["nullable"] = True
            schema["anyOf"] = non_null
            return _gemini_default(schema)
        _refuse_untyped_and_tuples(schema, path, fail, "Gemini")
        if schema.get("type") == "null":
            fail(path, "can only be null, which Gemini cannot express")
        extra = schema.get("additionalProperties")
        if (
            isinstance(extra, dict)
            or extra is True
            or (schema.get("type") == "object" and "properties" not in schema)
        ):
            fail(
                path, "is a map with free-form keys (dict or **kwargs), which Gemini cannot express"
            )
        schema.pop("additionalProperties", None)
        if "enum" in schema and schema.get("type") != "string":
            fail(path, "has non-string enum values, which Gemini cannot express")
        for key in ("exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            if key in schema:
                fail(path, f"uses {key}, which Gemini cannot express")
        _fold_into_description(schema, GEMINI_FORMATS)
        if isinstance(schema.get("properties"), dict):
            schema["properties"] = {
                k: visit(v, f"{path}.{k}" if path else k, seen, depth + 1)
                for k, v in schema["properties"].items()
            }
        if isinstance(schema.get("items"), dict):
            schema["items"] = visit(schema["items"], f"{path}[]", seen, depth + 1)
        return _gemini_default(schema)

    return visit(params, "")


def _top_level(path: str) -> str:
    """The parameter a subschema path starts at (``a`` of ``a.x[].y``)."""
    return path.split(".", 1)[0].split("[", 1)[0].split("{", 1)[0]


def _gemini_default(schema: JSON) -> JSON:
    if "default" in schema:
        value = schema.pop("default")
        if value is not None:
            _describe(schema, _default_text(value))
    return schema
