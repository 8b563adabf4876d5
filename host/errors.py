"""Every way a load or a call can fail, as an exception class.

``HostError`` is the root. Call failures are ``CallError`` subclasses, one
per error kind, each naming the function set, the function and the cause;
``str(err)`` is one sentence a person or a model can act on.
"""

from __future__ import annotations

import re
from typing import Any

from protocol import ErrorKind

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def one_line(text: str) -> str:
    """``text`` with its line breaks (and the blanks around them) made one space."""
    return _LINE_BREAKS.sub(" ", text).strip()


class HostError(Exception):
    """Base class of every error fnhost raises."""


class LoadError(HostError):
    """A function set could not be loaded.

    ``kind`` is ``import_failed`` (the module raised, exited, crashed or hung
    while importing, or its worker could not start). ``remote_type`` and
    ``traceback`` are set when the module raised; ``exit_code``/``signal`` and
    ``stderr_tail`` when the worker died.
    """

    def __init__(
        self,
        set_name: str,
        message: str,
        *,
        source: str | None = None,
        remote_type: str | None = None,
        traceback: str | None = None,
        exit_code: int | None = None,
        signal: str | None = None,
        stderr_tail: str | None = None,
    ) -> None:
        self.kind = ErrorKind.IMPORT_FAILED
        self.set_name = set_name
        self.source = source
        self.message = message
        self.remote_type = remote_type
        self.traceback = traceback
        self.exit_code = exit_code
        self.signal = signal
        self.stderr_tail = stderr_tail
        super().__init__(one_line(f"function set {set_name!r} failed to load: {message}"))


class NameConflict(HostError):
    """Two function sets export the same name (or share a set name).

    ``what="prefix"``: under ``on_conflict="prefix"`` the later set's name
    for ``name`` would be ``<set>__<name>``, which is not a valid tool name
    (``reason`` says why); the set must be renamed.
    """

    def __init__(
        self,
        name: str,
        first_set: str,
        second_set: str,
        what: str = "function",
        reason: str | None = None,
    ) -> None:
        self.name = name
        self.first_set = first_set
        self.second_set = second_set
        if what == "prefix":
            text = (
                f"function {name!r} is exported by both {first_set!r} and {second_set!r}, "
                f"and the prefixed name {second_set}__{name!s} cannot be a tool name: {reason}; "
                f"load {second_set!r} under another set name (name=...)"
            )
        elif what == "set":
            text = (
                f"function set name {name!r} is already taken by {first_set!r}; "
                f"rename the file of {second_set!r} or pass name=..."
            )
        else:
            text = (
                f"function {name!r} is exported by both {first_set!r} and {second_set!r}; "
                f"call it as '{first_set}.{name}' / '{second_set}.{name}', or use "
                f'on_conflict="prefix"'
            )
        super().__init__(text)


