"""What the rest of the host asks of a set's workers, whether one
(``WorkerHandle``) or several (``WorkerPool``): one interface, so callers
take neither a union nor ``Any``."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from host.launch.launcher import WorkerSpec
    from host.workers.call_path import OnProgress
    from host.workers.call_result import CallResult
    from host.workers.context_door import ContextDoor
    from host.workers.stream import StreamSink


class SetWorkers(Protocol):
    """The workers of one function set.

    ``start_replacement`` returns an opaque token that only ``swap`` or
    ``discard`` of the same object accept (a new incarnation, or one per
    pool member).
    """

    spec: WorkerSpec

    def start(self) -> None: ...

    def wait_loaded(self) -> dict[str, Any]: ...

    def call(
        self,
        function: str,
        arguments: Any,
        timeout: float | None,
        door: ContextDoor | None = None,
        on_progress: OnProgress | None = None,
        stream: StreamSink | None = None,
    ) -> CallResult: ...

    def acall(
        self,
        function: str,
        arguments: Any,
        timeout: float | None,
        door: ContextDoor | None = None,
        on_progress: OnProgress | None = None,
        stop_on_cancel: bool = False,
        stream: StreamSink | None = None,
    ) -> Coroutine[Any, Any, CallResult]: ...

    def start_replacement(self) -> tuple[Any, dict[str, Any]]: ...

    def respec(self, spec: WorkerSpec) -> None: ...

    def discard(self, started: Any) -> None: ...

    def swap(self, started: Any) -> None: ...

    def begin_close(self) -> None: ...

    def finish_close(self, deadline: float) -> None: ...

    def protections(self) -> dict[str, bool]: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def pids(self) -> list[int | None]: ...

    @property
    def load(self) -> int: ...
