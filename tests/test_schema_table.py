"""The table-driven schema suite of issue 3, through real worker processes.

Each ``Case`` is one module-level function (generated into one of two
function-set modules, loaded once for the whole file), with:

- the EXACT canonical ``parameters`` schema (``$defs`` included) and
  ``returns`` schema the worker must build;
- the exact output of every provider format (openai, openai strict,
  openai-responses (strict and not), anthropic, gemini, mcp), or the
  ``SchemaFormatError`` the format must raise, naming the function and the
  parameter path;
- sample arguments that validate against the canonical schema (jsonschema,
  Draft 2020-12, formats checked) and that the worker binds to the right
  Python values (the functions return ``repr`` of what they received);
- for OpenAI strict mode, the value bound when every optional parameter is
  sent as ``null`` (the worker must apply the defaults);
- invalid samples, rejected by both the schema and the worker with a path.

On top of the hand-written samples, arguments are generated from every
emitted schema (canonical, and strict with ``null`` wherever allowed) and
must be accepted by the worker.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from host import FunctionHost, InvalidArguments, Limits, SchemaFormatError
from host.tools.formats import tool_definition
from tests.conftest import wait_for, worker_pids

# -- schema building blocks ------------------------------------------------------

S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
N = {"type": "number"}
B = {"type": "boolean"}
NULL = {"type": "null"}
DATE = {"type": "string", "format": "date"}
BASE64 = {"type": "string", "contentEncoding": "base64"}


def arr(items: dict | None = None, **extra: Any) -> dict:
    schema: dict = {"type": "array"}
    if items is not None:
        schema["items"] = items
    return {**schema, **extra}


def ref(name: str) -> dict:
    return {"$ref": f"#/$defs/{name}"}


def opt(schema: dict) -> dict:
    """``X | None``."""
    return {"anyOf": [schema, NULL]}


def dflt(schema: dict, value: Any) -> dict:
    """A canonical property with a default."""
    return {**schema, "default": value}


def desc(schema: dict, text: str) -> dict:
    return {**schema, "description": text}


def enum_default(name: str, value: Any) -> dict:
    """A canonical ``$ref`` property with a default (the $ref is kept sibling-free)."""
    return {"anyOf": [ref(name)], "default": value}


def nul(schema: dict, text: str | None = None) -> dict:
    """A strict-mode optional property: nullable, its default in the description."""
    out: dict = {"anyOf": [schema, NULL]}
    if text is not None:
        out["description"] = text
    return out


def obj(props: dict, required: list[str], defs: dict | None = None) -> dict:
    schema = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def sobj(props: dict, defs: dict | None = None) -> dict:
    """A strict-mode object: every property required, closed."""
    return obj(props, list(props), defs)


def gobj(props: dict, required: list[str]) -> dict:
    """A Gemini object: no additionalProperties, no $defs."""
    return {"type": "object", "properties": props, "required": required}


def wrapped(result: dict, defs: dict | None = None) -> dict:
    """An MCP outputSchema for a non-object result."""
    return obj({"result": result}, ["result"], defs)


@dataclass(frozen=True)
class Refuse:
    """The format must raise ``SchemaFormatError`` for the parameter at ``path``
    (a prefix of the reported path when ``prefix``)."""

    path: str
    prefix: bool = False


SAME = "same as canonical"
OBJECT_RESULT = "an object result: outputSchema is not wrapped"


# -- named definitions -----------------------------------------------------------

COLOR = {"type": "string", "enum": ["red", "green"]}
COLOR_GEMINI = COLOR
PRIORITY = {"type": "integer", "enum": [1, 2]}
LEVEL = {"type": "string", "enum": ["low", "high"]}

MOVIE = obj({"title": S, "year": I}, ["title"])
MOVIE_STRICT = sobj({"title": S, "year": opt(I)})
MOVIE_GEMINI = gobj({"title": S, "year": I}, ["title"])

OPTIONS = obj({"verbose": B, "level": I}, ["level"])
TE_PERSON = obj({"name": S, "nick": S}, ["name"])

POINT_DOC = "A point on the plane."
POINT = {"description": POINT_DOC, **obj({"x": I, "y": dflt(I, 0)}, ["x"])}
POINT_STRICT = {"description": POINT_DOC, **sobj({"x": I, "y": nul(I, "Default: 0.")})}
POINT_GEMINI = {"description": POINT_DOC, **gobj({"x": I, "y": desc(I, "Default: 0.")}, ["x"])}

BAG = obj(
    {
        "name": S,
        "tags": arr(S),
        "color": enum_default("Color", "red"),
        "when": dflt(opt(DATE), None),
    },
    ["name"],
)
BAG_STRICT = sobj(
    {
        "name": S,
        "tags": nul(arr(S)),
        "color": nul(ref("Color"), 'Default: "red".'),
        "when": opt(DATE),
    }
)
BAG_GEMINI = gobj(
    {
        "name": S,
        "tags": arr(S),
        "color": desc(COLOR, 'Default: "red".'),
        "when": {"type": "string", "description": "Format: date.", "nullable": True},
    },
    ["name"],
)

PAIR = obj({"left": I, "right": dflt(S, "r")}, ["left"])
PAIR_STRICT = sobj({"left": I, "right": nul(S, 'Default: "r".')})
PAIR_GEMINI = gobj({"left": I, "right": desc(S, 'Default: "r".')}, ["left"])

NODE = obj({"value": I, "children": arr(ref("Node"))}, ["value"])
NODE_STRICT = sobj({"value": I, "children": nul(arr(ref("Node")))})
COMMENT = obj({"text": S, "replies": arr(ref("Comment"))}, ["text", "replies"])

# model_json_schema() of the duck-typed pydantic model, titles stripped
ADDRESS = {"type": "object", "properties": {"city": S}, "required": ["city"]}
USER = {
    "type": "object",
    "properties": {
        "name": S,
        "age": dflt(I, 0),
        "home": dflt(opt(ref("Address")), None),
        "title": dflt(S, ""),
    },
    "required": ["name"],
}
USER_STRICT = sobj(
    {
        "name": S,
        "age": nul(I, "Default: 0."),
        "home": opt(ref("Address")),
        "title": nul(S, 'Default: "".'),
    }
)
ADDRESS_STRICT = sobj({"city": S})
USER_GEMINI = gobj(
    {
        "name": S,
        "age": desc(I, "Default: 0."),
        "home": {**gobj({"city": S}, ["city"]), "nullable": True},
        "title": desc(S, 'Default: "".'),
    },
    ["name"],
)

LATER_POINT = obj({"x": I, "y": I}, ["x", "y"])
LATER_ITEM = obj({"sku": S, "qty": I}, ["sku"])
LATER_ITEM_STRICT = sobj({"sku": S, "qty": opt(I)})
FOLDER = obj(
    {"name": S, "children": arr(ref("Folder")), "files": arr(ref("File"))},
    ["name"],
)
FILE = obj({"name": S, "size": dflt(I, 0)}, ["name"])
FOLDER_STRICT = sobj(
    {"name": S, "children": nul(arr(ref("Folder"))), "files": nul(arr(ref("File")))}
)
FILE_STRICT = sobj({"name": S, "size": nul(I, "Default: 0.")})
TE_POINT3 = obj({"x": I, "z": N}, ["x"])

# -- the cases ----------------------------------------------------------------------


@dataclass
class Case:
    name: str
    sig: str
    props: dict
    required: list[str]
    defs: dict | None = None
    strict: Any = SAME  # SAME, the expected strict parameters, or Refuse
    gemini: Any = None  # the expected Gemini parameters, or Refuse
    samples: list[tuple[dict, Any]] = field(default_factory=list)
    null_bound: Any = None  # result when every optional parameter is sent as null (strict)
    strict_samples: list[tuple[dict, Any]] = field(default_factory=list)
    bad: list[tuple[dict, str, bool]] = field(default_factory=list)  # (args, path, schema rejects)
    ret: str = ""
    returns: dict | None = None
    mcp_out: Any = None  # exact wrapped outputSchema, or OBJECT_RESULT
    body: str = "return _reveal(locals())"
    doc: str | None = None
    description: str | None = None
    module: str = "table_plain"
    warns: list[str] | None = field(default_factory=list)  # params named in warnings

    @property
    def parameters(self) -> dict:
        return obj(self.props, self.required, self.defs)

    @property
    def expected_description(self) -> str:
        if self.description is not None:
            return self.description
        return self.doc or f"Case {self.name}."

    def source(self) -> str:
        ret = f" -> {self.ret}" if self.ret else ""
        doc = self.doc or f"Case {self.name}."
        return (
            f"def {self.name}({self.sig}){ret}:\n"
            + textwrap.indent(f'"""{doc}\n"""\n{self.body}\n', "    ")
            + "\n\n"
        )


def bad(args: dict, path: str, schema_rejects: bool = True) -> tuple[dict, str, bool]:
    return (args, path, schema_rejects)


CASES: list[Case] = [
    # -- scalars -------------------------------------------------------------------
    Case(
        "str_param",
        "x: str",
        {"x": S},
        ["x"],
        gemini=gobj({"x": S}, ["x"]),
        samples=[({"x": "hi"}, {"x": "'hi'"})],
        bad=[bad({"x": 5}, "x")],
    ),
    Case(
        "int_param",
        "x: int",
        {"x": I},
        ["x"],
        gemini=gobj({"x": I}, ["x"]),
        samples=[({"x": 3}, {"x": "3"}), ({"x": 3.0}, {"x": "3"})],
        bad=[bad({"x": "3"}, "x"), bad({"x": 3.5}, "x"), bad({"x": True}, "x")],
    ),
    Case(
        "float_param",
        "x: float",
        {"x": N},
        ["x"],
        gemini=gobj({"x": N}, ["x"]),
        samples=[({"x": 2}, {"x": "2.0"}), ({"x": 2.5}, {"x": "2.5"})],
        bad=[bad({"x": True}, "x"), bad({"x": "2.5"}, "x")],
    ),
    Case(
        "bool_param",
        "x: bool",
        {"x": B},
        ["x"],
        gemini=gobj({"x": B}, ["x"]),
        samples=[({"x": True}, {"x": "True"}), ({"x": False}, {"x": "False"})],
        bad=[bad({"x": 1}, "x"), bad({"x": "true"}, "x")],
    ),
    Case(
        "none_param",
        "x: None",
        {"x": NULL},
        ["x"],
        gemini=Refuse("x"),
        samples=[({"x": None}, {"x": "None"})],
        bad=[bad({"x": 0}, "x")],
    ),
    Case(
        "bytes_param",
        "data: bytes",
        {"data": BASE64},
        ["data"],
        strict=sobj({"data": desc(S, "Base64-encoded.")}),
        gemini=gobj({"data": desc(S, "Base64-encoded.")}, ["data"]),
        samples=[({"data": "aGVsbG8="}, {"data": "b'hello'"}), ({"data": ""}, {"data": "b''"})],
        bad=[bad({"data": "not base64!"}, "data", False), bad({"data": 5}, "data")],
    ),
    Case(
        # The issue: bytes supported *with defaults written* (as their documented
        # JSON form, base64).
        "bytes_default",
        'data: bytes = b"hi"',
        {"data": dflt(BASE64, "aGk=")},
        [],
        strict=sobj({"data": nul(S, 'Base64-encoded. Default: "aGk=".')}),
        gemini=gobj({"data": desc(S, 'Base64-encoded. Default: "aGk=".')}, []),
        samples=[({}, {"data": "b'hi'"}), ({"data": "aGVsbG8="}, {"data": "b'hello'"})],
        null_bound={"data": "b'hi'"},
    ),
    # -- sequences -----------------------------------------------------------------
    Case(
        "list_int",
        "xs: list[int]",
        {"xs": arr(I)},
        ["xs"],
        gemini=gobj({"xs": arr(I)}, ["xs"]),
        samples=[({"xs": [1, 2]}, {"xs": "[1, 2]"}), ({"xs": []}, {"xs": "[]"})],
        bad=[bad({"xs": [1, "a"]}, "xs[1]"), bad({"xs": 1}, "xs")],
    ),
    Case(
        "typing_list",
        "xs: List[str]",
        {"xs": arr(S)},
        ["xs"],
        gemini=gobj({"xs": arr(S)}, ["xs"]),
        samples=[({"xs": ["a", "b"]}, {"xs": "['a', 'b']"})],
        bad=[bad({"xs": ["a", 1]}, "xs[1]")],
    ),
    Case(
        # An array of anything: strict mode and Gemini need a type for the items
        # (OpenAI: "array schema missing items"; Gemini: "items: missing field"),
        # exactly as for list[Any]; the format must refuse, not pass it through.
        "bare_list",
        "xs: list",
        {"xs": {"type": "array"}},
        ["xs"],
        strict=Refuse("xs", prefix=True),
        gemini=Refuse("xs", prefix=True),
        samples=[({"xs": [1, "a", None]}, {"xs": "[1, 'a', None]"})],
        bad=[bad({"xs": "nope"}, "xs")],
    ),
    Case(
        "var_tuple",
        "xs: tuple[int, ...]",
        {"xs": arr(I)},
        ["xs"],
        gemini=gobj({"xs": arr(I)}, ["xs"]),
        samples=[({"xs": [1, 2]}, {"xs": "(1, 2)"}), ({"xs": []}, {"xs": "()"})],
    ),
    Case(
        "fixed_tuple",
        "pair: tuple[int, str]",
        {
            "pair": {
                "type": "array",
                "prefixItems": [I, S],
                "items": False,
                "minItems": 2,
                "maxItems": 2,
            }
        },
        ["pair"],
        strict=Refuse("pair"),
        gemini=Refuse("pair"),
        samples=[({"pair": [1, "a"]}, {"pair": "(1, 'a')"})],
        bad=[bad({"pair": [1]}, "pair"), bad({"pair": [1, 2]}, "pair[1]")],
    ),
    Case(
        "set_param",
        "tags: set[str]",
        {"tags": arr(S, uniqueItems=True)},
        ["tags"],
        strict=sobj({"tags": desc(arr(S), "Items must be unique.")}),
        gemini=gobj({"tags": desc(arr(S), "Items must be unique.")}, ["tags"]),
        samples=[({"tags": ["b", "a"]}, {"tags": "set['a', 'b']"})],
        bad=[bad({"tags": [1]}, "tags[0]")],
    ),
    Case(
        "frozenset_param",
        "ids: FrozenSet[int]",
        {"ids": arr(I, uniqueItems=True)},
        ["ids"],
        strict=sobj({"ids": desc(arr(I), "Items must be unique.")}),
        gemini=gobj({"ids": desc(arr(I), "Items must be unique.")}, ["ids"]),
        samples=[({"ids": [3, 1]}, {"ids": "frozenset[1, 3]"})],
    ),
    Case(
        "nested_lists",
        "grid: list[list[float]], rows: list[tuple[int, ...]]",
        {"grid": arr(arr(N)), "rows": arr(arr(I))},
        ["grid", "rows"],
        gemini=gobj({"grid": arr(arr(N)), "rows": arr(arr(I))}, ["grid", "rows"]),
        samples=[
            ({"grid": [[1, 2.5]], "rows": [[1, 2]]}, {"grid": "[[1.0, 2.5]]", "rows": "[(1, 2)]"})
        ],
        bad=[bad({"grid": [[1, "x"]], "rows": []}, "grid[0][1]")],
    ),
    # -- maps ------------------------------------------------------------------------
    Case(
        "str_map",
        "counts: dict[str, int]",
        {"counts": {"type": "object", "additionalProperties": I}},
        ["counts"],
        strict=Refuse("counts"),
        gemini=Refuse("counts"),
        samples=[
            ({"counts": {"a": 1}}, {"counts": "{'a': 1}"}),
            ({"counts": {}}, {"counts": "{}"}),
        ],
        bad=[bad({"counts": {"a": "x"}}, "counts.a")],
    ),
    Case(
        "bare_dict",
        "d: dict",
        {"d": {"type": "object"}},
        ["d"],
        strict=Refuse("d"),
        gemini=Refuse("d"),
        samples=[({"d": {"a": [1]}}, {"d": "{'a': [1]}"})],
        bad=[bad({"d": [1]}, "d")],
    ),
    Case(
        "dict_of_dataclass",
        "points: dict[str, Point]",
        {"points": {"type": "object", "additionalProperties": ref("Point")}},
        ["points"],
        defs={"Point": POINT},
        strict=Refuse("points"),
        gemini=Refuse("points"),
        samples=[({"points": {"a": {"x": 1}}}, {"points": "{'a': Point(x=1, y=0)}"})],
        bad=[bad({"points": {"a": {"y": 1}}}, "points.a.x")],
    ),
    # -- unions ----------------------------------------------------------------------
    Case(
        "optional_param",
        "x: Optional[int]",
        {"x": opt(I)},
        ["x"],
        gemini=gobj({"x": {"type": "integer", "nullable": True}}, ["x"]),
        samples=[({"x": None}, {"x": "None"}), ({"x": 5}, {"x": "5"})],
        bad=[bad({}, "x"), bad({"x": "5"}, "x")],
    ),
    Case(
        "union_param",
        "x: Union[int, str]",
        {"x": {"anyOf": [I, S]}},
        ["x"],
        gemini=gobj({"x": {"anyOf": [I, S]}}, ["x"]),
        samples=[({"x": 5}, {"x": "5"}), ({"x": "5"}, {"x": "'5'"})],
        bad=[bad({"x": None}, "x")],
    ),
    Case(
        "pep604_defaults",
        'x: int | None = None, y: str | int = "a"',
        {"x": dflt(opt(I), None), "y": dflt({"anyOf": [S, I]}, "a")},
        [],
        strict=sobj({"x": opt(I), "y": {"anyOf": [S, I, NULL], "description": 'Default: "a".'}}),
        gemini=gobj(
            {
                "x": {"type": "integer", "nullable": True},
                "y": {"anyOf": [S, I], "description": 'Default: "a".'},
            },
            [],
        ),
        samples=[({}, {"x": "None", "y": "'a'"}), ({"x": 4, "y": 7}, {"x": "4", "y": "7"})],
        null_bound={"x": "None", "y": "'a'"},
    ),
    Case(
        "int_or_float",
        "x: int | float",
        {"x": {"anyOf": [I, N]}},
        ["x"],
        gemini=gobj({"x": {"anyOf": [I, N]}}, ["x"]),
        samples=[({"x": 3}, {"x": "3"}), ({"x": 3.5}, {"x": "3.5"})],
    ),
    Case(
        "bytes_or_str",
        "x: bytes | str",
        {"x": {"anyOf": [BASE64, S]}},
        ["x"],
        strict=sobj({"x": {"anyOf": [desc(S, "Base64-encoded."), S]}}),
        gemini=gobj({"x": {"anyOf": [desc(S, "Base64-encoded."), S]}}, ["x"]),
        samples=[({"x": "aGk="}, {"x": "'aGk='"})],
    ),
    # -- Literal and Enum ------------------------------------------------------------
    Case(
        "literal_str",
        'mode: Literal["fast", "slow"] = "fast"',
        {"mode": dflt({"type": "string", "enum": ["fast", "slow"]}, "fast")},
        [],
        strict=sobj(
            {"mode": nul({"type": "string", "enum": ["fast", "slow"]}, 'Default: "fast".')}
        ),
        gemini=gobj(
            {
                "mode": {
                    "type": "string",
                    "enum": ["fast", "slow"],
                    "description": 'Default: "fast".',
                }
            },
            [],
        ),
        samples=[({"mode": "slow"}, {"mode": "'slow'"}), ({}, {"mode": "'fast'"})],
        null_bound={"mode": "'fast'"},
        bad=[bad({"mode": "medium"}, "mode")],
    ),
    Case(
        "literal_int",
        "level: Literal[1, 2, 3]",
        {"level": {"type": "integer", "enum": [1, 2, 3]}},
        ["level"],
        gemini=Refuse("level"),
        samples=[({"level": 2}, {"level": "2"})],
        bad=[bad({"level": 4}, "level"), bad({"level": "2"}, "level")],
    ),
    Case(
        "enum_param",
        "color: Color",
        {"color": ref("Color")},
        ["color"],
        defs={"Color": COLOR},
        gemini=gobj({"color": COLOR_GEMINI}, ["color"]),
        samples=[({"color": "green"}, {"color": "<Color.GREEN: 'green'>"})],
        bad=[bad({"color": "blue"}, "color"), bad({"color": "GREEN"}, "color")],
    ),
    Case(
        "enum_defaults",
        "color: Color = Color.GREEN, prio: Priority = Priority.HIGH",
        {"color": enum_default("Color", "green"), "prio": enum_default("Priority", 2)},
        [],
        defs={"Color": COLOR, "Priority": PRIORITY},
        strict=sobj(
            {
                "color": nul(ref("Color"), 'Default: "green".'),
                "prio": nul(ref("Priority"), "Default: 2."),
            },
            {"Color": COLOR, "Priority": PRIORITY},
        ),
        gemini=Refuse("prio"),
        samples=[
            ({"prio": 1}, {"color": "<Color.GREEN: 'green'>", "prio": "<Priority.LOW: 1>"}),
        ],
        null_bound={"color": "<Color.GREEN: 'green'>", "prio": "<Priority.HIGH: 2>"},
        bad=[bad({"prio": 3}, "prio")],
    ),
    Case(
        "list_of_enums",
        "colors: list[Color]",
        {"colors": arr(ref("Color"))},
        ["colors"],
        defs={"Color": COLOR},
        gemini=gobj({"colors": arr(COLOR_GEMINI)}, ["colors"]),
        samples=[
            (
                {"colors": ["red", "green"]},
                {"colors": "[<Color.RED: 'red'>, <Color.GREEN: 'green'>]"},
            )
        ],
        bad=[bad({"colors": ["red", "pink"]}, "colors[1]")],
    ),
    # -- TypedDict, dataclass, NamedTuple, pydantic ---------------------------------
    Case(
        "typeddict_param",
        "movie: Movie",
        {"movie": ref("Movie")},
        ["movie"],
        defs={"Movie": MOVIE},
        strict=sobj({"movie": ref("Movie")}, {"Movie": MOVIE_STRICT}),
        gemini=gobj({"movie": MOVIE_GEMINI}, ["movie"]),
        samples=[
            ({"movie": {"title": "Up"}}, {"movie": "{'title': 'Up'}"}),
            ({"movie": {"title": "Up", "year": 2009}}, {"movie": "{'title': 'Up', 'year': 2009}"}),
        ],
        strict_samples=[({"movie": {"title": "Up", "year": None}}, {"movie": "{'title': 'Up'}"})],
        bad=[
            bad({"movie": {"title": "Up", "rating": 5}}, "movie.rating"),
            bad({"movie": {}}, "movie.title"),
        ],
    ),
    Case(
        "typeddict_total_false",
        "opts: Options",
        {"opts": ref("Options")},
        ["opts"],
        defs={"Options": OPTIONS},
        strict=sobj({"opts": ref("Options")}, {"Options": sobj({"verbose": opt(B), "level": I})}),
        gemini=gobj({"opts": gobj({"verbose": B, "level": I}, ["level"])}, ["opts"]),
        samples=[({"opts": {"level": 1}}, {"opts": "{'level': 1}"})],
        strict_samples=[({"opts": {"verbose": None, "level": 1}}, {"opts": "{'level': 1}"})],
        bad=[bad({"opts": {"verbose": True}}, "opts.level")],
    ),
    Case(
        "te_typeddict",
        "person: TEPerson",
        {"person": ref("TEPerson")},
        ["person"],
        defs={"TEPerson": TE_PERSON},
        strict=sobj({"person": ref("TEPerson")}, {"TEPerson": sobj({"name": S, "nick": opt(S)})}),
        gemini=gobj({"person": gobj({"name": S, "nick": S}, ["name"])}, ["person"]),
        samples=[
            ({"person": {"name": "Ann", "nick": "A"}}, {"person": "{'name': 'Ann', 'nick': 'A'}"})
        ],
        bad=[bad({"person": {"nick": "A"}}, "person.name")],
    ),
    Case(
        "optional_typeddict_list",
        "movies: list[Movie] | None = None",
        {"movies": dflt(opt(arr(ref("Movie"))), None)},
        [],
        defs={"Movie": MOVIE},
        strict=sobj({"movies": opt(arr(ref("Movie")))}, {"Movie": MOVIE_STRICT}),
        gemini=gobj({"movies": {**arr(MOVIE_GEMINI), "nullable": True}}, []),
        samples=[
            ({}, {"movies": "None"}),
            (
                {"movies": [{"title": "Up", "year": 2009}]},
                {"movies": "[{'title': 'Up', 'year': 2009}]"},
            ),
        ],
        null_bound={"movies": "None"},
    ),
    Case(
        "dataclass_param",
        "p: Point",
        {"p": ref("Point")},
        ["p"],
        defs={"Point": POINT},
        strict=sobj({"p": ref("Point")}, {"Point": POINT_STRICT}),
        gemini=gobj({"p": POINT_GEMINI}, ["p"]),
        samples=[
            ({"p": {"x": 1}}, {"p": "Point(x=1, y=0)"}),
            ({"p": {"x": 1, "y": 5}}, {"p": "Point(x=1, y=5)"}),
        ],
        strict_samples=[({"p": {"x": 1, "y": None}}, {"p": "Point(x=1, y=0)"})],
        bad=[bad({"p": {"x": 1, "z": 0}}, "p.z"), bad({"p": {"x": "1"}}, "p.x")],
    ),
    Case(
        "dataclass_factory",
        "bag: Bag",
        {"bag": ref("Bag")},
        ["bag"],
        defs={"Bag": BAG, "Color": COLOR},
        strict=sobj({"bag": ref("Bag")}, {"Bag": BAG_STRICT, "Color": COLOR}),
        gemini=gobj({"bag": BAG_GEMINI}, ["bag"]),
        samples=[
            (
                {"bag": {"name": "b", "when": "2024-02-03", "color": "green"}},
                {
                    "bag": "Bag(name='b', tags=[], color=<Color.GREEN: 'green'>, "
                    "when=datetime.date(2024, 2, 3))"
                },
            ),
            (
                {"bag": {"name": "b", "tags": ["x"]}},
                {"bag": "Bag(name='b', tags=['x'], color=<Color.RED: 'red'>, when=None)"},
            ),
        ],
        strict_samples=[
            (
                {"bag": {"name": "b", "tags": None, "color": None, "when": None}},
                {"bag": "Bag(name='b', tags=[], color=<Color.RED: 'red'>, when=None)"},
            )
        ],
        bad=[bad({"bag": {"name": "b", "when": "soon"}}, "bag.when")],
    ),
    Case(
        "namedtuple_param",
        "pair: Pair",
        {"pair": ref("Pair")},
        ["pair"],
        defs={"Pair": PAIR},
        strict=sobj({"pair": ref("Pair")}, {"Pair": PAIR_STRICT}),
        gemini=gobj({"pair": PAIR_GEMINI}, ["pair"]),
        samples=[({"pair": {"left": 1}}, {"pair": "Pair(left=1, right='r')"})],
        strict_samples=[
            ({"pair": {"left": 1, "right": None}}, {"pair": "Pair(left=1, right='r')"})
        ],
        bad=[bad({"pair": [1, "r"]}, "pair")],
    ),
    Case(
        "pydantic_param",
        "user: UserModel",
        {"user": ref("UserModel")},
        ["user"],
        defs={"UserModel": USER, "Address": ADDRESS},
        strict=sobj(
            {"user": ref("UserModel")}, {"UserModel": USER_STRICT, "Address": ADDRESS_STRICT}
        ),
        gemini=gobj({"user": USER_GEMINI}, ["user"]),
        samples=[
            (
                {"user": {"name": "ann", "home": {"city": "Oslo"}}},
                {"user": "UserModel(name='ann', age=0, home={'city': 'Oslo'}, title='')"},
            )
        ],
        strict_samples=[
            (
                {"user": {"name": "ann", "age": None, "home": None, "title": None}},
                {"user": "UserModel(name='ann', age=0, home=None, title='')"},
            )
        ],
        bad=[bad({"user": {"name": 5}}, "user")],
    ),
    # -- strings with a format ------------------------------------------------------
    Case(
        "datetime_param",
        "when: datetime.datetime",
        {"when": {"type": "string", "format": "date-time"}},
        ["when"],
        gemini=gobj({"when": {"type": "string", "format": "date-time"}}, ["when"]),
        samples=[
            (
                {"when": "2024-01-02T03:04:05Z"},
                {"when": "datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)"},
            )
        ],
        bad=[bad({"when": "yesterday"}, "when")],
    ),
    Case(
        "date_param",
        "day: datetime.date",
        {"day": DATE},
        ["day"],
        gemini=gobj({"day": desc(S, "Format: date.")}, ["day"]),
        samples=[({"day": "2024-02-29"}, {"day": "datetime.date(2024, 2, 29)"})],
        bad=[bad({"day": "2024-13-01"}, "day")],
    ),
    Case(
        "time_param",
        "at: datetime.time",
        {"at": {"type": "string", "format": "time"}},
        ["at"],
        gemini=gobj({"at": desc(S, "Format: time.")}, ["at"]),
        samples=[
            ({"at": "13:45:00Z"}, {"at": "datetime.time(13, 45, tzinfo=datetime.timezone.utc)"})
        ],
        bad=[bad({"at": "noon"}, "at")],
    ),
    Case(
        "uuid_param",
        "id: uuid.UUID",
        {"id": {"type": "string", "format": "uuid"}},
        ["id"],
        gemini=gobj({"id": desc(S, "Format: uuid.")}, ["id"]),
        samples=[
            (
                {"id": "12345678-1234-5678-1234-567812345678"},
                {"id": "UUID('12345678-1234-5678-1234-567812345678')"},
            )
        ],
        bad=[bad({"id": "not-a-uuid"}, "id")],
    ),
    Case(
        "path_param",
        "path: pathlib.Path",
        {"path": {"type": "string", "format": "path"}},
        ["path"],
        strict=sobj({"path": desc(S, "Format: a file system path.")}),
        gemini=gobj({"path": desc(S, "Format: a file system path.")}, ["path"]),
        samples=[({"path": "/tmp/x.txt"}, {"path": "PosixPath('/tmp/x.txt')"})],
        bad=[bad({"path": 5}, "path")],
    ),
    Case(
        "decimal_param",
        "amount: decimal.Decimal",
        {"amount": {"type": "string", "format": "decimal"}},
        ["amount"],
        strict=sobj({"amount": desc(S, "Format: a decimal number written as a string.")}),
        gemini=gobj(
            {"amount": desc(S, "Format: a decimal number written as a string.")}, ["amount"]
        ),
        samples=[({"amount": "12.50"}, {"amount": "Decimal('12.50')"})],
        bad=[bad({"amount": "abc"}, "amount", False)],
    ),
    # -- Any and missing annotations ------------------------------------------------
    Case(
        "any_param",
        "x: Any",
        {"x": {}},
        ["x"],
        strict=Refuse("x"),
        gemini=Refuse("x"),
        samples=[({"x": {"a": [1]}}, {"x": "{'a': [1]}"}), ({"x": 5}, {"x": "5"})],
        warns=None,  # the issue is ambiguous on whether an explicit Any warns
    ),
    Case(
        # never typed as a string (MCP SDK's mistake): {} plus a warning
        "no_annotation",
        "x, y: int",
        {"x": {}, "y": I},
        ["x", "y"],
        strict=Refuse("x"),
        gemini=Refuse("x"),
        samples=[
            ({"x": 5, "y": 1}, {"x": "5", "y": "1"}),
            ({"x": [1], "y": 1}, {"x": "[1]", "y": "1"}),
        ],
        warns=["x"],
    ),
    # -- Annotated --------------------------------------------------------------------
    Case(
        "annotated_desc",
        'city: Annotated[str, "The city name"], days: int = 1',
        {"city": desc(S, "The city name"), "days": dflt(desc(I, "Number of days."), 1)},
        ["city"],
        doc="Annotated descriptions.\n\nArgs:\n    city: Doc city.\n    days: Number of days.",
        description="Annotated descriptions.",
        strict=sobj(
            {"city": desc(S, "The city name"), "days": nul(I, "Number of days. Default: 1.")}
        ),
        gemini=gobj(
            {"city": desc(S, "The city name"), "days": desc(I, "Number of days. Default: 1.")},
            ["city"],
        ),
        samples=[({"city": "Oslo"}, {"city": "'Oslo'", "days": "1"})],
        null_bound={"city": "'Oslo'", "days": "1"},
    ),
    Case(
        "annotated_desc_ref",
        'color: Annotated[Color, "Paint color"] = Color.RED',
        {"color": {"anyOf": [ref("Color")], "description": "Paint color", "default": "red"}},
        [],
        defs={"Color": COLOR},
        doc="Annotated on a named type.\n\nArgs:\n    color: Docstring color.",
        description="Annotated on a named type.",
        strict=sobj({"color": nul(ref("Color"), 'Paint color. Default: "red".')}, {"Color": COLOR}),
        gemini=gobj({"color": desc(COLOR, 'Paint color. Default: "red".')}, []),
        samples=[
            ({}, {"color": "<Color.RED: 'red'>"}),
            ({"color": "green"}, {"color": "<Color.GREEN: 'green'>"}),
        ],
        null_bound={"color": "<Color.RED: 'red'>"},
    ),
    Case(
        "constraints_numeric",
        "n: Annotated[int, Ge(1), Le(10)], ratio: Annotated[float, Gt(0), Lt(1)] = 0.5",
        {
            "n": {"type": "integer", "minimum": 1, "maximum": 10},
            "ratio": dflt({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, 0.5),
        },
        ["n"],
        strict=sobj(
            {
                "n": {"type": "integer", "minimum": 1, "maximum": 10},
                "ratio": nul(
                    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    "Default: 0.5.",
                ),
            }
        ),
        gemini=Refuse("ratio"),
        samples=[
            ({"n": 10}, {"n": "10", "ratio": "0.5"}),
            ({"n": 1, "ratio": 0.25}, {"n": "1", "ratio": "0.25"}),
        ],
        null_bound={"n": "10", "ratio": "0.5"},
        bad=[bad({"n": 0}, "n"), bad({"n": 11}, "n"), bad({"n": 5, "ratio": 1}, "ratio")],
    ),
    Case(
        "constraints_length",
        'code: Annotated[str, MinLen(2), MaxLen(4), Pattern("^[A-Z]+$")], '
        "items: Annotated[list[int], Len(1, 3)]",
        {
            "code": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[A-Z]+$"},
            "items": arr(I, minItems=1, maxItems=3),
        },
        ["code", "items"],
        gemini=gobj(
            {
                "code": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[A-Z]+$"},
                "items": arr(I, minItems=1, maxItems=3),
            },
            ["code", "items"],
        ),
        samples=[({"code": "AB", "items": [1]}, {"code": "'AB'", "items": "[1]"})],
        bad=[
            bad({"code": "A", "items": [1]}, "code"),
            bad({"code": "ABCDE", "items": [1]}, "code"),
            bad({"code": "ab", "items": [1]}, "code"),
            bad({"code": "AB", "items": []}, "items"),
            bad({"code": "AB", "items": [1, 2, 3, 4]}, "items"),
        ],
    ),
    Case(
        # pydantic Field(description=..., ge=..., le=...) keeps its constraints in
        # .metadata; the Annotated description beats the docstring's
        "field_like",
        'age: Annotated[int, FieldLike("Age in years", Ge(0), Le(150))]',
        {"age": {"type": "integer", "description": "Age in years", "minimum": 0, "maximum": 150}},
        ["age"],
        doc="Field-like metadata.\n\nArgs:\n    age: Docstring age.",
        description="Field-like metadata.",
        gemini=gobj(
            {
                "age": {
                    "type": "integer",
                    "description": "Age in years",
                    "minimum": 0,
                    "maximum": 150,
                }
            },
            ["age"],
        ),
        samples=[({"age": 30}, {"age": "30"})],
        bad=[bad({"age": -1}, "age"), bad({"age": 151}, "age")],
    ),
    # -- recursive types ---------------------------------------------------------------
    Case(
        "recursive_dataclass",
        "tree: Node",
        {"tree": ref("Node")},
        ["tree"],
        defs={"Node": NODE},
        strict=sobj({"tree": ref("Node")}, {"Node": NODE_STRICT}),
        gemini=Refuse("tree.children[]"),
        samples=[
            (
                {"tree": {"value": 1, "children": [{"value": 2}]}},
                {"tree": "Node(value=1, children=[Node(value=2, children=[])])"},
            )
        ],
        strict_samples=[
            (
                {"tree": {"value": 1, "children": [{"value": 2, "children": None}]}},
                {"tree": "Node(value=1, children=[Node(value=2, children=[])])"},
            )
        ],
        bad=[bad({"tree": {"value": 1, "children": [{"value": "x"}]}}, "tree.children[0].value")],
    ),
    Case(
        "recursive_typeddict",
        "c: Comment",
        {"c": ref("Comment")},
        ["c"],
        defs={"Comment": COMMENT},
        gemini=Refuse("c.replies[]"),
        samples=[
            (
                {"c": {"text": "a", "replies": [{"text": "b", "replies": []}]}},
                {"c": "{'text': 'a', 'replies': [{'text': 'b', 'replies': []}]}"},
            )
        ],
        bad=[bad({"c": {"text": "a", "replies": [{"text": "b"}]}}, "c.replies[0].replies")],
    ),
    # -- defaults ------------------------------------------------------------------------
    Case(
        "defaults_json",
        'a: int = 3, b: str = "hi", c: float = 1.5, d: bool = False, '
        "e: list[int] = [1, 2], t: tuple[int, ...] = (1, 2)",
        {
            "a": dflt(I, 3),
            "b": dflt(S, "hi"),
            "c": dflt(N, 1.5),
            "d": dflt(B, False),
            "e": dflt(arr(I), [1, 2]),
            "t": dflt(arr(I), [1, 2]),
        },
        [],
        strict=sobj(
            {
                "a": nul(I, "Default: 3."),
                "b": nul(S, 'Default: "hi".'),
                "c": nul(N, "Default: 1.5."),
                "d": nul(B, "Default: false."),
                "e": nul(arr(I), "Default: [1, 2]."),
                "t": nul(arr(I), "Default: [1, 2]."),
            }
        ),
        gemini=gobj(
            {
                "a": desc(I, "Default: 3."),
                "b": desc(S, 'Default: "hi".'),
                "c": desc(N, "Default: 1.5."),
                "d": desc(B, "Default: false."),
                "e": desc(arr(I), "Default: [1, 2]."),
                "t": desc(arr(I), "Default: [1, 2]."),
            },
            [],
        ),
        samples=[
            ({}, {"a": "3", "b": "'hi'", "c": "1.5", "d": "False", "e": "[1, 2]", "t": "(1, 2)"}),
            (
                {"a": 4, "d": True, "t": [5]},
                {"a": "4", "b": "'hi'", "c": "1.5", "d": "True", "e": "[1, 2]", "t": "(5,)"},
            ),
        ],
        null_bound={"a": "3", "b": "'hi'", "c": "1.5", "d": "False", "e": "[1, 2]", "t": "(1, 2)"},
    ),
    Case(
        # no JSON form: the default is left out of the schema, still applied
        "defaults_non_json",
        "when: datetime.date = datetime.date(2020, 1, 1), "
        'amount: decimal.Decimal = decimal.Decimal("1.5"), '
        'where: pathlib.Path = pathlib.Path("/tmp")',
        {
            "when": DATE,
            "amount": {"type": "string", "format": "decimal"},
            "where": {"type": "string", "format": "path"},
        },
        [],
        strict=sobj(
            {
                "when": nul(DATE),
                "amount": nul(S, "Format: a decimal number written as a string."),
                "where": nul(S, "Format: a file system path."),
            }
        ),
        gemini=gobj(
            {
                "when": desc(S, "Format: date."),
                "amount": desc(S, "Format: a decimal number written as a string."),
                "where": desc(S, "Format: a file system path."),
            },
            [],
        ),
        samples=[
            (
                {},
                {
                    "when": "datetime.date(2020, 1, 1)",
                    "amount": "Decimal('1.5')",
                    "where": "PosixPath('/tmp')",
                },
            ),
            (
                {"when": "2021-05-06", "amount": "2", "where": "a/b"},
                {
                    "when": "datetime.date(2021, 5, 6)",
                    "amount": "Decimal('2')",
                    "where": "PosixPath('a/b')",
                },
            ),
        ],
        null_bound={
            "when": "datetime.date(2020, 1, 1)",
            "amount": "Decimal('1.5')",
            "where": "PosixPath('/tmp')",
        },
    ),
    Case(
        # the MemGPT/Letta failures: PEP 604, dict[str, T] and Enum, defaults written
        "memgpt_failures",
        'a: int | None = None, counts: dict[str, int] = {"a": 1}, color: Color = Color.RED',
        {
            "a": dflt(opt(I), None),
            "counts": dflt({"type": "object", "additionalProperties": I}, {"a": 1}),
            "color": enum_default("Color", "red"),
        },
        [],
        defs={"Color": COLOR},
        strict=Refuse("counts"),
        gemini=Refuse("counts"),
        samples=[
            ({}, {"a": "None", "counts": "{'a': 1}", "color": "<Color.RED: 'red'>"}),
            (
                {"a": 2, "counts": {"b": 3}, "color": "green"},
                {"a": "2", "counts": "{'b': 3}", "color": "<Color.GREEN: 'green'>"},
            ),
        ],
    ),
    # -- parameter kinds ---------------------------------------------------------------
    Case(
        "keyword_only",
        "a: int, *, b: str, c: int = 1",
        {"a": I, "b": S, "c": dflt(I, 1)},
        ["a", "b"],
        strict=sobj({"a": I, "b": S, "c": nul(I, "Default: 1.")}),
        gemini=gobj({"a": I, "b": S, "c": desc(I, "Default: 1.")}, ["a", "b"]),
        samples=[({"a": 1, "b": "x"}, {"a": "1", "b": "'x'", "c": "1"})],
        null_bound={"a": "1", "b": "'x'", "c": "1"},
        bad=[bad({"a": 1}, "b")],
    ),
    Case(
        # the issue's example: level is positional-only, so "level" in fields is a
        # keyword for **fields
        "log_event",
        "level: str, /, *tags: str, **fields: int",
        {
            "level": S,
            "tags": arr(S),
            "fields": {"type": "object", "additionalProperties": I},
        },
        ["level"],
        strict=Refuse("fields"),
        gemini=Refuse("fields"),
        body="return [level, list(tags), fields]",
        samples=[
            (
                {"level": "info", "tags": ["a"], "fields": {"level": 1}},
                ["info", ["a"], {"level": 1}],
            ),
            ({"level": "warn"}, ["warn", [], {}]),
        ],
        bad=[
            bad({"level": "info", "tags": [1]}, "tags[0]"),
            bad({"level": "info", "fields": {"n": "x"}}, "fields.n"),
        ],
    ),
    Case(
        "var_positional",
        "*values: int",
        {"values": arr(I)},
        [],
        strict=sobj({"values": nul(arr(I))}),
        gemini=gobj({"values": arr(I)}, []),
        body="return [type(values).__name__, list(values)]",
        samples=[({"values": [1, 2]}, ["tuple", [1, 2]]), ({}, ["tuple", []])],
        null_bound=["tuple", []],
        bad=[bad({"values": 1}, "values")],
    ),
    Case(
        "var_keyword",
        "name: str, **opts: str",
        {"name": S, "opts": {"type": "object", "additionalProperties": S}},
        ["name"],
        strict=Refuse("opts"),
        gemini=Refuse("opts"),
        samples=[
            ({"name": "n", "opts": {"a": "b"}}, {"name": "'n'", "opts": "{'a': 'b'}"}),
            ({"name": "n"}, {"name": "'n'", "opts": "{}"}),
        ],
        bad=[bad({"name": "n", "opts": {"name": "x"}}, "opts.name", False)],
    ),
    Case(
        "self_param",
        "self, x: int",
        {"x": I},
        ["x"],
        gemini=gobj({"x": I}, ["x"]),
        samples=[({"x": 1}, {"self": "None", "x": "1"})],
        bad=[bad({"x": 1, "self": 2}, "self")],
        # A context parameter: expected usage, no warning (it gets the context).
    ),
    Case(
        "cls_param",
        "cls=None, x: int = 0",
        {"x": dflt(I, 0)},
        [],
        strict=sobj({"x": nul(I, "Default: 0.")}),
        gemini=gobj({"x": desc(I, "Default: 0.")}, []),
        samples=[({}, {"cls": "None", "x": "0"}), ({"x": 2}, {"cls": "None", "x": "2"})],
        null_bound={"cls": "None", "x": "0"},
        bad=[bad({"cls": 1}, "cls")],
    ),
    Case(
        "no_params",
        "",
        {},
        [],
        gemini=gobj({}, []),
        body='return "ok"',
        samples=[({}, "ok")],
        bad=[bad({"x": 1}, "x")],
    ),
    # -- descriptions and return schemas --------------------------------------------------
    Case(
        "documented",
        "city: str, days: int = 3",
        {"city": desc(S, "City to look up."), "days": dflt(desc(I, "How many days."), 3)},
        ["city"],
        doc=(
            "Weather forecast.\n\nLonger text about\nthe forecast.\n\n"
            "Args:\n    city: City to look up.\n    days: How many\n        days.\n\n"
            "Returns:\n    A forecast.\n\nRaises:\n    ValueError: Never."
        ),
        description="Weather forecast.\n\nLonger text about\nthe forecast.",
        ret="str",
        body='return f"{city}:{days}"',
        returns=desc(S, "A forecast."),
        mcp_out=wrapped(desc(S, "A forecast.")),
        strict=sobj(
            {"city": desc(S, "City to look up."), "days": nul(I, "How many days. Default: 3.")}
        ),
        gemini=gobj(
            {"city": desc(S, "City to look up."), "days": desc(I, "How many days. Default: 3.")},
            ["city"],
        ),
        samples=[({"city": "Oslo"}, "Oslo:3"), ({"city": "Oslo", "days": 5}, "Oslo:5")],
        null_bound="Oslo:3",
    ),
    Case(
        "ret_int",
        "a: int, b: int",
        {"a": I, "b": I},
        ["a", "b"],
        gemini=gobj({"a": I, "b": I}, ["a", "b"]),
        ret="int",
        body="return a + b",
        returns=I,
        mcp_out=wrapped(I),
        samples=[({"a": 1, "b": 2}, 3)],
    ),
    Case(
        "ret_list",
        "s: str",
        {"s": S},
        ["s"],
        gemini=gobj({"s": S}, ["s"]),
        ret="list[str]",
        body="return [s, s]",
        returns=arr(S),
        mcp_out=wrapped(arr(S)),
        samples=[({"s": "a"}, ["a", "a"])],
    ),
    Case(
        "ret_optional",
        "n: int",
        {"n": I},
        ["n"],
        gemini=gobj({"n": I}, ["n"]),
        ret="Optional[int]",
        body="return n or None",
        returns=opt(I),
        mcp_out=wrapped(opt(I)),
        samples=[({"n": 0}, None), ({"n": 2}, 2)],
    ),
    Case(
        "ret_none",
        "",
        {},
        [],
        gemini=gobj({}, []),
        ret="None",
        body="return None",
        returns=NULL,
        mcp_out=wrapped(NULL),
        samples=[({}, None)],
    ),
    Case(
        "ret_tuple",
        "n: int",
        {"n": I},
        ["n"],
        gemini=gobj({"n": I}, ["n"]),
        ret="tuple[int, str]",
        body="return (n, str(n))",
        returns={
            "type": "array",
            "prefixItems": [I, S],
            "items": False,
            "minItems": 2,
            "maxItems": 2,
        },
        mcp_out=wrapped(
            {"type": "array", "prefixItems": [I, S], "items": False, "minItems": 2, "maxItems": 2}
        ),
        samples=[({"n": 1}, [1, "1"])],
    ),
    Case(
        "ret_date",
        "year: int",
        {"year": I},
        ["year"],
        gemini=gobj({"year": I}, ["year"]),
        ret="datetime.date",
        body="return datetime.date(year, 1, 2)",
        returns=DATE,
        mcp_out=wrapped(DATE),
        samples=[({"year": 2024}, "2024-01-02")],
    ),
    Case(
        "ret_enum",
        "name: str",
        {"name": S},
        ["name"],
        gemini=gobj({"name": S}, ["name"]),
        ret="Color",
        body="return Color.__members__.get(name, Color.RED)",
        returns={**ref("Color"), "$defs": {"Color": COLOR}},
        mcp_out=wrapped(ref("Color"), {"Color": COLOR}),
        samples=[({"name": "RED"}, "red")],
    ),
    Case(
        "ret_dataclass",
        "x: int",
        {"x": I},
        ["x"],
        gemini=gobj({"x": I}, ["x"]),
        ret="Point",
        body="return Point(x=x, y=2)",
        returns={**ref("Point"), "$defs": {"Point": POINT}},
        mcp_out=OBJECT_RESULT,
        samples=[({"x": 1}, {"x": 1, "y": 2})],
    ),
    Case(
        "ret_typeddict",
        "title: str",
        {"title": S},
        ["title"],
        gemini=gobj({"title": S}, ["title"]),
        ret="Movie",
        body='return {"title": title, "year": 2000}',
        returns={**ref("Movie"), "$defs": {"Movie": MOVIE}},
        mcp_out=OBJECT_RESULT,
        samples=[({"title": "Up"}, {"title": "Up", "year": 2000})],
    ),
    Case(
        "ret_namedtuple",
        "left: int",
        {"left": I},
        ["left"],
        gemini=gobj({"left": I}, ["left"]),
        ret="Pair",
        body="return Pair(left)",
        returns={**ref("Pair"), "$defs": {"Pair": PAIR}},
        mcp_out=OBJECT_RESULT,
        samples=[({"left": 1}, {"left": 1, "right": "r"})],
    ),
    Case(
        "ret_pydantic",
        "name: str",
        {"name": S},
        ["name"],
        gemini=gobj({"name": S}, ["name"]),
        ret="UserModel",
        body='return UserModel(name=name, home={"city": "Oslo"})',
        returns={**ref("UserModel"), "$defs": {"UserModel": USER, "Address": ADDRESS}},
        mcp_out=OBJECT_RESULT,
        samples=[
            ({"name": "ann"}, {"name": "ann", "age": 0, "home": {"city": "Oslo"}, "title": ""})
        ],
    ),
    Case(
        "ret_map",
        "n: int",
        {"n": I},
        ["n"],
        gemini=gobj({"n": I}, ["n"]),
        ret="dict[str, int]",
        body='return {"n": n}',
        returns={"type": "object", "additionalProperties": I},
        mcp_out=OBJECT_RESULT,
        samples=[({"n": 1}, {"n": 1})],
    ),
    # -- from __future__ import annotations, forward references ---------------------------
    Case(
        "fwd_ref",
        "p: LaterPoint, items: list[LaterItem] | None = None",
        {"p": ref("LaterPoint"), "items": dflt(opt(arr(ref("LaterItem"))), None)},
        ["p"],
        defs={"LaterPoint": LATER_POINT, "LaterItem": LATER_ITEM},
        module="table_future",
        strict=sobj(
            {"p": ref("LaterPoint"), "items": opt(arr(ref("LaterItem")))},
            {"LaterPoint": LATER_POINT, "LaterItem": LATER_ITEM_STRICT},
        ),
        gemini=gobj(
            {
                "p": gobj({"x": I, "y": I}, ["x", "y"]),
                "items": {**arr(gobj({"sku": S, "qty": I}, ["sku"])), "nullable": True},
            },
            ["p"],
        ),
        samples=[
            (
                {"p": {"x": 1, "y": 2}, "items": [{"sku": "a"}]},
                {"p": "LaterPoint(x=1, y=2)", "items": "[{'sku': 'a'}]"},
            ),
        ],
        null_bound={"p": "LaterPoint(x=1, y=2)", "items": "None"},
        strict_samples=[
            (
                {"p": {"x": 1, "y": 2}, "items": [{"sku": "a", "qty": None}]},
                {"p": "LaterPoint(x=1, y=2)", "items": "[{'sku': 'a'}]"},
            )
        ],
        bad=[bad({"p": {"x": 1}}, "p.y")],
    ),
    Case(
        "fwd_return",
        "x: int, y: int",
        {"x": I, "y": I},
        ["x", "y"],
        module="table_future",
        gemini=gobj({"x": I, "y": I}, ["x", "y"]),
        ret="LaterPoint",
        body="return LaterPoint(x, y)",
        returns={**ref("LaterPoint"), "$defs": {"LaterPoint": LATER_POINT}},
        mcp_out=OBJECT_RESULT,
        samples=[({"x": 1, "y": 2}, {"x": 1, "y": 2})],
    ),
    Case(
        "fwd_recursive",
        "root: Folder",
        {"root": ref("Folder")},
        ["root"],
        defs={"Folder": FOLDER, "File": FILE},
        module="table_future",
        strict=sobj({"root": ref("Folder")}, {"Folder": FOLDER_STRICT, "File": FILE_STRICT}),
        gemini=Refuse("root.children[]"),
        samples=[
            (
                {"root": {"name": "r", "children": [{"name": "c", "files": [{"name": "f"}]}]}},
                {
                    "root": "Folder(name='r', children=[Folder(name='c', children=[], "
                    "files=[File(name='f', size=0)])], files=[])"
                },
            )
        ],
        strict_samples=[
            (
                {"root": {"name": "r", "children": None, "files": [{"name": "f", "size": None}]}},
                {"root": "Folder(name='r', children=[], files=[File(name='f', size=0)])"},
            )
        ],
    ),
    Case(
        "fwd_literal_enum",
        'how: Literal["a", "b"], level: Level = Level.LOW, note: Optional[str] = None',
        {
            "how": {"type": "string", "enum": ["a", "b"]},
            "level": enum_default("Level", "low"),
            "note": dflt(opt(S), None),
        },
        ["how"],
        defs={"Level": LEVEL},
        module="table_future",
        strict=sobj(
            {
                "how": {"type": "string", "enum": ["a", "b"]},
                "level": nul(ref("Level"), 'Default: "low".'),
                "note": opt(S),
            },
            {"Level": LEVEL},
        ),
        gemini=gobj(
            {
                "how": {"type": "string", "enum": ["a", "b"]},
                "level": desc(LEVEL, 'Default: "low".'),
                "note": {"type": "string", "nullable": True},
            },
            ["how"],
        ),
        samples=[
            ({"how": "b"}, {"how": "'b'", "level": "<Level.LOW: 'low'>", "note": "None"}),
            (
                {"how": "a", "level": "high", "note": "n"},
                {"how": "'a'", "level": "<Level.HIGH: 'high'>", "note": "'n'"},
            ),
        ],
        null_bound={"how": "'b'", "level": "<Level.LOW: 'low'>", "note": "None"},
    ),
    Case(
        "fwd_annotated",
        'n: Annotated[int, Ge(0), "how many"] = 1, tag: Annotated[str, MaxLen(3)] = "ab"',
        {
            "n": dflt({"type": "integer", "minimum": 0, "description": "how many"}, 1),
            "tag": dflt({"type": "string", "maxLength": 3}, "ab"),
        },
        [],
        module="table_future",
        strict=sobj(
            {
                "n": nul({"type": "integer", "minimum": 0}, "how many. Default: 1."),
                "tag": nul({"type": "string", "maxLength": 3}, 'Default: "ab".'),
            }
        ),
        gemini=gobj(
            {
                "n": {"type": "integer", "minimum": 0, "description": "how many. Default: 1."},
                "tag": {"type": "string", "maxLength": 3, "description": 'Default: "ab".'},
            },
            [],
        ),
        samples=[
            ({}, {"n": "1", "tag": "'ab'"}),
            ({"n": 0, "tag": "xyz"}, {"n": "0", "tag": "'xyz'"}),
        ],
        null_bound={"n": "1", "tag": "'ab'"},
        bad=[bad({"n": -1}, "n"), bad({"tag": "abcd"}, "tag")],
    ),
    Case(
        "fwd_te_typeddict",
        "p: TEPoint3",
        {"p": ref("TEPoint3")},
        ["p"],
        defs={"TEPoint3": TE_POINT3},
        module="table_future",
        strict=sobj({"p": ref("TEPoint3")}, {"TEPoint3": sobj({"x": I, "z": opt(N)})}),
        gemini=gobj({"p": gobj({"x": I, "z": N}, ["x"])}, ["p"]),
        samples=[
            ({"p": {"x": 1}}, {"p": "{'x': 1}"}),
            ({"p": {"x": 1, "z": 2}}, {"p": "{'x': 1, 'z': 2.0}"}),
        ],
        strict_samples=[({"p": {"x": 1, "z": None}}, {"p": "{'x': 1}"})],
        bad=[bad({"p": {"z": 1.0}}, "p.x")],
    ),
]

BY_NAME = {c.name: c for c in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"

# -- the generated modules ------------------------------------------------------------

HELPERS = '''

def _show(v):
    if isinstance(v, (set, frozenset)):
        return type(v).__name__ + repr(sorted(v, key=repr))
    return repr(v)


def _reveal(ns):
    """What each parameter was bound to, as repr (sets sorted)."""
    return {k: _show(v) for k, v in ns.items()}


# constraint objects read by attribute, like annotated-types and pydantic Field
# (classes, not functions: functions would be exported as tools)
class Ge:
    def __init__(self, ge):
        self.ge = ge


class Le:
    def __init__(self, le):
        self.le = le


class Gt:
    def __init__(self, gt):
        self.gt = gt


class Lt:
    def __init__(self, lt):
        self.lt = lt


class MinLen:
    def __init__(self, min_length):
        self.min_length = min_length


class MaxLen:
    def __init__(self, max_length):
        self.max_length = max_length


class Len:
    def __init__(self, min_length, max_length):
        self.min_length = min_length
        self.max_length = max_length


class Pattern:
    def __init__(self, pattern):
        self.pattern = pattern


class FieldLike:
    """Like pydantic's FieldInfo: a description and constraint objects in .metadata."""

    def __init__(self, description=None, *metadata):
        self.description = description
        self.metadata = list(metadata)
