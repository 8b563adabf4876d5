"""Argument validation and coercion, through real calls into a worker."""

from __future__ import annotations

import base64

import pytest

from host import InvalidArguments

BINDING_SOURCE = '''
import asyncio
import enum
from typing import Literal, Optional, Union


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


def add(a: int, b: int = 10) -> int:
    """Add."""
    return a + b


def kinds(n: int, x: float, s: str, flag: bool) -> list:
    """Report what arrived."""
    return [type(n).__name__, n, type(x).__name__, x, s, flag]


def total(items: list[int]) -> int:
    return sum(items)


def counts(m: dict[str, int]) -> dict:
    return m


def paint(c: Color, level: Level = Level.LOW) -> list:
    return [type(c).__name__, isinstance(c, Color), c.name, type(level).__name__, level.name]


def pick(mode: Literal["fast", "slow"], n: Literal[1, 2] = 1) -> str:
    return f"{mode}-{n}"


def maybe(x: Optional[int]) -> list:
    return [x is None, x]


def maybe_default(x: Optional[int] = 7) -> list:
    return [x is None, x]


def with_default(x: int = 5, *, k: str = "kw") -> list:
    return [x, k]


def shapes(t: tuple[int, ...], s: set[str], pair: tuple[int, str]) -> list:
    return [type(t).__name__, list(t), type(s).__name__, sorted(s),
            type(pair).__name__, list(pair)]


def raw(data: bytes) -> list:
    return [type(data).__name__, data.hex()]


def everything(a, /, *rest, k=0, **kw):
    return {"a": a, "rest": list(rest), "rest_type": type(rest).__name__, "k": k, "kw": kw}


def union_num(x: Union[int, float]) -> list:
    return [x, type(x).__name__]


def union_text(x: Union[bytes, str]) -> list:
    return [type(x).__name__]


def memgpt_style(self, text: str) -> list:
    return [self, text]


def typed_kw(**kw: int) -> dict:
    return kw


def with_self(self=None, x: int = 0) -> list:
    return [self, x]


async def slow_double(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * 2


async def running_loop() -> bool:
    return asyncio.get_running_loop() is not None
'''


@pytest.fixture
def b(fh, write_set):
    fh.load_function_set(write_set("bnd", BINDING_SOURCE))
    return fh


def _invalid(fh, name, arguments) -> InvalidArguments:
    with pytest.raises(InvalidArguments) as info:
        fh.call(name, arguments)
    err = info.value
    assert err.kind == "invalid_arguments"
    assert err.set_name == "bnd"
    assert err.function == name
    return err


def test_valid_call_uses_default(b):
    assert b.call("add", {"a": 1}) == 11
    assert b.call("add", {"a": 1, "b": 2}) == 3


def test_missing_required_argument(b):
    err = _invalid(b, "add", {"b": 2})
    assert err.path == "a"
    assert err.expected == "integer (required)"
    assert err.got == "nothing"


def test_missing_required_keyword_only_and_positional_only(b):
    err = _invalid(b, "everything", {})
    assert err.path == "a"
    assert err.got == "nothing"


def test_unknown_argument(b):
    err = _invalid(b, "add", {"a": 1, "c": 3})
    assert err.path == "c"
    assert "a, b" in err.expected
    assert err.got == "an unexpected argument"


def test_wrong_type_at_top_level(b):
    err = _invalid(b, "add", {"a": "1"})
    assert err.path == "a"
    assert err.expected == "integer"
    assert err.got == 'string "1"'


def test_wrong_type_nested_in_a_list(b):
    err = _invalid(b, "total", {"items": [1, 2, "x", 4]})
    assert err.path == "items[2]"
    assert err.expected == "integer"
    assert err.got == 'string "x"'


def test_wrong_type_nested_in_a_dict(b):
    err = _invalid(b, "counts", {"m": {"j": 1, "k": [1]}})
    assert err.path == "m.k"
    assert err.expected == "integer"
    assert err.got == "array [1]"


def test_list_and_dict_must_be_containers(b):
    assert _invalid(b, "total", {"items": {"a": 1}}).expected == "array of integer"
    assert _invalid(b, "counts", {"m": [1]}).expected == "object of integer"


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_an_int(b, value):
    err = _invalid(b, "add", {"a": value})
    assert err.path == "a"
    assert err.got.startswith("boolean")


