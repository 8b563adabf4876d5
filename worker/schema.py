"""Annotation -> JSON Schema, and the validator that goes with it.

Each supported annotation becomes a ``TypeSpec``: the JSON Schema a model
sees, and a ``coerce`` function that checks an incoming JSON value against
the same type and turns it into the Python value the function expects. The
schema and the validator come from the same place, so they cannot drift.

Support is a list of handlers (``HANDLERS``), tried in order; adding a type
is adding a handler. An annotation no handler takes raises
``UnsupportedAnnotation``, which skips that one function with a reason.
"""

from __future__ import annotations

import base64
import binascii
import enum
import inspect
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


class UnsupportedAnnotation(Exception):
    """No handler knows this annotation."""


class ArgumentError(Exception):
    """An argument does not match its parameter's type.

    ``path`` locates the value (``items[2].price``), ``expected`` says what
    the schema wanted, ``got`` describes what arrived.
    """

    def __init__(self, path: str, expected: str, got: str) -> None:
        super().__init__(f"{path}: expected {expected}, got {got}")
        self.path = path
        self.expected = expected
        self.got = got


Coerce = Callable[[Any, str], Any]


@dataclass(frozen=True)
class TypeSpec:
    schema: JSON
    coerce: Coerce
    expected: str  # human text for error messages: "integer", "array of string"


def describe_value(value: Any) -> str:
    """A short, bounded description of a JSON value for error messages."""
    kind = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
        bytes: "bytes",
    }.get(type(value), type(value).__name__)
    if value is None:
        return "null"
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (ValueError, TypeError, RecursionError):
        text = "..."
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


def _fail(path: str, expected: str, value: Any) -> typing.NoReturn:
    raise ArgumentError(path, expected, describe_value(value))


