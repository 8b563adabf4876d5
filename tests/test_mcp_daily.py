"""``fnhost mcp`` for daily work, driven by the official MCP client: reload
on edit with ``tools/list_changed``, a tool's output as log messages, the
streamable HTTP transport, and client configurations that start the server
from a fresh shell. Plus the small things: ``--version``, ``--log-level``,
``fnhost call --memory/--env``, ``async with FunctionHost``, ``py.typed``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

import host
from host import FunctionHost

from .conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent

TOOLS = '''
import sys


def greet(name: str) -> str:
    """Greet someone, saying so on stdout and stderr."""
    print(f"greeting {name}")
    print("a warning on stderr", file=sys.stderr)
    return f"hello {name}"
'''


@asynccontextmanager
async def session_of(
    command: str,
    args: Sequence[str],
    *,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    seen: list[Any] | None = None,
    logs: list[Any] | None = None,
    errlog: Any = None,
) -> AsyncIterator[ClientSession]:
    async def on_message(message: Any) -> None:
        if seen is not None:
            seen.append(message)

    async def on_log(params: Any) -> None:
        if logs is not None:
            logs.append(params)

    params = StdioServerParameters(command=command, args=list(args), cwd=cwd, env=env)
    async with stdio_client(params, errlog=errlog or sys.stderr) as (read, write):
        async with ClientSession(
            read, write, message_handler=on_message, logging_callback=on_log
        ) as session:
            await session.initialize()
            yield session


@pytest.fixture
def tools_dir(write_set, sets_dir: Path) -> Path:
    write_set("tools", TOOLS)
    return sets_dir


@pytest.mark.timeout(90)
def test_watch_reloads_an_edited_set_and_tells_the_client(tools_dir, write_set, tmp_path):
    seen: list[Any] = []

    async def scenario() -> tuple[set[str], set[str]]:
        args = ["-m", "host", "mcp", str(tools_dir), "--watch"]
        with open(tmp_path / "stderr.txt", "w") as errlog:
            async with session_of(sys.executable, args, seen=seen, errlog=errlog) as session:
                before = {t.name for t in (await session.list_tools()).tools}
                write_set("tools", TOOLS + '\n\ndef shout(text: str) -> str:\n    """Shout."""\n'
                                          "    return text.upper()\n")  # fmt: skip
                for _ in range(200):
                    if any("list_changed" in repr(m) or "ListChanged" in repr(m) for m in seen):
                        break
                    await asyncio.sleep(0.05)
                after = {t.name for t in (await session.list_tools()).tools}
                result = await session.call_tool("shout", {"text": "hi"})
                assert result.content[0].text == "HI"
                return before, after

    before, after = asyncio.run(scenario())
    assert before == {"greet"}
    assert after == {"greet", "shout"}
    assert any("list_changed" in repr(m) or "ListChanged" in repr(m) for m in seen), seen


@pytest.mark.timeout(60)
def test_what_a_tool_prints_reaches_the_client_as_log_messages(tools_dir):
    logs: list[Any] = []

    async def scenario() -> None:
        args = ["-m", "host", "mcp", str(tools_dir)]
        async with session_of(sys.executable, args, logs=logs) as session:
            result = await session.call_tool("greet", {"name": "Ada"})
            assert result.content[0].text == "hello Ada"

    asyncio.run(scenario())
    by_level = {(p.level, p.logger): str(p.data) for p in logs}
    assert "greeting Ada" in by_level[("info", "fnhost.greet")]
    assert "a warning on stderr" in by_level[("warning", "fnhost.greet")]


@pytest.mark.timeout(60)
def test_the_printed_configuration_starts_the_server_from_a_fresh_shell(tools_dir, tmp_path):
    printed = subprocess.run(
        [sys.executable, "-m", "host", "mcp", "tools.py", "--timeout", "12", "--print-config"],
        cwd=tools_dir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    entry = json.loads(printed.stdout)["mcpServers"]["fnhost"]
    assert entry["command"] == sys.executable
    assert str(tools_dir / "tools.py") in entry["args"]  # made absolute
    # A desktop app's shell: another directory, a PATH without our venv.
    fresh = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    async def scenario() -> str:
        async with session_of(entry["command"], entry["args"], cwd="/", env=fresh) as session:
            result = await session.call_tool("greet", {"name": "from a fresh shell"})
            return result.content[0].text

    assert asyncio.run(scenario()) == "hello from a fresh shell"
    vscode = subprocess.run(
        [sys.executable, "-m", "host", "mcp", str(tools_dir), "--print-config",
         "--client", "vscode"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(vscode.stdout)["servers"]["fnhost"]["type"] == "stdio"


def test_install_writes_the_clients_file_and_keeps_the_old_one(tools_dir, tmp_path):
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}, "theme": "dark"}))
    result = subprocess.run(
        [sys.executable, "-m", "host", "install", "claude-desktop", str(tools_dir),
         "--config", str(config), "--allow", "api.example.com:443"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = json.loads(config.read_text())
    assert written["theme"] == "dark" and written["mcpServers"]["other"] == {"command": "x"}
    args = written["mcpServers"]["fnhost"]["args"]
    assert args[:4] == ["-P", "-m", "host", "mcp"] and "api.example.com:443" in args
    backup = json.loads((tmp_path / "claude_desktop_config.json.bak").read_text())
    assert "fnhost" not in backup["mcpServers"]
    config.write_text("not json")
    refused = subprocess.run(
        [sys.executable, "-m", "host", "install", "cursor", str(tools_dir),
         "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and config.read_text() == "not json"


@pytest.mark.timeout(90)
def test_streamable_http_transport_on_loopback(tools_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "host", "mcp", str(tools_dir), "--http", "127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = None
        assert proc.stderr is not None
        for line in proc.stderr:
            if "serving on" in line:
                url = line.rsplit(" ", 1)[1].strip()
                break
        assert url and url.startswith("http://127.0.0.1:") and url.endswith("/mcp"), url

        async def scenario() -> str:
            async with streamable_http_client(url) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    names = {t.name for t in (await session.list_tools()).tools}
                    assert names == {"greet"}
                    result = await session.call_tool("greet", {"name": "HTTP"})
                    return result.content[0].text

        assert asyncio.run(scenario()) == "hello HTTP"
        port = url.split(":")[2].split("/")[0]
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
        ours = [line for line in listening.splitlines() if f":{port} " in line]
        assert ours and all("127.0.0.1:" in line for line in ours), ours
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2"])
def test_http_refuses_a_foreign_host_header_on_every_loopback_address(tools_dir, address):
    """DNS rebinding: a page at evil.example resolving to the server's
    address. The SDK checks Host only for 127.0.0.1, localhost and ::1; the
    rest of loopback (127.0.0.2) is loopback too, and gets no warning."""
    import urllib.error
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-m", "host", "mcp", str(tools_dir), "--http", f"{address}:0"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url, said = None, []
        assert proc.stderr is not None
        for line in proc.stderr:
            said.append(line)
            if "serving on" in line:
                url = line.rsplit(" ", 1)[1].strip()
                break
        assert url and url.startswith(f"http://{address}:"), said
        assert not any("beyond loopback" in line for line in said)
        body = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "evil", "version": "1"}}}
        ).encode()  # fmt: skip
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Host": "evil.example", "Origin": "http://evil.example",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream"})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code in (403, 421)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


# -- the small things ----------------------------------------------------------------


def test_version_and_log_level(tools_dir):
    version = subprocess.run(
        [sys.executable, "-m", "host", "--version"], capture_output=True, text=True, timeout=30
    )
    assert version.stdout.strip() == f"fnhost {host.__version__}"
    assert host.__version__ != "0+unknown"
    quiet = subprocess.run(
        [sys.executable, "-m", "host", "call", str(tools_dir), "greet", '{"name": "a"}'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    loud = subprocess.run(
        [sys.executable, "-m", "host", "--log-level", "info", "call", str(tools_dir), "greet",
         '{"name": "a"}'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "a warning on stderr" not in quiet.stderr
    assert "fnhost.worker.tools: a warning on stderr" in loud.stderr


def test_fnhost_call_memory_and_env(write_set, sets_dir, monkeypatch):
    write_set(
        "mem",
        '''
import os


def hog(mb: int) -> int:
    """Hold mb MiB."""
    return len(bytearray(mb << 20))


def var(name: str) -> str:
    """A variable."""
    return os.environ.get(name, "<unset>")
''',
    )
    monkeypatch.setenv("FNHOST_TEST_PASSED", "from-the-shell")

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "host", "call", str(sets_dir), *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert json.loads(call("hog", '{"mb": 100}').stdout) == 100 << 20
    small = call("hog", '{"mb": 100}', "--memory", "64")
    assert small.returncode == 1 and "out_of_memory" in small.stderr
    assert json.loads(call("var", '{"name": "FNHOST_TEST_PASSED"}').stdout) == "<unset>"
    passed = call("var", '{"name": "FNHOST_TEST_PASSED"}', "--env", "FNHOST_TEST_PASSED")
    assert json.loads(passed.stdout) == "from-the-shell"
    named = call("var", '{"name": "X"}', "--env", "X=given")
    assert json.loads(named.stdout) == "given"


def test_async_with_a_host_loads_and_closes_off_the_event_loop(write_set, empty_dir):
    path = write_set("tools", TOOLS)

    async def scenario() -> tuple[str, list[int]]:
        async with FunctionHost(builtin_dir=empty_dir, user_dirs=[]) as fh:
            await fh.aload_function_set(str(path))
            value = await fh.acall("greet", {"name": "async"})
            pids = list(fh.function_sets["tools"]["pids"])
        return value, pids

    value, pids = asyncio.run(scenario())
    assert value == "hello async"
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids))


def test_packages_ship_py_typed():
    import tomllib

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    for package in ("host", "worker", "protocol"):
        assert (ROOT / package / "py.typed").is_file()
        assert "py.typed" in package_data[package]


def test_install_keeps_a_private_configuration_private(tools_dir, tmp_path):
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"paid": {"env": {"API_KEY": "sk-secret"}}}}))
    config.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "host", "install", "cursor", str(tools_dir),
         "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert config.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "mcp.json.bak").stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "new" / "mcp.json"
    subprocess.run(
        [sys.executable, "-m", "host", "install", "cursor", str(tools_dir), "--config", str(fresh)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert fresh.stat().st_mode & 0o777 == 0o600


PIDS = '''
import os


def whoami() -> int:
    """The pid of the worker that answers."""
    return os.getpid()
'''


@pytest.mark.timeout(90)
def test_mcp_idle_timeout_and_schema_cache(write_set, sets_dir, tmp_path):
    """``--idle-timeout``: a worker idle past it is stopped and the next tool
    call starts another (a new pid); ``--schema-cache``: the second server
    finds its schemas in the cache, and both survive ``--print-config``."""
    write_set("pids", PIDS)
    env = {**os.environ, "FNHOST_CACHE_DIR": str(tmp_path / "cache")}
    args = ["-m", "host", "mcp", str(sets_dir), "--idle-timeout", "0.2", "--schema-cache"]

    async def scenario() -> list[str]:
        async with session_of(sys.executable, args, env=env) as session:
            first = (await session.call_tool("whoami", {})).content[0].text
            await asyncio.sleep(1.0)
            second = (await session.call_tool("whoami", {})).content[0].text
            tools = [t.name for t in (await session.list_tools()).tools]
            return [first, second, *tools]

    first, second, *tools = asyncio.run(scenario())
    assert tools == ["whoami"] and first != second
    (entry,) = (tmp_path / "cache" / "schemas").glob("*.msgpack")
    written = entry.stat().st_mtime_ns
    again = asyncio.run(scenario())
    assert again[2:] == ["whoami"]
    # Served from the cache: a miss would have written the entry again.
    assert entry.stat().st_mtime_ns == written
    printed = subprocess.run(
        [sys.executable, *args, "--print-config"], capture_output=True, text=True, timeout=60
    )
    entry = json.loads(printed.stdout)["mcpServers"]["fnhost"]
    assert entry["args"][-3:] == ["--idle-timeout", "0.2", "--schema-cache"]


def test_install_never_writes_or_copies_through_a_planted_link(tools_dir, tmp_path):
    """A cloned repository's .vscode/ may hold links: a .bak linked to a
    file of the user's (install would overwrite it with the repository's
    file and its mode), or mcp.json linked to another client's file (install
    would copy its keys into the workspace)."""

    def install(config) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "host", "install", "vscode", str(tools_dir),
             "--config", str(config)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    victim = tmp_path / "bashrc"
    victim.write_text("the user's own\n")
    victim.chmod(0o600)
    workspace = tmp_path / "repo" / ".vscode"
    workspace.mkdir(parents=True)
    (workspace / "mcp.json").write_text(json.dumps({"servers": {}, "planted": True}))
    (workspace / "mcp.json").chmod(0o666)
    (workspace / "mcp.json.bak").symlink_to(victim)
    result = install(workspace / "mcp.json")
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "the user's own\n" and victim.stat().st_mode & 0o777 == 0o600
    assert not (workspace / "mcp.json.bak").is_symlink()  # a file of its own now

    secrets = tmp_path / "cursor-mcp.json"
    secrets.write_text(json.dumps({"mcpServers": {"paid": {"env": {"API_KEY": "sk-secret"}}}}))
    linked = tmp_path / "repo2" / ".vscode"
    linked.mkdir(parents=True)
    (linked / "mcp.json").symlink_to(secrets)
    refused = install(linked / "mcp.json")
    assert refused.returncode == 2 and "symbolic link" in refused.stderr
    assert not (linked / "mcp.json.bak").exists()
    assert "fnhost" not in secrets.read_text()
