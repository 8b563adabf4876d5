"""A complete OpenAI tool-calling loop over fnhost.

    python examples/openai_agent.py "What's the weather in Paris, in imperial?"

With ``OPENAI_API_KEY`` set and the ``openai`` package installed it talks to
the real API (model from ``OPENAI_MODEL``, default ``gpt-4o-mini``).
Otherwise a scripted fake client stands in, returning tool calls in exactly
the SDK's shape, so the loop runs anywhere.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from host import FunctionHost, Limits

SETS = Path(__file__).resolve().parent / "function_sets"


class FakeOpenAI:
    """Answers like ``client.chat.completions.create``: first two parallel tool
    calls (one with a wrong argument), then a final text built from the results."""

    def __init__(self) -> None:
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def _create(self, model: str, messages: list, tools: list) -> SimpleNamespace:
        tool_results = [m for m in messages if isinstance(m, dict) and m.get("role") == "tool"]
        if not tool_results:
            calls = [
                _call("call_1", "get_weather", {"city": "Paris", "units": "imperial"}),
                _call("call_2", "forecast", {"city": "Paris", "days": 30}),
            ]
            message = SimpleNamespace(role="assistant", content=None, tool_calls=calls)
        else:
            text = "Here is what the tools said:\n" + "\n".join(
                f"- {m['tool_call_id']}: {m['content']}" for m in tool_results
            )
            message = SimpleNamespace(role="assistant", content=text, tool_calls=None)
        return SimpleNamespace(choices=[SimpleNamespace(message=message)])


def _call(call_id: str, name: str, arguments: dict) -> SimpleNamespace:
    return SimpleNamespace(
        id=call_id,
        type="function",
        function=SimpleNamespace(name=name, arguments=json.dumps(arguments)),
    )


def make_client() -> tuple[object, str]:
    if os.environ.get("OPENAI_API_KEY"):
        try:
            import openai
        except ImportError:
            print("openai is not installed; using the fake client", file=sys.stderr)
        else:
            return openai.OpenAI(), os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    return FakeOpenAI(), "fake"


def main(question: str) -> str:
    client, model = make_client()
    with FunctionHost(limits=Limits(timeout=10)) as fh:
        # The example sets, one by one: not load_all_function_sets(), whose
        # built-ins are an agent's memory tools (examples/memgpt_agent.py).
        for path in sorted(SETS.glob("*.py")):
            fh.load_function_set(path)
        tools = fh.tools(format="openai")
        messages: list = [{"role": "user", "content": question}]
        for _ in range(5):  # a bound on model turns
            response = client.chat.completions.create(model=model, messages=messages, tools=tools)
            message = response.choices[0].message
            if not message.tool_calls:
                return message.content
            messages.append(message)
            # Runs the turn's calls concurrently; failures come back as text
            # the model can act on (the 30-day forecast is refused, politely).
            messages += fh.dispatch(message.tool_calls)
        return "(stopped after 5 turns)"


if __name__ == "__main__":
    print(main(" ".join(sys.argv[1:]) or "What's the weather in Paris?"))
