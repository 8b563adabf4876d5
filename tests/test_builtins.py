"""The bundled built-ins are MemGPT's memory tools, run in a worker against a host-side agent.

Each tool's effect on the reference agent (``host.Agent``) and its return
text; the schemas MemGPT's names and parameters give; what a built-in does
without an agent (a clear error, not ``AttributeError`` on ``None``); one
host serving two agents; an agent that is not ``host.Agent``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from host import MEMGPT_EXPOSE, Agent, UserFunctionError
from tests.ticks import T0, Ticks

TOOLS = {
    "send_message": ["message"],
    "pause_heartbeats": ["minutes"],
    "core_memory_append": ["name", "content"],
    "core_memory_replace": ["name", "old_content", "new_content"],
    "conversation_search": ["query", "page"],
    "conversation_search_date": ["start_date", "end_date", "page"],
    "archival_memory_insert": ["content"],
    "archival_memory_search": ["query", "page"],
}


@pytest.fixture
def agent() -> Agent:
    return Agent(persona="I am Sam.", limit=200, clock=Ticks())


@pytest.fixture
def memgpt(make_host, agent):
    """A host with only the bundled built-ins, given ``agent`` as their context."""
    fh = make_host(builtin_dir=None)
    fh.load_all_function_sets(context=agent, expose=MEMGPT_EXPOSE)
    return fh


def _shown(text: str) -> list[str]:
    """The result lines of a search's text (after ``: ``, a JSON list)."""
    return json.loads(text.split("): ", 1)[1])


def test_the_builtins_are_memgpts_tools_with_its_parameters(memgpt):
    assert memgpt.function_sets["memgpt"]["origin"] == "builtin"
    assert memgpt.function_sets["memgpt"]["exposed"] == list(MEMGPT_EXPOSE)
    schemas = memgpt.schemas()
    assert {n: list(s["parameters"]["properties"]) for n, s in schemas.items()} == TOOLS
    for name, schema in schemas.items():
        assert "self" not in json.dumps(schema["parameters"])  # the agent is no parameter
        assert schema["description"], name
        assert "page" not in schema["parameters"]["required"]
    assert schemas["core_memory_replace"]["parameters"]["required"] == [
        "name",
        "old_content",
        "new_content",
    ]


def test_send_message_reaches_the_user_and_the_conversation(memgpt, agent):
    assert memgpt.call("send_message", {"message": "Hello, Ada 🐝"}) is None
    assert agent.interface.messages == ["Hello, Ada 🐝"]
    assert agent.persistence_manager.recall_memory.messages[-1]["content"] == "Hello, Ada 🐝"


@pytest.mark.parametrize("minutes, kept", [(30, 30), (1000, 360), (-5, 0)])
def test_pause_heartbeats_assigns_the_agents_pause(memgpt, agent, minutes, kept):
    text = memgpt.call("pause_heartbeats", {"minutes": minutes})
    assert text == f"Pausing timed heartbeats for {kept} min"
    assert agent.pause_heartbeats_minutes == kept
    assert agent.pause_heartbeats_start == T0  # stamped by the host's agent, on its clock


def test_core_memory_append_edits_and_rebuilds(memgpt, agent):
    assert memgpt.call("core_memory_append", {"name": "human", "content": "Name: Ada."}) is None
    memgpt.call("core_memory_append", {"name": "human", "content": "Keeps bees."})
    assert agent.memory.human == "Name: Ada.\nKeeps bees."
    assert "<human>\nName: Ada.\nKeeps bees.\n</human>" in agent.core_memory_text


def test_core_memory_replace_edits_and_rebuilds(memgpt, agent):
    memgpt.call("core_memory_append", {"name": "human", "content": "Lives in Lisbon."})
    args = {"name": "human", "old_content": "Lisbon", "new_content": "Porto"}
    assert memgpt.call("core_memory_replace", args) is None
    assert agent.memory.human == "Lives in Porto."
    assert "Lives in Porto." in agent.core_memory_text


@pytest.mark.parametrize(
    "tool, args, remote_type, words",
    [
        (
            "core_memory_replace",
            {"name": "human", "old_content": "Paris", "new_content": "Rome"},
            "ValueError",
            "Content not found in human",
        ),
        (
            "core_memory_replace",
            {"name": "human", "old_content": "", "new_content": "Rome"},
            "ValueError",
            "old_content cannot be empty",
        ),
        (
            "core_memory_append",
            {"name": "diary", "content": "x"},
            "KeyError",
            "No memory section named 'diary'",
        ),
        ("core_memory_append", {"name": "human", "content": "x" * 300}, "ValueError", "limit"),
    ],
)
def test_a_refused_edit_is_the_agents_error_and_changes_nothing(
    memgpt, agent, tool, args, remote_type, words
):
    memgpt.call("core_memory_append", {"name": "human", "content": "Lives in Lisbon."})
    before, text = dict(agent.memory.sections), agent.core_memory_text
    with pytest.raises(UserFunctionError) as info:
        memgpt.call(tool, args)
    assert info.value.remote_type == remote_type  # raised in the tool as the same type
    assert words in str(info.value)
    assert (agent.memory.sections, agent.core_memory_text) == (before, text)


