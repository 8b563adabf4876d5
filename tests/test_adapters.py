"""What every framework adapter (``host.adapters``) shares: the cases each
framework's test drives through its own agent loop, the public error
renderer, the tool list built from fnhost's own schemas, and that
``import host`` imports no framework.

Each ``tests/test_adapters_<framework>.py`` runs ``CASES`` through that
framework's agent loop with its own fake model and a real worker.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

import host
from host import (
    CallTimeout,
    FunctionHost,
    InvalidArguments,
    UserFunctionError,
    WorkerCrashed,
    tool_error_text,
)
from host.adapters.hosted_tools import hosted_tools

TOOLS = '''
import ctypes
import time


def add(a: int, b: int = 10) -> int:
    """Add two integers."""
    return a + b


def fail(message: str) -> None:
    """Raise ValueError."""
    raise ValueError(message)


def segfault() -> None:
    """Crash the worker."""
    ctypes.string_at(0)


def sleep(seconds: float) -> str:
    """Sleep, then say so."""
    time.sleep(seconds)
    return "slept"
'''

#: The per-call timeout of the timeout case's tools (the others keep the set's).
SHORT_TIMEOUT = 1.0


@dataclass(frozen=True)
class Case:
    """One tool call a fake model makes, and the text the model must get back."""

    id: str
    tool: str
    arguments: dict[str, Any]
    text: str  # the whole text for a success, its start for an error
    is_error: bool

    @property
    def timeout(self) -> float | None:
        return SHORT_TIMEOUT if self.id == "timeout" else None

    def matches(self, text: str) -> bool:
        return text.startswith(self.text) if self.is_error else text == self.text


CASES = [
    Case("success", "add", {"a": 2, "b": 3}, "5", False),
    Case(
        "invalid_arguments",
        "add",
        {"a": "two"},
        "Error: invalid arguments for add: a: expected integer, got string",
        True,
    ),
    Case(
        "user_exception", "fail", {"message": "boom"}, "Error: fail raised ValueError: boom", True
    ),
    Case("crash", "segfault", {}, "Error: segfault crashed (SIGSEGV)", True),
    Case("timeout", "sleep", {"seconds": 60}, "Error: sleep did not finish", True),
]
CASE_IDS = [c.id for c in CASES]


@pytest.fixture
def tools_host(make_host, write_set) -> FunctionHost:
    fh = make_host()
    fh.load_function_set(write_set("tools", TOOLS))
    return fh


FRAMEWORKS = ["pydantic_ai", "langchain_core", "agents", "llama_index", "smolagents"]


def test_importing_host_imports_no_framework():
    code = (
        "import sys, host, host.adapters, host.adapters.hosted_tools\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_error_renderer_is_public_and_is_dispatchs():
    assert "tool_error_text" in host.__all__
    crashed = WorkerCrashed("tools", "segfault", "the worker died", signal="SIGSEGV")
    assert tool_error_text("segfault", crashed).startswith("Error: segfault crashed (SIGSEGV)")
    raised = UserFunctionError("tools", "fail", "boom", remote_type="ValueError")
    assert tool_error_text("fail", raised) == "Error: fail raised ValueError: boom"
    late = CallTimeout("tools", "sleep", "too slow")
    assert tool_error_text("sleep", late).startswith("Error: sleep did not finish")
    assert "Traceback" not in tool_error_text("x", RuntimeError("Traceback: secret /path"))


def test_dispatch_renders_with_the_public_renderer(tools_host):
    result = tools_host.dispatch({"type": "tool_use", "id": "1", "name": "add", "input": {}})
    assert isinstance(result.error, InvalidArguments)
    assert result.text == tool_error_text("add", result.error)


def test_hosted_tools_take_fnhosts_own_schemas(tools_host):
    raw = {t["name"]: t for t in tools_host.tools(format="raw")}
    tools = hosted_tools(tools_host)
    assert [t.name for t in tools] == list(raw)
    for t in tools:
        assert t.parameters == raw[t.name]["parameters"]
        assert t.description == raw[t.name]["description"]
    strict = {
        t["function"]["name"]: t["function"]["parameters"]
        for t in tools_host.tools(format="openai", strict=True)
    }
    chosen = hosted_tools(tools_host, schema="openai-strict")
    assert {t.name: t.parameters for t in chosen} == strict
    gemini = {t["name"]: t["parameters"] for t in tools_host.tools(format="gemini")}
    assert {t.name: t.parameters for t in hosted_tools(tools_host, schema="gemini")} == gemini
    with pytest.raises(ValueError, match="unknown schema 'anthropic'"):
        hosted_tools(tools_host, schema="anthropic")


def test_hosted_tools_choose_by_name_and_refuse_unknown_names(tools_host):
    assert [t.name for t in hosted_tools(tools_host, names=["sleep", "add"])] == ["sleep", "add"]
    with pytest.raises(
        ValueError, match=r"no tool named 'nope'; tools: add, fail, segfault, sleep"
    ):
        hosted_tools(tools_host, names=["nope"])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_hosted_tool_returns_dispatchs_result_for_each_case(tools_host, case):
    (tool,) = hosted_tools(tools_host, names=[case.tool], timeout=case.timeout)
    result = tool.run(case.arguments)
    assert case.matches(result.text), result.text
    assert result.is_error is case.is_error


def test_a_hosted_tool_takes_json_text_and_strips_the_heartbeat(make_host, write_set):
    fh = make_host(request_heartbeat=True)
    fh.load_function_set(write_set("tools", TOOLS))
    (tool,) = hosted_tools(fh, names=["add"])
    assert "request_heartbeat" in tool.parameters["properties"]
    result = tool.run('{"a": 1, "request_heartbeat": true}')
    assert (result.text, result.heartbeat_requested) == ("11", True)