class CallError(HostError):
    """A call did not produce a result.

    ``str(err)`` is one line; ``message`` is the cause as it was given.
    Attributes: ``kind`` (an ``ErrorKind`` value), ``set_name``, ``function``,
    ``message``; where they apply ``remote_type`` (the exception's type in the
    worker), ``traceback`` (the user's Python frames: the exception's
    traceback, or faulthandler's dump for a crash), ``exit_code``,
    ``signal`` (e.g. ``"SIGSEGV"``), ``stderr_tail``, ``stdout``/``stderr``
    (what the call printed) and ``details`` (kind-specific fields, e.g.
    ``path`` for invalid arguments).
    """

    kind: str = "call_error"

    def __init__(
        self,
        set_name: str | None,
        function: str | None,
        message: str,
        *,
        kind: str | None = None,
        remote_type: str | None = None,
        traceback: str | None = None,
        exit_code: int | None = None,
        signal: str | None = None,
        stderr_tail: str | None = None,
        stdout: str = "",
        stderr: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        if kind is not None:
            self.kind = kind
        self.set_name = set_name
        self.function = function
        self.message = message
        self.remote_type = remote_type
        self.traceback = traceback
        self.exit_code = exit_code
        self.signal = signal
        self.stderr_tail = stderr_tail
        self.stdout = stdout
        self.stderr = stderr
        self.details = details or {}
        # One line whatever the message holds (a user's multi-line exception
        # text): tracebacks and stderr live in their attributes.
        super().__init__(one_line(self._sentence()))

    @property
    def qualified_name(self) -> str:
        if self.set_name and self.function:
            return f"{self.set_name}.{self.function}"
        return self.function or self.set_name or "?"

    @property
    def _cause(self) -> str:
        """``": <message>"``, or nothing for an empty message (``MemoryError()``)."""
        return f": {self.message}" if self.message.strip() else ""

    def _sentence(self) -> str:
        return f"{self.qualified_name}{self._cause}"


class UnknownFunction(CallError):
    """No exported function has that name (in that set, or in any set)."""

    kind = ErrorKind.UNKNOWN_FUNCTION

    def _sentence(self) -> str:
        return f"unknown function {self.qualified_name!r}{self._cause}"


class InvalidArguments(CallError):
    """The arguments do not match the function's signature.

    ``path`` (e.g. ``items[2].price``), ``expected`` and ``got`` say where
    and what; the function did not run.
    """

    kind = ErrorKind.INVALID_ARGUMENTS

    @property
    def path(self) -> str | None:
        return self.details.get("path")

    @property
    def expected(self) -> str | None:
        return self.details.get("expected")

    @property
    def got(self) -> str | None:
        return self.details.get("got")

    def _sentence(self) -> str:
        return f"invalid arguments for {self.qualified_name}{self._cause}"


class UserFunctionError(CallError):
    """The function raised. ``remote_type``, ``message`` and ``traceback`` say what.

    ``SystemExit`` and ``KeyboardInterrupt`` raised by user code land here
    too; the worker survives them.
    """

    kind = ErrorKind.USER_EXCEPTION

    def _sentence(self) -> str:
        return f"{self.qualified_name} raised {self.remote_type}{self._cause}"


class WorkerCrashed(CallError):
    """The worker process died while the call was in flight (or cannot run).

    ``exit_code`` or ``signal`` and ``stderr_tail`` describe the death. The
    host restarts the worker by itself; after repeated deaths in a short
    window the set is parked for a while and calls fail fast with this error.
    When the host ended the worker itself, ``details["cause"]`` says why:
    ``"parked"``, ``"timeout"`` (another call on the same worker timed out),
    ``"recycle"`` (it ran out of memory), ``"retired"`` (replaced by a
    reload) or ``"start"``.
    """

    kind = ErrorKind.WORKER_CRASHED

    def _sentence(self) -> str:
        return f"the worker running {self.qualified_name} {self.message}"


class CallTimeout(CallError):
    """The call outlived its deadline.

    If it was running, its worker was killed (and restarts). If it never
    started, nothing was interrupted and ``details["cause"]`` says why:
    ``"queued"`` (earlier calls to the set were still running) or
    ``"starting"`` (its worker was still starting).
    """

    kind = ErrorKind.TIMEOUT

    def _sentence(self) -> str:
        return f"{self.qualified_name} timed out{self._cause}"


class OutOfMemory(CallError):
    """The worker's memory limit stopped the call (``MemoryError`` in the worker)."""

    kind = ErrorKind.OUT_OF_MEMORY

    def _sentence(self) -> str:
        return f"{self.qualified_name} ran out of memory{self._cause}"


class ResultError(CallError):
    """The function returned, but its value cannot be sent back.

    ``kind`` is ``result_not_serializable`` (the type is named in
    ``remote_type``) or ``result_too_large``: the encoded reply exceeds
    ``Limits.max_result_mb`` (checked by the worker), or its lists and maps
    would take more than ``Limits.max_decoded_bytes`` of the host's memory
    once decoded (checked by the host while decoding; ``details`` has
    ``encoded_bytes`` and ``decode_budget``, and what the call printed is
    lost). Either way the worker carries on.
    """

    kind = ErrorKind.RESULT_NOT_SERIALIZABLE

    def _sentence(self) -> str:
        return f"the result of {self.qualified_name} cannot be returned{self._cause}"


class ProtocolError(CallError):
    """The worker sent something malformed; it was killed and will restart."""

    kind = ErrorKind.PROTOCOL_ERROR

    def _sentence(self) -> str:
        return f"the worker running {self.qualified_name} broke the protocol{self._cause}"


class HostClosed(CallError):
    """The host was closed before or while the call was pending."""

    kind = ErrorKind.HOST_CLOSED

    def _sentence(self) -> str:
        return f"{self.qualified_name} was not completed{self._cause}"


_BY_KIND: dict[str, type[CallError]] = {
    ErrorKind.UNKNOWN_FUNCTION: UnknownFunction,
    ErrorKind.INVALID_ARGUMENTS: InvalidArguments,
    ErrorKind.USER_EXCEPTION: UserFunctionError,
    ErrorKind.WORKER_CRASHED: WorkerCrashed,
    ErrorKind.TIMEOUT: CallTimeout,
    ErrorKind.OUT_OF_MEMORY: OutOfMemory,
    ErrorKind.RESULT_NOT_SERIALIZABLE: ResultError,
    ErrorKind.RESULT_TOO_LARGE: ResultError,
    ErrorKind.PROTOCOL_ERROR: ProtocolError,
    ErrorKind.HOST_CLOSED: HostClosed,
}


def error_from_map(
    set_name: str, function: str, err: dict[str, Any], output: dict[str, Any]
) -> CallError:
    """Turn a validated error map from the worker into the matching exception."""
    kind = err["kind"]
    cls = _BY_KIND.get(kind, CallError)
    return cls(
        set_name,
        function,
        err["message"],
        kind=kind,
        remote_type=err.get("type"),
        traceback=err.get("traceback"),
        stdout=output.get("stdout") or "",
        stderr=output.get("stderr") or "",
        details=err.get("details"),
    )


class SchemaFormatError(HostError):
    """A provider format cannot express a function's parameter as it is.

    Raised instead of silently changing the type's meaning. ``format``,
    ``function``, ``parameter`` (a path such as ``items[].price``) and
    ``reason`` say what and why.
    """

    def __init__(self, fmt: str, function: str, parameter: str, reason: str) -> None:
        self.format = fmt
        self.function = function
        self.parameter = parameter
        self.reason = reason
        super().__init__(
            f"{fmt}: function {function!r} cannot be expressed: parameter {parameter!r} {reason}"
        )
