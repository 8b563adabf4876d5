"""A MemGPT-style agent loop: the agent lives here, its memory tools run in a sandbox.

    python examples/memgpt_agent.py

The agent (``host.Agent``: core memory, archival and recall memory, an
outbox) is an object in this process. Its tools are fnhost's built-in set,
MemGPT's memory tools, each running in a sandboxed worker and reaching the
agent only through the paths of ``MEMGPT_EXPOSE`` (the context door).

The loop is MemGPT's: the model answers each step with tool calls, which
``fh.dispatch`` runs; the agent takes another step only when a call asked
for a heartbeat (``request_heartbeat``, required on every tool but the
turn-ending ``send_message`` and ``pause_heartbeats`` under
``request_heartbeat="memgpt"``) or failed, so the model can react. The
model is scripted (no API key, no network): it sends its tool calls in
exactly the OpenAI Chat Completions shape, and makes one mistake on purpose.
"""

from __future__ import annotations

import json
from typing import Any

from host import MEMGPT_EXPOSE, Agent, FunctionHost, Limits

#: What the scripted model does, step by step: each step is one assistant
#: message with its tool calls, ``(name, arguments)``.
SCRIPT: list[list[tuple[str, dict[str, Any]]]] = [
    # Turn 1: "Hi! I'm Ada. I keep bees on my roof in Lisbon."
    [
        (
            "core_memory_append",
            {"name": "human", "content": "Name: Ada. Keeps bees.", "request_heartbeat": True},
        )
    ],
    [
        (
            "archival_memory_insert",
            {"content": "Ada keeps her bees on her roof in Lisbon.", "request_heartbeat": True},
        )
    ],
    [("send_message", {"message": "Nice to meet you, Ada! 🐝 I'll remember your bees."})],
    # Turn 2: "Where do I keep my bees? I'm moving to Porto, by the way."
    [("archival_memory_search", {"query": "Where are Ada's bees?", "request_heartbeat": True})],
    # A wrong old_content: the tool fails, and the failure forces a heartbeat.
    [
        (
            "core_memory_replace",
            {
                "name": "human",
                "old_content": "Keeps cats.",
                "new_content": "x",
                "request_heartbeat": False,
            },
        )
    ],
    [
        (
            "core_memory_replace",
            {
                "name": "human",
                "old_content": "Keeps bees.",
                "new_content": "Keeps bees. Moving to Porto.",
                "request_heartbeat": True,
            },
        ),
        ("conversation_search", {"query": "bees", "request_heartbeat": True}),
    ],
    [("send_message", {"message": "On your roof in Lisbon, for now. Good luck in Porto!"})],
]

USER_TURNS = [
    "Hi! I'm Ada. I keep bees on my roof in Lisbon.",
    "Where do I keep my bees? I'm moving to Porto, by the way.",
]


class ScriptedModel:
    """Stands in for ``client.chat.completions.create``: returns the next
    scripted assistant message, whatever it is shown."""

    def __init__(self) -> None:
        self.steps = iter(SCRIPT)
        self.calls = 0

    def create(self, messages: list[Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
        tool_calls = []
        for name, arguments in next(self.steps):
            self.calls += 1
            tool_calls.append(
                {
                    "id": f"call_{self.calls}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            )
        return {"role": "assistant", "content": None, "tool_calls": tool_calls}


def step_until_done(fh: FunctionHost, model: ScriptedModel, messages: list[Any]) -> None:
    """Run model steps until one asks for no heartbeat and nothing failed."""
    tools = fh.tools(format="openai")
    for _ in range(10):  # a bound on steps per turn
        message = model.create(messages, tools)
        messages.append(message)
        results = fh.dispatch(message["tool_calls"])
        messages += results
        for call, result in zip(message["tool_calls"], results, strict=True):
            arguments = json.loads(call["function"]["arguments"])
            arguments.pop("request_heartbeat", None)
            shown = json.dumps(arguments, ensure_ascii=False)
            print(f"  {call['function']['name']}({shown}) -> {result.text}")
        # MemGPT's rule: go on if a call asked for it, or failed (let the model react).
        if not any(r.heartbeat_requested or r.is_error for r in results):
            return
        print("  (heartbeat)")


def main() -> Agent:
    """Two user turns against a fresh agent; returns the agent."""
    agent = Agent(persona="I am Sam, a helpful assistant with a good memory.")
    model = ScriptedModel()
    with FunctionHost(user_dirs=[], limits=Limits(timeout=10), request_heartbeat="memgpt") as fh:
        # The built-ins only (no user dirs), with this agent as their context.
        fh.load_all_function_sets(context=agent, expose=MEMGPT_EXPOSE)
        messages: list[Any] = [{"role": "system", "content": agent.core_memory_text}]
        for text in USER_TURNS:
            print(f"user: {text}")
            agent.user_message(text)
            messages.append({"role": "user", "content": text})
            step_until_done(fh, model, messages)
            messages[0]["content"] = agent.core_memory_text  # the rebuilt system message
    print("\nSent to the user:")
    for sent in agent.interface.messages:
        print(f"  {sent}")
    print("Core memory, as the model now sees it:")
    print("  " + agent.core_memory_text.replace("\n", "\n  "))
    print("Archival memory:")
    for passage in agent.persistence_manager.archival_memory.passages:
        print(f"  {passage['content']}")
    return agent


if __name__ == "__main__":
    main()
