"""Several workers for one function set (``Limits.workers``), for CPU-bound
sets: each call goes to the least-loaded worker.

A pool looks like one ``WorkerHandle`` to the rest of the host. Each member
is a full handle (its own process, restarts, crash-loop accounting and call
queue); the pool only chooses. With one worker the host uses the handle
directly.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any

from host.errors import LoadError
from host.launch.launcher import Launcher, WorkerSpec
from host.workers.call_path import OnProgress
from host.workers.call_result import CallResult
from host.workers.context_door import ContextDoor
from host.workers.incarnation import Incarnation
from host.workers.live_workers import LiveWorkers
from host.workers.stream import StreamSink
from host.workers.worker_handle import WorkerHandle


class WorkerPool:
    """``Limits.workers`` handles for one set. Thread-safe."""

    def __init__(
        self, spec: WorkerSpec, launcher: Launcher, live: LiveWorkers | None = None
    ) -> None:
        self.spec = spec
        self.name = spec.set_name
        # Each member is counted, stopped when idle and evicted on its own.
        self.members = [WorkerHandle(spec, launcher, live) for _ in range(spec.limits.workers)]

    def _pick(self) -> WorkerHandle:
        # Fewest calls running or waiting; ties go to the first (warm) member.
        # A parked member has no calls, so it would always win: it is only
        # picked (and fails fast as parked) when every member is parked.
        serving = [h for h in self.members if not h.parked] or self.members
        return min(serving, key=lambda h: h.load)

    # -- starting ----------------------------------------------------------

    def start(self) -> None:
        for member in self.members:
            member.start()

    def wait_loaded(self) -> dict[str, Any]:
        """Every member ready (``LoadError`` from the first that is not)."""
        readies = [member.wait_loaded() for member in self.members]
        return readies[0]

    # -- calling -----------------------------------------------------------

    def call(
        self,
        function: str,
        arguments: Any,
        timeout: float | None,
        door: ContextDoor | None = None,
        on_progress: OnProgress | None = None,
        stream: StreamSink | None = None,
    ) -> CallResult:
        return self._pick().call(function, arguments, timeout, door, on_progress, stream)

    def acall(
        self,
        function: str,
        arguments: Any,
        timeout: float | None,
        door: ContextDoor | None = None,
        on_progress: OnProgress | None = None,
        stop_on_cancel: bool = False,
        stream: StreamSink | None = None,
    ) -> Coroutine[Any, Any, CallResult]:
        # (The member's coroutine itself: no coroutine of our own per call.)
        return self._pick().acall(
            function, arguments, timeout, door, on_progress, stop_on_cancel, stream
        )

    # -- reloading ---------------------------------------------------------

    def start_replacement(self) -> tuple[list[tuple[WorkerHandle, Incarnation]], dict[str, Any]]:
        """A ready replacement for every member, or ``LoadError`` (none kept)."""
        started: list[tuple[WorkerHandle, Incarnation]] = []
        try:
            for member in self.members:
                inc, ready = member.start_replacement()
                started.append((member, inc))
        except LoadError:
            for member, inc in started:
                member.discard(inc)
            raise
        return started, ready

    def respec(self, spec: WorkerSpec) -> None:
        """Every member starts later workers from ``spec`` (see ``WorkerHandle``)."""
        self.spec = spec
        for member in self.members:
            member.respec(spec)

    def discard(self, started: list[tuple[WorkerHandle, Incarnation]]) -> None:
        for member, inc in started:
            member.discard(inc)

    def swap(self, started: list[tuple[WorkerHandle, Incarnation]]) -> None:
        for member, inc in started:
            member.swap(inc)

    # -- closing and reporting ---------------------------------------------

    def begin_close(self) -> None:
        for member in self.members:
            member.begin_close()

    def finish_close(self, deadline: float) -> None:
        for member in self.members:
            member.finish_close(max(deadline, time.monotonic()))

    def protections(self) -> dict[str, bool]:
        return self.members[0].protections()

    @property
    def pid(self) -> int | None:
        return self.members[0].pid

    @property
    def pids(self) -> list[int | None]:
        return [member.pid for member in self.members]

    @property
    def load(self) -> int:
        return sum(member.load for member in self.members)
