"""The reference agent (``host.Agent``): what each method MemGPT's tools call does and raises.

These run in the host only: ``tests/test_builtins.py`` drives the same
agent from the built-in tools in real workers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from host import MEMGPT_EXPOSE, Agent, CoreMemory
from host.workers.context_door import ContextDoor
from tests.ticks import T0, Ticks


@pytest.fixture
def agent() -> Agent:
    return Agent(persona="I am Sam.", human="", limit=60, clock=Ticks())


def test_every_exposed_path_is_there_as_what_the_tools_use(agent):
    kinds = ContextDoor(agent, MEMGPT_EXPOSE).describe()["paths"]
    assert kinds == {
        path: "attribute" if path == "pause_heartbeats_minutes" else "method"
        for path in MEMGPT_EXPOSE
    }


def test_edit_append_adds_a_line_and_returns_the_length(agent):
    assert agent.memory.edit_append("human", "Name: Ada.") == len("Name: Ada.")
    assert agent.memory.edit_append("human", "Keeps bees.") == len("Name: Ada.\nKeeps bees.")
    assert agent.memory.human == "Name: Ada.\nKeeps bees."
    assert agent.memory.edit_append("persona", "Curious.", sep=" ") == len("I am Sam. Curious.")


def test_edit_replace_replaces_exact_text(agent):
    agent.memory.edit_append("human", "Keeps bees. Keeps bees.")
    agent.memory.edit_replace("human", "bees", "cats")
    assert agent.memory.human == "Keeps cats. Keeps cats."
    agent.memory.edit_replace("human", " Keeps cats.", "")  # empty: deletes
    assert agent.memory.human == "Keeps cats."


@pytest.mark.parametrize(
    "edit, error, words",
    [
        (lambda m: m.edit_replace("human", "Lisbon", "Porto"), ValueError, "Content not found"),
        (lambda m: m.edit_replace("human", "", "x"), ValueError, "cannot be empty"),
        (lambda m: m.edit_replace("notes", "a", "b"), KeyError, "No memory section named 'notes'"),
        (lambda m: m.edit_append("notes", "x"), KeyError, "'persona' or 'human'"),
        (lambda m: m.edit_append("human", "x" * 60), ValueError, "over its limit of 60"),
        (lambda m: m.edit_replace("persona", "Sam", "S" * 70), ValueError, "over its limit"),
    ],
)
def test_a_refused_edit_says_why_and_changes_nothing(agent, edit, error, words):
    agent.memory.edit_append("human", "Keeps bees.")
    before = dict(agent.memory.sections)
    with pytest.raises(error) as info:
        edit(agent.memory)
    assert words in str(info.value)
    assert agent.memory.sections == before


def test_rebuild_memory_refreshes_what_the_model_sees(agent):
    agent.memory.edit_append("human", "Name: Ada.")
    assert "Ada" not in agent.core_memory_text  # not until rebuilt
    agent.rebuild_memory()
    assert agent.core_memory_text == (
        "<persona>\nI am Sam.\n</persona>\n<human>\nName: Ada.\n</human>"
    )
    assert CoreMemory(persona="p", human="h").render() == agent.core_memory_text.replace(
        "I am Sam.", "p"
    ).replace("Name: Ada.", "h")


def test_archival_search_ranks_by_shared_words_and_pages(agent):
    archive = agent.persistence_manager.archival_memory
    for text in ["Ada keeps bees.", "Bob keeps cats.", "Ada's BEES live in Lisbon.", "Rain."]:
        archive.insert(text)
    results, total = archive.search("where do ada's bees live")
    assert total == 2
    assert [r["content"] for r in results] == ["Ada's BEES live in Lisbon.", "Ada keeps bees."]
    assert results[0]["timestamp"] == "2026-01-01T11:00:00+00:00"  # the third insert
    assert archive.search("keeps", count=1, start=1) == (
        [{"timestamp": "2026-01-01T10:00:00+00:00", "content": "Bob keeps cats."}],
        2,
    )
    assert archive.search("keeps", count=5, start=5) == ([], 2)
    assert archive.search("snow") == ([], 0)
    with pytest.raises(ValueError, match="must not be negative"):
        archive.search("keeps", count=5, start=-5)


def test_recall_text_search_is_a_case_insensitive_substring_match(agent):
    agent.user_message("I keep BEES.")
    agent.interface.assistant_message("Bees are great!")
    agent.user_message("And a cat.")
    recall = agent.persistence_manager.recall_memory
    results, total = recall.text_search("bees")
    assert total == 2
    assert results == [
        {
            "timestamp": "2026-01-01T09:00:00+00:00",
            "message": {"role": "user", "content": "I keep BEES."},
        },
        {
            "timestamp": "2026-01-01T10:00:00+00:00",
            "message": {"role": "assistant", "content": "Bees are great!"},
        },
    ]
    assert recall.text_search(" ", count=1, start=2)[0][0]["message"]["content"] == "And a cat."


def test_recall_date_search_takes_whole_days_both_included(agent):
    recall = agent.persistence_manager.recall_memory
    for day, text in [(1, "first"), (2, "second"), (3, "third"), (4, "fourth")]:
        recall.append("user", text, timestamp=datetime(2026, 3, day, 23, 59, tzinfo=UTC))
    results, total = recall.date_search("2026-03-02", "2026-03-03")
    assert total == 2
    assert [r["message"]["content"] for r in results] == ["second", "third"]
    assert recall.date_search("2026-03-02", "2026-03-03", count=1, start=1)[0][0]["message"][
        "content"
    ] == ("third")
    assert recall.date_search("2026-04-01", "2026-04-30") == ([], 0)
    with pytest.raises(ValueError, match="end_date must be a date as YYYY-MM-DD"):
        recall.date_search("2026-03-01", "March 3")


def test_assistant_messages_reach_the_outbox_and_the_conversation(agent):
    agent.interface.assistant_message("Hello 🐝")
    assert agent.interface.messages == ["Hello 🐝"]
    assert agent.persistence_manager.recall_memory.messages == [
        {"timestamp": T0, "role": "assistant", "content": "Hello 🐝"}
    ]


def test_pausing_heartbeats_stamps_the_start(agent):
    assert agent.pause_heartbeats_minutes == 0 and not agent.heartbeats_paused()
    agent.pause_heartbeats_minutes = 90
    assert agent.pause_heartbeats_start == T0
    assert agent.heartbeats_paused(T0 + timedelta(minutes=89))
    assert not agent.heartbeats_paused(T0 + timedelta(minutes=90))
    with pytest.raises(TypeError, match="must be an int"):
        agent.pause_heartbeats_minutes = "90"
    assert agent.pause_heartbeats_minutes == 90
