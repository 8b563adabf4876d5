"""host.adapters.pydantic_ai: pydantic-ai's own agent loop, driven by its
``FunctionModel`` (a scripted model), calls fnhost's functions in a real
worker; every failure comes back to the model as a failed tool result and
the run ends normally."""

from __future__ import annotations

import asyncio

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from host.adapters.pydantic_ai import tools
from tests.test_adapters import CASE_IDS, CASES, SHORT_TIMEOUT, TOOLS, Case


@pytest.fixture
def fh(make_host, write_set):
    host = make_host()
    host.load_function_set(write_set("tools", TOOLS))
    return host


def scripted(case: Case) -> FunctionModel:
    """A model that calls ``case``'s tool once, then answers with what it got."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        returns = [p for p in last.parts if isinstance(p, ToolReturnPart)]
        if returns:
            (part,) = returns
            return ModelResponse(
                parts=[TextPart(f"{part.outcome}|{part.model_response_str(wrap_if_error=False)}")]
            )
        assert case.tool in {t.name for t in info.function_tools}
        return ModelResponse(parts=[ToolCallPart(case.tool, case.arguments, tool_call_id="c1")])

    return FunctionModel(respond)


def tool_return(messages: list[ModelMessage]) -> ToolReturnPart:
    (part,) = [
        p
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolReturnPart)
    ]
    return part


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_agent_loop_gets_each_outcome_as_a_tool_result(fh, case):
    agent = Agent(scripted(case), tools=tools(fh, timeout=case.timeout))
    result = asyncio.run(agent.run("go"))
    part = tool_return(result.all_messages())
    assert case.matches(part.model_response_str(wrap_if_error=False)), part
    assert part.outcome == ("failed" if case.is_error else "success")
    outcome, _, text = result.output.partition("|")
    assert outcome == part.outcome and case.matches(text)


@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=["success", "crash"])
def test_run_sync_works_too(fh, case):
    agent = Agent(scripted(case), tools=tools(fh))
    result = agent.run_sync("go")
    assert case.matches(result.output.partition("|")[2])


def test_the_model_sees_fnhosts_schema(fh):
    seen = {}

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.update({t.name: t for t in info.function_tools})
        return ModelResponse(parts=[TextPart("done")])

    Agent(FunctionModel(respond), tools=tools(fh)).run_sync("go")
    raw = {t["name"]: t for t in fh.tools(format="raw")}
    assert set(seen) == set(raw)
    assert seen["add"].parameters_json_schema == raw["add"]["parameters"]
    assert seen["add"].description == "Add two integers."


def test_one_run_survives_a_crash_and_a_timeout_and_calls_on(fh):
    """Several failures in one run: each is a failed result, the set
    restarts behind them, and the next call of the same run succeeds."""
    script = [
        ToolCallPart("segfault", {}, tool_call_id="c1"),
        ToolCallPart("sleep", {"seconds": 60}, tool_call_id="c2"),
        ToolCallPart("add", {"a": 2, "b": 3}, tool_call_id="c3"),
    ]

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages)
        if turn < len(script):
            return ModelResponse(parts=[script[turn]])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(respond), tools=tools(fh, timeout=SHORT_TIMEOUT))
    result = agent.run_sync("go")
    returns = [
        p
        for m in result.all_messages()
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolReturnPart)
    ]
    assert [p.outcome for p in returns] == ["failed", "failed", "success"]
    assert returns[2].content == "5" and result.output == "done"
