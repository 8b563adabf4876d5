"""host.adapters.openai_agents: the Agents SDK's own ``Runner`` with a
scripted ``Model`` (the SDK's model interface, returning Responses-API
items) calls fnhost's functions in a real worker; every failure comes back
to the model as the tool's output text and the run ends normally."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, FunctionTool, Model, ModelResponse, RunConfig, Runner, Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from host.adapters.openai_agents import tools
from tests.test_adapters import CASE_IDS, CASES, TOOLS, Case


@pytest.fixture
def fh(make_host, write_set):
    host = make_host()
    host.load_function_set(write_set("tools", TOOLS))
    return host


class Scripted(Model):
    """Calls ``case``'s tool once, then answers with the tool's output."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.tools_seen: list[Any] = []

    async def get_response(self, system_instructions, input, model_settings, tools, *args, **kw):
        self.tools_seen = tools
        outputs = [
            i for i in input if isinstance(i, dict) and i.get("type") == "function_call_output"
        ]
        if outputs:
            text = ResponseOutputText(
                type="output_text", text=outputs[-1]["output"], annotations=[]
            )
            item: Any = ResponseOutputMessage(
                id="m1", type="message", role="assistant", status="completed", content=[text]
            )
        else:
            item = ResponseFunctionToolCall(
                type="function_call",
                id="fc1",
                call_id="c1",
                name=self.case.tool,
                arguments=json.dumps(self.case.arguments),
                status="completed",
            )
        return ModelResponse(output=[item], usage=Usage(), response_id=None)

    def stream_response(self, *args, **kwargs) -> AsyncIterator[Any]:
        raise NotImplementedError


CONFIG = RunConfig(tracing_disabled=True)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_runner_gets_each_outcome_as_the_tools_output(fh, case):
    agent = Agent(name="a", model=Scripted(case), tools=tools(fh, timeout=case.timeout))
    result = asyncio.run(Runner.run(agent, "go", run_config=CONFIG))
    (output,) = [i.output for i in result.new_items if i.type == "tool_call_output_item"]
    assert case.matches(output), output
    assert case.matches(result.final_output)


@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=["success", "crash"])
def test_run_sync_works_too(fh, case):
    agent = Agent(name="a", model=Scripted(case), tools=tools(fh))
    assert case.matches(Runner.run_sync(agent, "go", run_config=CONFIG).final_output)


def test_the_model_is_given_fnhosts_schema(fh):
    model = Scripted(CASES[0])
    asyncio.run(Runner.run(Agent(name="a", model=model, tools=tools(fh)), "go", run_config=CONFIG))
    raw = {t["name"]: t for t in fh.tools(format="raw")}
    seen = {t.name: t for t in model.tools_seen if isinstance(t, FunctionTool)}
    assert set(seen) == set(raw)
    assert seen["add"].params_json_schema == raw["add"]["parameters"]
    assert not seen["add"].strict_json_schema


def test_strict_tools_take_fnhosts_strict_schema_and_null_means_the_default(fh):
    (tool,) = tools(fh, names=["add"], strict=True)
    (expected,) = [
        t for t in fh.tools(format="openai", strict=True) if t["function"]["name"] == "add"
    ]
    assert tool.strict_json_schema
    assert tool.params_json_schema == expected["function"]["parameters"]
    case = Case("strict", "add", {"a": 1, "b": None}, "11", False)
    agent = Agent(name="a", model=Scripted(case), tools=[tool])
    assert Runner.run_sync(agent, "go", run_config=CONFIG).final_output == "11"
