"""Every Python snippet in the README runs, as a reader would paste it.

The quick start runs as a script from the repository root; the snippets
that continue a session (provider formats, dispatching) run against a host
with the example sets loaded and, for dispatching, the scripted fake SDK
clients of ``examples/`` standing in for OpenAI and Anthropic. A snippet
this file does not know fails the suite, so a new one cannot go untested.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from host import FunctionHost, ToolResult

ROOT = Path(__file__).resolve().parent.parent
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _snippet(first_line: str) -> str:
    found = [s for s in SNIPPETS if s.splitlines()[0].strip() == first_line]
    assert len(found) == 1, f"README snippet starting {first_line!r}: {len(found)} found"
    return found[0]


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_snippet_is_one_this_file_runs():
    known = {"import asyncio", 'fh.tools(format="openai")  # Chat Completions tools'}
    known.add("# OpenAI Chat Completions")
    known.add("fh.load_function_set(")
    known.add("from host import MEMGPT_EXPOSE, Agent, FunctionHost")
    known.add("from host import Allow, Egress, FunctionHost, Header, Limits, Sandbox, Secret")
    known.add("# /// script")
    known.add("from host import FunctionHost, Limits")  # many sets
    known.add("from host import FunctionHost, Limits, RayPlacement, RayResources")  # test_ray.py
    assert {s.splitlines()[0].strip() for s in SNIPPETS} == known


def test_the_quick_start_runs_as_pasted(tmp_path):
    script = tmp_path / "quick_start.py"
    script.write_text(_snippet("import asyncio"))
    home = tmp_path / "home"  # no ~/.fnhost/functions of the person running the tests
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FNHOST_")}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert "'temperature': 14.0" in out[1]  # get_weather(city="Paris")
    assert "shouting 2 characters" in result.stdout  # what shout printed
    assert any("was killed by SIGSEGV" in line for line in out)  # the crash, as one sentence
    assert out[-1] == "{}"  # no load errors


@pytest.fixture
def fh():
    with FunctionHost(builtin_dir=ROOT / "examples" / "function_sets", user_dirs=[]) as host:
        host.load_all_function_sets()
        yield host


def test_the_provider_formats_snippet_runs(fh):
    namespace = {"fh": fh}
    exec(_snippet('fh.tools(format="openai")  # Chat Completions tools'), namespace)


def test_the_dispatch_snippet_runs_with_each_sdks_shapes(fh):
    openai_part, anthropic_part = _snippet("# OpenAI Chat Completions").split(
        "# Anthropic Messages"
    )
    question = {"role": "user", "content": "Weather in Paris?"}

    messages: list = [question]
    client = _example("openai_agent").FakeOpenAI()
    exec(openai_part, {"fh": fh, "client": client, "model": "m", "messages": messages})
    results = [m for m in messages if isinstance(m, ToolResult)]
    assert [r["role"] for r in results] == ["tool", "tool"]
    assert results[0].value == {"city": "Paris", "temperature": 57.2, "units": "imperial"}

    messages = [question]
    client = _example("anthropic_agent").FakeAnthropic()
    exec(
        textwrap.dedent(anthropic_part),
        {"fh": fh, "client": client, "model": "m", "messages": messages},
    )
    blocks = messages[-1]["content"]
    assert messages[-1]["role"] == "user" and blocks
    assert all(b["type"] == "tool_result" for b in blocks)


def test_the_context_door_snippet_runs_against_a_host_agent(fh, monkeypatch):
    """The snippet's set (examples/memory_tools.py, MemGPT's way) reaches the
    agent only through the listed paths: its effects are on the host object."""

    class Memory:
        def __init__(self) -> None:
            self.human = ""

        def edit_append(self, name: str, content: str) -> None:
            assert name == "human"
            self.human += content

    class Agent:
        def __init__(self) -> None:
            self.memory = Memory()
            self.rebuilt = 0
            self.pause_heartbeats_minutes = 0

        def rebuild_memory(self) -> None:
            self.rebuilt += 1

    agent = Agent()
    monkeypatch.chdir(ROOT)
    exec(_snippet("fh.load_function_set("), {"fh": fh, "agent": agent})
    assert (agent.memory.human, agent.rebuilt, agent.pause_heartbeats_minutes) == (
        "Likes cats.",
        1,
        30,
    )
    assert fh.function_sets["memory_tools"]["exposed"] == [
        "memory.edit_append",
        "rebuild_memory",
        "pause_heartbeats_minutes",
    ]


def test_the_builtins_snippet_runs_and_changes_its_agent(tmp_path, monkeypatch, capsys):
    """The built-ins, in workers, change the snippet's own agent; nothing of
    the reader's ~/.fnhost/functions is loaded (user_dirs=[])."""
    monkeypatch.setenv("HOME", str(tmp_path))
    namespace: dict = {}
    exec(_snippet("from host import MEMGPT_EXPOSE, Agent, FunctionHost"), namespace)
    agent = namespace["agent"]
    assert agent.memory.human == "Name: Ada."
    assert "<human>\nName: Ada.\n</human>" in agent.core_memory_text
    assert [p["content"] for p in agent.persistence_manager.archival_memory.passages] == [
        "Ada keeps bees in Lisbon."
    ]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Showing 1 of 1 results (page 0/0): ")
    assert "memory: Ada keeps bees in Lisbon." in out[0]
    assert out[1] == "Name: Ada."


def test_the_egress_snippet_loads_a_set_behind_the_proxy(tmp_path, monkeypatch, make_host):
    (tmp_path / "weather.py").write_text(
        'def forecast(city: str) -> str:\n    """A forecast."""\n    return city\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WEATHER_KEY", "k-123")
    fh = make_host()
    exec(_snippet("from host import Allow, Egress, FunctionHost, Header, Limits, Sandbox, Secret"),
         {"fh": fh})  # fmt: skip
    report = fh.protections("weather")
    assert report["egress"] == "allow-list" and report["egress_only"] is True
    assert report["egress_credentials"] == ["api.weather.example"]
    assert fh.call("forecast", {"city": "Oslo"}) == "Oslo"


def test_the_many_sets_snippet_loads_from_the_cache_the_second_time(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("FNHOST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FNHOST_FUNCTIONS_DIR", str(tmp_path))  # not the reader's own sets
    code = _snippet("from host import FunctionHost, Limits")
    started: list[dict] = []
    load_all = FunctionHost.load_all_function_sets

    def recording(self, *args, **kwargs):
        out = load_all(self, *args, **kwargs)
        started.append({n: s["pid"] for n, s in self.function_sets.items()})
        return out

    monkeypatch.setattr(FunctionHost, "load_all_function_sets", recording)
    for _ in range(2):
        exec(code, {"__name__": "snippet"})
    first, second = started
    assert all(pid is not None for pid in first.values()) and "weather" in first
    assert set(second) == set(first) and all(pid is None for pid in second.values())
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0] == out[1] and "Paris" in out[0]
    assert list((tmp_path / "cache" / "schemas").glob("*.msgpack"))
