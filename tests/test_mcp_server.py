"""``fnhost mcp``: the MCP server, driven by the official SDK's own client over a
real stdio pipe (``python -m host mcp ...`` as a subprocess), never mocked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

from host.tools.mcp_schema import mcp_output_schema, mcp_wraps_result

from .conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent

TOOLS = '''
"""Tools for the MCP server tests."""
import ctypes
import os
from typing import TypedDict


class Point(TypedDict):
    x: int
    y: int


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


def total(items: list[int]) -> int:
    """Sum a list of integers.

    Args:
        items: The numbers.
    """
    return sum(items)


def greet(name: str) -> str:
    """Greet someone, printing on the way."""
    print("greeting", name)
    return f"Hello, {name}!"


def point(x: int, y: int) -> Point:
    """Make a point (an object result: sent as it is, not wrapped)."""
    return {"x": x, "y": y}


def raw(data: bytes) -> bytes:
    """Echo bytes (base64 on the wire)."""
    return data[::-1]


def double(x: int):
    """No return annotation: no outputSchema, text content only."""
    return x * 2


def anything(value):
    """An untyped parameter: no provider format but MCP can express it."""
    return value


def fail(reason: str) -> str:
    """Raise ValueError."""
    raise ValueError(reason)


def liar() -> int:
    """Declares int, returns a string."""
    return "not a number"


def crash() -> None:
    """Segfault the worker."""
    ctypes.string_at(0)


def whereami() -> dict:
    """The worker's pid and scratch directory."""
    return {"pid": os.getpid(), "cwd": os.getcwd()}


def secrets() -> dict:
    """The variables the worker can see."""
    return {k: v for k, v in os.environ.items() if k.startswith("FNHOST_TEST_")}
'''

SLOW = '''
import time


def hang(seconds: float = 3600) -> None:
    """Sleep a long time."""
    time.sleep(seconds)
