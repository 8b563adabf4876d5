"""host.adapters.llamaindex: LlamaIndex's own ``FunctionAgent`` with its
``MockFunctionCallingLLM`` (a scripted response generator) calls fnhost's
functions in a real worker; every failure comes back as a ``ToolOutput``
with ``is_error`` and dispatch's text, and the run ends normally."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM

from host.adapters.llamaindex import tools
from tests.test_adapters import CASE_IDS, CASES, TOOLS, Case

# LlamaIndex's own objects touch deprecated pydantic attributes as they are inspected.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect")


@pytest.fixture
def fh(make_host, write_set):
    host = make_host()
    host.load_function_set(write_set("tools", TOOLS))
    return host


def scripted(case: Case, seen: dict[str, Any] | None = None) -> MockFunctionCallingLLM:
    """Calls ``case``'s tool once, then answers with what the tool returned."""

    def respond(messages, **kwargs) -> ChatMessage:
        if seen is not None:
            seen.update({t.metadata.name: t.metadata.to_openai_tool() for t in kwargs["tools"]})
        results = [m for m in messages if m.role == MessageRole.TOOL]
        if results:
            return ChatMessage(role=MessageRole.ASSISTANT, content=results[-1].content)
        call = ToolCallBlock(tool_call_id="c1", tool_name=case.tool, tool_kwargs=case.arguments)
        return ChatMessage(role=MessageRole.ASSISTANT, blocks=[call])

    return MockFunctionCallingLLM(response_generator=respond)


async def run(agent: FunctionAgent):
    return await agent.run(user_msg="go")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_agent_gets_each_outcome_as_a_tool_output(fh, case):
    agent = FunctionAgent(tools=tools(fh, timeout=case.timeout), llm=scripted(case))
    result = asyncio.run(run(agent))
    (call,) = result.tool_calls
    assert case.matches(call.tool_output.content), call.tool_output
    assert call.tool_output.is_error is case.is_error
    assert case.matches(result.response.content)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_sync_call_gives_the_same_outputs(fh, case):
    (tool,) = tools(fh, names=[case.tool], timeout=case.timeout)
    output = tool.call(**case.arguments)
    assert case.matches(output.content) and output.is_error is case.is_error


def test_the_model_is_given_fnhosts_schema(fh):
    seen: dict[str, Any] = {}
    asyncio.run(run(FunctionAgent(tools=tools(fh), llm=scripted(CASES[0], seen))))
    raw = {t["name"]: t for t in fh.tools(format="raw")}
    assert set(seen) == set(raw)
    assert seen["add"]["function"]["parameters"] == raw["add"]["parameters"]
    assert seen["add"]["function"]["description"] == "Add two integers."