def test_bool_is_not_a_float(b):
    err = _invalid(b, "kinds", {"n": 1, "x": True, "s": "", "flag": True})
    assert err.path == "x"


def test_integral_float_is_accepted_for_int_and_becomes_int(b):
    assert b.call("kinds", {"n": 3.0, "x": 1.5, "s": "s", "flag": False}) == [
        "int",
        3,
        "float",
        1.5,
        "s",
        False,
    ]


def test_non_integral_float_is_not_an_int(b):
    err = _invalid(b, "add", {"a": 3.5})
    assert err.path == "a"
    assert err.got == "number 3.5"


def test_int_is_accepted_for_float_and_becomes_float(b):
    assert b.call("kinds", {"n": 1, "x": 2, "s": "s", "flag": True})[2:4] == ["float", 2.0]


def test_string_is_not_a_bool(b):
    err = _invalid(b, "kinds", {"n": 1, "x": 1.0, "s": "s", "flag": "true"})
    assert err.path == "flag"
    assert err.expected == "boolean"


def test_enum_value_becomes_the_enum_member(b):
    assert b.call("paint", {"c": "green", "level": 2}) == ["Color", True, "GREEN", "Level", "HIGH"]


def test_enum_default_is_the_member(b):
    assert b.call("paint", {"c": "red"}) == ["Color", True, "RED", "Level", "LOW"]


def test_enum_rejects_names_and_unknown_values(b):
    err = _invalid(b, "paint", {"c": "RED"})
    assert err.path == "c"
    assert err.expected == 'one of "red", "green"'
    assert _invalid(b, "paint", {"c": "red", "level": "2"}).path == "level"


def test_literal_accepts_its_values(b):
    assert b.call("pick", {"mode": "slow", "n": 2}) == "slow-2"


def test_literal_mismatch(b):
    err = _invalid(b, "pick", {"mode": "medium"})
    assert err.path == "mode"
    assert err.expected == 'one of "fast", "slow"'
    assert err.got == 'string "medium"'
    # The int literal 1 does not match the string "1".
    assert _invalid(b, "pick", {"mode": "fast", "n": "1"}).path == "n"


def test_optional_accepts_null(b):
    assert b.call("maybe", {"x": None}) == [True, None]
    assert b.call("maybe", {"x": 4}) == [False, 4]


def test_optional_without_default_is_still_required(b):
    assert _invalid(b, "maybe", {}).path == "x"


def test_null_for_a_nullable_default_is_passed_as_null(b):
    assert b.call("maybe_default", {"x": None}) == [True, None]
    assert b.call("maybe_default", {}) == [False, 7]


def test_null_for_a_non_nullable_default_means_use_the_default(b):
    assert b.call("with_default", {"x": None, "k": None}) == [5, "kw"]
    assert b.call("add", {"a": 1, "b": None}) == 11


def test_null_for_a_required_non_nullable_parameter_is_rejected(b):
    err = _invalid(b, "add", {"a": None})
    assert err.path == "a"
    assert err.got == "null"


def test_list_becomes_tuple_and_set_when_annotated(b):
    result = b.call("shapes", {"t": [1, 2, 3], "s": ["b", "a", "b"], "pair": [1, "x"]})
    assert result == ["tuple", [1, 2, 3], "set", ["a", "b"], "tuple", [1, "x"]]


def test_fixed_tuple_checks_length_and_item_types(b):
    base = {"t": [], "s": []}
    assert _invalid(b, "shapes", {**base, "pair": [1]}).path == "pair"
    assert _invalid(b, "shapes", {**base, "pair": [1, "x", 2]}).path == "pair"
    assert _invalid(b, "shapes", {**base, "pair": ["x", "x"]}).path == "pair[0]"
    assert _invalid(b, "shapes", {**base, "pair": [1, 2], "t": []}).path == "pair[1]"


def test_bytes_from_a_base64_string(b):
    encoded = base64.b64encode(b"\x00\x01hi\xff").decode()
    assert b.call("raw", {"data": encoded}) == ["bytes", b"\x00\x01hi\xff".hex()]


def test_bytes_from_python_bytes(b):
    assert b.call("raw", {"data": b"\xfe"}) == ["bytes", "fe"]


def test_invalid_base64_is_rejected(b):
    err = _invalid(b, "raw", {"data": "not base64!"})
    assert err.path == "data"
    assert err.expected == "base64-encoded string"


