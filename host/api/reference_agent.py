"""A small in-memory agent with the surface MemGPT's memory tools call.

The built-in set (``host/function_sets/memgpt.py``) holds MemGPT's tools:
``send_message``, ``pause_heartbeats``, ``core_memory_append``,
``core_memory_replace``, ``conversation_search``,
``conversation_search_date``, ``archival_memory_insert`` and
``archival_memory_search``. They run in a sandboxed worker and reach their
agent, which stays in the host, through the context door along the paths of
``MEMGPT_EXPOSE`` only:

    agent = Agent(persona="I am Sam.", human="")
    fh.load_all_function_sets(context=agent, expose=MEMGPT_EXPOSE)

``Agent`` is the reference for those paths: any object with the same
attributes and methods (a MemGPT ``Agent`` included) works with the same
list. Everything here is plain Python in the host process: nothing is
persisted, and the searches are simple word and substring matches, not
embeddings (see ``ArchivalMemory.search`` and ``RecallMemory.text_search``).

Timestamps are timezone-aware ``datetime`` objects inside; search results
carry them as ISO 8601 text (``2026-01-02T10:00:00+00:00``), which is what
crosses the wall anyway.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

#: The paths of an ``Agent`` that the built-in memory tools use: pass it as
#: ``expose=`` with the agent as ``context=``. Nothing else of the agent is
#: reachable from the sandbox.
MEMGPT_EXPOSE: tuple[str, ...] = (
    "interface.assistant_message",
    "pause_heartbeats_minutes",
    "memory.edit_append",
    "memory.edit_replace",
    "rebuild_memory",
    "persistence_manager.archival_memory.insert",
    "persistence_manager.archival_memory.search",
    "persistence_manager.recall_memory.text_search",
    "persistence_manager.recall_memory.date_search",
)

#: MemGPT's default size of each core memory section, in characters.
CORE_MEMORY_LIMIT = 2000
#: The longest archival passage or message, in characters: what a set
#: writes through the context door lands in the host's memory.
MAX_ENTRY_CHARS = 100_000
#: What archival memory, and recall memory, may hold in all, in characters.
MAX_STORE_CHARS = 32 * 1024 * 1024
#: What each entry costs besides its text (its record and time stamp take
#: a few hundred bytes): empty entries cannot grow a store for free.
ENTRY_COST_CHARS = 256

Clock = Callable[[], datetime]


def _checked_text(value: object, what: str) -> str:
    """``value`` if it is text of at most ``MAX_ENTRY_CHARS``; else
    ``TypeError`` / ``ValueError`` saying so (nothing is stored)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be text (str), not {type(value).__name__}")
    if len(value) > MAX_ENTRY_CHARS:
        raise ValueError(
            f"{what} is {len(value)} characters, over the limit of {MAX_ENTRY_CHARS}; "
            "store it in smaller pieces"
        )
    return value