class SchemaBuilder:
    """Builds ``TypeSpec``s for one function; collects warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def build(self, annotation: Any, where: str) -> TypeSpec:
        for handler in HANDLERS:
            spec = handler(annotation, self, where)
            if spec is not None:
                return spec
        raise UnsupportedAnnotation(f"{where}: unsupported type annotation {annotation!r}")


Handler = Callable[[Any, SchemaBuilder, str], TypeSpec | None]


def _any(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if annotation is inspect.Parameter.empty:
        builder.warnings.append(f"{where} has no type annotation; any JSON value is accepted")
        return TypeSpec({}, lambda v, p: v, "any value")
    if annotation is Any or annotation is object:
        return TypeSpec({}, lambda v, p: v, "any value")
    return None


def _annotated(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if typing.get_origin(annotation) is not typing.Annotated:
        return None
    inner, *metadata = typing.get_args(annotation)
    spec = builder.build(inner, where)
    for meta in metadata:
        description = meta if isinstance(meta, str) else getattr(meta, "description", None)
        if isinstance(description, str) and description:
            return TypeSpec({**spec.schema, "description": description}, spec.coerce, spec.expected)
    return spec


def _none(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if annotation is None or annotation is type(None):

        def coerce(v: Any, p: str) -> None:
            if v is not None:
                _fail(p, "null", v)
            return None

        return TypeSpec({"type": "null"}, coerce, "null")
    return None


def _bool(v: Any, p: str) -> bool:
    if type(v) is not bool:
        _fail(p, "boolean", v)
    return v


def _int(v: Any, p: str) -> int:
    if type(v) is int:
        return v
    # Models often write 3.0 for an integer; accept it when it is one.
    if type(v) is float and math.isfinite(v) and v.is_integer():
        return int(v)
    _fail(p, "integer", v)


def _float(v: Any, p: str) -> float:
    if type(v) in (int, float):
        return float(v)
    _fail(p, "number", v)


def _str(v: Any, p: str) -> str:
    if type(v) is not str:
        _fail(p, "string", v)
    return v


def _bytes(v: Any, p: str) -> bytes:
    if type(v) is bytes:  # msgpack bin from a Python caller
        return v
    if type(v) is str:
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            pass
    _fail(p, "base64-encoded string", v)


_SCALARS: dict[Any, TypeSpec] = {
    bool: TypeSpec({"type": "boolean"}, _bool, "boolean"),
    int: TypeSpec({"type": "integer"}, _int, "integer"),
    float: TypeSpec({"type": "number"}, _float, "number"),
    str: TypeSpec({"type": "string"}, _str, "string"),
    bytes: TypeSpec({"type": "string", "contentEncoding": "base64"}, _bytes, "base64 string"),
}


def _scalar(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    try:
        return _SCALARS.get(annotation)
    except TypeError:  # unhashable annotation object
        return None


_SEQUENCES = {list: list, tuple: tuple, set: set, frozenset: frozenset}
_SEQUENCE_ORIGINS = {
    list: list,
    tuple: tuple,
    set: set,
    frozenset: frozenset,
    typing.List: list,  # noqa: UP006 - the old spelling is what users write
}


def _sequence(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    origin = typing.get_origin(annotation)
    if origin is None and annotation in _SEQUENCES:
        container, args = _SEQUENCES[annotation], ()
    elif origin in (list, tuple, set, frozenset):
        container, args = origin, typing.get_args(annotation)
    else:
        return None
    if container is tuple and origin is not None and not args:
        return _fixed_tuple((), builder, where)  # tuple[()]: get_args() is () on 3.11+
    if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        return _fixed_tuple(args, builder, where)
    item = builder.build(args[0], f"{where}[]") if args else None
    schema: JSON = {"type": "array"}
    if item is not None:
        schema["items"] = item.schema
    if container in (set, frozenset):
        schema["uniqueItems"] = True
    expected = "array" if item is None else f"array of {item.expected}"

    def coerce(v: Any, p: str) -> Any:
        if type(v) not in (list, tuple):
            _fail(p, expected, v)
        if item is None:
            values = list(v)
        else:
            values = [item.coerce(x, f"{p}[{i}]") for i, x in enumerate(v)]
        try:
            return container(values)
        except TypeError:  # unhashable members of a set
            _fail(p, "array of hashable values", v)

    return TypeSpec(schema, coerce, expected)


def _fixed_tuple(args: tuple, builder: SchemaBuilder, where: str) -> TypeSpec:
    if args == ((),):  # tuple[()]
        args = ()
    items = [builder.build(a, f"{where}[{i}]") for i, a in enumerate(args)]
    schema: JSON = {
        "type": "array",
        "prefixItems": [s.schema for s in items],
        "items": False,
        "minItems": len(items),
        "maxItems": len(items),
    }
    expected = f"array of {len(items)} items"

    def coerce(v: Any, p: str) -> tuple:
        if type(v) not in (list, tuple) or len(v) != len(items):
            _fail(p, expected, v)
        pairs = enumerate(zip(items, v, strict=True))
        return tuple(s.coerce(x, f"{p}[{i}]") for i, (s, x) in pairs)

    return TypeSpec(schema, coerce, expected)


def _mapping(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    origin = typing.get_origin(annotation)
    if annotation is dict or annotation is typing.Dict:  # noqa: UP006
        args: tuple = ()
    elif origin is dict:
        args = typing.get_args(annotation)
    else:
        return None
    if args and args[0] is not str:
        raise UnsupportedAnnotation(
            f"{where}: dict keys must be str to map to a JSON object, got {args[0]!r}"
        )
    value = builder.build(args[1], f"{where}{{}}") if args else None
    schema: JSON = {"type": "object"}
    if value is not None:
        schema["additionalProperties"] = value.schema
    expected = "object" if value is None else f"object of {value.expected}"

    def coerce(v: Any, p: str) -> dict:
        if type(v) is not dict:
            _fail(p, expected, v)
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                _fail(f"{p}", "object with string keys", v)
            out[k] = x if value is None else value.coerce(x, f"{p}.{k}")
        return out

    return TypeSpec(schema, coerce, expected)


def _union(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    origin = typing.get_origin(annotation)
    if origin is not typing.Union and origin is not types.UnionType:
        return None
    members = [builder.build(a, where) for a in typing.get_args(annotation)]
    expected = " or ".join(m.expected for m in members)

    def exact(member: TypeSpec, v: Any) -> bool:
        # The member whose JSON type is the value's own (a float stays a float
        # in int | float; a string stays a string in bytes | str).
        schema = member.schema
        return schema.get("type") == _json_type(v) and "contentEncoding" not in schema

    def coerce(v: Any, p: str) -> Any:
        for member in sorted(members, key=lambda m: not exact(m, v)):
            try:
                return member.coerce(v, p)
            except ArgumentError:
                continue
        _fail(p, expected, v)

    return TypeSpec({"anyOf": [m.schema for m in members]}, coerce, expected)


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def _json_type(value: Any) -> str | None:
    return _JSON_TYPES.get(type(value))


def _enum_schema(values: list[Any], where: str) -> JSON:
    json_types = []
    for v in values:
        t = _json_type(v)
        if t is None:
            raise UnsupportedAnnotation(f"{where}: enum value {v!r} is not a JSON scalar")
        if t not in json_types:
            json_types.append(t)
    schema: JSON = {"enum": list(values)}
    if len(json_types) == 1:
        schema = {"type": json_types[0], **schema}
    return schema


def _literal(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if typing.get_origin(annotation) is not typing.Literal:
        return None
    values = list(typing.get_args(annotation))
    schema = _enum_schema(values, where)
    expected = "one of " + ", ".join(json.dumps(v) for v in values)

    def coerce(v: Any, p: str) -> Any:
        for allowed in values:
            if type(v) is type(allowed) and v == allowed:
                return allowed
        _fail(p, expected, v)

    return TypeSpec(schema, coerce, expected)


def _enum(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if not (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
        return None
    members = list(annotation)
    values = [m.value for m in members]
    schema = _enum_schema(values, where)
    expected = "one of " + ", ".join(json.dumps(v) for v in values)

    def coerce(v: Any, p: str) -> Any:
        for member in members:
            if type(v) is type(member.value) and v == member.value:
                return member
        _fail(p, expected, v)

    return TypeSpec(schema, coerce, expected)


HANDLERS: list[Handler] = [
    _any,
    _annotated,
    _none,
    _scalar,
    _enum,
    _literal,
    _union,
    _sequence,
    _mapping,
]
