"""``FunctionHost(request_heartbeat="memgpt")``: MemGPT's heartbeat parameter, in every format.

Required, with MemGPT's description, on every tool except those that end the
agent's turn (``send_message``, ``pause_heartbeats``; ``heartbeat_exempt``
to choose others); dispatch strips it from every call and reports it.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from host import MEMGPT_EXPOSE, Agent, FunctionHost

MEMGPT_DESCRIPTION = (
    "Request an immediate heartbeat after function execution. Set to 'true' if you want "
    "to send a follow-up message or run a follow-up function."
)
FORMATS = ["openai", "openai-responses", "anthropic", "gemini", "mcp", "raw"]

TOOLS = '''
def add(a: int, b: int = 10) -> int:
    """Add two numbers."""
    return a + b


def ping() -> str:
    """No parameters at all."""
    return "pong"


def own_heartbeat(request_heartbeat: bool) -> bool:
    """A function that declares the parameter itself."""
    return request_heartbeat
'''


@pytest.fixture
def agent() -> Agent:
    return Agent()


@pytest.fixture
def memgpt_host(make_host, write_set, agent):
    def make(**options: Any) -> FunctionHost:
        host = make_host(builtin_dir=None, request_heartbeat="memgpt", **options)
        host.load_all_function_sets(context=agent, expose=MEMGPT_EXPOSE)
        host.load_function_set(write_set("tools", TOOLS))
        return host

    return make


def _name(tool: dict[str, Any]) -> str:
    return tool.get("name") or tool["function"]["name"]


def _params(tool: dict[str, Any], fmt: str) -> dict[str, Any]:
    return {
        "openai": lambda t: t["function"]["parameters"],
        "openai-responses": lambda t: t["parameters"],
        "anthropic": lambda t: t["input_schema"],
        "gemini": lambda t: t["parameters"],
        "mcp": lambda t: t["inputSchema"],
        "raw": lambda t: t["parameters"],
    }[fmt](tool)


@pytest.mark.parametrize("fmt", FORMATS)
def test_required_on_every_tool_but_the_turn_enders(memgpt_host, fmt):
    tools = {_name(t): _params(t, fmt) for t in memgpt_host().tools(format=fmt)}
    assert len(tools) == 11  # the eight built-ins and three of ours
    for name, params in tools.items():
        jsonschema.Draft202012Validator.check_schema(params)
        if name in ("send_message", "pause_heartbeats"):
            assert "request_heartbeat" not in params["properties"], name
            assert "request_heartbeat" not in params.get("required", []), name
        elif name == "own_heartbeat":
            assert params["properties"]["request_heartbeat"] == {"type": "boolean"}
        else:
            assert params["properties"]["request_heartbeat"] == {
                "type": "boolean",
                "description": MEMGPT_DESCRIPTION,
            }, name
            assert params["required"][-1] == "request_heartbeat", name
            assert params["required"].count("request_heartbeat") == 1


@pytest.mark.parametrize("fmt", ["openai", "openai-responses"])
def test_strict_mode_keeps_it_required_once_and_the_turn_enders_free(memgpt_host, fmt):
    for tool in memgpt_host().tools(format=fmt, strict=True):
        params = _params(tool, fmt)
        assert set(params["required"]) == set(params["properties"])
        assert len(params["required"]) == len(params["properties"])
        if _name(tool) in ("send_message", "pause_heartbeats"):
            assert "request_heartbeat" not in params["properties"]
        elif _name(tool) != "own_heartbeat":
            assert params["required"][-1] == "request_heartbeat"
            assert params["properties"]["request_heartbeat"]["description"] == MEMGPT_DESCRIPTION


def test_heartbeat_exempt_chooses_the_turn_enders(memgpt_host):
    tools = memgpt_host(heartbeat_exempt=["add"]).tools(format="anthropic")
    has = {t["name"]: "request_heartbeat" in t["input_schema"]["properties"] for t in tools}
    assert has["add"] is False
    assert has["send_message"] is True and has["ping"] is True


def _openai(name: str, arguments: dict[str, Any], id: str) -> dict[str, Any]:
    return {
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def test_a_turn_ender_takes_none_but_a_stray_one_is_stripped(memgpt_host, agent):
    """The model is shown no request_heartbeat on send_message; one it sends
    anyway is stripped and reported, as on every other tool."""
    host = memgpt_host()
    shown = {_name(t): _params(t, "openai") for t in host.tools(format="openai")}
    assert list(shown["send_message"]["properties"]) == ["message"]
    appended = {"name": "human", "content": "Ada", "request_heartbeat": True}
    results = host.dispatch(
        [
            _openai("core_memory_append", appended, "c1"),
            _openai("add", {"a": 1, "request_heartbeat": False}, "c2"),
            _openai("send_message", {"message": "hi", "request_heartbeat": True}, "c3"),
        ]
    )
    assert [r.is_error for r in results] == [False, False, False], [r.text for r in results]
    assert [r.heartbeat_requested for r in results] == [True, False, True]
    assert results[1]["content"] == "11"
    assert (agent.memory.human, agent.interface.messages) == ("Ada", ["hi"])


@pytest.mark.parametrize(
    "options, words",
    [
        ({"request_heartbeat": "yes"}, "must be False, True or 'memgpt'"),
        ({"request_heartbeat": 1}, "must be False, True or 'memgpt'"),
        ({"heartbeat_exempt": ["send_message"]}, "needs request_heartbeat"),
        ({"request_heartbeat": "memgpt", "heartbeat_exempt": "send_message"}, "collection"),
        ({"request_heartbeat": True, "heartbeat_exempt": [1]}, "collection"),
    ],
)
def test_bad_heartbeat_options_are_refused(options, words, empty_dir):
    with pytest.raises(ValueError, match=words):
        FunctionHost(builtin_dir=empty_dir, user_dirs=[], **options)