def test_archival_memory_insert_and_search(memgpt, agent):
    facts = [f"Ada's hive number {i} is by the river." for i in range(7)] + ["Bob has a cat."]
    for fact in facts:
        assert memgpt.call("archival_memory_insert", {"content": fact}) is None
    passages = agent.persistence_manager.archival_memory.passages
    assert [p["content"] for p in passages] == facts
    first = memgpt.call("archival_memory_search", {"query": "hive"})
    assert first.startswith("Showing 5 of 7 results (page 0/1): ")
    assert _shown(first)[0] == (
        "timestamp: 2026-01-01T09:00:00+00:00, memory: Ada's hive number 0 is by the river."
    )
    second = memgpt.call("archival_memory_search", {"query": "hive", "page": 1})
    assert second.startswith("Showing 2 of 7 results (page 1/1): ")
    assert [line.split("memory: ")[1] for line in _shown(second)] == facts[5:7]
    assert memgpt.call("archival_memory_search", {"query": "hive", "page": None}) == first
    assert memgpt.call("archival_memory_search", {"query": "volcano"}) == "No results found."
    assert memgpt.call("archival_memory_search", {"query": "hive", "page": 4}) == (
        "No results on page 4: 7 results in all, on pages 0 to 1."
    )
    with pytest.raises(UserFunctionError, match="page must be 0 or more"):
        memgpt.call("archival_memory_search", {"query": "hive", "page": -1})


def test_conversation_search_finds_messages_by_text(memgpt, agent):
    agent.user_message("I keep BEES in Lisbon.")
    memgpt.call("send_message", {"message": "Bees! Lovely."})
    agent.user_message("And a cat.")
    text = memgpt.call("conversation_search", {"query": "bees"})
    assert text.startswith("Showing 2 of 2 results (page 0/0): ")
    assert _shown(text) == [
        "timestamp: 2026-01-01T09:00:00+00:00, user - I keep BEES in Lisbon.",
        "timestamp: 2026-01-01T10:00:00+00:00, assistant - Bees! Lovely.",
    ]
    assert memgpt.call("conversation_search", {"query": "dog"}) == "No results found."


def test_conversation_search_date_finds_messages_by_day(memgpt, agent):
    recall = agent.persistence_manager.recall_memory
    for day in range(1, 9):
        recall.append("user", f"note of day {day}", timestamp=datetime(2026, 2, day, tzinfo=UTC))
    text = memgpt.call(
        "conversation_search_date", {"start_date": "2026-02-02", "end_date": "2026-02-08"}
    )
    assert text.startswith("Showing 5 of 7 results (page 0/1): ")
    assert _shown(text)[0] == "timestamp: 2026-02-02T00:00:00+00:00, user - note of day 2"
    later = memgpt.call(
        "conversation_search_date",
        {"start_date": "2026-02-02", "end_date": "2026-02-08", "page": 1},
    )
    assert [line.rsplit(" ", 1)[1] for line in _shown(later)] == ["7", "8"]
    with pytest.raises(UserFunctionError) as info:
        memgpt.call("conversation_search_date", {"start_date": "2 Feb", "end_date": "2026-02-08"})
    assert info.value.remote_type == "ValueError"
    assert "start_date must be a date as YYYY-MM-DD" in str(info.value)


ARGS = {
    "send_message": {"message": "hi"},
    "pause_heartbeats": {"minutes": 5},
    "core_memory_append": {"name": "human", "content": "x"},
    "core_memory_replace": {"name": "human", "old_content": "x", "new_content": "y"},
    "conversation_search": {"query": "x"},
    "conversation_search_date": {"start_date": "2026-01-01", "end_date": "2026-01-02"},
    "archival_memory_insert": {"content": "x"},
    "archival_memory_search": {"query": "x"},
}


def test_without_an_agent_each_builtin_says_how_to_give_it_one(make_host):
    fh = make_host(builtin_dir=None)
    fh.load_all_function_sets()  # no context: the set loads, its tools have no agent
    assert set(fh.schemas()) == set(TOOLS) == set(ARGS)
    for name, args in ARGS.items():
        with pytest.raises(UserFunctionError) as info:
            fh.call(name, args)
        assert info.value.remote_type == "RuntimeError", name
        assert f"{name} acts on an agent and this call has none" in str(info.value)
        assert "expose=host.MEMGPT_EXPOSE" in str(info.value)


