"""The pieces every type handler shares: ``TypeSpec``, errors, the builder.

A ``TypeSpec`` pairs the JSON Schema a model sees with the ``coerce``
function that checks an incoming JSON value against the same type and turns
it into the Python value the function expects. Both come from one handler,
so the schema and the validation cannot drift apart.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]
Coerce = Callable[[Any, str], Any]


class UnsupportedAnnotation(Exception):
    """No handler can express this annotation; the function is skipped."""


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


@dataclass(frozen=True)
class TypeSpec:
    schema: JSON
    coerce: Coerce
    expected: str  # for error messages: "integer", "array of string"


_KINDS = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    bytes: "bytes",
}

JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def json_type(value: Any) -> str | None:
    """The JSON Schema type name of a scalar value, or None."""
    return JSON_TYPES.get(type(value))


def describe_value(value: Any) -> str:
    """A short, bounded description of a JSON value for error messages."""
    if value is None:
        return "null"
    kind = _KINDS.get(type(value), type(value).__name__)
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (ValueError, TypeError, RecursionError):
        text = "..."
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


def fail(path: str, expected: str, value: Any) -> typing.NoReturn:
    raise ArgumentError(path, expected, describe_value(value))


def parse_json_container(v: Any, want: tuple[type, ...]) -> Any:
    """Lenient: a JSON-encoded string where an array/object is expected is parsed
    (models often send ``"[1, 2]"``); anything else is returned unchanged."""
    if type(v) is str and v.lstrip()[:1] in ("[", "{"):
        try:
            parsed = json.loads(v)
        except (ValueError, RecursionError):
            return v
        if type(parsed) in want:
            return parsed
    return v


ANY = TypeSpec({}, lambda v, p: v, "any value")

Handler = Callable[[Any, "SchemaBuilder", str], TypeSpec | None]


class SchemaBuilder:
    """Builds ``TypeSpec``s for one function.

    Named types (Enum, TypedDict, dataclass, NamedTuple, pydantic models)
    go into ``defs`` once and are referenced with ``$ref``, which also makes
    recursive types possible. ``warnings`` collects what the caller should
    know (a missing annotation, say).
    """

    def __init__(self, handlers: list[Handler]) -> None:
        self.handlers = handlers
        self.warnings: list[str] = []
        self.defs: dict[str, JSON] = {}
        self._names: dict[Any, str] = {}
        self._coercers: dict[str, Coerce] = {}

    def build(self, annotation: Any, where: str) -> TypeSpec:
        for handler in self.handlers:
            spec = handler(annotation, self, where)
            if spec is not None:
                return spec
        raise UnsupportedAnnotation(f"{where}: unsupported type annotation {annotation!r}")

    def named(self, cls: Any, make: Callable[[], TypeSpec]) -> TypeSpec:
        """A ``$ref`` to ``cls``'s definition, building it on first use.

        The name is registered before ``make`` runs, so a type that refers
        to itself (a tree) gets a ``$ref`` instead of endless recursion.
        """
        name = self._names.get(cls)
        if name is None:
            base = getattr(cls, "__name__", "Type")
            name = base
            n = 2
            while name in self.defs:
                name = f"{base}{n}"
                n += 1
            self._names[cls] = name
            self.defs[name] = {}
            try:
                spec = make()
            except BaseException:
                del self.defs[name]
                del self._names[cls]
                raise
            self.defs[name] = spec.schema
            self._coercers[name] = spec.coerce
        coercers = self._coercers
        return TypeSpec(
            {"$ref": f"#/$defs/{name}"},
            lambda v, p: coercers[name](v, p),
            getattr(cls, "__name__", name),
        )

    def add_defs(self, defs: dict[str, JSON], owner: str) -> None:
        """Adopt ``$defs`` from a foreign schema (pydantic); a clash is unsupported."""
        for name, schema in defs.items():
            if name in self.defs and self.defs[name] != schema:
                raise UnsupportedAnnotation(f"{owner}: two different types are both named {name!r}")
            self.defs[name] = schema
