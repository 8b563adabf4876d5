"""MemGPT-style memory tools: each takes the agent as ``self``.

Written as MemGPT's base set is: the agent type is imported only for type
checkers, and the functions call the agent's methods. Under fnhost they run
in a sandboxed worker; ``self`` is a stand-in that reaches the host's agent
only through the paths the host exposes (see docs/context.md):

    fh.load_function_set("examples/memory_tools.py", context=agent, expose=[
        "memory.edit_append", "memory.edit_replace", "rebuild_memory",
        "interface.assistant_message", "pause_heartbeats_minutes",
        "persistence_manager.archival_memory.search",
        "persistence_manager.archival_memory.insert",
    ])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from memgpt.agent import Agent  # never imported at run time


def send_message(self: "Agent", message: str) -> Optional[str]:
    """Sends a message to the human user.

    Args:
        message (str): Message contents. All unicode (including emojis) are supported.
    """
    self.interface.assistant_message(message)
    return None


def pause_heartbeats(self: "Agent", minutes: int) -> Optional[str]:
    """Temporarily ignore timed heartbeats.

    Args:
        minutes (int): Number of minutes to ignore heartbeats for. Max value of 360
            minutes (6 hours).
    """
    minutes = min(360, minutes)
    self.pause_heartbeats_minutes = minutes
    return f"Pausing timed heartbeats for {minutes} min"


def core_memory_append(self: "Agent", name: str, content: str) -> Optional[str]:
    """Append to the contents of core memory.

    Args:
        name (str): Section of the memory to be edited (persona or human).
        content (str): Content to write to the memory. All unicode (including emojis) are supported.
    """
    self.memory.edit_append(name, content)
    self.rebuild_memory()
    return None


def core_memory_replace(
    self: "Agent", name: str, old_content: str, new_content: str
) -> Optional[str]:
    """Replace the contents of core memory. To delete memories, use an empty string for new_content.

    Args:
        name (str): Section of the memory to be edited (persona or human).
        old_content (str): String to replace. Must be an exact match.
        new_content (str): Content to write to the memory.
    """
    self.memory.edit_replace(name, old_content, new_content)
    self.rebuild_memory()
    return None


def archival_memory_insert(self: "Agent", content: str) -> Optional[str]:
    """Add to archival memory. Make sure to phrase the memory contents such that it
    can be easily queried later.

    Args:
        content (str): Content to write to the memory.
    """
    self.persistence_manager.archival_memory.insert(content)
    return None


def archival_memory_search(self: "Agent", query: str, page: Optional[int] = 0) -> Optional[str]:
    """Search archival memory using semantic (embedding-based) search.

    Args:
        query (str): String to search for.
        page (Optional[int]): Allows you to page through results. Defaults to 0 (first page).
    """
    count = 5
    results, total = self.persistence_manager.archival_memory.search(
        query, count=count, start=(page or 0) * count
    )
    if len(results) == 0:
        return "No results found."
    shown = [f"timestamp: {d['timestamp']}, memory: {d['content']}" for d in results]
    return f"Showing {len(results)} of {total} results (page {page}/{total // count}): {shown}"
