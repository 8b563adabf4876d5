"""The call's context as a function sees it: a stand-in for the host's object.

A function that takes a context parameter (``self``, ``agent_state``, or one
annotated ``AgentContext``) receives a ``ContextProxy`` when its call has a
context. The proxy knows only the paths the host exposed (``expose=[...]``)
and what each is: a method, which may be called, or an attribute, which may
be read and assigned. Everything else raises ``AttributeError`` here,
before anything is sent. Each use is one request to the host during the
call (``Verb.ASK``), which checks the path against the same allow-list
again (this proxy is a convenience, not the wall: code in the worker can
forge any request) and answers with data, never with an object.

An exception the host method raised comes back as the built-in exception of
the same name when there is one (``KeyError``, ``ValueError``...), so
``except KeyError`` in unmodified tool code works; otherwise as
``ContextError`` with the host's type name in ``remote_type``. A request
the host refused raises ``AttributeError`` or ``PermissionError``.

The proxy works only during its call and from the thread that runs it
(``RuntimeError`` otherwise): a request belongs to the running call.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

#: ``ask(op, path, args, kwargs, value)``: send one request for the running
#: call and return the answer's value (raising what the answer says).
Ask = Callable[[str, str, list[Any], dict[str, Any], Any], Any]


class ContextError(Exception):
    """The host method raised an exception with no built-in counterpart."""

    def __init__(self, remote_type: str, message: str) -> None:
        super().__init__(f"{remote_type}: {message}" if remote_type else message)
        self.remote_type = remote_type
        self.message = message


def raise_answer_error(remote_type: str, message: str) -> None:
    """Raise the exception an error answer stands for (see the module docstring)."""
    cls = getattr(builtins, remote_type, None) if remote_type.isidentifier() else None
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            exc = cls(message)
        except Exception:  # an exception class with another signature
            exc = ContextError(remote_type, message)
        raise exc
    raise ContextError(remote_type, message)


class ContextProxy:
    """The exposed part of the host's context object, at one path prefix."""

    __slots__ = ("_fnhost_prefix", "_fnhost_kinds", "_fnhost_ask")

    def __init__(self, kinds: dict[str, str], ask: Ask, prefix: str = "") -> None:
        object.__setattr__(self, "_fnhost_prefix", prefix)
        object.__setattr__(self, "_fnhost_kinds", kinds)
        object.__setattr__(self, "_fnhost_ask", ask)

    def __getattr__(self, name: str) -> Any:
        path = self._fnhost_prefix + name
        kind = self._fnhost_kinds.get(path) if not name.startswith("_") else None
        ask = self._fnhost_ask
        if kind == "method":

            def method(*args: Any, **kwargs: Any) -> Any:
                return ask("call", path, list(args), kwargs, None)

            method.__name__ = method.__qualname__ = name
            return method
        if kind == "attribute":
            return ask("get", path, [], {}, None)
        if not name.startswith("_") and any(p.startswith(path + ".") for p in self._fnhost_kinds):
            return ContextProxy(self._fnhost_kinds, ask, path + ".")
        raise AttributeError(f"{path!r} is not exposed by the host ({self._exposed()})")

    def __setattr__(self, name: str, value: Any) -> None:
        path = self._fnhost_prefix + name
        if not name.startswith("_") and self._fnhost_kinds.get(path) == "attribute":
            self._fnhost_ask("set", path, [], {}, value)
            return
        raise AttributeError(f"{path!r} cannot be assigned: it is not an exposed attribute")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{self._fnhost_prefix + name!r} cannot be deleted")

    def _exposed(self) -> str:
        paths = sorted(self._fnhost_kinds)
        return "exposed: " + ", ".join(paths) if paths else "nothing is exposed"

    def __repr__(self) -> str:
        where = self._fnhost_prefix.rstrip(".") or "context"
        return f"<fnhost {where} proxy; {self._exposed()}>"

    def __dir__(self) -> list[str]:
        prefix = self._fnhost_prefix
        return sorted(
            {p[len(prefix) :].split(".", 1)[0] for p in self._fnhost_kinds if p.startswith(prefix)}
        )
