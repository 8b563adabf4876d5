"""The ``fnhost`` command line, run as a real program."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "function_sets"


def fnhost(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.timeout(90)
def test_demo_runs_and_survives_crash_and_hang():
    result = fnhost("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "get_weather" in out
    assert "WorkerCrashed [worker_crashed]" in out and "SIGSEGV" in out
    assert "CallTimeout [timeout]" in out
    assert '"STILL HERE!"' in out and '"AND AGAIN!"' in out
    assert "api_key_configured({}) -> true" in out
    # The built-in memory tools ran in a worker and changed the demo's agent.
    assert "agent.memory.human == 'Name: Ada.'" in out
    assert "memory: Ada's cat is called Turing." in out


def test_schemas_merged_and_nested():
    merged = fnhost("schemas", str(EXAMPLES), "--no-builtins")
    assert merged.returncode == 0, merged.stderr
    schemas = json.loads(merged.stdout)
    assert schemas["add"]["parameters"]["required"] == ["a", "b"]
    nested = json.loads(fnhost("schemas", str(EXAMPLES), "--nested").stdout)
    assert set(nested) >= {"calculator", "weather", "flaky", "memgpt"}
    assert "get_weather" in nested["weather"]


def test_call_prints_json_result():
    result = fnhost(
        "call", str(EXAMPLES / "calculator.py"), "--no-builtins", "add", '{"a": 1, "b": 2}'
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 3


def test_call_failure_exit_code_and_message():
    result = fnhost("call", str(EXAMPLES), "--no-builtins", "get_weather", '{"city": 5}')
    assert result.returncode == 1
    assert "invalid_arguments" in result.stderr and "city" in result.stderr


def test_load_failure_exit_code(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('broken module')\n")
    result = fnhost("schemas", str(bad), "--no-builtins")
    assert result.returncode == 2
    assert "broken module" in result.stderr


def test_schemas_in_provider_formats():
    result = fnhost(
        "schemas", str(EXAMPLES / "weather.py"), "--no-builtins", "--format", "openai", "--strict"
    )
    assert result.returncode == 0, result.stderr
    tools = {t["function"]["name"]: t["function"] for t in json.loads(result.stdout)}
    weather = tools["get_weather"]
    assert weather["strict"] is True
    assert weather["parameters"]["required"] == ["city", "units"]
    gemini = json.loads(
        fnhost(
            "schemas", str(EXAMPLES / "weather.py"), "--no-builtins", "--format", "gemini"
        ).stdout
    )
    assert "$defs" not in json.dumps(gemini)


def test_strict_refusal_is_a_clear_error(tmp_path):
    tools = tmp_path / "maps.py"
    tools.write_text("def tally(counts: dict[str, int]) -> int:\n    return sum(counts.values())\n")
    result = fnhost("schemas", str(tools), "--no-builtins", "--format", "openai", "--strict")
    assert result.returncode == 2
    assert "tally" in result.stderr and "counts" in result.stderr


CHECKED = '''
from typing import Any


def good(city: str) -> str:
    """Look up a city.

    Args:
        city: The city name.
    """
    return city


def tally(counts: dict[str, int]) -> int:
    """Sum counts.

    Args:
        counts: Counts by name.
    """
    return sum(counts.values())


def vague(x):
    return x


def bad_keys(m: dict[int, str]) -> int:
    """Keys are not strings."""
    return len(m)
'''


def test_check_reports_problems_and_exits_non_zero(tmp_path):
    path = tmp_path / "checked.py"
    path.write_text(CHECKED)
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('no such dependency')\n")
    result = fnhost("check", str(path), str(broken))
    assert result.returncode == 1
    out = result.stdout
    assert "broken: ImportError: no such dependency [load-failed]" in out
    assert "checked.bad_keys: not exported" in out and "[skipped]" in out
    assert "checked.tally: cannot be used with OpenAI strict mode: parameter 'counts'" in out
    assert "checked.vague" in out and "[no-description]" in out
    assert "checked.good" not in out


def test_check_json_and_clean_set(tmp_path):
    path = tmp_path / "clean.py"
    path.write_text('def ping() -> str:\n    """Answer pong."""\n    return "pong"\n')
    result = fnhost("check", str(path), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {"findings": [], "errors": 0, "warnings": 0}


def test_doctor_reports_probed_layers():
    result = fnhost("doctor", "--json")
    assert result.returncode == 0, result.stderr
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)}
    for name in (
        "own_session",
        "parent_death_signal",
        "rlimit_memory",
        "rlimit_core",
        "environment",
        "pidfd",
        # An empty allow-list: the worker reached the proxy, which refused.
        "egress",
    ):
        assert layers[name]["status"] == "active", layers[name]
    assert {layer["status"] for layer in layers.values()} <= {"active", "available", "unavailable"}


TERMINAL_TRICKS = """
def shout() -> str:
    print("\\x1b]52;c;Y3VybCBldmls\\x07printed")  # OSC 52: write the clipboard
    raise ValueError("\\x1b[2K\\rERROR: host compromised\\x1b]0;title\\x07")


def chatty() -> int:
    print("\\x1b[31mred\\x1b[0m and\\u2028more")
    return 1
"""


def test_call_escapes_a_sets_control_characters_on_the_terminal(tmp_path):
    """What a set prints or raises reaches the operator's terminal: its
    escape sequences (clipboard writes, cursor moves) are shown escaped."""
    path = tmp_path / "tricks.py"
    path.write_text(TERMINAL_TRICKS)
    tmp_path.chmod(0o755)
    path.chmod(0o644)
    failed = fnhost("call", str(path), "--no-builtins", "shout", "{}")
    assert failed.returncode != 0
    assert "\x1b" not in failed.stderr and "\x07" not in failed.stderr
    assert "\\x1b[2K" in failed.stderr and "compromised\\x1b]0;title\\x07" in failed.stderr
    ok = fnhost("call", str(path), "--no-builtins", "chatty", "{}")
    assert ok.returncode == 0 and ok.stdout.strip() == "1"
    assert "\x1b" not in ok.stderr and "\u2028" not in ok.stderr
    assert "\\x1b[31mred\\x1b[0m and\\u2028more" in ok.stderr