'''


@asynccontextmanager
async def mcp_session(
    *paths: Path,
    errlog: IO[str],
    timeout: float | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> AsyncIterator[ClientSession]:
    """An initialized SDK client session with ``fnhost mcp PATHS --no-builtins``."""
    args = ["-m", "host", "mcp", *map(str, paths), "--no-builtins", *extra]
    if timeout is not None:
        args += ["--timeout", str(timeout)]
    params = StdioServerParameters(command=sys.executable, args=args, cwd=str(ROOT), env=env)
    async with stdio_client(params, errlog=errlog) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text_of(result: CallToolResult) -> str:
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


@pytest.fixture
def errlog(tmp_path: Path) -> IO[str]:
    with open(tmp_path / "server-stderr.txt", "w+") as f:
        yield f


def server_stderr(errlog: IO[str]) -> str:
    errlog.flush()
    errlog.seek(0)
    return errlog.read()


@pytest.fixture
def tools_dir(write_set: Callable[..., Path], sets_dir: Path) -> Path:
    write_set("tools", TOOLS)
    return sets_dir


# -- tools/list --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_list_tools_matches_the_host_mcp_format(tools_dir, write_set, make_host, errlog):
    write_set("broken", "raise RuntimeError('broken module at import')\n")
    fh = make_host(user_dirs=[tools_dir])
    fh.load_all_function_sets()
    expected = {t["name"]: t for t in fh.tools(format="mcp")}
    assert "broken" in fh.load_errors and "anything" in expected

    async def scenario() -> dict[str, Any]:
        async with mcp_session(tools_dir, errlog=errlog) as session:
            return {t.name: t for t in (await session.list_tools()).tools}

    listed = asyncio.run(scenario())
    assert set(listed) == set(expected)
    for name, tool in listed.items():
        assert tool.description == expected[name]["description"], name
        assert tool.input_schema == expected[name]["inputSchema"], name
        assert tool.output_schema == expected[name].get("outputSchema"), name
    assert listed["add"].output_schema["properties"]["result"] == {"type": "integer"}
    assert listed["double"].output_schema is None
    # The untyped parameter, which openai strict and gemini refuse, is listed as is.
    assert listed["anything"].input_schema["properties"]["value"] == {}
    # The load error went to stderr (stdout carried only the protocol, or the
    # client could not have listed the tools).
    log = server_stderr(errlog)
    assert "broken" in log and "broken module at import" in log


# -- tools/call --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_successful_calls_return_text_and_structured_content(tools_dir, errlog):
    async def scenario() -> dict[str, CallToolResult]:
        async with mcp_session(tools_dir, errlog=errlog) as session:
            return {
                "add": await session.call_tool("add", {"a": 2, "b": 40}),
                "greet": await session.call_tool("greet", {"name": "Ada"}),
                "point": await session.call_tool("point", {"x": 1, "y": 2}),
                "raw": await session.call_tool("raw", {"data": "AAE="}),
                "double": await session.call_tool("double", {"x": 21}),
                "anything": await session.call_tool("anything", {"value": [1, {"a": None}]}),
            }

    results = asyncio.run(scenario())
    for name, result in results.items():
        assert result.is_error is False, (name, text_of(result), server_stderr(errlog))
    assert text_of(results["add"]) == "42"
    assert results["add"].structured_content == {"result": 42}
    assert text_of(results["greet"]) == "Hello, Ada!"
    assert results["greet"].structured_content == {"result": "Hello, Ada!"}
    # An object result is not wrapped.
    assert results["point"].structured_content == {"x": 1, "y": 2}
    assert json.loads(text_of(results["point"])) == {"x": 1, "y": 2}
    # bytes travel as base64, as the schema's contentEncoding says.
    assert results["raw"].structured_content == {"result": "AQA="}
    # No return annotation: no outputSchema, so text only.
    assert text_of(results["double"]) == "42"
    assert results["double"].structured_content is None
    assert json.loads(text_of(results["anything"])) == [1, {"a": None}]


@pytest.mark.timeout(60)
def test_call_errors_are_error_results_a_model_can_act_on(tools_dir, errlog):
    async def scenario() -> dict[str, CallToolResult]:
        async with mcp_session(tools_dir, errlog=errlog) as session:
            return {
                "invalid": await session.call_tool("total", {"items": [1, "two", 3]}),
                "missing": await session.call_tool("add", {"a": 1}),
                "raised": await session.call_tool("fail", {"reason": "no such order"}),
                "unknown": await session.call_tool("no_such_tool", {}),
                "liar": await session.call_tool("liar", {}),
                "after": await session.call_tool("total", {"items": [1, 2, 3]}),
            }

    results = asyncio.run(scenario())
    for name in ("invalid", "missing", "raised", "unknown", "liar"):
        assert results[name].is_error is True, name
        assert results[name].structured_content is None, name
    invalid = text_of(results["invalid"])
    assert "items[1]" in invalid and "expected integer" in invalid and '"two"' in invalid
    assert "b" in text_of(results["missing"]) and "required" in text_of(results["missing"])
    raised = text_of(results["raised"])
    assert "ValueError" in raised and "no such order" in raised
    assert "Traceback" not in raised
    unknown = text_of(results["unknown"])
    assert "no_such_tool" in unknown and "Available tools: add," in unknown
    liar = text_of(results["liar"])
    assert "does not match its declared return type" in liar and "not a number" in liar
    assert results["after"].is_error is False
    assert results["after"].structured_content == {"result": 6}


@pytest.mark.timeout(60)
def test_a_crashing_tool_is_an_error_and_the_next_call_succeeds(tools_dir, errlog):
    async def scenario() -> tuple[CallToolResult, CallToolResult, CallToolResult]:
        async with mcp_session(tools_dir, errlog=errlog) as session:
            crashed = await session.call_tool("crash", {})
            again = await session.call_tool("add", {"a": 1, "b": 1})  # same set, same worker
            where = await session.call_tool("whereami", {})
        return crashed, again, where

    crashed, again, where = asyncio.run(scenario())
    assert crashed.is_error is True
    text = text_of(crashed)
    assert "crashed (SIGSEGV)" in text
    # No internals: no stderr tail, traceback or host file paths reach the model.
    assert "File " not in text and "Fatal Python error" not in text and "zygote" not in text
    assert "SIGSEGV" in server_stderr(errlog)  # ... they are in the server's log
    assert again.is_error is False and again.structured_content == {"result": 2}
    # The session ended: the server closed its workers and their scratch dirs.
    worker = where.structured_content
    assert worker is not None and worker["pid"] != os.getpid()
    assert wait_for(lambda: not Path(f"/proc/{worker['pid']}").exists(), 5.0)
    assert wait_for(lambda: not Path(worker["cwd"]).exists(), 5.0)


@pytest.mark.timeout(60)
def test_a_hanging_tool_times_out_and_the_server_keeps_serving(
    tools_dir, write_set, tmp_path, errlog
):
    slow_dir = tmp_path / "slow"
    slow_dir.mkdir()
    write_set("slow", SLOW, slow_dir)

    async def scenario() -> tuple[CallToolResult, CallToolResult, bool, CallToolResult]:
        async with mcp_session(tools_dir, slow_dir, errlog=errlog, timeout=1) as session:
            hanging = asyncio.create_task(session.call_tool("hang", {}))
            await asyncio.sleep(0.2)
            # Another set's call is served while the hang is in flight.
            meanwhile = await session.call_tool("add", {"a": 2, "b": 3})
            hang_pending = not hanging.done()
            hung = await hanging
            again = await session.call_tool("hang", {"seconds": 0})
        return hung, meanwhile, hang_pending, again

    hung, meanwhile, hang_pending, again = asyncio.run(scenario())
    assert hung.is_error is True
    assert "did not finish within its time limit" in text_of(hung) and "hang" in text_of(hung)
    assert meanwhile.is_error is False and meanwhile.structured_content == {"result": 5}
    assert hang_pending, "the other call was only served after the hang ended"
    # The set's worker was killed and restarted: the same tool works again.
    assert again.is_error is False and again.structured_content == {"result": None}


# -- the process -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_sigterm_stops_the_server_and_its_workers(tools_dir):
    """SIGTERM while the client still holds stdin open: a clean exit, no worker left."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "host", "mcp", str(tools_dir), "--no-builtins"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        hello = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"},
            },
        }
        proc.stdin.write(json.dumps(hello).encode() + b"\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        assert reply["id"] == 1 and reply["result"]["serverInfo"]["name"] == "fnhost"
        proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "whereami", "arguments": {}},
        }
        proc.stdin.write(json.dumps(call).encode() + b"\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        worker = reply["result"]["structuredContent"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
        assert wait_for(lambda: not Path(f"/proc/{worker['pid']}").exists(), 5.0)
        assert not Path(worker["cwd"]).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_missing_sdk_is_a_clear_error(tools_dir):
    code = (
        "import sys; sys.modules['mcp'] = None\n"  # what an absent package looks like
        "from host.cli.main import main\n"
        f"sys.exit(main(['mcp', {str(tools_dir)!r}, '--no-builtins']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 2
    assert "pip install 'fnhost[mcp]'" in result.stderr
    assert result.stdout == ""


def test_help_describes_the_subcommand():
    result = subprocess.run(
        [sys.executable, "-m", "host", "mcp", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0
    assert "--timeout" in result.stdout and "fnhost[mcp]" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "host", "mcp", str(ROOT), "--timeout", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "positive number of seconds" in bad.stderr


# -- the wrapping rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "returns, wrapped",
    [
        ({"type": "integer"}, True),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, False),
        ({"anyOf": [{"type": "object"}, {"type": "null"}]}, True),
        ({"$ref": "#/$defs/P", "$defs": {"P": {"type": "object", "properties": {}}}}, False),
        ({"$ref": "#/$defs/C", "$defs": {"C": {"enum": ["r", "g"], "type": "string"}}}, True),
        ({"anyOf": [{"$ref": "#/$defs/P"}], "$defs": {"P": {"type": "object"}}}, False),
        ({"$ref": "#/$defs/Missing"}, True),
    ],
)
def test_mcp_wraps_result_agrees_with_the_output_schema(returns, wrapped):
    assert mcp_wraps_result(returns) is wrapped
    out = mcp_output_schema(json.loads(json.dumps(returns)))
    is_wrapper = out.get("required") == ["result"] and set(out["properties"]) == {"result"}
    assert is_wrapper is wrapped


@pytest.mark.timeout(60)
def test_env_passes_only_the_named_variables(tools_dir, errlog):
    server_env = {**os.environ, "FNHOST_TEST_TOKEN": "from-server", "FNHOST_TEST_OTHER": "x"}

    async def scenario() -> CallToolResult:
        extra = ["--env", "FNHOST_TEST_TOKEN", "--env", "FNHOST_TEST_GIVEN=given"]
        async with mcp_session(tools_dir, errlog=errlog, extra=extra, env=server_env) as session:
            return await session.call_tool("secrets", {})

    result = asyncio.run(scenario())
    assert result.is_error is False, text_of(result)
    assert result.structured_content == {
        "FNHOST_TEST_TOKEN": "from-server",
        "FNHOST_TEST_GIVEN": "given",
    }


@pytest.mark.timeout(60)
def test_the_memory_tools_are_not_served_without_an_agent(tools_dir, errlog):
    """The built-ins (MemGPT's memory tools) act on an agent, which the
    server has not: they are not listed even without --no-builtins."""

    async def scenario() -> set[str]:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "host", "mcp", str(tools_dir)], cwd=str(ROOT)
        )
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return {t.name for t in (await session.list_tools()).tools}

    listed = asyncio.run(scenario())
    assert "add" in listed
    assert not listed & {"send_message", "core_memory_append", "archival_memory_search"}


@pytest.mark.timeout(60)
def test_a_clients_cancel_stops_the_running_call(write_set, sets_dir, errlog):
    """The client gives up (its read timeout sends notifications/cancelled):
    the call's worker is killed, so the next call does not wait behind it
    for the server's --timeout (here 600 s)."""
    write_set("slow", SLOW)

    async def scenario() -> tuple[bool, CallToolResult]:
        async with mcp_session(sets_dir, errlog=errlog, timeout=600) as session:
            try:
                await session.call_tool("hang", {"seconds": 600}, read_timeout_seconds=0.5)
                gave_up = False
            except Exception:
                gave_up = True
            # A second tool of the same set: it needs the set's worker.
            return gave_up, await asyncio.wait_for(session.call_tool("hang", {"seconds": 0}), 20)

    gave_up, after = asyncio.run(scenario())
    assert gave_up
    assert not after.is_error


@pytest.mark.timeout(60)
def test_open_world_hint_follows_the_sets_network_door(tools_dir, errlog):
    async def scenario(extra: Sequence[str]) -> dict[str, Any]:
        async with mcp_session(tools_dir, errlog=errlog, extra=extra) as session:
            return {t.name: t.annotations for t in (await session.list_tools()).tools}

    closed = asyncio.run(scenario(()))
    assert closed and all(a.open_world_hint is False for a in closed.values())
    through_proxy = asyncio.run(scenario(("--allow", "127.0.0.1:9")))
    assert all(a.open_world_hint is True for a in through_proxy.values())


HOSTILE = '''
"""Results a hostile set would aim at the server with."""
from typing import Annotated


