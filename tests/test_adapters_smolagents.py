"""host.adapters.smolagents: smolagents' own ``ToolCallingAgent`` with a
scripted ``Model`` calls fnhost's functions in a real worker; every failure
comes back to the model as the call's observation (dispatch's text) and
the run ends with the model's final answer."""

from __future__ import annotations

from typing import Any

import pytest
from smolagents import ToolCallingAgent
from smolagents.memory import ActionStep
from smolagents.models import (
    ChatMessage,
    ChatMessageToolCall,
    ChatMessageToolCallFunction,
    MessageRole,
    Model,
    get_tool_json_schema,
)

from host.adapters.smolagents import tools
from tests.test_adapters import CASE_IDS, CASES, TOOLS, Case

#: smolagents checks top-level JSON types itself (a string for an integer is
#: its error, not the worker's); a wrong item inside a list reaches the worker.
DEEP_INVALID = Case(
    "invalid_arguments",
    "total",
    {"items": [1, "x"]},
    "Error: invalid arguments for total: items[1]: expected integer, got string",
    True,
)
SMOL_CASES = [DEEP_INVALID if c.id == "invalid_arguments" else c for c in CASES]

EXTRA = '''

def total(items: list[int]) -> int:
    """Sum a list of integers."""
    return sum(items)
'''


@pytest.fixture
def fh(make_host, write_set):
    host = make_host()
    host.load_function_set(write_set("tools", TOOLS + EXTRA))
    return host


def text_of(message: Any) -> str:
    content = message.content if isinstance(message, ChatMessage) else message["content"]
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return content or ""


class Scripted(Model):
    """Calls ``case``'s tool once, then gives the final answer "done"."""

    def __init__(self, case: Case) -> None:
        super().__init__(model_id="scripted")
        self.case = case
        self.seen: list[list[Any]] = []
        self.tools_seen: list[Any] = []

    def generate(
        self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kw
    ):
        self.seen.append(list(messages))
        self.tools_seen = list(tools_to_call_from or [])
        if len(self.seen) == 1:
            name, arguments = self.case.tool, self.case.arguments
        else:
            name, arguments = "final_answer", {"answer": "done"}
        function = ChatMessageToolCallFunction(name=name, arguments=arguments)
        call = ChatMessageToolCall(function=function, id=f"c{len(self.seen)}", type="function")
        return ChatMessage(role=MessageRole.ASSISTANT, content="", tool_calls=[call])


def run(fh, case: Case) -> tuple[ToolCallingAgent, Scripted, Any]:
    model = Scripted(case)
    agent = ToolCallingAgent(
        tools=tools(fh, timeout=case.timeout), model=model, max_steps=4, verbosity_level=-1
    )
    return agent, model, agent.run("go")


def first_step(agent: ToolCallingAgent) -> ActionStep:
    return next(s for s in agent.memory.steps if isinstance(s, ActionStep))


@pytest.mark.parametrize("case", SMOL_CASES, ids=CASE_IDS)
def test_the_agent_gets_each_outcome_as_the_calls_observation(fh, case):
    agent, model, output = run(fh, case)
    assert output == "done"
    step = first_step(agent)
    assert step.error is None
    assert case.matches(step.observations), step.observations
    # The model's next turn carries the observation.
    assert any(case.text in text_of(m) for m in model.seen[1])


def test_a_top_level_type_error_is_smolagents_own_and_the_run_goes_on(fh):
    agent, model, output = run(fh, CASES[1])  # add(a="two")
    assert output == "done"
    step = first_step(agent)
    assert "Argument a has type 'string' but should be 'integer'" in str(step.error)


def test_positional_arguments_from_generated_code_are_matched_by_name(fh):
    add = next(t for t in tools(fh) if t.name == "add")
    assert add(2, 3) == "5"
    assert add(2) == "12"
    assert add(2, b=None) == "12"  # null: the default


def test_the_model_is_given_fnhosts_gemini_schema(fh):
    _, model, _ = run(fh, CASES[0])
    gemini = {t["name"]: t["parameters"] for t in fh.tools(format="gemini")}
    seen = {t.name: get_tool_json_schema(t)["function"] for t in model.tools_seen}
    assert set(gemini) <= set(seen)
    add = seen["add"]["parameters"]
    assert add["required"] == ["a"]
    assert add["properties"]["a"]["type"] == "integer"
    assert add["properties"]["b"]["description"] == gemini["add"]["properties"]["b"]["description"]
    assert seen["total"]["parameters"]["properties"]["items"]["items"] == {"type": "integer"}
    assert seen["add"]["description"] == "Add two integers."
