"""Which sets may reach a context, and through which paths.

A set loaded with ``expose=[...]`` has an allow-list (``context_door``);
with ``context=obj`` too, that object is its default context. A call may
pass a context of its own (``call(..., context=agent)``: one set serving
many agents), reached through the same allow-list. A set loaded without
``expose`` has no door at all: a call that passes a context to it is a
``ValueError``, and its functions' context parameters receive ``None``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from host.workers.context_door import ContextDoor, check_expose


class WhereExposed:
    """A context for the sets that have an allow-list; the others run
    without it (``dispatch``'s: one agent, tools of every kind)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj


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

    def snapshot(self, names: Iterable[str]) -> dict[str, tuple[Any, Any]]:
        """What ``names`` have now, for ``restore``."""
        with self._lock:
            return {n: (self._expose.get(n), self._defaults.get(n)) for n in names}

    def restore(self, saved: dict[str, tuple[Any, Any]]) -> None:
        """Put back what ``snapshot`` saw (a load that was refused, or that
        returned a set already loaded, changes no door)."""
        with self._lock:
            for name, (expose, default) in saved.items():
                for table, value in ((self._expose, expose), (self._defaults, default)):
                    if value is None:
                        table.pop(name, None)
                    else:
                        table[name] = value

    def settle(self, saved: dict[str, tuple[Any, Any]], before: set[str], after: set[str]) -> None:
        """After a load: keep the doors of the sets it registered (in
        ``after``, not in ``before``); put back what the others had (a set
        that was refused, failed, or was loaded already and returned as it
        was)."""
        self.restore({n: v for n, v in saved.items() if n in before or n not in after})

    @contextlib.contextmanager
    def doors_for(
        self,
        registered: Callable[[], set[str]],
        names: list[str],
        context: Any,
        expose: tuple[str, ...] | None,
    ) -> Iterator[None]:
        """Around a load of ``names``: open their doors before the sets load
        (a first call may come as soon as one is registered), and keep only
        those of the sets the load registered (``settle``; ``registered()``
        names the host's sets), whatever happens."""
        before = registered()
        saved = self.snapshot(names)
        self.open(names, context, expose)
        try:
            yield
        finally:
            self.settle(saved, before, registered())

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
        ``ValueError`` if it passes a context to a set without an allow-list
        (unless it is ``WhereExposed``: that set then gets none)."""
        if context is None:
            return self._defaults.get(set_name)
        expose = self._expose.get(set_name)
        if type(context) is WhereExposed:
            if expose is None:
                return None
            context = context.obj
        if expose is None:
            raise ValueError(
                f"function set {set_name!r} was loaded without expose=[...]: "
                "a call cannot pass it a context"
            )
        return ContextDoor(context, expose)

    def exposed(self, set_name: str) -> list[str]:
        """The paths set ``set_name``'s functions may use ([] without a door)."""
        return list(self._expose.get(set_name, ()))
