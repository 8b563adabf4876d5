"""Annotation -> ``TypeSpec`` (JSON Schema 2020-12 + validator).

Support is a list of handlers (``HANDLERS``), tried in order; adding a type
is adding a handler. Named classes live in ``named_types``, ``Annotated``
constraints in ``constraints``. An annotation no handler takes raises
``UnsupportedAnnotation``, which skips that one function with a reason.

Lenient by default where models are sloppy in harmless ways: an integral
float for an int, and a JSON-encoded string where an array or object is
expected (it is parsed).
"""

from __future__ import annotations

import base64
import binascii
import collections.abc
import inspect
import json
import math
import types
import typing
from typing import Any

from worker import named_types
from worker.constraints import apply_constraints, read_constraints
from worker.typespec import (
    ANY,
    JSON,
    ArgumentError,
    Handler,
    SchemaBuilder,
    TypeSpec,
    UnsupportedAnnotation,
    fail,
    json_type,
    parse_json_container,
)


def new_builder() -> SchemaBuilder:
    return SchemaBuilder(HANDLERS)


def _any(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if annotation is inspect.Parameter.empty:
        builder.warnings.append(f"{where} has no type annotation; any JSON value is accepted")
        return ANY
    if annotation is Any or annotation is object:
        return ANY
    return None


def _annotated(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if typing.get_origin(annotation) is not typing.Annotated:
        return None
    inner, *metadata = typing.get_args(annotation)
    spec = builder.build(inner, where)
    description, constraints = read_constraints(tuple(metadata))
    spec = apply_constraints(spec, constraints, where)
    if description:
        schema = spec.schema
        if "$ref" in schema:  # keep $ref free of siblings
            schema = {"anyOf": [schema]}
        spec = TypeSpec({**schema, "description": description}, spec.coerce, spec.expected)
    return spec


def _none(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if annotation is None or annotation is type(None):

        def coerce(v: Any, p: str) -> None:
            if v is not None:
                fail(p, "null", v)

        return TypeSpec({"type": "null"}, coerce, "null")
    return None


def _bool(v: Any, p: str) -> bool:
    if type(v) is not bool:
        fail(p, "boolean", v)
    return v


def _int(v: Any, p: str) -> int:
    if type(v) is int:
        return v
    if type(v) is float and math.isfinite(v) and v.is_integer():
        return int(v)
    fail(p, "integer", v)


def _float(v: Any, p: str) -> float:
    if type(v) in (int, float):
        return float(v)
    fail(p, "number", v)


def _str(v: Any, p: str) -> str:
    if type(v) is not str:
        fail(p, "string", v)
    return v


def _bytes(v: Any, p: str) -> bytes:
    if type(v) is bytes:  # msgpack bin from a Python caller
        return v
    if type(v) is str:
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            pass
    fail(p, "base64-encoded string", v)


def _parsed(parse: Any, expected: str) -> Any:
    def coerce(v: Any, p: str) -> Any:
        if type(v) is str:
            try:
                return parse(v)
            except (ValueError, TypeError, ArithmeticError):  # decimal.InvalidOperation
                pass
        fail(p, expected, v)

    return coerce


def _decimal(v: Any, p: str) -> Any:
    import decimal

    if type(v) in (int, float) and not (type(v) is float and not math.isfinite(v)):
        return decimal.Decimal(str(v))
    return _parsed(decimal.Decimal, "a decimal number as a string")(v, p)


_SCALARS: dict[Any, TypeSpec] = {
    bool: TypeSpec({"type": "boolean"}, _bool, "boolean"),
    int: TypeSpec({"type": "integer"}, _int, "integer"),
    float: TypeSpec({"type": "number"}, _float, "number"),
    str: TypeSpec({"type": "string"}, _str, "string"),
    bytes: TypeSpec({"type": "string", "contentEncoding": "base64"}, _bytes, "base64 string"),
}


#: Modules of the standard-library types with a string form. Imported only
#: when an annotation names one of them (so the user module has imported it
#: already): uuid alone pulls in platform, 2 ms of every worker's start.
_STDLIB_MODULES = frozenset({"datetime", "uuid", "pathlib", "decimal"})


def _stdlib_scalars() -> dict[Any, TypeSpec]:
    import datetime
    import decimal
    import pathlib
    import uuid

    return {
        datetime.datetime: TypeSpec(
            {"type": "string", "format": "date-time"},
            _parsed(datetime.datetime.fromisoformat, "an ISO 8601 date-time"),
            "date-time string",
        ),
        datetime.date: TypeSpec(
            {"type": "string", "format": "date"},
            _parsed(datetime.date.fromisoformat, "an ISO 8601 date (YYYY-MM-DD)"),
            "date string",
        ),
        datetime.time: TypeSpec(
            {"type": "string", "format": "time"},
            _parsed(datetime.time.fromisoformat, "an ISO 8601 time"),
            "time string",
        ),
        uuid.UUID: TypeSpec(
            {"type": "string", "format": "uuid"}, _parsed(uuid.UUID, "a UUID"), "UUID string"
        ),
        pathlib.Path: TypeSpec(
            {"type": "string", "format": "path"}, _parsed(pathlib.Path, "a path"), "path string"
        ),
        pathlib.PurePath: TypeSpec(
            {"type": "string", "format": "path"}, _parsed(pathlib.PurePath, "a path"), "path string"
        ),
        decimal.Decimal: TypeSpec(
            {"type": "string", "format": "decimal"}, _decimal, "decimal number as a string"
        ),
    }


def _scalar(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    try:
        spec = _SCALARS.get(annotation)
    except TypeError:  # unhashable annotation object
        return None
    if spec is None and getattr(annotation, "__module__", None) in _STDLIB_MODULES:
        _SCALARS.update(_stdlib_scalars())
        spec = _SCALARS.get(annotation)
    return spec


_SEQUENCES = (list, tuple, set, frozenset)


def _sequence(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    origin = typing.get_origin(annotation)
    if origin is None and annotation in _SEQUENCES:
        container, args = annotation, ()
    elif origin in _SEQUENCES:
        container, args = origin, typing.get_args(annotation)
    elif origin in (collections.abc.Sequence, collections.abc.MutableSequence):
        container, args = list, typing.get_args(annotation)
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
        v = parse_json_container(v, (list,))
        if type(v) not in (list, tuple):
            fail(p, expected, v)
        values = list(v) if item is None else [item.coerce(x, f"{p}[{i}]") for i, x in enumerate(v)]
        try:
            return container(values)
        except TypeError:  # unhashable members of a set
            fail(p, "array of hashable values", v)

    return TypeSpec(schema, coerce, expected)


def _fixed_tuple(args: tuple, builder: SchemaBuilder, where: str) -> TypeSpec:
    if args == ((),):  # typing.Tuple[()]
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
        v = parse_json_container(v, (list,))
        if type(v) not in (list, tuple) or len(v) != len(items):
            fail(p, expected, v)
        pairs = enumerate(zip(items, v, strict=True))
        return tuple(s.coerce(x, f"{p}[{i}]") for i, (s, x) in pairs)

    return TypeSpec(schema, coerce, expected)


#: Read-only and mutable mappings are offered as a plain dict: JSON has one
#: kind of object, and a dict is both.
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _mapping(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    origin = typing.get_origin(annotation)
    if annotation in _MAPPINGS or annotation is typing.Dict:  # noqa: UP006
        args: tuple = ()
    elif origin in _MAPPINGS:
        args = typing.get_args(annotation)  # () for a bare typing.Mapping
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
        v = parse_json_container(v, (dict,))
        if type(v) is not dict:
            fail(p, expected, v)
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                fail(p, "object with string keys", v)
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
        return schema.get("type") == json_type(v) and "contentEncoding" not in schema

    def coerce(v: Any, p: str) -> Any:
        for member in sorted(members, key=lambda m: not exact(m, v)):
            try:
                return member.coerce(v, p)
            except ArgumentError:
                continue
        fail(p, expected, v)

    return TypeSpec({"anyOf": [m.schema for m in members]}, coerce, expected)


def _literal(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if typing.get_origin(annotation) is not typing.Literal:
        return None
    values = list(typing.get_args(annotation))
    schema = named_types.enum_values_schema(values, where)
    expected = "one of " + ", ".join(json.dumps(v) for v in values)

    def coerce(v: Any, p: str) -> Any:
        for allowed in values:
            if type(v) is type(allowed) and v == allowed:
                return allowed
        fail(p, expected, v)

    return TypeSpec(schema, coerce, expected)


HANDLERS: list[Handler] = [
    _any,
    _annotated,
    _none,
    _scalar,
    *named_types.HANDLERS,
    _literal,
    _union,
    _sequence,
    _mapping,
]
