"""One function's description: its JSON schema and its parameters' validators.

``describe_function`` reads the signature, the (resolved) type hints and the
docstring. Any failure here is reported as the reason the function was
skipped; the rest of the set still loads.
"""

from __future__ import annotations

import inspect
import json
import typing
from dataclasses import dataclass, field
from typing import Any

from worker.docstrings import parse_docstring
from worker.schema import (
    JSON,
    ArgumentError,
    SchemaBuilder,
    TypeSpec,
    UnsupportedAnnotation,
    describe_value,
)

#: Parameter names reserved for the host (MemGPT passes the agent as
#: ``self``); never in a schema, filled with their default or None.
RESERVED_PARAMETERS = frozenset({"self", "cls"})

#: Defaults whose JSON text is longer than this are left out of the schema.
MAX_DEFAULT_JSON = 1024


class FunctionSkipped(Exception):
    """This function cannot be exported; the message is the reason."""


@dataclass
class ParameterSpec:
    name: str
    kind: inspect._ParameterKind
    type: TypeSpec
    has_default: bool
    default: Any
    hidden: bool = False  # reserved name: not in the schema, never set by a caller


@dataclass
class FunctionSpec:
    name: str
    function: Any
    is_async: bool
    parameters: list[ParameterSpec]
    schema: JSON
    returns: JSON | None
    warnings: list[str] = field(default_factory=list)
    by_name: dict[str, ParameterSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {p.name: p for p in self.parameters if not p.hidden}


def _json_default(value: Any) -> tuple[bool, Any]:
    """(True, json_value) when a default can be shown in the schema."""
    if isinstance(value, typing.Hashable) and hasattr(value, "value") and hasattr(value, "name"):
        # Enum member: the schema speaks in values.
        value = getattr(value, "value", value)
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False, None
    if len(text) > MAX_DEFAULT_JSON:
        return False, None
    return True, json.loads(text)


_ANY = TypeSpec({}, lambda v, p: v, "any value")


def describe_function(name: str, fn: Any) -> FunctionSpec:
    """Build the schema and validators for one function (``FunctionSkipped`` on failure)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise FunctionSkipped(f"signature cannot be read: {exc}")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # NameError for an undefined forward reference, and worse
        raise FunctionSkipped(f"type annotations cannot be resolved: {type(exc).__name__}: {exc}")
    doc = parse_docstring(fn)
    builder = SchemaBuilder()
    properties: JSON = {}
    required: list[str] = []
    params: list[ParameterSpec] = []
    try:
        for p in signature.parameters.values():
            if p.name in RESERVED_PARAMETERS:
                # Never in the schema. MemGPT-style tools take the agent as
                # ``self``; no agent object crosses the process wall, so a
                # reserved parameter gets its default, or None.
                value = None if p.default is p.empty else p.default
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    builder.warnings.append(f"parameter {p.name!r} is reserved; it receives None")
                params.append(ParameterSpec(p.name, p.kind, _ANY, True, value, hidden=True))
                continue
            annotation = hints.get(p.name, inspect.Parameter.empty)
            where = f"parameter {p.name!r}"
            spec = builder.build(annotation, where)
            prop = dict(spec.schema)
            if p.kind is p.VAR_POSITIONAL:
                prop = {"type": "array", "items": spec.schema}
                spec = _variadic_list(spec)
            elif p.kind is p.VAR_KEYWORD:
                prop = {"type": "object", "additionalProperties": spec.schema}
                spec = _variadic_map(spec)
            if p.name in doc.params and "description" not in prop:
                prop["description"] = doc.params[p.name]
            has_default = p.default is not p.empty
            if has_default:
                shown, value = _json_default(p.default)
                if shown:
                    prop["default"] = value
            elif p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                required.append(p.name)
            properties[p.name] = prop
            params.append(ParameterSpec(p.name, p.kind, spec, has_default, p.default))
    except UnsupportedAnnotation as exc:
        raise FunctionSkipped(str(exc))
    returns = None
    if "return" in hints:
        # The return schema is informative only; the result encoder decides
        # what can be sent. An unsupported return type costs the schema, not
        # the function.
        try:
            returns = dict(builder.build(hints["return"], "return value").schema)
        except UnsupportedAnnotation as exc:
            builder.warnings.append(f"{exc}; no return schema")
        else:
            if doc.returns:
                returns.setdefault("description", doc.returns)
    parameters: JSON = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    schema: JSON = {"name": name, "description": doc.description, "parameters": parameters}
    if not doc.description:
        builder.warnings.append("no description: add a docstring")
    return FunctionSpec(
        name=name,
        function=fn,
        is_async=inspect.iscoroutinefunction(fn),
        parameters=params,
        schema=schema,
        returns=returns,
        warnings=builder.warnings,
    )


def _variadic_list(item: TypeSpec) -> TypeSpec:
    def coerce(v: Any, p: str) -> list:
        if type(v) is not list:
            raise_expected(p, f"array of {item.expected}", v)
        return [item.coerce(x, f"{p}[{i}]") for i, x in enumerate(v)]

    return TypeSpec({"type": "array"}, coerce, f"array of {item.expected}")


def _variadic_map(value: TypeSpec) -> TypeSpec:
    def coerce(v: Any, p: str) -> dict:
        if type(v) is not dict or not all(type(k) is str for k in v):
            raise_expected(p, f"object of {value.expected}", v)
        return {k: value.coerce(x, f"{p}.{k}") for k, x in v.items()}

    return TypeSpec({"type": "object"}, coerce, f"object of {value.expected}")


def raise_expected(path: str, expected: str, value: Any) -> typing.NoReturn:
    raise ArgumentError(path, expected, describe_value(value))
