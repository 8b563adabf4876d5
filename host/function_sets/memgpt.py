"""Built-in function set: MemGPT's memory tools, acting on the caller's agent.

MemGPT's names, parameters and meanings, written for fnhost. Each tool
takes the agent as ``self`` (a reserved parameter: it never appears in a
schema) and uses only the paths of ``host.MEMGPT_EXPOSE``. The agent stays
in the host; in this worker ``self`` is a stand-in that reaches it through
the context door, during the call only:

    fh.load_all_function_sets(context=agent, expose=host.MEMGPT_EXPOSE)

``host.Agent`` is a reference agent with those paths; any object with the
same methods and attributes works with the same list. Without a context
(loaded without ``context=``, and none passed to the call) ``self`` is
``None`` and every tool raises ``RuntimeError`` saying so.

This module runs in the worker: it imports nothing of the host.
"""

from __future__ import annotations

import json
from typing import Any

#: Results per page of a search (MemGPT's ``RETRIEVAL_QUERY_DEFAULT_PAGE_SIZE``).
PAGE_SIZE = 5
#: The longest heartbeat pause, in minutes (MemGPT's ``MAX_PAUSE_HEARTBEATS``).
MAX_PAUSE_MINUTES = 360


def _agent(agent: Any, tool: str) -> Any:
    """The call's agent, or a ``RuntimeError`` that says how to give it one."""
    if agent is None:
        raise RuntimeError(
            f"{tool} acts on an agent and this call has none: load the built-ins with "
            "load_all_function_sets(context=agent, expose=host.MEMGPT_EXPOSE), "
            "or load them with expose= and pass context=agent to each call"
        )
    return agent


def _page_number(page: int | None) -> int:
    if page is None:
        return 0
    if page < 0:
        raise ValueError(f"page must be 0 or more, not {page}")
    return page


def _show(lines: list[str], total: int, page: int) -> str:
    """One page of search results as text, saying where it is among the pages."""
    last = max(0, (total - 1) // PAGE_SIZE)
    if not lines:
        if total == 0:
            return "No results found."
        return f"No results on page {page}: {total} results in all, on pages 0 to {last}."
    listed = json.dumps(lines, ensure_ascii=False)
    return f"Showing {len(lines)} of {total} results (page {page}/{last}): {listed}"


def send_message(self, message: str) -> str | None:
    """Send a message to the human user.

    Args:
        message: The text to send. Any unicode, emojis included.
    """
    _agent(self, "send_message").interface.assistant_message(message)
    return None


def pause_heartbeats(self, minutes: int) -> str:
    """Stop timed heartbeats for a while. Messages and requested heartbeats still arrive.

    Args:
        minutes: How many minutes to pause them for, at most 360 (6 hours).
    """
    agent = _agent(self, "pause_heartbeats")
    minutes = max(0, min(MAX_PAUSE_MINUTES, minutes))
    agent.pause_heartbeats_minutes = minutes
    return f"Pausing timed heartbeats for {minutes} min"


def core_memory_append(self, name: str, content: str) -> str | None:
    """Add to the end of a section of core memory.

    Args:
        name: The section to edit: persona or human.
        content: The text to add. Any unicode, emojis included.
    """
    agent = _agent(self, "core_memory_append")
    agent.memory.edit_append(name, content)
    agent.rebuild_memory()
    return None


def core_memory_replace(self, name: str, old_content: str, new_content: str) -> str | None:
    """Replace text in a section of core memory. An empty new_content deletes old_content.

    Args:
        name: The section to edit: persona or human.
        old_content: The text to replace, exactly as it appears in the section.
        new_content: The text to put in its place. Any unicode, emojis included.
    """
    agent = _agent(self, "core_memory_replace")
    agent.memory.edit_replace(name, old_content, new_content)
    agent.rebuild_memory()
    return None


def conversation_search(self, query: str, page: int | None = 0) -> str:
    """Search the earlier conversation for messages containing a text (case-insensitive).

    Args:
        query: The text to look for.
        page: Which page of results to show, from 0. Only for a follow-up search.
    """
    recall = _agent(self, "conversation_search").persistence_manager.recall_memory
    page = _page_number(page)
    results, total = recall.text_search(query, count=PAGE_SIZE, start=page * PAGE_SIZE)
    lines = [
        f"timestamp: {r['timestamp']}, {r['message']['role']} - {r['message']['content']}"
        for r in results
    ]
    return _show(lines, total, page)


def conversation_search_date(self, start_date: str, end_date: str, page: int | None = 0) -> str:
    """Search the earlier conversation for messages sent between two dates.

    Args:
        start_date: The first day of the range, as YYYY-MM-DD.
        end_date: The last day of the range, as YYYY-MM-DD.
        page: Which page of results to show, from 0. Only for a follow-up search.
    """
    recall = _agent(self, "conversation_search_date").persistence_manager.recall_memory
    page = _page_number(page)
    results, total = recall.date_search(
        start_date, end_date, count=PAGE_SIZE, start=page * PAGE_SIZE
    )
    lines = [
        f"timestamp: {r['timestamp']}, {r['message']['role']} - {r['message']['content']}"
        for r in results
    ]
    return _show(lines, total, page)


def archival_memory_insert(self, content: str) -> str | None:
    """Store a memory in archival memory. Word it so that a later search will find it.

    Args:
        content: The memory to store. Any unicode, emojis included.
    """
    archive = _agent(self, "archival_memory_insert").persistence_manager.archival_memory
    archive.insert(content)
    return None


def archival_memory_search(self, query: str, page: int | None = 0) -> str:
    """Search archival memory for memories matching a query.

    Args:
        query: What to look for.
        page: Which page of results to show, from 0. Only for a follow-up search.
    """
    archive = _agent(self, "archival_memory_search").persistence_manager.archival_memory
    page = _page_number(page)
    results, total = archive.search(query, count=PAGE_SIZE, start=page * PAGE_SIZE)
    lines = [f"timestamp: {r['timestamp']}, memory: {r['content']}" for r in results]
    return _show(lines, total, page)