def test_positional_only_varargs_keyword_only_and_varkw_are_bound(b):
    assert b.call("everything", {"a": 1, "rest": [2, 3], "kw": {"z": 4}}) == {
        "a": 1,
        "rest": [2, 3],
        "rest_type": "tuple",
        "k": 0,
        "kw": {"z": 4},
    }
    assert b.call("everything", {"a": 1, "k": 9}) == {
        "a": 1,
        "rest": [],
        "rest_type": "tuple",
        "k": 9,
        "kw": {},
    }


def test_positional_only_name_may_appear_in_varkw(b):
    # Python puts a keyword named like a positional-only parameter into **kw.
    result = b.call("everything", {"a": 1, "kw": {"a": 2}})
    assert result["a"] == 1
    assert result["kw"] == {"a": 2}


def test_varkw_key_colliding_with_a_named_parameter_is_rejected(b):
    err = _invalid(b, "everything", {"a": 1, "kw": {"k": 5}})
    assert err.path == "kw.k"


def test_varargs_and_varkw_must_be_array_and_object(b):
    assert _invalid(b, "everything", {"a": 1, "rest": 5}).path == "rest"
    assert _invalid(b, "everything", {"a": 1, "kw": [1]}).path == "kw"


def test_annotated_varkw_values_are_validated(b):
    assert b.call("typed_kw", {"kw": {"x": 1.0, "y": 2}}) == {"x": 1, "y": 2}
    err = _invalid(b, "typed_kw", {"kw": {"x": True}})
    assert err.path == "kw.x"
    assert err.expected == "integer"


def test_varkw_with_non_string_keys_is_invalid_arguments(b):
    # Only a Python caller can send this (JSON keys are strings); the function
    # must not run, and the caller must learn that the arguments were wrong.
    err = _invalid(b, "typed_kw", {"kw": {1: 2}})
    assert err.path is not None and err.path.startswith("kw")


def test_self_with_a_default_keeps_it_and_other_parameters_bind_by_name(b):
    assert b.call("with_self", {"x": 5}) == [None, 5]


def test_json_string_arguments(b):
    assert b.call("add", '{"a": 1}') == 11
    assert b.call("add", '{"a": 1, "b": 2}') == 3


@pytest.mark.parametrize("text", ['{"a": 1', "{'a': 1}", "a=1", '{"a": 1} trailing'])
def test_invalid_json_string_is_invalid_arguments(b, text):
    err = _invalid(b, "add", text)
    assert err.path == "$"
    assert err.got == "invalid JSON"


@pytest.mark.parametrize("text", ["[1, 2]", "5", '"a"', "null"])
def test_json_string_that_is_not_an_object_is_invalid_arguments(b, text):
    err = _invalid(b, "add", text)
    assert err.path == "$"


def test_async_function_is_awaited(b):
    assert b.call("slow_double", {"x": 21}) == 42
    assert b.call("running_loop", {}) is True


def test_async_function_arguments_are_validated(b):
    err = _invalid(b, "slow_double", {"x": "21"})
    assert err.path == "x"


def test_worker_survives_invalid_arguments(b):
    pid = b.function_sets["bnd"]["pid"]
    for args in ({"a": "x"}, {"zzz": 1}, {}):
        _invalid(b, "add", args)
    assert b.call("add", {"a": 2, "b": 3}) == 5
    assert b.function_sets["bnd"]["pid"] == pid


def test_varkw_key_named_like_the_varargs_parameter_goes_to_varkw(b):
    # Python binds f(a, rest=1) for f(a, /, *rest, **kw) as kw={"rest": 1}.
    got = b.call("everything", {"a": 1, "kw": {"rest": 9}})
    assert got["kw"] == {"rest": 9} and got["rest"] == []


def test_union_keeps_the_value_s_own_json_type(b):
    assert b.call("union_num", {"x": 3.0}) == [3.0, "float"]
    assert b.call("union_num", {"x": 3}) == [3, "int"]
    # A string that happens to be valid base64 stays a string in bytes | str.
    assert b.call("union_text", {"x": "abcd"}) == ["str"]


def test_memgpt_style_self_receives_none(b):
    assert b.call("memgpt_style", {"text": "hi"}) == [None, "hi"]
    assert _invalid(b, "memgpt_style", {"self": 1, "text": "hi"}).path == "self"
