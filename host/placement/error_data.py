"""A load's or a call's error as plain data, and back: how errors cross
from a set's actor to the host that placed it.

Only the error's class name and its fields cross (strings, numbers, the
``details`` map the worker sent as msgpack data); the host rebuilds one of
its own exception classes, chosen from a fixed table. Nothing is pickled,
so no object of the worker's (or of a compromised node's) making is ever
built on the host.
"""

from __future__ import annotations

from typing import Any

from host.errors import (
    CallError,
    CallTimeout,
    HostClosed,
    HostError,
    InvalidArguments,
    LoadError,
    OutOfMemory,
    ProtocolError,
    ResultError,
    UnknownFunction,
    UserFunctionError,
    WorkerCrashed,
)

#: The classes an actor may name; anything else comes back as a plain ``CallError``.
CALL_ERRORS: dict[str, type[CallError]] = {
    cls.__name__: cls
    for cls in (
        CallError,
        UnknownFunction,
        InvalidArguments,
        UserFunctionError,
        WorkerCrashed,
        CallTimeout,
        OutOfMemory,
        ResultError,
        ProtocolError,
        HostClosed,
    )
}

_COMMON = ("remote_type", "traceback", "exit_code", "signal", "stderr_tail")


def error_to_data(exc: HostError) -> dict[str, Any]:
    """``exc`` as a map of plain values (``LoadError`` or a ``CallError``)."""
    data: dict[str, Any] = {"class": type(exc).__name__}
    data["set_name"] = getattr(exc, "set_name", None)
    data["message"] = str(getattr(exc, "message", exc))
    for name in _COMMON:
        data[name] = getattr(exc, name, None)
    if isinstance(exc, LoadError):
        data["class"] = "LoadError"
        data["source"] = exc.source
    elif isinstance(exc, CallError):
        data.update(
            function=exc.function,
            kind=str(exc.kind),
            stdout=exc.stdout,
            stderr=exc.stderr,
            details=dict(exc.details),
        )
    return data


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def load_error_from_data(data: dict[str, Any], set_name: str) -> LoadError:
    """The ``LoadError`` an actor reported for set ``set_name``."""
    return LoadError(
        set_name,
        str(data.get("message", "")),
        source=_text(data.get("source")),
        remote_type=_text(data.get("remote_type")),
        traceback=_text(data.get("traceback")),
        exit_code=_int(data.get("exit_code")),
        signal=_text(data.get("signal")),
        stderr_tail=_text(data.get("stderr_tail")),
    )


def call_error_from_data(data: dict[str, Any], set_name: str, function: str) -> CallError:
    """The ``CallError`` an actor reported for ``set_name.function``, as the
    class it names (a name outside ``CALL_ERRORS`` makes a ``CallError``)."""
    cls = CALL_ERRORS.get(str(data.get("class")), CallError)
    details = data.get("details")
    return cls(
        set_name,
        function,
        str(data.get("message", "")),
        kind=_text(data.get("kind")),
        remote_type=_text(data.get("remote_type")),
        traceback=_text(data.get("traceback")),
        exit_code=_int(data.get("exit_code")),
        signal=_text(data.get("signal")),
        stderr_tail=_text(data.get("stderr_tail")),
        stdout=_text(data.get("stdout")) or "",
        stderr=_text(data.get("stderr")) or "",
        details=details if isinstance(details, dict) else None,
    )