def test_one_host_serves_many_agents_per_call(make_host):
    fh = make_host(builtin_dir=None)
    fh.load_all_function_sets(expose=MEMGPT_EXPOSE)  # a door, no default agent
    ada, bob = Agent(), Agent()
    fh.call("core_memory_append", {"name": "human", "content": "Ada"}, context=ada)
    fh.call("core_memory_append", {"name": "human", "content": "Bob"}, context=bob)
    assert (ada.memory.human, bob.memory.human) == ("Ada", "Bob")
    with pytest.raises(UserFunctionError, match="this call has none"):
        fh.call("send_message", {"message": "to whom?"})


class PlainMemory:
    """Not host's: the methods MemGPT's CoreMemory has, and nothing else of ours."""

    def __init__(self) -> None:
        self.human = ""

    def edit_append(self, field: str, content: str, sep: str = "\n") -> int:
        self.human = self.human + sep + content
        return len(self.human)


class PlainArchive:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def insert(self, memory_string: str) -> None:
        self.rows.append({"timestamp": "2024-01-01 10:00:00 AM", "content": memory_string})

    def search(self, query_string: str, count=None, start=None):
        hits = [r for r in self.rows if query_string in r["content"]]
        return hits[start : start + count], len(hits)


class PlainAgent:
    """An agent written without fnhost, as MemGPT's is: the same paths work."""

    def __init__(self) -> None:
        self.memory = PlainMemory()
        self.persistence_manager = type("PM", (), {})()
        self.persistence_manager.archival_memory = PlainArchive()
        self.rebuilt = 0

    def rebuild_memory(self) -> None:
        self.rebuilt += 1


def test_an_agent_of_another_kind_works_with_the_same_list(make_host):
    agent = PlainAgent()
    fh = make_host(builtin_dir=None)
    fh.load_all_function_sets(context=agent, expose=MEMGPT_EXPOSE)
    fh.call("core_memory_append", {"name": "human", "content": "Likes tea."})
    assert (agent.memory.human, agent.rebuilt) == ("\nLikes tea.", 1)
    fh.call("archival_memory_insert", {"content": "Tea: green, no sugar."})
    assert fh.call("archival_memory_search", {"query": "Tea"}) == (
        "Showing 1 of 1 results (page 0/0): "
        '["timestamp: 2024-01-01 10:00:00 AM, memory: Tea: green, no sugar."]'
    )
    # A path this agent lacks fails inside the tool, as AttributeError, and only there.
    with pytest.raises(UserFunctionError) as info:
        fh.call("send_message", {"message": "hi"})
    assert info.value.remote_type == "AttributeError"


POISON = '''
def poison(self) -> str:
    """Store what is not text through the door."""
    out = []
    for attempt in (
        lambda: self.persistence_manager.archival_memory.insert(12345),
        lambda: self.interface.assistant_message({"not": "text"}),
        lambda: self.persistence_manager.archival_memory.insert("x" * 200_000),
    ):
        try:
            attempt()
            out.append("stored")
        except (TypeError, ValueError) as exc:
            out.append(type(exc).__name__)
    return ",".join(out)
'''


def test_a_set_cannot_poison_or_flood_the_agents_memory_through_the_door(memgpt, agent, write_set):
    """Anything but text, or a passage over MAX_ENTRY_CHARS, is refused by
    the agent (the host's memory) and nothing is stored, so the built-in
    searches keep working for every later caller."""
    memgpt.load_function_set(write_set("hostile", POISON), context=agent, expose=MEMGPT_EXPOSE)
    memgpt.call("archival_memory_insert", {"content": "Ada keeps bees."})
    assert memgpt.call("poison") == "TypeError,TypeError,ValueError"
    assert len(agent.persistence_manager.archival_memory.passages) == 1
    assert agent.interface.messages == []
    assert "bees" in memgpt.call("archival_memory_search", {"query": "bees"})
    memgpt.call("send_message", {"message": "hello"})
    assert "hello" in memgpt.call("conversation_search", {"query": "hello"})


def test_archival_memory_stops_taking_passages_when_full(monkeypatch, agent):
    from host.api import reference_agent

    room = 2 * reference_agent.ENTRY_COST_CHARS + 10
    monkeypatch.setattr(reference_agent, "MAX_STORE_CHARS", room)
    store = agent.persistence_manager.archival_memory
    store.insert("12345")
    store.insert("67890")
    with pytest.raises(ValueError, match="archival memory is full"):
        store.insert("")  # an empty passage costs its record too
    assert [p["content"] for p in store.passages] == ["12345", "67890"]