class Slow:
    """Constraint metadata, read by attribute: a pattern that backtracks."""

    pattern = r"^(a+)+$"


def word(n: int) -> Annotated[str, Slow()]:
    """n a's and a '!': no match for the pattern, after 2**n steps of a backtracking check."""
    return "a" * n + "!"


def nested(depth: int) -> dict:
    """A value nested depth maps deep."""
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value
'''


@pytest.mark.timeout(60)
def test_hostile_results_are_error_results_or_unchecked_and_the_server_keeps_serving(
    write_set, sets_dir, errlog
):
    """A result nested 700 deep would exhaust the server's recursion; a
    pattern that backtracks would hold its event loop for minutes if the
    server checked results against it (it is left out of outputSchema)."""
    write_set("hostile", HOSTILE)

    async def scenario() -> tuple[Any, CallToolResult, CallToolResult, CallToolResult]:
        async with mcp_session(sets_dir, errlog=errlog) as session:
            listed = await session.list_tools()
            return (
                listed,
                await session.call_tool("word", {"n": 40}),
                await session.call_tool("nested", {"depth": 700}),
                await session.call_tool("nested", {"depth": 2}),
            )

    listed, word, deep, shallow = asyncio.run(scenario())
    schema = next(t for t in listed.tools if t.name == "word").output_schema
    assert "pattern" not in json.dumps(schema)
    assert word.is_error is False and text_of(word) == "a" * 40 + "!"
    assert deep.is_error is True
    assert "nested more than 100 levels deep" in text_of(deep)
    assert shallow.is_error is False
    assert shallow.structured_content == {"a": {"a": {}}}
