"""The agent-loop examples run end to end with their fake model clients."""

from __future__ import annotations

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