'''

PLAIN_HEAD = (
    """
import dataclasses
import datetime
import decimal
import enum
import pathlib
import uuid
from dataclasses import dataclass, field
from typing import (
    Annotated, Any, FrozenSet, List, Literal, NamedTuple, NotRequired, Optional, Required,
    TypedDict, Union,
)

import typing_extensions as te
"""
    + HELPERS
    + '''

class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Movie(TypedDict):
    title: str
    year: NotRequired[int]


class Options(TypedDict, total=False):
    verbose: bool
    level: Required[int]


class TEPerson(te.TypedDict):
    name: str
    nick: te.NotRequired[str]


@dataclass
class Point:
    """A point on the plane.

    The second paragraph is not in the schema.
    """

    x: int
    y: int = 0


@dataclass
class Bag:
    name: str
    tags: list[str] = field(default_factory=list)
    color: Color = Color.RED
    when: Optional[datetime.date] = None


class Pair(NamedTuple):
    left: int
    right: str = "r"


@dataclass
class Node:
    value: int
    children: list["Node"] = field(default_factory=list)


class Comment(TypedDict):
    text: str
    replies: list["Comment"]


class Address:
    pass


class UserModel:
    """Duck-typed like a pydantic v2 model: pydantic is not installed."""

    def __init__(self, name, age=0, home=None, title=""):
        self.name, self.age, self.home, self.title = name, age, home, title

    @classmethod
    def model_json_schema(cls):
        return {
            "$defs": {
                "Address": {
                    "title": "Address",
                    "type": "object",
                    "properties": {"city": {"title": "City", "type": "string"}},
                    "required": ["city"],
                }
            },
            "title": "UserModel",
            "type": "object",
            "properties": {
                "name": {"title": "Name", "type": "string"},
                "age": {"title": "Age", "type": "integer", "default": 0},
                "home": {
                    "anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}],
                    "default": None,
                },
                "title": {"title": "Title", "type": "string", "default": ""},
            },
            "required": ["name"],
        }

    @classmethod
    def model_validate(cls, data):
        # as strict as pydantic about these fields: None is not an int or a str
        def check(ok, field):
            if not ok:
                raise ValueError(f"1 validation error for UserModel\\n{field}\\n  Input is invalid")

        check(isinstance(data, dict), "__root__")
        check(isinstance(data.get("name"), str), "name")
        values = {"name": data["name"]}
        if "age" in data:
            check(type(data["age"]) is int, "age")
            values["age"] = data["age"]
        if "home" in data:
            home = data["home"]
            check(home is None or (isinstance(home, dict) and isinstance(home.get("city"), str)),
                  "home")
            values["home"] = home
        if "title" in data:
            check(isinstance(data["title"], str), "title")
            values["title"] = data["title"]
        return cls(**values)

    def model_dump(self, mode="python"):
        return {"name": self.name, "age": self.age, "home": self.home, "title": self.title}

    def __repr__(self):
        return (f"UserModel(name={self.name!r}, age={self.age!r}, home={self.home!r}, "
                f"title={self.title!r})")

