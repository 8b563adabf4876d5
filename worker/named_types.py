"""Classes that become named definitions (``$defs``): Enum, TypedDict,
dataclass, NamedTuple and pydantic models (duck-typed, never imported).

Each is an object (or, for Enum, a value set) in the schema and is turned
back into an instance of the class when arguments are bound. Objects are
closed (``additionalProperties: false``). A field with a default is
optional; ``null`` for such a field, when its type does not allow null,
means "use the default" (what OpenAI strict mode sends).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

from worker.typespec import (
    JSON,
    ArgumentError,
    SchemaBuilder,
    TypeSpec,
    UnsupportedAnnotation,
    describe_value,
    fail,
    json_type,
    parse_json_container,
)

MAX_DEFAULT_JSON = 1024


def json_default(value: Any) -> tuple[bool, Any]:
    """(True, value as JSON) when a default can be shown in a schema."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bytes):
        value = base64.b64encode(value).decode("ascii")  # as the schema says
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False, None
    if len(text) > MAX_DEFAULT_JSON:
        return False, None
    return True, json.loads(text)


def enum_values_schema(values: list[Any], where: str) -> JSON:
    types = []
    for v in values:
        t = json_type(v)
        if t is None:
            raise UnsupportedAnnotation(f"{where}: enum value {v!r} is not a JSON scalar")
        if t not in types:
            types.append(t)
    schema: JSON = {"enum": list(values)}
    if len(types) == 1:
        schema = {"type": types[0], **schema}
    return schema


