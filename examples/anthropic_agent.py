"""A complete Anthropic tool-use loop over fnhost.

    python examples/anthropic_agent.py "Average 1, 2 and 3, weighted 3, 2, 1"

With ``ANTHROPIC_API_KEY`` set and the ``anthropic`` package installed it
talks to the real API (model from ``ANTHROPIC_MODEL``). Otherwise a scripted
fake client returns ``tool_use`` blocks in exactly the SDK's shape.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

from host import FunctionHost, Limits

SETS = Path(__file__).resolve().parent / "function_sets"


class FakeAnthropic:
    """Answers like ``client.messages.create``: a tool_use turn, then text."""

    def __init__(self) -> None:
        self.messages = SimpleNamespace(create=self._create)

    def _create(self, model: str, max_tokens: int, messages: list, tools: list):
        last = messages[-1]["content"]
        results = [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"]
        if not results:
            content = [
                SimpleNamespace(type="text", text="Let me compute that."),
                SimpleNamespace(
                    type="tool_use",
                    id="toolu_1",
                    name="mean",
                    input={"values": [1, 2, 3], "weights": [3, 2, 1]},
                ),
                SimpleNamespace(type="tool_use", id="toolu_2", name="crash", input={}),
            ]
            return SimpleNamespace(content=content, stop_reason="tool_use")
        text = "; ".join(
            f"{r['tool_use_id']} -> {r['content']}{' (error)' if r.get('is_error') else ''}"
            for r in results
        )
        return SimpleNamespace(
            content=[SimpleNamespace(type="text", text=text)], stop_reason="end_turn"
        )


def make_client() -> tuple[object, str]:
    if os.environ.get("ANTHROPIC_API_KEY"):
        try:
            import anthropic
        except ImportError:
            print("anthropic is not installed; using the fake client", file=sys.stderr)
        else:
            return anthropic.Anthropic(), os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-5")
    return FakeAnthropic(), "fake"


def main(question: str) -> str:
    client, model = make_client()
    with FunctionHost(limits=Limits(timeout=10)) as fh:
        # The example sets, one by one: not load_all_function_sets(), whose
        # built-ins are an agent's memory tools (examples/memgpt_agent.py).
        for path in sorted(SETS.glob("*.py")):
            fh.load_function_set(path)
        tools = fh.tools(format="anthropic")
        messages: list = [{"role": "user", "content": question}]
        for _ in range(5):
            response = client.messages.create(
                model=model, max_tokens=1024, messages=messages, tools=tools
            )
            calls = [block for block in response.content if block.type == "tool_use"]
            if not calls:
                return "".join(b.text for b in response.content if b.type == "text")
            messages.append({"role": "assistant", "content": response.content})
            # A crashing tool (flaky.crash segfaults its worker) comes back as
            # an is_error result; the host restarts the worker and carries on.
            messages.append({"role": "user", "content": fh.dispatch(calls)})
        return "(stopped after 5 turns)"


if __name__ == "__main__":
    print(main(" ".join(sys.argv[1:]) or "Average 1, 2 and 3, weighted 3, 2, 1"))