'''
)

FUTURE_HEAD = (
    """from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Annotated, Literal, NotRequired, Optional, TypedDict

import typing_extensions as te
"""
    + HELPERS
    + """

class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"

"""
)

# Defined after the functions that refer to them: forward references.
FUTURE_TAIL = """

@dataclass
class LaterPoint:
    x: int
    y: int


class LaterItem(TypedDict):
    sku: str
    qty: NotRequired[int]


@dataclass
class Folder:
    name: str
    children: list[Folder] = field(default_factory=list)
    files: list[File] = field(default_factory=list)


@dataclass
class File:
    name: str
    size: int = 0


class TEPoint3(te.TypedDict, total=False):
    x: te.Required[int]
    z: float
"""


def module_sources() -> dict[str, str]:
    plain = PLAIN_HEAD + "".join(c.source() for c in CASES if c.module == "table_plain")
    future = (
        FUTURE_HEAD + "".join(c.source() for c in CASES if c.module == "table_future") + FUTURE_TAIL
    )
    return {"table_plain": plain, "table_future": future}


# -- the host, once for the whole file ---------------------------------------------


@dataclass
class Table:
    host: FunctionHost
    raw: dict[str, dict]  # name -> canonical info (tools(format="raw"))


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Table]:
    root: Path = tmp_path_factory.mktemp("schema_table")
    empty = root / "empty"
    empty.mkdir()
    host = FunctionHost(builtin_dir=empty, user_dirs=[], limits=Limits(timeout=10.0))
    try:
        for module, source in module_sources().items():
            path = root / f"{module}.py"
            path.write_text(source)
            host.load_function_set(path)
        raw = {t["name"]: t for t in host.tools(format="raw")}
        yield Table(host, raw)
    finally:
        host.close()
    assert wait_for(lambda: not worker_pids(), 3.0), f"workers left behind: {worker_pids()}"


def info_of(table: Table, case: Case) -> dict:
    if case.name not in table.raw:
        skipped = table.host.function_sets[case.module]["skipped"]
        pytest.fail(f"{case.name} was not exported: {skipped.get(case.name)!r}")
    return table.raw[case.name]


def validator(schema: dict) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def check_refusal(case: Case, fmt: str, strict: bool, expected: Refuse, info: dict) -> None:
    with pytest.raises(SchemaFormatError) as caught:
        tool_definition(info, case.name, fmt, strict)
    err = caught.value
    assert err.function == case.name
    if expected.prefix:
        assert err.parameter.startswith(expected.path), err.parameter
    else:
        assert err.parameter == expected.path
    text = str(err)
    assert repr(case.name) in text and err.parameter in text, text
    assert err.reason and err.reason in text


def call(table: Table, case: Case, args: dict) -> Any:
    return table.host.call(case.name, copy.deepcopy(args))


ids = [c.name for c in CASES]
parametrize_cases = pytest.mark.parametrize("case", CASES, ids=ids)


def cases_with(predicate) -> list:
    return [pytest.param(c, id=c.name) for c in CASES if predicate(c)]


# -- loading ------------------------------------------------------------------------------


def test_the_table_is_big_enough():
    assert len(CASES) >= 60
    assert sum(1 for c in CASES if isinstance(c.strict, Refuse)) >= 8
    assert sum(1 for c in CASES if isinstance(c.gemini, Refuse)) >= 10


def test_every_case_is_exported_and_nothing_is_skipped(table):
    sets = table.host.function_sets
    assert sets["table_plain"]["skipped"] == {}
    assert sets["table_future"]["skipped"] == {}
    assert set(table.raw) == set(BY_NAME)


# -- canonical schema -------------------------------------------------------------------


@parametrize_cases
def test_canonical_parameters(table, case):
    info = info_of(table, case)
    assert info["parameters"] == case.parameters
    jsonschema.Draft202012Validator.check_schema(info["parameters"])


@parametrize_cases
def test_raw_format_with_description_and_returns(table, case):
    info = info_of(table, case)
    raw = tool_definition(info, case.name, "raw")
    assert raw == {
        "name": case.name,
        "description": case.expected_description,
        "parameters": case.parameters,
        "returns": case.returns,
    }
    if case.returns is not None:
        jsonschema.Draft202012Validator.check_schema(raw["returns"])


@parametrize_cases
def test_schema_warnings(table, case):
    if case.warns is None:
        return
    warnings = table.host.function_sets[case.module]["warnings"][case.name]
    assert len(warnings) == len(case.warns), warnings
    for param in case.warns:
        assert any(f"'{param}'" in w for w in warnings), warnings


def test_missing_annotation_warning_text(table):
    warnings = table.host.function_sets["table_plain"]["warnings"]["no_annotation"]
    assert warnings == ["parameter 'x' has no type annotation; any JSON value is accepted"]


# -- provider formats ----------------------------------------------------------------------


@parametrize_cases
def test_openai_format(table, case):
    info = info_of(table, case)
    tool = tool_definition(info, case.name, "openai")
    assert tool == {
        "type": "function",
        "function": {
            "name": case.name,
            "description": case.expected_description,
            "parameters": case.parameters,
        },
    }
    jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])


@parametrize_cases
def test_openai_responses_format(table, case):
    info = info_of(table, case)
    tool = tool_definition(info, case.name, "openai-responses")
    assert {k: v for k, v in tool.items() if k != "strict"} == {
        "type": "function",
        "name": case.name,
        "description": case.expected_description,
        "parameters": case.parameters,
    }
    assert tool.get("strict") is not True


def test_openai_responses_non_strict_definitions_say_strict_false(table):
    # The Responses API's function tools are strict unless told otherwise
    # (openai-python FunctionToolParam.strict: "Default `true`"): a non-strict
    # definition without "strict": false is read as a strict one, and its
    # optional parameters and maps are then rejected by the API.
    for tool in table.host.tools(format="openai-responses"):
        assert tool.get("strict") is False, tool["name"]


@parametrize_cases
def test_anthropic_format(table, case):
    info = info_of(table, case)
    tool = tool_definition(info, case.name, "anthropic")
    assert tool == {
        "name": case.name,
        "description": case.expected_description,
        "input_schema": case.parameters,
    }
    jsonschema.Draft202012Validator.check_schema(tool["input_schema"])


@parametrize_cases
def test_mcp_format(table, case):
    info = info_of(table, case)
    tool = tool_definition(info, case.name, "mcp")
    assert tool["name"] == case.name
    assert tool["description"] == case.expected_description
    assert tool["inputSchema"] == case.parameters
    jsonschema.Draft202012Validator.check_schema(tool["inputSchema"])
    expected_keys = {"name", "description", "inputSchema"}
    if case.returns is None:
        assert set(tool) == expected_keys
        return
    assert set(tool) == expected_keys | {"outputSchema"}
    out = tool["outputSchema"]
    jsonschema.Draft202012Validator.check_schema(out)
    assert out.get("type") == "object"  # MCP requires an object output schema
    if case.mcp_out == OBJECT_RESULT:
        assert "result" not in out.get("properties", {}), out
    else:
        assert out == case.mcp_out


def expected_strict(case: Case) -> dict:
    return case.parameters if case.strict == SAME else case.strict


@pytest.mark.parametrize("fmt", ["openai", "openai-responses"])
@parametrize_cases
def test_openai_strict_format(table, case, fmt):
    info = info_of(table, case)
    if isinstance(case.strict, Refuse):
        check_refusal(case, fmt, True, case.strict, info)
        return
    tool = tool_definition(info, case.name, fmt, strict=True)
    body = {
        "name": case.name,
        "description": case.expected_description,
        "parameters": expected_strict(case),
        "strict": True,
    }
    if fmt == "openai":
        assert tool == {"type": "function", "function": body}
    else:
        assert tool == {"type": "function", **body}
    jsonschema.Draft202012Validator.check_schema(body["parameters"])


@parametrize_cases
def test_gemini_format(table, case):
    info = info_of(table, case)
    assert case.gemini is not None, "every case states its Gemini output"
    if isinstance(case.gemini, Refuse):
        check_refusal(case, "gemini", False, case.gemini, info)
        return
    tool = tool_definition(info, case.name, "gemini")
    assert tool == {
        "name": case.name,
        "description": case.expected_description,
        "parameters": case.gemini,
    }


def walk(schema: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    if isinstance(schema, dict):
        yield path, schema
        for key, value in schema.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                for name, sub in value.items():
                    yield from walk(sub, f"{path}/{key}/{name}")
            elif key in ("enum", "default", "const", "required"):
                continue
            else:
                yield from walk(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            yield from walk(sub, f"{path}/{i}")


@pytest.mark.parametrize("case", cases_with(lambda c: not isinstance(c.strict, Refuse)))
def test_openai_strict_invariants(table, case):
    """Every object closed with every property required; no ``default`` anywhere,
    no ``$ref`` with siblings, every schema node typed."""
    params = tool_definition(info_of(table, case), case.name, "openai", True)["function"][
        "parameters"
    ]
    for path, node in walk(params):
        assert "default" not in node, path
        if "$ref" in node:
            assert set(node) == {"$ref"}, path
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, path
            assert node.get("required") == list(node.get("properties", {})), path
        assert any(k in node for k in ("type", "anyOf", "$ref", "enum")), path
        if node.get("type") == "array":
            assert "items" in node or "prefixItems" in node, path
    # an optional canonical parameter is nullable in strict mode
    for name in set(case.props) - set(case.required):
        members = params["properties"][name].get("anyOf", [])
        assert NULL in members or params["properties"][name].get("type") == "null", name


@pytest.mark.parametrize("case", cases_with(lambda c: not isinstance(c.gemini, Refuse)))
def test_gemini_invariants(table, case):
    """No $ref/$defs, no type arrays, no null types (``nullable`` instead)."""
    params = tool_definition(info_of(table, case), case.name, "gemini")["parameters"]
    text = json.dumps(params)
    assert "$ref" not in text and "$defs" not in text
    for path, node in walk(params):
        assert not isinstance(node.get("type"), list), path
        assert node.get("type") != "null", path
        assert NULL not in node.get("anyOf", []), path
        assert "additionalProperties" not in node, path
        assert "default" not in node, path
        if node.get("type") == "array":
            assert "items" in node, path


def test_fh_tools_equals_tool_definition_per_function(table):
    for fmt in ("raw", "openai", "openai-responses", "anthropic", "mcp"):
        tools = table.host.tools(format=fmt)
        names = [t["function"]["name"] if fmt == "openai" else t["name"] for t in tools]
        assert sorted(names) == sorted(BY_NAME)
        for tool, name in zip(tools, names, strict=True):
            assert tool == tool_definition(table.raw[name], name, fmt)


def test_fh_tools_refuses_the_whole_list_for_an_inexpressible_function(table):
    with pytest.raises(SchemaFormatError) as caught:
        table.host.tools(format="gemini")
    assert caught.value.function in {c.name for c in CASES if isinstance(c.gemini, Refuse)}
    with pytest.raises(SchemaFormatError) as caught:
        table.host.tools(format="openai", strict=True)
    assert caught.value.function in {c.name for c in CASES if isinstance(c.strict, Refuse)}


# -- binding: samples, invalid samples, strict nulls -----------------------------------------


@parametrize_cases
def test_samples_validate_and_bind(table, case):
    assert case.samples, "every case has at least one sample"
    check = validator(info_of(table, case)["parameters"])
    for args, expected in case.samples:
        check.validate(args)
        assert call(table, case, args) == expected, args


@pytest.mark.parametrize("case", cases_with(lambda c: c.bad))
def test_invalid_samples_are_rejected_with_a_path(table, case):
    check = validator(info_of(table, case)["parameters"])
    for args, path, schema_rejects in case.bad:
        if schema_rejects:
            assert not check.is_valid(args), args
        with pytest.raises(InvalidArguments) as caught:
            call(table, case, args)
        assert caught.value.path == path, (args, str(caught.value))
        assert path in str(caught.value)


def _strict_schema(table: Table, case: Case) -> dict:
    return tool_definition(info_of(table, case), case.name, "openai", True)["function"][
        "parameters"
    ]


def test_every_strict_case_with_optional_parameters_states_its_null_binding():
    for case in CASES:
        if not isinstance(case.strict, Refuse) and set(case.props) - set(case.required):
            assert case.null_bound is not None, case.name


@pytest.mark.parametrize("case", cases_with(lambda c: c.null_bound is not None))
def test_strict_null_for_every_optional_parameter_means_the_default(table, case):
    strict = _strict_schema(table, case)
    base = case.samples[0][0]
    args = {name: None for name in case.props if name not in case.required}
    args.update({name: base[name] for name in case.required})
    assert set(args) == set(strict["properties"])  # every property sent, as strict mode does
    validator(strict).validate(args)
    assert call(table, case, args) == case.null_bound


@pytest.mark.parametrize("case", cases_with(lambda c: c.strict_samples))
def test_strict_samples_nested_nulls_mean_the_default(table, case):
    strict = _strict_schema(table, case)
    for args, expected in case.strict_samples:
        validator(strict).validate(args)
        assert call(table, case, args) == expected, args


# -- round trip: arguments generated from each emitted schema ------------------------------

_FORMAT_VALUES = {
    "date-time": "2024-01-02T03:04:05Z",
    "date": "2024-01-02",
    "time": "03:04:05Z",
    "uuid": "12345678-1234-5678-1234-567812345678",
    "path": "/tmp/generated",
    "decimal": "1.25",
}


def _string(schema: dict, hint: str) -> str:
    if "format" in schema:
        return _FORMAT_VALUES[schema["format"]]
    text = f"{schema.get('description', '')} {hint}"
    if schema.get("contentEncoding") == "base64" or "Base64-encoded" in text:
        return base64.b64encode(b"generated").decode()
    if "decimal number" in text:
        return "1.25"
    lo, hi = schema.get("minLength", 0), schema.get("maxLength", 100)
    for candidate in ("ABC", "abc", "s", "text value"):
        if lo <= len(candidate) <= hi and re.search(schema.get("pattern", ""), candidate):
            return candidate
    raise AssertionError(f"no generated string for {schema}")


def _number(schema: dict, integer: bool) -> float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    if lo is not None and hi is not None:
        value = (lo + hi) / 2
    elif lo is not None:
        value = lo + 1
    elif hi is not None:
        value = hi - 1
    else:
        value = 2.5
    return int(value) if integer else float(value)


def generate(schema: Any, defs: dict, prefer_null: bool, depth: int = 0, hint: str = "") -> Any:
    """A value valid for ``schema``: every property, one item per array; ``null``
    wherever a union allows it when ``prefer_null`` (what strict mode sends)."""
    if (
        schema is True
        or schema == {}
        or (isinstance(schema, dict) and set(schema) <= {"description"})
    ):
        return {"any": [1, "two"]}
    if "$ref" in schema:
        return generate(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, prefer_null, depth + 1)
    if "anyOf" in schema:
        members = schema["anyOf"]
        hint = schema.get("description", hint)
        if prefer_null and NULL in members:
            return None
        first = next(m for m in members if m != NULL) if len(members) > 1 else members[0]
        return generate(first, defs, prefer_null, depth + 1, hint)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "null":
        return None
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "string":
        return _string(schema, hint)
    if kind == "array":
        if "prefixItems" in schema:
            return [generate(s, defs, prefer_null, depth + 1) for s in schema["prefixItems"]]
        count = max(1, schema.get("minItems", 0)) if depth < 4 else schema.get("minItems", 0)
        items = schema.get("items", {})
        if schema.get("uniqueItems") and count == 1:
            return [generate(items, defs, prefer_null, depth + 1)]
        return [generate(items, defs, prefer_null, depth + 1) for _ in range(count)]
    if kind == "object":
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties", {})
            return {"k": generate(extra, defs, prefer_null, depth + 1)}
        keys = props if depth < 4 else schema.get("required", [])
        return {k: generate(props[k], defs, prefer_null, depth + 1) for k in keys}
    raise AssertionError(f"cannot generate a value for {schema}")


@parametrize_cases
def test_arguments_generated_from_the_canonical_schema_are_accepted(table, case):
    params = info_of(table, case)["parameters"]
    args = generate(params, params.get("$defs", {}), prefer_null=False)
    validator(params).validate(args)
    call(table, case, args)  # raises InvalidArguments if the worker disagrees


@pytest.mark.parametrize("case", cases_with(lambda c: not isinstance(c.strict, Refuse)))
def test_arguments_generated_from_the_strict_schema_are_accepted(table, case):
    """With ``null`` wherever strict mode allows it: the worker applies defaults."""
    strict = _strict_schema(table, case)
    args = generate(strict, strict.get("$defs", {}), prefer_null=True)
    validator(strict).validate(args)
    call(table, case, args)


ROUND_TRIP = [
    ("enum_param", {"color": "red"}, {"color": "<Color.RED: 'red'>"}),
    ("dataclass_param", {"p": {"x": 3, "y": 4}}, {"p": "Point(x=3, y=4)"}),
    (
        "namedtuple_param",
        {"pair": {"left": 2, "right": "x"}},
        {"pair": "Pair(left=2, right='x')"},
    ),
    ("date_param", {"day": "2000-01-01"}, {"day": "datetime.date(2000, 1, 1)"}),
    ("var_tuple", {"xs": [7]}, {"xs": "(7,)"}),
    ("fixed_tuple", {"pair": [7, "x"]}, {"pair": "(7, 'x')"}),
    ("set_param", {"tags": ["z"]}, {"tags": "set['z']"}),
    ("decimal_param", {"amount": "0.10"}, {"amount": "Decimal('0.10')"}),
    ("path_param", {"path": "rel/p"}, {"path": "PosixPath('rel/p')"}),
    (
        "uuid_param",
        {"id": "00000000-0000-0000-0000-000000000001"},
        {"id": "UUID('00000000-0000-0000-0000-000000000001')"},
    ),
    ("bytes_param", {"data": "AAE="}, {"data": "b'\\x00\\x01'"}),
    ("typeddict_param", {"movie": {"title": "T"}}, {"movie": "{'title': 'T'}"}),
]


@pytest.mark.parametrize("name, args, expected", ROUND_TRIP, ids=[n for n, _, _ in ROUND_TRIP])
def test_round_trip_binds_the_annotated_type(table, name, args, expected):
    case = BY_NAME[name]
    validator(info_of(table, case)["parameters"]).validate(args)
    assert call(table, case, args) == expected


# -- results against the return schema ------------------------------------------------------


@pytest.mark.parametrize("case", cases_with(lambda c: c.returns is not None))
def test_results_validate_against_the_mcp_output_schema(table, case):
    """A structured result is sent as is when it is an object and as
    ``{"result": ...}`` otherwise; either way it matches ``outputSchema``."""
    out = tool_definition(info_of(table, case), case.name, "mcp")["outputSchema"]
    returns = info_of(table, case)["returns"]
    for args, _ in case.samples:
        result = call(table, case, args)
        validator(returns).validate(result)
        structured = result if isinstance(result, dict) else {"result": result}
        validator(out).validate(structured)


# -- things a table row cannot say -------------------------------------------------------------


LENIENT = [
    ("list_int", {"xs": "[1, 2]"}, {"xs": "[1, 2]"}),
    ("fixed_tuple", {"pair": '[1, "a"]'}, {"pair": "(1, 'a')"}),
    ("set_param", {"tags": '["a"]'}, {"tags": "set['a']"}),
    ("str_map", {"counts": '{"a": 1}'}, {"counts": "{'a': 1}"}),
    ("dataclass_param", {"p": '{"x": 1}'}, {"p": "Point(x=1, y=0)"}),
    ("typeddict_param", {"movie": '{"title": "Up"}'}, {"movie": "{'title': 'Up'}"}),
    ("namedtuple_param", {"pair": '{"left": 1}'}, {"pair": "Pair(left=1, right='r')"}),
    (
        "pydantic_param",
        {"user": '{"name": "ann"}'},
        {"user": "UserModel(name='ann', age=0, home=None, title='')"},
    ),
]


@pytest.mark.parametrize("name, args, expected", LENIENT, ids=[n for n, _, _ in LENIENT])
def test_json_encoded_string_for_an_array_or_object_parameter_is_parsed(
    table, name, args, expected
):
    # the issue: "a JSON-encoded string for an array/object parameter is parsed"
    assert call(table, BY_NAME[name], args) == expected


def test_huge_default_is_not_written_in_full(tmp_path):
    (tmp_path / "empty").mkdir()
    module = tmp_path / "huge.py"
    module.write_text(
        'BIG = "x" * 100_000\n\n\ndef huge(text: str = BIG) -> int:\n'
        '    """Huge default."""\n    return len(text)\n'
    )
    with FunctionHost(builtin_dir=tmp_path / "empty", user_dirs=[]) as fh:
        loaded = fh.load_function_set(module)
        prop = loaded["huge"]["json_schema"]["parameters"]["properties"]["text"]
        assert prop["type"] == "string"
        assert len(json.dumps(prop)) < 2000
        assert fh.call("huge", {}) == 100_000