class _Store:
    """Counts what a memory store holds, in characters, against ``MAX_STORE_CHARS``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.chars = 0

    def take(self, text: str) -> None:
        cost = len(text) + ENTRY_COST_CHARS
        if self.chars + cost > MAX_STORE_CHARS:
            raise ValueError(
                f"{self.name} is full ({self.chars} of {MAX_STORE_CHARS} characters, "
                f"{ENTRY_COST_CHARS} per entry besides its text); nothing was stored"
            )
        self.chars += cost


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _page(rows: list[dict[str, Any]], count: int | None, start: int | None) -> list[dict[str, Any]]:
    """``rows[start : start + count]`` (``None``: from the first / all of them)."""
    first = start or 0
    if first < 0 or (count is not None and count < 0):
        raise ValueError(f"start and count must not be negative (start={start}, count={count})")
    return rows[first:] if count is None else rows[first : first + count]


class CoreMemory:
    """The agent's core memory: named text sections (MemGPT's ``persona`` and
    ``human``), each at most ``limit`` characters, shown to the model in its
    system message (``render``)."""

    def __init__(self, persona: str = "", human: str = "", limit: int = CORE_MEMORY_LIMIT) -> None:
        self.sections: dict[str, str] = {"persona": persona, "human": human}
        self.limit = limit

    @property
    def persona(self) -> str:
        """The ``persona`` section: who the agent is."""
        return self.sections["persona"]

    @property
    def human(self) -> str:
        """The ``human`` section: what the agent knows of its user."""
        return self.sections["human"]

    def _section(self, name: str) -> str:
        if name not in self.sections:
            known = " or ".join(repr(s) for s in self.sections)
            raise KeyError(f"No memory section named {name!r} (must be {known})")
        return self.sections[name]

    def _write(self, name: str, text: str) -> int:
        if len(text) > self.limit:
            raise ValueError(
                f"Edit failed: {name!r} would be {len(text)} characters, over its limit of "
                f"{self.limit}. Summarize it, or move details to archival memory, and try again."
            )
        self.sections[name] = text
        return len(text)

    def edit_append(self, name: str, content: str, sep: str = "\n") -> int:
        """Add ``content`` at the end of section ``name`` (after ``sep`` unless
        the section is empty). Returns the section's new length.

        Raises ``KeyError`` for an unknown section and ``ValueError`` when the
        result would exceed ``limit``; the section is unchanged then.
        """
        current = self._section(name)
        return self._write(name, current + sep + content if current else content)

    def edit_replace(self, name: str, old_content: str, new_content: str) -> int:
        """Replace every occurrence of ``old_content`` in section ``name`` with
        ``new_content`` (``""`` deletes it). Returns the section's new length.

        Raises ``KeyError`` for an unknown section; ``ValueError`` when
        ``old_content`` is empty or not in the section (it must match
        exactly), or when the result would exceed ``limit``. The section is
        unchanged then.
        """
        current = self._section(name)
        if not old_content:
            raise ValueError("old_content cannot be empty: give the exact text to replace")
        if old_content not in current:
            raise ValueError(
                f"Content not found in {name} (old_content must match the existing text exactly)"
            )
        return self._write(name, current.replace(old_content, new_content))

    def render(self) -> str:
        """Every section as the model sees it: ``<name>\\ntext\\n</name>``, one after another."""
        return "\n".join(f"<{n}>\n{text}\n</{n}>" for n, text in self.sections.items())


_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return {w.casefold() for w in _WORD.findall(text)}


class ArchivalMemory:
    """Long-term memory: passages the agent stored, searched by shared words."""

    def __init__(self, clock: Clock = _utc_now) -> None:
        self.passages: list[dict[str, Any]] = []  # {"timestamp": datetime, "content": str}
        self._clock = clock
        self._store = _Store("archival memory")

    def insert(self, content: str) -> None:
        """Store ``content`` as a new passage, stamped with the current time.

        Raises ``TypeError`` for anything but text, ``ValueError`` for a
        passage over ``MAX_ENTRY_CHARS`` or when the store would pass
        ``MAX_STORE_CHARS``; nothing is stored then."""
        self._store.take(_checked_text(content, "a passage"))
        self.passages.append({"timestamp": self._clock(), "content": content})

    def search(
        self, query: str, count: int | None = None, start: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Passages sharing at least one word with ``query`` (case-insensitive),
        the most shared words first (ties: oldest first); MemGPT's is an
        embedding search, this is a stand-in with the same shape.

        Returns ``(results, total)``: the page of ``count`` results (all when
        ``None``) from ``start`` (0 when ``None``), each ``{"timestamp": ISO
        text, "content": str}``, and how many passages matched in all.
        Raises ``ValueError`` for a negative ``count`` or ``start``.
        """
        wanted = _words(query)
        shared = [len(wanted & _words(p["content"])) for p in self.passages]
        order = sorted((i for i, n in enumerate(shared) if n), key=lambda i: (-shared[i], i))
        rows = [
            {
                "timestamp": self.passages[i]["timestamp"].isoformat(timespec="seconds"),
                "content": self.passages[i]["content"],
            }
            for i in order
        ]
        return _page(rows, count, start), len(rows)


