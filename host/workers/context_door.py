"""The door through the wall to a call's context: an allow-list of paths.

A set loaded with ``context=obj, expose=[...]`` (or a call given
``context=``) lets its functions reach that host object, but only along
the listed dotted paths: a path to a callable may be called, a path to
anything else may be read and assigned. The worker holds no reference to
the object; it sends a request naming the path (``Verb.ASK``) and gets data
back. This module decides every such request, trusting nothing the worker
sends: the path must be listed exactly (no prefix, no dunder, no segment
starting with ``_``), the operation must fit what the path is, and the
arguments and the value must be data (what msgpack decodes: no object can
arrive). A refusal answers ``AttributeError`` or ``PermissionError`` inside
the worker and never touches the host object.

Requests run on a thread of their own (``answer_in_thread``), never on the
thread reading the worker's pipe: a slow host method delays only its own
call, whose timeout still bounds it (the worker is killed at its deadline;
the host method is not interrupted, and its answer is dropped).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from protocol import ErrorKind, Response, encode_message
from protocol.messages import make_error_map
from protocol.values import to_wire

logger = logging.getLogger("fnhost.context")

#: What a request may do with a path: call a method, read or assign an attribute.
OPS = ("call", "get", "set")


class ContextRefused(Exception):
    """A request the allow-list does not permit (sent back as ``exc_type``)."""

    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(message)
        self.exc_type = exc_type


def check_expose(expose: Sequence[str]) -> tuple[str, ...]:
    """The allow-list as given, checked: ``ValueError`` names a bad path."""
    if isinstance(expose, str) or not isinstance(expose, Sequence):
        raise ValueError("expose must be a list of dotted paths, e.g. ['memory.edit_append']")
    paths = []
    for path in expose:
        if not isinstance(path, str) or not path:
            raise ValueError(f"expose: {path!r} is not a dotted path")
        for part in path.split("."):
            if not part.isidentifier() or part.startswith("_"):
                raise ValueError(
                    f"expose: {path!r}: each part must be a name not starting with '_' "
                    "(private attributes and dunders cannot be exposed)"
                )
        paths.append(path)
    for path in paths:
        inner = next((p for p in paths if p.startswith(path + ".")), None)
        if inner is not None:
            raise ValueError(
                f"expose: {path!r} and {inner!r}: a path cannot also lead to another "
                "(list the methods and attributes themselves, not what holds them)"
            )
    return tuple(dict.fromkeys(paths))


class ContextDoor:
    """One context object and the paths of it a set's functions may use."""

    def __init__(self, obj: Any, expose: tuple[str, ...]) -> None:
        self.obj = obj
        self.expose = expose

    def describe(self) -> dict[str, Any]:
        """What the worker is told: each path and whether it is a method or
        an attribute, looked up now without running a getter of the last
        part (``inspect.getattr_static``; the parts before it are read). A
        path the object does not have (yet), or whose parent cannot be read,
        is an attribute: reading it raises that error in the worker, and
        nothing fails before the call."""
        kinds = {}
        for path in self.expose:
            parent_path, _, name = path.rpartition(".")
            try:
                parent = self._resolve(parent_path) if parent_path else self.obj
                static = inspect.getattr_static(parent, name)
            except Exception:
                kinds[path] = "attribute"
                continue
            if isinstance(static, staticmethod | classmethod):
                method = True
            elif isinstance(static, property) or not callable(static):
                method = False
            else:
                # A plain function on the class, or a callable held on the
                # instance (a bound method, a functools.partial): callable.
                method = True
            kinds[path] = "method" if method else "attribute"
        return {"paths": kinds}

    def _resolve(self, path: str) -> Any:
        target = self.obj
        for part in path.split("."):
            target = getattr(target, part)
        return target

    def perform(self, params: Any) -> Any:
        """Carry out one request (``Verb.ASK`` params); its value, or raises
        ``ContextRefused`` (nothing touched) or what the host method raised."""
        if not isinstance(params, dict):
            raise ContextRefused("PermissionError", "a malformed request")
        op, path = params.get("op"), params.get("path")
        if op not in OPS or not isinstance(path, str):
            raise ContextRefused("PermissionError", f"a malformed request (op {op!r})")
        if path not in self.expose:
            listed = ", ".join(self.expose) or "nothing"
            raise ContextRefused(
                "AttributeError", f"{path!r} is not exposed by the host (exposed: {listed})"
            )
        if op == "set":
            parent_path, _, name = path.rpartition(".")
            parent = self._resolve(parent_path) if parent_path else self.obj
            if callable(getattr(parent, name, None)):
                raise ContextRefused("PermissionError", f"{path!r} is a method; it cannot be set")
            setattr(parent, name, params.get("value"))
            return None
        target = self._resolve(path)
        if op == "get":
            if callable(target):
                raise ContextRefused(
                    "PermissionError", f"{path!r} is a method: call it, it cannot be read"
                )
            return target
        if not callable(target):
            raise ContextRefused("PermissionError", f"{path!r} is not a method")
        args, kwargs = params.get("args", []), params.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ContextRefused("PermissionError", "a malformed request (args, kwargs)")
        if not all(isinstance(k, str) for k in kwargs):
            raise ContextRefused("PermissionError", "a malformed request (keyword names)")
        return target(*args, **kwargs)


