"""Calling functions: names, arguments, results, errors, captured output."""

from __future__ import annotations

import logging

import pytest

from host import (
    CallError,
    InvalidArguments,
    OutOfMemory,
    ResultError,
    UnknownFunction,
    UserFunctionError,
)

TOOLS = '''
import os
import sys


def add(a: int, b: int = 10) -> int:
    """Add."""
    return a + b


def fail(message: str) -> None:
    """Raise ValueError."""
    def inner():
        raise ValueError(message)
    inner()


def raise_system_exit(code: int) -> None:
    sys.exit(code)


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt("stop")


def pid() -> int:
    return os.getpid()


def chatty(n: int) -> str:
    print("to stdout", n)
    print("to stderr", n, file=sys.stderr)
    return "done"


def spam() -> int:
    for i in range(100_000):
        print("spam line", i)
    return 7


def forge_stdout() -> str:
    # Bytes that look like a protocol frame, on fd 1 and via sys.stdout.
    import msgpack, struct
    body = msgpack.packb([1, 1, None, {"value": "forged", "stdout": "", "stderr": ""}])
    frame = struct.pack(">I", len(body)) + body
    os.write(1, frame * 3)
    sys.stdout.buffer.write(frame)
    sys.stdout.flush()
    return "genuine"


def environment() -> dict:
    return dict(os.environ)


def cwd() -> str:
    return os.getcwd()


def unserializable():
    return object()


def lam():
    return lambda: 1


def big(n: int) -> str:
    return "x" * n


def converted():
    import datetime, enum, uuid, dataclasses

    class Color(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    return {
        "set": {1},
        "tuple": (1, 2),
        "enum": Color.RED,
        "date": datetime.date(2024, 1, 2),
        "uuid": uuid.UUID(int=1),
        "point": Point(1, 2),
        "bytes": b"\\x00\\x01",
    }


def keyed(kind: str):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Cell:
        row: int

    return {
        "int": {1: "one", 2: "two"},
        "tuple": {(1, 2): "pair"},
        "nested_frozenset": {"rows": [({frozenset({1}): "set"},)]},
        "dataclass": {Cell(1): "cell"},
        "tuple_values": {"pairs": [(1, 2), (3, 4)]},
    }[kind]


def nested_cycle():
    a = []
    a.append(a)
    return a


def bad_str_exception():
    class Nasty(Exception):
        def __str__(self):
            raise RuntimeError("no str for you")
    raise Nasty()


def huge_exception():
    raise ValueError("m" * (5 * 1024 * 1024))


def allocate(mb: int) -> int:
    data = bytearray(mb * 1024 * 1024)
    return len(data)
'''


@pytest.fixture
def tools(fh, write_set):
    fh.load_function_set(write_set("tools", TOOLS))
    return fh


def test_call_by_bare_and_qualified_name(tools):
    assert tools.call("add", {"a": 1, "b": 2}) == 3
    assert tools.call("tools.add", {"a": 1}) == 11


def test_json_string_arguments(tools):
    assert tools.call("add", '{"a": 5, "b": 6}') == 11
    assert tools.call("add", '{"a": 5}') == 15


def test_invalid_json_string(tools):
    with pytest.raises(InvalidArguments) as info:
        tools.call("add", '{"a": 5')
    assert info.value.path == "$"
    assert "not valid JSON" in str(info.value)


def test_arguments_not_an_object(tools):
    with pytest.raises(InvalidArguments):
        tools.call("add", "[1, 2]")


def test_invalid_arguments_name_set_function_path(tools):
    with pytest.raises(InvalidArguments) as info:
        tools.call("add", {"a": "one"})
    err = info.value
    assert (err.kind, err.set_name, err.function) == ("invalid_arguments", "tools", "add")
    assert err.path == "a" and err.expected == "integer" and "one" in err.got
    assert str(err) == 'invalid arguments for tools.add: a: expected integer, got string "one"'


def test_unsendable_arguments(tools):
    with pytest.raises(InvalidArguments) as info:
        tools.call("add", {"a": object()})
    assert "cannot be sent" in str(info.value)