class RecallMemory:
    """The conversation so far: every message, searchable by text and by date."""

    def __init__(self, clock: Clock = _utc_now) -> None:
        self.messages: list[dict[str, Any]] = []  # {"timestamp", "role", "content"}
        self._clock = clock
        self._store = _Store("recall memory")

    def append(self, role: str, content: str, timestamp: datetime | None = None) -> None:
        """Record one message (``role``: ``user``, ``assistant``...), stamped
        ``timestamp`` or the current time.

        Raises ``TypeError`` / ``ValueError`` as ``ArchivalMemory.insert``
        (for ``role`` and ``content``); nothing is recorded then."""
        _checked_text(role, "a message's role")
        self._store.take(_checked_text(content, "a message"))
        stamp = timestamp if timestamp is not None else self._clock()
        self.messages.append({"timestamp": stamp, "role": role, "content": content})

    @staticmethod
    def _rows(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # MemGPT's shape: {"timestamp", "message": {"role", "content"}}.
        return [
            {
                "timestamp": m["timestamp"].isoformat(timespec="seconds"),
                "message": {"role": m["role"], "content": m["content"]},
            }
            for m in messages
        ]

    def text_search(
        self, query: str, count: int | None = None, start: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Messages containing ``query`` (case-insensitive substring), oldest first.

        Returns ``(results, total)`` paged as ``ArchivalMemory.search``, each
        result ``{"timestamp": ISO text, "message": {"role", "content"}}``.
        Raises ``ValueError`` for a negative ``count`` or ``start``.
        """
        needle = query.casefold()
        rows = self._rows([m for m in self.messages if needle in m["content"].casefold()])
        return _page(rows, count, start), len(rows)

    def date_search(
        self, start_date: str, end_date: str, count: int | None = None, start: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Messages from the day ``start_date`` through the day ``end_date``
        (both ``YYYY-MM-DD``, both included, in UTC), oldest first; results
        as ``text_search``.

        Raises ``ValueError`` for a date not in that format, or a negative
        ``count`` or ``start``.
        """
        first, last = self._day(start_date, "start"), self._day(end_date, "end")
        low = datetime(first.year, first.month, first.day, tzinfo=UTC)
        high = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        rows = self._rows([m for m in self.messages if low <= m["timestamp"] < high])
        return _page(rows, count, start), len(rows)

    @staticmethod
    def _day(text: str, which: str) -> date:
        try:
            return datetime.strptime(text, "%Y-%m-%d").date()
        except (TypeError, ValueError):
            raise ValueError(f"{which}_date must be a date as YYYY-MM-DD, not {text!r}") from None


class PersistenceManager:
    """Where MemGPT's tools find the agent's two stores."""

    def __init__(self, clock: Clock = _utc_now) -> None:
        self.archival_memory = ArchivalMemory(clock)
        self.recall_memory = RecallMemory(clock)


class Interface:
    """What the agent shows its user: ``assistant_message`` is ``send_message``'s way out."""

    def __init__(self, recall: RecallMemory) -> None:
        self.messages: list[str] = []  # what the user was sent, in order
        self._recall = recall

    def assistant_message(self, message: str) -> None:
        """Show ``message`` to the user (appended to ``messages``) and record it
        in the conversation (recall memory) as the assistant's.

        Raises as ``RecallMemory.append``; nothing is shown or recorded then."""
        self._recall.append("assistant", message)
        self.messages.append(message)


class Agent:
    """An in-memory MemGPT-style agent: core memory, archival and recall
    memory, an outbox, and the heartbeat pause (see the module docstring).

    ``clock`` stamps inserted passages and recorded messages (UTC now by
    default; pass one for reproducible timestamps). ``limit`` bounds each
    core memory section.
    """

    def __init__(
        self,
        persona: str = "",
        human: str = "",
        *,
        limit: int = CORE_MEMORY_LIMIT,
        clock: Clock = _utc_now,
    ) -> None:
        self.memory = CoreMemory(persona, human, limit)
        self.persistence_manager = PersistenceManager(clock)
        self.interface = Interface(self.persistence_manager.recall_memory)
        self.core_memory_text = self.memory.render()
        self.pause_heartbeats_start: datetime | None = None
        self._pause_minutes = 0
        self._clock = clock

    @property
    def pause_heartbeats_minutes(self) -> int:
        """How long timed heartbeats are paused, from ``pause_heartbeats_start``.
        Assigning it (``pause_heartbeats`` does) also stamps the start, as
        MemGPT does; it raises ``TypeError`` unless it is an int."""
        return self._pause_minutes

    @pause_heartbeats_minutes.setter
    def pause_heartbeats_minutes(self, minutes: int) -> None:
        if isinstance(minutes, bool) or not isinstance(minutes, int):
            raise TypeError(f"pause_heartbeats_minutes must be an int, not {minutes!r}")
        self._pause_minutes = minutes
        self.pause_heartbeats_start = self._clock()

    def heartbeats_paused(self, now: datetime | None = None) -> bool:
        """Whether timed heartbeats are paused at ``now`` (the clock's time by default)."""
        if self.pause_heartbeats_start is None or self._pause_minutes <= 0:
            return False
        until = self.pause_heartbeats_start + timedelta(minutes=self._pause_minutes)
        return (now or self._clock()) < until

    def rebuild_memory(self) -> None:
        """Refresh ``core_memory_text``, the core memory as the model sees it
        (MemGPT rebuilds its system message here, after a core memory edit)."""
        self.core_memory_text = self.memory.render()

    def user_message(self, text: str) -> None:
        """Record what the user said in the conversation (recall memory)."""
        self.persistence_manager.recall_memory.append("user", text)