def answer(
    door: ContextDoor | None,
    request_id: int,
    params: Any,
    loop: asyncio.AbstractEventLoop | None,
    max_bytes: int,
) -> bytes:
    """The framed answer to one request: its value, or an error map naming
    the exception (the worker raises the same built-in type, or
    ``ContextError``), a ``BaseException`` of the host method included
    (``SystemExit``, an async method's ``CancelledError``). ``loop``: where
    an awaitable result is awaited (the calling ``acall``'s loop); without
    one, in a loop of its own. ``max_bytes``: the largest frame the worker
    reads (``frame_limits.request_frame_limit``); a larger answer is a
    ``ValueError`` in the function instead."""
    try:
        if door is None:
            raise ContextRefused("AttributeError", "this call has no context (context=...)")
        value = door.perform(params)
        if inspect.isawaitable(value):
            value = _await(value, loop)
        try:
            frame = encode_message(Response(request_id, None, {"value": value}), default=_data)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise ContextRefused(
                "TypeError", f"the host's answer is not data and cannot be sent: {exc}"
            ) from None
        if len(frame) > max_bytes:
            raise ContextRefused(
                "ValueError",
                f"the host's answer is {len(frame)} bytes; the function may receive at most "
                f"{max_bytes} (Limits.max_argument_mb)",
            )
        return frame
    except ContextRefused as exc:
        error = make_error_map(ErrorKind.USER_EXCEPTION, str(exc), exc.exc_type)
    except BaseException as exc:  # SystemExit, CancelledError too: the worker waits for an answer
        cls = type(exc)
        module = cls.__module__
        name = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
        error = make_error_map(ErrorKind.USER_EXCEPTION, _message(exc), name)
    return encode_message(Response(request_id, error, {}))


def _data(obj: Any) -> Any:
    """``to_wire`` for answers, but a dataclass without its ``_private``
    fields, and shallow (its fields are converted in turn, never deep-copied):
    only what is public of a host object crosses. A pydantic model too: its
    fields one by one, not ``model_dump``, which would serialize a dataclass
    inside it whole, ``_private`` fields and all."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: getattr(obj, f.name)
            for f in dataclasses.fields(obj)
            if not f.name.startswith("_")
        }
    fields = getattr(type(obj), "model_fields", None)
    if isinstance(fields, dict) and hasattr(type(obj), "model_json_schema"):
        return {name: _model_field(obj, name) for name in fields if not name.startswith("_")}
    return to_wire(obj)


def _model_field(model: Any, name: str) -> Any:
    """One field of a pydantic model: a dataclass, a model or a container
    as it is (converted in turn, by ``_data``); anything else as the
    model's own JSON dump of that field (``SecretStr`` masked, ``HttpUrl``
    text)."""
    value = getattr(model, name)
    if isinstance(value, list | tuple | set | frozenset | dict) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        return value
    if hasattr(type(value), "model_json_schema"):
        return value
    return model.model_dump(mode="json", include={name}).get(name)


def _message(exc: BaseException) -> str:
    """``str(exc)``, but a ``KeyError``'s key as it was given, so that the
    worker's ``KeyError(message)`` reads the same as the host's."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _await(awaitable: Any, loop: asyncio.AbstractEventLoop | None) -> Any:
    if loop is not None and loop.is_running():
        return asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), loop).result()
    return asyncio.run(_as_coroutine(awaitable))


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


class _Runner:
    """Daemon threads that answer requests: an idle one takes the next job,
    a new one starts when all are busy (so a slow host method never holds
    up another call's request), and one idle for ``IDLE_SECONDS`` exits.
    Daemon threads: a host method that never returns cannot keep the
    process from exiting."""

    IDLE_SECONDS = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Hand] = []

    def submit(self, job: Callable[[], object], name: str) -> None:
        with self._lock:
            hand = self._idle.pop() if self._idle else None
        if hand is not None:
            hand.job = job
            hand.ready.set()
            return
        hand = _Hand(job)
        threading.Thread(target=self._work, args=(hand,), name=name, daemon=True).start()

    def _work(self, hand: _Hand) -> None:
        while True:
            job, hand.job = hand.job, None
            if job is not None:
                try:
                    job()
                except Exception:  # a bug here must not end the thread silently
                    logger.exception("answering a context request failed")
            hand.ready.clear()
            with self._lock:
                self._idle.append(hand)
            if not hand.ready.wait(self.IDLE_SECONDS):
                with self._lock:
                    if hand in self._idle:  # not handed a job meanwhile
                        self._idle.remove(hand)
                        return
                hand.ready.wait()  # handed one just now: it is on its way


class _Hand:
    __slots__ = ("job", "ready")

    def __init__(self, job: Callable[[], object] | None) -> None:
        self.job = job
        self.ready = threading.Event()


_runner = _Runner()


def answer_in_thread(
    door: ContextDoor | None,
    request_id: int,
    params: Any,
    loop: asyncio.AbstractEventLoop | None,
    send: Callable[[bytes], object],
    name: str,
    max_bytes: int,
) -> None:
    """Compute the answer off the caller's thread (``_Runner``), then ``send`` it."""
    _runner.submit(lambda: send(answer(door, request_id, params, loop, max_bytes)), name)