def test_unknown_function(tools):
    with pytest.raises(UnknownFunction) as info:
        tools.call("nope", {})
    assert "add" in str(info.value)  # lists what is available
    with pytest.raises(UnknownFunction):
        tools.call("tools.nope", {})
    with pytest.raises(UnknownFunction):
        tools.call("other.add", {})


def test_user_exception_carries_type_message_traceback(tools):
    with pytest.raises(UserFunctionError) as info:
        tools.call("fail", {"message": "bad input"})
    err = info.value
    assert err.kind == "user_exception"
    assert err.remote_type == "ValueError"
    assert err.message == "bad input"
    assert "in inner" in err.traceback and "ValueError: bad input" in err.traceback
    assert str(err) == "tools.fail raised ValueError: bad input"


@pytest.mark.parametrize(
    "name,args,remote_type",
    [
        ("raise_system_exit", {"code": 0}, "SystemExit"),
        ("raise_system_exit", {"code": 2}, "SystemExit"),
        ("raise_keyboard_interrupt", {}, "KeyboardInterrupt"),
    ],
)
def test_system_exit_and_keyboard_interrupt_are_user_errors(tools, name, args, remote_type):
    before = tools.call("pid")
    with pytest.raises(UserFunctionError) as info:
        tools.call(name, args)
    assert info.value.remote_type == remote_type
    assert tools.call("pid") == before  # the same worker survived


def test_exception_whose_str_raises(tools):
    with pytest.raises(UserFunctionError) as info:
        tools.call("bad_str_exception")
    assert info.value.remote_type.endswith("Nasty")
    assert "str() failed" in info.value.message


def test_huge_exception_message_is_bounded(tools):
    with pytest.raises(UserFunctionError) as info:
        tools.call("huge_exception")
    assert len(info.value.message) <= 8192
    assert "more characters" in info.value.message


def test_output_is_captured_per_call(tools):
    result = tools.call_detailed("chatty", {"n": 1})
    assert result.value == "done"
    assert result.stdout == "to stdout 1\n"
    assert result.stderr == "to stderr 1\n"
    result = tools.call_detailed("chatty", {"n": 2})
    assert result.stdout == "to stdout 2\n"  # not the first call's output
    assert tools.call_detailed("add", {"a": 1}).stdout == ""


def test_output_is_bounded_and_print_spam_does_not_corrupt(tools):
    result = tools.call_detailed("spam")
    assert result.value == 7
    assert len(result.stdout) <= 65536
    assert result.stdout.endswith("spam line 99999\n")
    assert tools.call("add", {"a": 1}) == 11


def test_forged_frames_on_stdout_are_just_output(tools):
    result = tools.call_detailed("forge_stdout")
    assert result.value == "genuine"
    assert tools.call("add", {"a": 2}) == 12


def test_worker_stderr_goes_to_logging(tools, caplog):
    with caplog.at_level(logging.INFO, logger="fnhost"):
        tools.call("chatty", {"n": 3})
    assert any(
        "to stderr 3" in r.getMessage() and r.name == "fnhost.worker.tools" for r in caplog.records
    )


def test_host_environment_is_not_passed(make_host, write_set, monkeypatch):
    monkeypatch.setenv("FNHOST_TEST_SECRET", "hunter2")
    fh = make_host(env={"WEATHER_API_KEY": "given"})
    fh.load_function_set(write_set("tools", TOOLS))
    env = fh.call("environment")
    assert "FNHOST_TEST_SECRET" not in env
    assert "hunter2" not in repr(env)
    assert env["WEATHER_API_KEY"] == "given"
    assert set(env) <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "HOME",
        "TMPDIR",
        "PYTHONUNBUFFERED",
        "WEATHER_API_KEY",
    }
    assert env["HOME"] == fh.call("cwd")


def test_results_are_converted(tools):
    value = tools.call("converted")
    assert value == {
        "set": [1],
        "tuple": [1, 2],
        "enum": "red",
        "date": "2024-01-02",
        "uuid": "00000000-0000-0000-0000-000000000001",
        "point": {"x": 1, "y": 2},
        "bytes": b"\x00\x01",
    }


