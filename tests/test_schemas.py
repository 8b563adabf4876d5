"""JSON Schema generation, through real worker processes.

Every schema here was built inside a worker from a module written by the
test; the host only relays it.
"""

from __future__ import annotations

import pytest

from host import InvalidArguments, SchemaFormatError

# -- one parameter per annotation, table-driven -------------------------------

#: (annotation as written in the module, the exact schema of parameter ``x``)
TYPE_CASES = [
    ("str", {"type": "string"}),
    ("int", {"type": "integer"}),
    ("float", {"type": "number"}),
    ("bool", {"type": "boolean"}),
    ("None", {"type": "null"}),
    ("bytes", {"type": "string", "contentEncoding": "base64"}),
    ("list[int]", {"type": "array", "items": {"type": "integer"}}),
    ("List[str]", {"type": "array", "items": {"type": "string"}}),
    ("list", {"type": "array"}),
    ("List", {"type": "array"}),
    ("tuple[int, ...]", {"type": "array", "items": {"type": "integer"}}),
    (
        "tuple[int, str]",
        {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "items": False,
            "minItems": 2,
            "maxItems": 2,
        },
    ),
    (
        "Tuple[bool]",
        {
            "type": "array",
            "prefixItems": [{"type": "boolean"}],
            "items": False,
            "minItems": 1,
            "maxItems": 1,
        },
    ),
    (
        "tuple[()]",
        {"type": "array", "prefixItems": [], "items": False, "minItems": 0, "maxItems": 0},
    ),
    ("set[str]", {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
    ("Set[int]", {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
    ("frozenset[int]", {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
    ("dict[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}),
    ("Dict[str, float]", {"type": "object", "additionalProperties": {"type": "number"}}),
    ("dict", {"type": "object"}),
    (
        "dict[str, list[int]]",
        {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
    ),
    ("Mapping[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}),
    ("MutableMapping[str, str]", {"type": "object", "additionalProperties": {"type": "string"}}),
    (
        "collections.abc.Mapping[str, int]",
        {"type": "object", "additionalProperties": {"type": "integer"}},
    ),
    (
        "collections.abc.MutableMapping[str, list[int]]",
        {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
    ),
    ("Mapping", {"type": "object"}),
    ("Optional[int]", {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
    ("Union[int, str]", {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
    ("str | None", {"anyOf": [{"type": "string"}, {"type": "null"}]}),
    ("int | str | None", {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]}),
    (
        "list[Optional[int]]",
        {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
    ),
    ("Literal['a', 'b']", {"type": "string", "enum": ["a", "b"]}),
    ("Literal[1, 2, 3]", {"type": "integer", "enum": [1, 2, 3]}),
    ("Literal[True]", {"type": "boolean", "enum": [True]}),
    ("Literal[1, 'a']", {"enum": [1, "a"]}),
    ("Color", {"$ref": "#/$defs/Color"}),
    ("Level", {"$ref": "#/$defs/Level"}),
    ("Shade", {"$ref": "#/$defs/Shade"}),
    ("Annotated[int, 'how many']", {"type": "integer", "description": "how many"}),
    (
        "Annotated[list[str], 'the names']",
        {"type": "array", "items": {"type": "string"}, "description": "the names"},
    ),
    ("Any", {}),
]

TYPES_SOURCE = '''
import collections.abc
import enum
from typing import (
    Annotated, Any, Dict, List, Literal, Mapping, MutableMapping, Optional, Set, Tuple, Union,
)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Shade(enum.Enum):
    """How dark a colour is.

    Only the first paragraph becomes the description.
    """

    LIGHT = "light"
    DARK = "dark"


def no_annotation(x, y: int):
    """Takes anything."""
    return x
''' + "".join(
    f'\n\ndef t{i}(x: {ann}):\n    """Case {i}."""\n    return None\n'
    for i, (ann, _) in enumerate(TYPE_CASES)
)


@pytest.fixture
def types_set(fh, write_set):
    return fh.load_function_set(write_set("types_set", TYPES_SOURCE))


@pytest.mark.parametrize(
    "index, annotation, expected",
    [(i, ann, exp) for i, (ann, exp) in enumerate(TYPE_CASES)],
    ids=[ann for ann, _ in TYPE_CASES],
)
def test_annotation_schema(fh, types_set, index, annotation, expected):
    name = f"t{index}"
    assert name in types_set, fh.function_sets["types_set"]["skipped"].get(name)
    params = dict(types_set[name]["json_schema"]["parameters"])
    # Named types (Enum) are definitions referenced with $ref.
    assert params.pop("$defs", {}) == TYPE_DEFS.get(annotation, {})
    assert params == {
        "type": "object",
        "properties": {"x": expected},
        "required": ["x"],
        "additionalProperties": False,
    }


TYPE_DEFS = {
    "Color": {"Color": {"type": "string", "enum": ["red", "green"]}},
    "Level": {"Level": {"type": "integer", "enum": [1, 2]}},
    "Shade": {
        "Shade": {
            "description": "How dark a colour is.",
            "type": "string",
            "enum": ["light", "dark"],
        }
    },
}


MAPPING_SOURCE = """
import collections.abc
from typing import Mapping, MutableMapping


def total(counts: Mapping[str, int]) -> str:
    return f"{type(counts).__name__} {sum(counts.values())}"


def bump(counts: collections.abc.MutableMapping[str, int], key: str) -> dict[str, int]:
    counts[key] = counts.get(key, 0) + 1
    return dict(counts)
"""


def test_a_mapping_parameter_receives_a_dict_and_is_checked(fh, write_set):
    fns = fh.load_function_set(write_set("mappings", MAPPING_SOURCE))
    assert fh.function_sets["mappings"]["skipped"] == {}
    assert fns["total"]["function"](counts={"a": 1, "b": 2}) == "dict 3"
    assert fh.call("bump", {"counts": {"a": 1}, "key": "a"}) == {"a": 2}
    with pytest.raises(InvalidArguments) as info:
        fh.call("total", {"counts": {"a": "one"}})
    assert info.value.path == "counts.a"


def test_every_table_function_is_exported(fh, types_set):
    assert fh.function_sets["types_set"]["skipped"] == {}
    assert set(types_set) == {f"t{i}" for i in range(len(TYPE_CASES))} | {"no_annotation"}


def test_missing_annotation_is_any_value_with_a_warning(fh, types_set):
    props = types_set["no_annotation"]["json_schema"]["parameters"]["properties"]
    assert props == {"x": {}, "y": {"type": "integer"}}
    warnings = fh.function_sets["types_set"]["warnings"]["no_annotation"]
    assert any("'x'" in w and "no type annotation" in w for w in warnings), warnings
    assert not any("'y'" in w for w in warnings), warnings


def test_json_schema_entry_shape(types_set):
    entry = types_set["t0"]
    assert set(entry["json_schema"]) == {"name", "description", "parameters"}
    assert entry["json_schema"]["name"] == "t0"
    assert entry["json_schema"]["description"] == "Case 0."
    assert callable(entry["function"])


# -- defaults, parameter kinds -------------------------------------------------

SHAPES_SOURCE = '''
import datetime
import enum
from typing import Optional


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


SENTINEL = object()


def defaults(
    a: int = 3,
    b: str = "hi",
    c: Color = Color.GREEN,
    d: object = SENTINEL,
    e: list[int] = [1, 2],
    f: Optional[int] = None,
    g: float = 1.5,
    h: bool = False,
    t: tuple[int, int] = (1, 2),
):
    """Defaults."""


def kwonly(a: int, *, b: str, c: int = 1):
    """Keyword-only."""


def positional(a: int, /, b: int):
    """Positional-only."""


def variadic(first: int, *args: int, **kwargs: str):
    """Variadic."""


def variadic_bare(*args, **kwargs):
    """Variadic, unannotated."""


def method_like(self, x: int):
    """Has self."""


def class_like(cls, x: int, *, y: str = "y"):
    """Has cls."""


def today() -> datetime.date:
    """Today's date."""
    return datetime.date.today()
'''


@pytest.fixture
def shapes(fh, write_set):
    return fh.load_function_set(write_set("shapes", SHAPES_SOURCE))


def _params(loaded, name):
    return loaded[name]["json_schema"]["parameters"]


def test_defaults_are_written_as_json(shapes):
    params = _params(shapes, "defaults")
    assert params["required"] == []
    assert params["properties"] == {
        "a": {"type": "integer", "default": 3},
        "b": {"type": "string", "default": "hi"},
        "c": {"anyOf": [{"$ref": "#/$defs/Color"}], "default": "green"},
        "d": {},  # object() has no JSON form: no default shown
        "e": {"type": "array", "items": {"type": "integer"}, "default": [1, 2]},
        "f": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        "g": {"type": "number", "default": 1.5},
        "h": {"type": "boolean", "default": False},
        "t": {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "integer"}],
            "items": False,
            "minItems": 2,
            "maxItems": 2,
            "default": [1, 2],
        },
    }


def test_keyword_only_parameters(shapes):
    params = _params(shapes, "kwonly")
    assert params["properties"] == {
        "a": {"type": "integer"},
        "b": {"type": "string"},
        "c": {"type": "integer", "default": 1},
    }
    assert params["required"] == ["a", "b"]


def test_positional_only_parameters_are_named_properties(shapes):
    params = _params(shapes, "positional")
    assert params["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert params["required"] == ["a", "b"]


def test_var_positional_and_var_keyword(fh, shapes):
    params = _params(shapes, "variadic")
    assert params["properties"] == {
        "first": {"type": "integer"},
        "args": {"type": "array", "items": {"type": "integer"}},
        "kwargs": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    assert params["required"] == ["first"]
    bare = _params(shapes, "variadic_bare")
    assert bare["properties"] == {
        "args": {"type": "array", "items": {}},
        "kwargs": {"type": "object", "additionalProperties": {}},
    }
    assert bare["required"] == []
    warnings = fh.function_sets["shapes"]["warnings"]["variadic_bare"]
    assert any("'args'" in w for w in warnings) and any("'kwargs'" in w for w in warnings)


def test_self_and_cls_are_not_in_the_schema(shapes):
    assert _params(shapes, "method_like")["properties"] == {"x": {"type": "integer"}}
    assert _params(shapes, "method_like")["required"] == ["x"]
    cls_params = _params(shapes, "class_like")
    assert cls_params["properties"] == {
        "x": {"type": "integer"},
        "y": {"type": "string", "default": "y"},
    }
    assert cls_params["required"] == ["x"]


# -- reserved parameters: self, agent_state, AgentContext -------------------------

RESERVED_SOURCE = '''
from __future__ import annotations

from typing import TYPE_CHECKING

import protocol.context_marker as marker

if TYPE_CHECKING:  # what MemGPT and Letta tools do: names the worker cannot resolve
    from agent import Agent, AgentState
    from protocol.context_marker import AgentContext


def core_memory_append(self: Agent, name: str, content: str) -> list:
    """MemGPT's signature."""
    return [self, name, content]


def send_message(self: "Agent", message: str) -> list:
    """A quoted annotation under postponed evaluation."""
    return [self, message]


def archival_search(agent_state: AgentState, query: str, count: int = 5) -> list:
    """Letta's signature."""
    return [agent_state, query, count]


def resolved_marker(memory: marker.AgentContext, n: int) -> list:
    """Marked by a type the worker resolves."""
    return [memory, n]


def named_marker(ctx: AgentContext, n: int) -> list:
    """Marked by the spelling "AgentContext", unresolvable here."""
    return [ctx, n]


def dotted_marker(ctx: protocol.context_marker.AgentContext, n: int) -> list:  # noqa: F821
    """Marked by the dotted spelling, unresolvable here."""
    return [ctx, n]


def still_broken(self: Agent, n: Nope) -> int:  # noqa: F821
    """An ordinary parameter's unresolvable annotation still costs the function."""
    return n
'''

#: function -> (the schema's properties, the reserved parameter, the other arguments)
RESERVED_CASES = {
    "core_memory_append": (
        {"name": {"type": "string"}, "content": {"type": "string"}},
        "self",
        {"name": "human", "content": "likes tea"},
    ),
    "send_message": ({"message": {"type": "string"}}, "self", {"message": "hi"}),
    "archival_search": (
        {"query": {"type": "string"}, "count": {"type": "integer", "default": 5}},
        "agent_state",
        {"query": "tea", "count": 2},
    ),
    "resolved_marker": ({"n": {"type": "integer"}}, "memory", {"n": 1}),
    "named_marker": ({"n": {"type": "integer"}}, "ctx", {"n": 2}),
    "dotted_marker": ({"n": {"type": "integer"}}, "ctx", {"n": 3}),
}


@pytest.fixture
def reserved(fh, write_set):
    return fh.load_function_set(write_set("reserved", RESERVED_SOURCE))


@pytest.mark.parametrize("name", sorted(RESERVED_CASES))
def test_reserved_parameter_never_costs_the_function(fh, reserved, name):
    properties, hidden, arguments = RESERVED_CASES[name]
    assert name in reserved, fh.function_sets["reserved"]["skipped"].get(name)
    params = _params(reserved, name)
    assert params["properties"] == properties
    assert hidden not in params["required"]
    # Without a context, the reserved parameter receives None.
    assert fh.call(name, arguments) == [None, *arguments.values()]
    # A context parameter is expected usage, not worth a warning.
    warnings = fh.function_sets["reserved"]["warnings"].get(name, [])
    assert not any(hidden in w for w in warnings)


@pytest.mark.parametrize("name", sorted(RESERVED_CASES))
def test_a_caller_cannot_set_a_reserved_parameter(fh, reserved, name):
    _, hidden, arguments = RESERVED_CASES[name]
    with pytest.raises(InvalidArguments) as info:
        fh.call(name, {hidden: 1, **arguments})
    assert info.value.path == hidden


def test_unresolvable_ordinary_annotation_still_skips_beside_a_reserved_one(fh, reserved):
    reason = fh.function_sets["reserved"]["skipped"]["still_broken"]
    assert reason == "type annotations cannot be resolved: NameError: name 'Nope' is not defined"
    assert "still_broken" not in reserved


def test_parameters_object_is_closed(shapes, types_set):
    for loaded in (shapes, types_set):
        for name, entry in loaded.items():
            params = entry["json_schema"]["parameters"]
            assert params["type"] == "object", name
            assert params["additionalProperties"] is False, name


def test_return_annotation_the_result_encoder_supports_does_not_skip_the_function(fh, shapes):
    # worker/results.py sends a datetime.date as an ISO string; the return
    # annotation plays no part in calling, so it must not make the function vanish.
    assert fh.function_sets["shapes"]["skipped"] == {}
    assert "today" in shapes


# -- postponed annotations, skipped functions -----------------------------------

FUTURE_SOURCE = '''
from __future__ import annotations

import enum
from typing import Literal, Optional


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


def uses_local(m: Mode, items: list[int], how: Literal["a", "b"] = "a",
               note: Optional[str] = None) -> dict[str, int]:
    """Local class and generics under postponed evaluation."""
    return {"n": len(items)}


def broken(x: Undefined) -> int:  # noqa: F821
    """Refers to a name that does not exist."""
    return 1


def bad_keys(m: dict[int, str]) -> None:
    """JSON object keys are always strings."""


def fine(x: int) -> int:
    """Still loads."""
    return x * 2
'''


@pytest.fixture
def future_set(fh, write_set):
    return fh.load_function_set(write_set("future_set", FUTURE_SOURCE))


def test_postponed_annotations_are_resolved(future_set):
    assert _params(future_set, "uses_local") == {
        "type": "object",
        "properties": {
            "m": {"$ref": "#/$defs/Mode"},
            "items": {"type": "array", "items": {"type": "integer"}},
            "how": {"type": "string", "enum": ["a", "b"], "default": "a"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["m", "items"],
        "additionalProperties": False,
        "$defs": {"Mode": {"type": "string", "enum": ["fast", "slow"]}},
    }


def test_undefined_forward_reference_skips_only_that_function(fh, future_set):
    skipped = fh.function_sets["future_set"]["skipped"]
    assert "broken" in skipped
    assert "Undefined" in skipped["broken"]
    assert "NameError" in skipped["broken"]
    assert set(future_set) == {"uses_local", "fine"}
    assert fh.call("fine", {"x": 21}) == 42


def test_dict_with_non_str_keys_is_skipped_with_a_reason(fh, future_set):
    reason = fh.function_sets["future_set"]["skipped"]["bad_keys"]
    assert "'m'" in reason
    assert "dict keys must be str" in reason
    assert "bad_keys" not in future_set


# -- descriptions from docstrings ------------------------------------------------

DOCS_SOURCE = '''
from typing import Annotated


def google(a: int, b: str = "x") -> int:
    """Add things up.

    Longer explanation
    on two lines.

    Args:
        a: The first
            value.
        b (str): The second value.

    Returns:
        The sum.

    Raises:
        ValueError: Never.
    """
    return a


def numpy_style(a: int, b: str) -> int:
    """Numpy summary.

    Numpy details.

    Parameters
    ----------
    a : int
        The a value.
    b : str
        The b value.

    Returns
    -------
    int
        Something.
    """
    return a


def rest_style(a: int, b: str) -> int:
    """Rest summary.

    Rest details.

    :param a: The a value.
    :param str b: The b value.
    :returns: Something.
    """
    return a


def epydoc_style(a: int, b: str) -> int:
    """Epydoc summary.

    Epydoc details.

    @param a: The a value.
    @param b: The b value.
    @return: Something.
    """
    return a


def args_first(a: int, b: int) -> int:
    """Args:
        a: The a value.
        b: The b value.
    """
    return a


def google_star(*args: int, **kwargs: str) -> int:
    """Collect things.

    Args:
        *args: Values to add.
        **kwargs: Options by name.
    """
    return 0


def annotated_wins(a: Annotated[int, "from Annotated"]) -> int:
    """Both.

    Args:
        a: From the docstring.
    """
    return a


def undocumented(a: int) -> int:
    return a

'''


@pytest.fixture
def docs(fh, write_set):
    return fh.load_function_set(write_set("docs", DOCS_SOURCE))


def _descriptions(loaded, name):
    props = loaded[name]["json_schema"]["parameters"]["properties"]
    return {k: v.get("description") for k, v in props.items()}


def test_google_docstring(docs):
    schema = docs["google"]["json_schema"]
    assert schema["description"] == "Add things up.\n\nLonger explanation\non two lines."
    assert schema["parameters"]["properties"] == {
        "a": {"type": "integer", "description": "The first value."},
        "b": {"type": "string", "description": "The second value.", "default": "x"},
    }


@pytest.mark.parametrize(
    "name, summary",
    [
        ("numpy_style", "Numpy summary.\n\nNumpy details."),
        ("rest_style", "Rest summary.\n\nRest details."),
        ("epydoc_style", "Epydoc summary.\n\nEpydoc details."),
    ],
)
def test_other_docstring_styles(docs, name, summary):
    assert docs[name]["json_schema"]["description"] == summary
    assert _descriptions(docs, name) == {"a": "The a value.", "b": "The b value."}


def test_docstring_starting_with_args_section(fh, docs):
    assert _descriptions(docs, "args_first") == {"a": "The a value.", "b": "The b value."}
    assert docs["args_first"]["json_schema"]["description"] == ""


def test_google_starred_args_and_kwargs_entries(docs):
    assert docs["google_star"]["json_schema"]["description"] == "Collect things."
    assert _descriptions(docs, "google_star") == {
        "args": "Values to add.",
        "kwargs": "Options by name.",
    }


def test_annotated_description_takes_precedence_over_docstring(docs):
    assert _descriptions(docs, "annotated_wins") == {"a": "from Annotated"}


def test_missing_docstring_gives_empty_description_and_a_warning(fh, docs):
    assert docs["undocumented"]["json_schema"]["description"] == ""
    assert "no description: add a docstring" in fh.function_sets["docs"]["warnings"]["undocumented"]
    assert fh.function_sets["docs"]["warnings"]["google"] == []


# -- discovery -------------------------------------------------------------------

DISCOVERY_SOURCE = '''
from os import system
from os.path import join
from textwrap import dedent


def public(x: int) -> int:
    """Exported."""
    return x


async def public_async(x: int) -> int:
    """Exported too."""
    return x


def _private(x: int) -> int:
    """Not exported."""
    return x


class Thing:
    """A class is not a function."""

    def method(self) -> int:
        return 1


class _Callable:
    def __call__(self, x: int) -> int:
        return x


instance = _Callable()
lam = lambda x: x  # noqa: E731
'''

ALL_SOURCE = '''
from textwrap import dedent, indent

__all__ = ["dedent", "mine"]


def mine(x: int) -> int:
    """Defined here."""
    return x
'''


def test_discovery_exports_only_this_modules_public_functions(fh, write_set):
    loaded = fh.load_function_set(write_set("disc", DISCOVERY_SOURCE))
    assert set(loaded) == {"public", "public_async"}
    info = fh.function_sets["disc"]
    assert set(info["functions"]) == {"public", "public_async"}
    assert info["skipped"] == {}


def test_function_listed_in_all_is_exported_even_if_defined_elsewhere(fh, write_set):
    loaded = fh.load_function_set(write_set("with_all", ALL_SOURCE))
    assert set(loaded) == {"dedent", "mine"}
    # It runs in the worker like any other function.
    assert fh.call("dedent", {"text": "    a\n    b"}) == "a\nb"


DEEP_SOURCE = '''
import sys

sys.setrecursionlimit(100000)
T = int
for _ in range(700):
    T = list[T]


def nested(x: T = None) -> int:  # 700 levels of list[list[...]]
    """Take a deeply nested list."""
    return 1


def flat(x: int) -> int:
    """An ordinary function beside it."""
    return x
'''


def test_a_schema_nested_too_deep_is_skipped_and_every_format_still_lists_the_rest(fh, write_set):
    """Every format walks schemas recursively: one set's 700-deep parameter
    would take the whole host's tool list down (RecursionError)."""
    fh.load_function_set(write_set("deep_set", DEEP_SOURCE))
    fh.load_function_set(write_set("other_set", "def other(y: str) -> str:\n    return y\n"))
    skipped = fh.function_sets["deep_set"]["skipped"]
    assert "more than 64 levels deep" in skipped["nested"]
    for fmt in ("raw", "openai", "openai-responses", "anthropic", "gemini", "mcp"):
        names = {t.get("name") or t.get("function", {}).get("name") for t in fh.tools(format=fmt)}
        assert {"flat", "other"} <= names and "nested" not in names, fmt
    assert fh.call("flat", {"x": 3}) == 3


CHAIN_SOURCE = '''
import dataclasses

Inner = int
for i in range(100):  # D99 holds D98 ... holds an int: each definition shallow
    Inner = dataclasses.make_dataclass(f"D{i}", [("inner", Inner)])
    Inner.__module__ = __name__
    globals()[Inner.__name__] = Inner


def chained(x: Inner) -> int:  # type: ignore[valid-type]
    """Take the outermost of 100 nested dataclasses."""
    return 1


def plain(y: int) -> int:
    """An ordinary function beside it."""
    return y
'''


def test_definitions_chained_too_deep_are_a_format_error_naming_the_function(fh, write_set):
    """Each definition is shallow, so the load's depth check passes; inlining
    them for Gemini nests 100 dataclasses deep: a SchemaFormatError naming the
    function, not a RecursionError; the formats that keep $defs list it."""
    fh.load_function_set(write_set("chain_set", CHAIN_SOURCE))
    assert "chained" in fh.schemas()
    with pytest.raises(SchemaFormatError) as info:
        fh.tools(format="gemini")
    assert "chained" in str(info.value) and "levels deep" in str(info.value)
    names = {t["name"] for t in fh.tools(format="anthropic")}
    assert {"chained", "plain"} <= names