def _enum(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if not (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
        return None

    def make() -> TypeSpec:
        members = list(annotation)
        values = [m.value for m in members]
        schema = enum_values_schema(values, where)
        # Its own docstring only: not one inherited from a base or a mix-in.
        doc = inspect.cleandoc(annotation.__dict__.get("__doc__") or "")
        if doc:
            schema = {"description": doc.split("\n\n")[0].strip(), **schema}
        expected = "one of " + ", ".join(json.dumps(v) for v in values)

        def coerce(v: Any, p: str) -> Any:
            for member in members:
                if type(v) is type(member.value) and v == member.value:
                    return member
            fail(p, expected, v)

        return TypeSpec(schema, coerce, expected)

    return builder.named(annotation, make)


class _Field(typing.NamedTuple):
    name: str
    annotation: Any
    required: bool
    has_default: bool
    default: Any


def _strip_required(annotation: Any) -> Any:
    """``Required[T]``/``NotRequired[T]`` (typing or typing_extensions) -> T."""
    while getattr(typing.get_origin(annotation), "_name", None) in ("Required", "NotRequired"):
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_required(name: str, annotation: Any, required_keys: frozenset[str]) -> bool:
    """An explicit Required/NotRequired wins: with postponed annotations
    Python 3.11 cannot see them when it computes ``__required_keys__``."""
    wrapper = getattr(typing.get_origin(annotation), "_name", None)
    if wrapper == "NotRequired":
        return False
    if wrapper == "Required":
        return True
    return name in required_keys


def _hints(cls: Any, where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        raise UnsupportedAnnotation(
            f"{where}: annotations of {cls.__name__} cannot be resolved: "
            f"{type(exc).__name__}: {exc}"
        )


def _object_spec(
    builder: SchemaBuilder,
    cls: Any,
    fields: list[_Field],
    make_value: Callable[[dict[str, Any]], Any],
    where: str,
) -> TypeSpec:
    specs = {f.name: builder.build(f.annotation, f"{where}.{f.name}") for f in fields}
    properties: JSON = {}
    for f in fields:
        prop = dict(specs[f.name].schema)
        if f.has_default:
            shown, value = json_default(f.default)
            if shown:
                prop = _with_default(prop, value)
        properties[f.name] = prop
    schema: JSON = {
        "type": "object",
        "properties": properties,
        "required": [f.name for f in fields if f.required],
        "additionalProperties": False,
    }
    doc = (cls.__doc__ or "").strip()
    if doc and not doc.startswith(cls.__name__ + "("):  # not the dataclass repr doc
        schema = {"description": doc.split("\n\n")[0].strip(), **schema}
    by_name = {f.name: f for f in fields}
    expected = f"object {cls.__name__}"

    def coerce(v: Any, p: str) -> Any:
        v = parse_json_container(v, (dict,))
        if type(v) is not dict:
            fail(p, expected, v)
        out: dict[str, Any] = {}
        for key, raw in v.items():
            f = by_name.get(key)
            if f is None:
                known = ", ".join(by_name)
                raise ArgumentError(
                    f"{p}.{key}", f"one of the fields {known}", "an unexpected field"
                )
            if raw is None and not f.required:
                try:
                    out[key] = specs[key].coerce(None, f"{p}.{key}")
                except ArgumentError:
                    continue  # null means "use the default"
                continue
            out[key] = specs[key].coerce(raw, f"{p}.{key}")
        for f in fields:
            if f.required and f.name not in out:
                raise ArgumentError(
                    f"{p}.{f.name}", f"{specs[f.name].expected} (required)", "nothing"
                )
        try:
            return make_value(out)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(p, expected, f"{describe_value(v)} ({exc})")

    return TypeSpec(schema, coerce, expected)


def _with_default(prop: JSON, value: Any) -> JSON:
    if "$ref" in prop:
        return {"anyOf": [prop], "default": value}
    return {**prop, "default": value}


def is_typeddict(cls: Any) -> bool:
    return (
        isinstance(cls, type)
        and issubclass(cls, dict)
        and hasattr(cls, "__required_keys__")
        and hasattr(cls, "__optional_keys__")
    )


def _typeddict(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if not is_typeddict(annotation):
        return None

    def make() -> TypeSpec:
        hints = _hints(annotation, where)
        required = annotation.__required_keys__
        fields = [
            _Field(name, _strip_required(tp), _is_required(name, tp, required), False, None)
            for name, tp in hints.items()
        ]
        return _object_spec(builder, annotation, fields, dict, where)

    return builder.named(annotation, make)


def _dataclass(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if not (isinstance(annotation, type) and dataclasses.is_dataclass(annotation)):
        return None

    def make() -> TypeSpec:
        hints = _hints(annotation, where)
        fields = []
        for f in dataclasses.fields(annotation):
            if not f.init:
                continue
            has_default = f.default is not dataclasses.MISSING
            has_factory = f.default_factory is not dataclasses.MISSING
            fields.append(
                _Field(
                    f.name,
                    hints.get(f.name, Any),
                    not (has_default or has_factory),
                    has_default,
                    f.default if has_default else None,
                )
            )
        return _object_spec(builder, annotation, fields, lambda d: annotation(**d), where)

    return builder.named(annotation, make)


def is_namedtuple(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")


def _namedtuple(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if not is_namedtuple(annotation):
        return None

    def make() -> TypeSpec:
        hints = _hints(annotation, where)
        defaults = getattr(annotation, "_field_defaults", {})
        fields = [
            _Field(
                name,
                hints.get(name, Any),
                name not in defaults,
                name in defaults,
                defaults.get(name),
            )
            for name in annotation._fields
        ]
        return _object_spec(builder, annotation, fields, lambda d: annotation(**d), where)

    return builder.named(annotation, make)


def _allows_null(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "null" or schema == {}:
        return True
    members = schema.get("anyOf") or schema.get("oneOf") or []
    return any(_allows_null(m) for m in members)


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: _strip_titles(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _pydantic(annotation: Any, builder: SchemaBuilder, where: str) -> TypeSpec | None:
    if not (
        isinstance(annotation, type) and callable(getattr(annotation, "model_json_schema", None))
    ):
        return None

    def make() -> TypeSpec:
        try:
            schema = _strip_titles(getattr(annotation, "model_json_schema")())  # noqa: B009
        except Exception as exc:
            raise UnsupportedAnnotation(
                f"{where}: {annotation.__name__}.model_json_schema() "
                f"failed: {type(exc).__name__}: {exc}"
            )
        builder.add_defs(schema.pop("$defs", {}), where)
        validate = getattr(annotation, "model_validate", None)
        expected = f"object {annotation.__name__}"
        # Fields with a default that do not accept null: a null for them
        # means "use the default" (OpenAI strict mode sends it).
        required = set(schema.get("required", []))
        defaulted = {
            name
            for name, prop in (schema.get("properties") or {}).items()
            if name not in required and not _allows_null(prop)
        }

        def coerce(v: Any, p: str) -> Any:
            v = parse_json_container(v, (dict,))
            if type(v) is not dict:
                fail(p, expected, v)
            v = {k: x for k, x in v.items() if not (x is None and k in defaulted)}
            if validate is None:
                return v
            try:
                return validate(v)
            except Exception as exc:  # pydantic.ValidationError, without importing it
                first = str(exc).splitlines()
                detail = " ".join(first[1:3]).strip() if len(first) > 1 else str(exc)
                raise ArgumentError(p, expected, f"{describe_value(v)} ({detail[:300]})")

        return TypeSpec(schema, coerce, expected)

    return builder.named(annotation, make)


HANDLERS = [_enum, _pydantic, _typeddict, _dataclass, _namedtuple]
