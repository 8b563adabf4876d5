"""``Annotated[T, ...]`` metadata: descriptions and constraint objects.

Constraint objects are read by attribute (``ge``, ``le``, ``gt``, ``lt``,
``multiple_of``, ``min_length``, ``max_length``, ``pattern``,
``description``), which covers annotated-types (``Ge(3)``, ``Interval``,
``Len``) and pydantic's ``Field(...)`` (including the objects in its
``metadata`` list) without importing either. A plain string is a
description. Each constraint is written into the schema and checked when
arguments are bound.
"""

from __future__ import annotations

import operator
import re
from typing import Any

from worker.typespec import JSON, TypeSpec, UnsupportedAnnotation, fail

_NUMERIC = {
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusiveMinimum",
    "lt": "exclusiveMaximum",
    "multiple_of": "multipleOf",
}
_LENGTH_KEYS = {
    "string": ("minLength", "maxLength"),
    "array": ("minItems", "maxItems"),
    "object": ("minProperties", "maxProperties"),
}


def _metadata_objects(meta: Any) -> list[Any]:
    objects = [meta]
    nested = getattr(meta, "metadata", None)
    if isinstance(nested, list | tuple):
        objects.extend(nested)
    return objects


def read_constraints(metadata: tuple[Any, ...]) -> tuple[str | None, dict[str, Any]]:
    """(description, {constraint name: value}) from ``Annotated`` metadata."""
    description = None
    found: dict[str, Any] = {}
    for meta in metadata:
        if isinstance(meta, str):
            description = meta
            continue
        for obj in _metadata_objects(meta):
            text = getattr(obj, "description", None)
            if isinstance(text, str) and text:
                description = text
            for name in (*_NUMERIC, "min_length", "max_length", "pattern"):
                value = getattr(obj, name, None)
                if value is not None and not callable(value):
                    found[name] = value
    return description, found


def apply_constraints(spec: TypeSpec, constraints: dict[str, Any], where: str) -> TypeSpec:
    """Write ``constraints`` into ``spec``'s schema and wrap its validator."""
    if not constraints:
        return spec
    schema: JSON = dict(spec.schema)
    json_type = schema.get("type")
    checks = []
    for name, value in constraints.items():
        if name in _NUMERIC:
            if (
                json_type not in ("integer", "number")
                or isinstance(value, bool)
                or not isinstance(value, int | float)
            ):
                raise UnsupportedAnnotation(f"{where}: constraint {name} needs a numeric type")
            schema[_NUMERIC[name]] = value
            checks.append(_numeric_check(name, value))
        elif name in ("min_length", "max_length"):
            if json_type not in _LENGTH_KEYS or not isinstance(value, int):
                raise UnsupportedAnnotation(f"{where}: constraint {name} needs a sized type")
            key = _LENGTH_KEYS[json_type][name == "max_length"]
            schema[key] = value
            checks.append(_length_check(name, value))
        elif name == "pattern":
            if json_type != "string":
                raise UnsupportedAnnotation(f"{where}: pattern needs a string type")
            pattern = value.pattern if isinstance(value, re.Pattern) else str(value)
            schema["pattern"] = pattern
            checks.append(_pattern_check(pattern))
    inner = spec.coerce

    def coerce(v: Any, p: str) -> Any:
        value = inner(v, p)
        for check in checks:
            check(v, value, p)
        return value

    return TypeSpec(schema, coerce, spec.expected)


_COMPARE = {
    "ge": operator.ge,
    "le": operator.le,
    "gt": operator.gt,
    "lt": operator.lt,
    "multiple_of": lambda value, bound: value % bound == 0,
}


def _numeric_check(name: str, bound: float):
    text = {"ge": ">=", "le": "<=", "gt": ">", "lt": "<"}.get(name)
    compare = _COMPARE[name]

    def check(raw: Any, value: Any, p: str) -> None:
        if not compare(value, bound):
            fail(p, f"a number {text} {bound}" if text else f"a multiple of {bound}", raw)

    return check


def _length_check(name: str, bound: int):
    def check(raw: Any, value: Any, p: str) -> None:
        size = len(value)
        if (name == "min_length" and size < bound) or (name == "max_length" and size > bound):
            word = "at least" if name == "min_length" else "at most"
            fail(p, f"a length of {word} {bound}", raw)

    return check


def _pattern_check(pattern: str):
    regex = re.compile(pattern)

    def check(raw: Any, value: Any, p: str) -> None:
        if not regex.search(value):
            fail(p, f"a string matching {pattern!r}", raw)

    return check
