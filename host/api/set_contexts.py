"""Which sets may reach a context, and through which paths.

A set loaded with ``expose=[...]`` has an allow-list (``context_door``);
with ``context=obj`` too, that object is its default context. A call may
pass a context of its own (``call(..., context=agent)``: one set serving
many agents), reached through the same allow-list. A set loaded without
``expose`` has no door at all: a call that passes a context to it is a
``ValueError``, and its functions' context parameters receive ``None``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from host.workers.context_door import ContextDoor, check_expose


class SetContexts:
    """Per set name: its allow-list and default context. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expose: dict[str, tuple[str, ...]] = {}
        self._defaults: dict[str, ContextDoor] = {}

    @staticmethod
    def check(context: Any, expose: Sequence[str] | None) -> tuple[str, ...] | None:
        """The allow-list to record for a load, checked before anything
        starts. ``ValueError`` for a context without ``expose`` (doors are
        closed by default: say what it may reach) or a malformed path."""
        if expose is None:
            if context is not None:
                raise ValueError(
                    "context= needs expose=[...]: the dotted paths of it that the set's "
                    "functions may use"
                )
            return None
        return check_expose(expose)

    def open(self, names: Iterable[str], context: Any, expose: tuple[str, ...] | None) -> None:
        """Give each set in ``names`` the allow-list (and default context), or none."""
        with self._lock:
            for name in names:
                self._defaults.pop(name, None)
                if expose is None:
                    self._expose.pop(name, None)
                    continue
                self._expose[name] = expose
                if context is not None:
                    self._defaults[name] = ContextDoor(context, expose)

    def door(self, set_name: str, context: Any) -> ContextDoor | None:
        """The door for one call: its own ``context`` or the set's default.
        ``ValueError`` if it passes a context to a set without an allow-list."""
        if context is None:
            return self._defaults.get(set_name)
        expose = self._expose.get(set_name)
        if expose is None:
            raise ValueError(
                f"function set {set_name!r} was loaded without expose=[...]: "
                "a call cannot pass it a context"
            )
        return ContextDoor(context, expose)

    def exposed(self, set_name: str) -> list[str]:
        """The paths set ``set_name``'s functions may use ([] without a door)."""
        return list(self._expose.get(set_name, ()))
