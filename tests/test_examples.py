"""The agent-loop examples run end to end with their fake model clients."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_openai_loop_dispatches_parallel_calls_and_reports_errors():
    result = run("openai_agent.py")
    assert result.returncode == 0, result.stderr
    assert 'call_1: {"city":"Paris","temperature":57.2,"units":"imperial"}' in result.stdout
    assert "call_2: Error: forecast raised ValueError: days must be between 1 and 7" in (
        result.stdout
    )


def test_anthropic_loop_survives_a_crashing_tool():
    result = run("anthropic_agent.py")
    assert result.returncode == 0, result.stderr
    assert "toolu_1 -> 1.6666666666666667" in result.stdout
    assert "toolu_2 -> Error: crash crashed (SIGSEGV)" in result.stdout
    assert "(error)" in result.stdout


def test_memgpt_loop_changes_the_agent_in_the_host():
    """The example's agent lives in the process that runs it; the built-in
    tools, in workers, changed it through the context door."""
    spec = importlib.util.spec_from_file_location("memgpt_agent", EXAMPLES / "memgpt_agent.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    agent = example.main()
    assert agent.memory.human == "Name: Ada. Keeps bees. Moving to Porto."
    assert "<human>\nName: Ada. Keeps bees. Moving to Porto.\n</human>" in agent.core_memory_text
    assert [p["content"] for p in agent.persistence_manager.archival_memory.passages] == [
        "Ada keeps her bees on her roof in Lisbon."
    ]
    assert agent.interface.messages == [
        "Nice to meet you, Ada! 🐝 I'll remember your bees.",
        "On your roof in Lisbon, for now. Good luck in Porto!",
    ]
    roles = [m["role"] for m in agent.persistence_manager.recall_memory.messages]
    assert roles == ["user", "assistant", "user", "assistant"]


def test_memgpt_loop_runs_as_a_script_and_honours_heartbeats():
    result = run("memgpt_agent.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Searched archival memory, then went on (a heartbeat) to act on what it found.
    assert 'archival_memory_search({"query": "Where are Ada\'s bees?"}) -> Showing 1 of 1' in out
    assert "memory: Ada keeps her bees on her roof in Lisbon." in out
    # The failed edit came back as text, and forced a heartbeat so the model could fix it.
    failed = "-> Error: core_memory_replace raised ValueError: Content not found in human"
    assert out.index(failed) < out.index("Moving to Porto.")
    assert out.count("(heartbeat)") == 5
    # Each user turn ended with send_message, which takes no heartbeat.
    assert out.count("send_message(") == 2