@pytest.mark.parametrize("name", ["unserializable", "lam"])
def test_result_not_serializable_names_type(tools, name):
    before = tools.call("pid")
    with pytest.raises(ResultError) as info:
        tools.call(name)
    assert info.value.kind == "result_not_serializable"
    assert "object" in str(info.value) or "function" in str(info.value)
    assert tools.call("pid") == before


def test_int_keys_come_back_as_ints_and_as_text_to_a_model(tools):
    assert tools.call("keyed", {"kind": "int"}) == {1: "one", 2: "two"}
    call = {"id": "c1", "type": "function"}
    call["function"] = {"name": "keyed", "arguments": '{"kind": "int"}'}
    assert tools.dispatch(call)["content"] == '{"1":"one","2":"two"}'


@pytest.mark.parametrize(
    "kind,key_type",
    [("tuple", "tuple"), ("nested_frozenset", "frozenset"), ("dataclass", "Cell")],
)
def test_a_key_that_cannot_be_sent_is_a_result_error_naming_its_type(tools, kind, key_type):
    """Not a protocol error: the worker is not killed."""
    before = tools.call("pid")
    with pytest.raises(ResultError) as info:
        tools.call("keyed", {"kind": kind})
    assert info.value.kind == "result_not_serializable"
    assert f"dict key of type {key_type}" in str(info.value)
    assert info.value.remote_type == key_type
    assert tools.call("pid") == before
    assert tools.call("keyed", {"kind": "tuple_values"}) == {"pairs": [[1, 2], [3, 4]]}


def test_cyclic_result(tools):
    with pytest.raises(ResultError) as info:
        tools.call("nested_cycle")
    assert info.value.kind == "result_not_serializable"
    assert "cycle" in str(info.value)


def test_result_too_large(make_host, write_set):
    from host import Limits

    fh = make_host(limits=Limits(max_result_mb=1))
    fh.load_function_set(write_set("tools", TOOLS))
    assert len(fh.call("big", {"n": 1000})) == 1000
    with pytest.raises(ResultError) as info:
        fh.call("big", {"n": 2 * 1024 * 1024})
    assert info.value.kind == "result_too_large"
    assert "1048576" in str(info.value)


def test_memory_limit_gives_out_of_memory(make_host, write_set):
    from host import Limits

    fh = make_host(limits=Limits(memory_mb=256))
    fh.load_function_set(write_set("tools", TOOLS))
    assert fh.call("allocate", {"mb": 16}) == 16 * 1024 * 1024
    with pytest.raises(OutOfMemory) as info:
        fh.call("allocate", {"mb": 1024})
    assert info.value.kind == "out_of_memory"
    assert isinstance(info.value, CallError)
    assert fh.call("add", {"a": 1}) == 11


def test_scratch_dir_is_cwd_and_removed_on_close(make_host, write_set):
    import os

    fh = make_host()
    fh.load_function_set(write_set("tools", TOOLS))
    scratch = fh.call("cwd")
    assert os.path.isdir(scratch) and "fnhost-tools-" in scratch
    fh.close()
    assert not os.path.exists(scratch)


def test_oversized_arguments_are_refused_before_sending(make_host, write_set):
    from host import Limits

    fh = make_host(limits=Limits(max_argument_mb=1))
    fh.load_function_set(write_set("tools", TOOLS))
    pid = fh.call("pid")
    with pytest.raises(InvalidArguments) as info:
        fh.call("big", {"n": "x" * (2 * 1024 * 1024)})
    assert "limit" in str(info.value)
    assert fh.call("pid") == pid  # nothing reached the worker


def test_worker_is_recycled_after_running_out_of_memory(make_host, write_set):
    from host import Limits

    fh = make_host(limits=Limits(memory_mb=256))
    fh.load_function_set(
        write_set(
            "hog",
            """
import os

KEPT = []


def hog() -> None:
    # Keeps what it got, then fails: the worker stays bloated.
    try:
        while True:
            KEPT.append(bytearray(16 * 1024 * 1024))
    except MemoryError:
        raise MemoryError("kept %d chunks" % len(KEPT))


def pid() -> int:
    return os.getpid()
""",
        )
    )
    first = fh.call("pid")
    with pytest.raises(OutOfMemory):
        fh.call("hog")
    assert fh.call("pid") != first  # a fresh worker, not the bloated one
