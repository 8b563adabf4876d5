"""host.adapters.langchain: a tool-calling loop over LangChain's own
``GenericFakeChatModel`` (scripted ``AIMessage`` tool calls) and the
tools' ``invoke``/``ainvoke`` with each tool call, as an agent runs them,
through a real worker: every failure is a ``ToolMessage`` with
``status="error"`` and the loop ends normally."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from host.adapters.langchain import tools
from tests.test_adapters import CASE_IDS, CASES, TOOLS, Case


@pytest.fixture
def fh(make_host, write_set):
    host = make_host()
    host.load_function_set(write_set("tools", TOOLS))
    return host


def scripted(case: Case) -> GenericFakeChatModel:
    """A model that calls ``case``'s tool once, then answers."""
    call = {"name": case.tool, "args": case.arguments, "id": "c1", "type": "tool_call"}
    return GenericFakeChatModel(messages=iter([AIMessage("", tool_calls=[call]), "done"]))


def run(model: GenericFakeChatModel, toolbox: list[BaseTool]) -> list[BaseMessage]:
    """The agent loop: ask the model, run its tool calls, until it answers."""
    by_name = {t.name: t for t in toolbox}
    messages: list[BaseMessage] = [HumanMessage("go")]
    while True:
        reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        messages += [by_name[c["name"]].invoke(c) for c in reply.tool_calls]


async def arun(model: GenericFakeChatModel, toolbox: list[BaseTool]) -> list[BaseMessage]:
    by_name = {t.name: t for t in toolbox}
    messages: list[BaseMessage] = [HumanMessage("go")]
    while True:
        reply = await model.ainvoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        messages += [await by_name[c["name"]].ainvoke(c) for c in reply.tool_calls]


def check(case: Case, messages: list[BaseMessage]) -> None:
    (result,) = [m for m in messages if isinstance(m, ToolMessage)]
    assert case.matches(result.content), result.content
    assert result.status == ("error" if case.is_error else "success")
    assert result.tool_call_id == "c1"
    assert messages[-1].content == "done"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_sync_loop_gets_each_outcome_as_a_tool_message(fh, case):
    check(case, run(scripted(case), tools(fh, timeout=case.timeout)))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_async_loop_gets_each_outcome_as_a_tool_message(fh, case):
    check(case, asyncio.run(arun(scripted(case), tools(fh, timeout=case.timeout))))


def test_the_model_is_given_fnhosts_schema(fh):
    raw = {t["name"]: t for t in fh.tools(format="raw")}
    for tool in tools(fh):
        function = convert_to_openai_tool(tool)["function"]
        assert function["parameters"] == raw[tool.name]["parameters"]
        assert function["description"] == raw[tool.name]["description"]
