"""The marker type of a parameter that receives the call's context.

A function set imports it (``from protocol.context_marker import
AgentContext``) to give the parameter a name of its own instead of
``self`` or ``agent_state``. The worker reads only the annotation; nothing
here is ever instantiated.
"""

from __future__ import annotations

__all__ = ["MARKER_SPELLINGS", "AgentContext"]


class AgentContext:
    """Annotate a parameter with this type to receive the call's context proxy;
    the parameter is reserved like ``self``.

    A reserved parameter never appears in a schema and no caller can set it.
    Until a context is given it receives its default, or ``None``.
    """

    __slots__ = ()


#: How the annotation may be spelt when the worker cannot resolve it (a
#: string annotation, or postponed evaluation with the import under
#: ``TYPE_CHECKING``): these strings mark the parameter all the same.
MARKER_SPELLINGS = frozenset({"AgentContext", "protocol.context_marker.AgentContext"})
