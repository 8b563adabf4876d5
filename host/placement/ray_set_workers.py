"""A function set placed on a Ray cluster, as the host holds it: the
``SetWorkers`` of that set, whose worker runs on a node, behind the set's
actor (``set_endpoint.SetEndpoint``).

One call is one actor method call (``actor.call.remote``, or
``actor.acall.remote`` for asyncio, which the driver can cancel with one
more message, ``actor.cancel.remote``): no task per call; many calls are in
flight per set at once (the actor is threaded, up to
``RayPlacement.max_concurrency``) and wait in the worker's pipe there, as
locally. What crosses: the call's arguments as msgpack bytes, the answer as
msgpack bytes, errors as data (``error_data``).

The actor's answers say what the views need (``pids``, ``protections``,
the node and its fnhost and protocol versions, checked at every placement:
``versions``), so ``function_sets`` and ``protections`` read them here,
without a round trip.

Failures keep the local taxonomy. The worker's own deaths, timeouts and
limits are handled beside it, in the actor, and come back as the errors a
local worker gives. The actor (or its node) dying is a ``WorkerCrashed``
for each call it held (``details["cause"] == "placement"``); Ray then
places the actor again (``max_restarts=-1``), on another node if its own is
gone, and the next call runs there. Calls are never retried
(``max_task_retries=0``): no call runs twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgpack

from host.egress.record import EgressRecord
from host.environments.options import EnvironmentOptions
from host.errors import CallError, HostClosed, InvalidArguments, LoadError, WorkerCrashed
from host.launch.launcher import WorkerSpec
from host.placement.actor_view import ActorView
from host.placement.error_data import call_error_from_data, load_error_from_data
from host.placement.ray_cluster import RayCluster
from host.placement.resources import RayResources
from host.placement.versions import check_versions
from host.workers.call_path import OnProgress
from host.workers.call_result import CallResult
from host.workers.context_door import ContextDoor
from host.workers.stream import StreamSink
from protocol.framing import PACK_OPTIONS, unpack

#: Seconds Ray may take to place a set's actor on a node (and start its
#: process) before the load fails; the worker's own start then has
#: ``Limits.start_timeout`` on top.
PLACE_TIMEOUT = 60.0
#: Seconds a cancelled ``acall`` waits for its actor to confirm the cancel.
CANCEL_WAIT = 5.0
#: Seconds past the close grace that the actor gets to reap its workers
#: before it is killed anyway.
CLOSE_SLACK = 5.0


class RaySetWorkers:
    """The ``SetWorkers`` of one set placed on Ray (see the module docstring).

    Thread-safe; sync and asyncio calls. Streams, progress reports and
    context doors do not cross to a node yet: ``call`` raises
    ``NotImplementedError`` for them.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        cluster: RayCluster,
        environments: EnvironmentOptions | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.set_name
        self.actor_name = cluster.actor_name(spec.set_name)
        self._cluster = cluster
        self._environments = environments
        self._lock = threading.Lock()
        self._actor: Any = None
        self._loaded: Any = None  # the ObjectRef of the actor's load()
        self._start_error: LoadError | None = None
        self._closing: Any = None
        self._closed = False
        self._in_flight = 0
        #: Set when a call saw the actor lost: the next call waits until Ray
        #: has placed it again (a call sent to a restarting actor would fail).
        self._lost_actor = False
        self._call_ids = itertools.count(1)
        #: What the actor last reported: read here, never asked for.
        self._view = ActorView()
        #: The node the actor runs on (``{"id", "address"}``), as it reported it.
        self.node: dict[str, Any] = {}

    # -- placing and loading --------------------------------------------------

    def start(self) -> None:
        """Ask Ray to place the set's actor (its worker starts there at once); no wait."""
        with self._lock:
            if self._actor is not None or self._start_error is not None:
                return
            resources = self.spec.limits.placement or RayResources()
            placement = self._cluster.placement
            try:
                actor_class = self._cluster.actor_class()
                self._actor = actor_class.options(
                    name=self.actor_name,
                    namespace=placement.namespace,
                    max_restarts=-1,
                    max_task_retries=0,
                    max_concurrency=placement.max_concurrency,
                    **resources.actor_options(),
                ).remote(self.spec, placement.start_method, self._environments)
                self._loaded = self._actor.load.remote()
            except Exception as exc:  # ImportError, or what Ray says of the address
                self._start_error = LoadError(
                    self.name,
                    f"cannot place the set on Ray: {type(exc).__name__}: {exc}",
                    source=self.spec.source,
                )
                raise self._start_error from None

    def wait_loaded(self) -> dict[str, Any]:
        """Wait for the actor to be placed and its worker loaded: the
        ``ready`` params, or ``LoadError`` (the set's own, as locally; or no
        node took the actor within ``PLACE_TIMEOUT`` plus
        ``Limits.start_timeout``; or the actor was lost while loading)."""
        import ray

        with contextlib.suppress(LoadError):
            self.start()
        if self._start_error is not None:
            raise self._start_error
        wait = PLACE_TIMEOUT + self.spec.limits.start_timeout
        try:
            data = unpack(ray.get(self._loaded, timeout=wait))
        except ray.exceptions.GetTimeoutError:
            raise LoadError(
                self.name,
                f"no node of the Ray cluster took the set within {wait:g} s "
                f"(it asks for {self._asks()})",
                source=self.spec.source,
            ) from None
        except ray.exceptions.RayError as exc:
            raise LoadError(
                self.name,
                f"its Ray actor was lost while loading: {_why(exc)}",
                source=self.spec.source,
            ) from None
        self._check_versions(data)
        if "error" in data:
            raise load_error_from_data(data["error"], self.name)
        self._view.see(data.get("view"))
        ready: dict[str, Any] = data["ready"]
        return ready

    def _check_versions(self, data: dict[str, Any]) -> None:
        """Note the actor's node; ``LoadError`` if it runs another fnhost
        or protocol version (``versions.check_versions``)."""
        node = data.get("node")
        self.node = dict(node) if isinstance(node, dict) else {}
        where = f"{self.node.get('address', '?')} (id {str(self.node.get('id', '?'))[:12]})"
        check_versions(data.get("versions"), self.name, where, self.spec.source)

    def _asks(self) -> str:
        resources = self.spec.limits.placement or RayResources()
        return ", ".join(f"{k}={v}" for k, v in resources.actor_options().items())

    # -- calls ---------------------------------------------------------------

    def call(
        self,
        function: str,
        arguments: Any,
        timeout: float | None,
        door: ContextDoor | None = None,
        on_progress: OnProgress | None = None,
        stream: StreamSink | None = None,
    ) -> CallResult:
        """Run one call on the set's node and wait: its ``CallResult``, or the
        ``CallError`` a local worker would give, rebuilt here; a
        ``WorkerCrashed`` with ``details["cause"] == "placement"`` when the
        actor or its node was lost during the call (the next call goes to
        the actor Ray places again)."""
        import ray

        actor, packed = self._prepare(function, arguments, door, stream, on_progress)
        if self._lost_actor:
            self._await_placed(function)
        with self._counted():
            try:
                answer = ray.get(actor.call.remote(function, packed, timeout))
            except ray.exceptions.RayError as exc:
                raise self._lost(function, exc) from None
        return self._result(function, answer)

    async def acall(
        self,
        function: str,
        arguments: Any,
        timeout: float | None,
        door: ContextDoor | None = None,
        on_progress: OnProgress | None = None,
        stop_on_cancel: bool = False,
        stream: StreamSink | None = None,
    ) -> CallResult:
        """asyncio ``call``: awaits the actor's answer without a thread.

        Cancelling the awaiting task abandons the call as locally: the
        actor is told to cancel the call's task beside the worker, where
        the worker's own ``acall`` does what a local cancel does (a call
        still waiting for its turn is skipped; one that has started runs to
        its end under its timeout, its reply dropped, or with
        ``stop_on_cancel`` its worker is killed and restarted; either way
        the calls behind it go on), and ``CancelledError`` propagates once
        the actor has done so: one actor round trip, at most
        ``CANCEL_WAIT`` seconds (a lost actor).
        """
        import ray

        actor, packed = self._prepare(function, arguments, door, stream, on_progress)
        if self._lost_actor:
            await asyncio.to_thread(self._await_placed, function)
        call_id = next(self._call_ids)
        with self._counted():
            try:
                answer = await actor.acall.remote(
                    call_id, function, packed, timeout, stop_on_cancel
                )
            except asyncio.CancelledError:
                # Told before CancelledError goes on, as a local cancel is
                # written to the pipe first: what the caller does next comes
                # after it. Not for long, though: a lost actor has no call.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(actor.cancel.remote(call_id), CANCEL_WAIT)
                raise
            except ray.exceptions.RayError as exc:
                raise self._lost(function, exc) from None
        return self._result(function, answer)

    def _prepare(
        self,
        function: str,
        arguments: Any,
        door: ContextDoor | None,
        stream: StreamSink | None,
        on_progress: OnProgress | None,
    ) -> tuple[Any, bytes]:
        if door is not None or stream is not None or on_progress is not None:
            raise NotImplementedError(
                f"{self.name}.{function}: context doors, streams and progress reports are "
                "not available for sets placed on Ray yet"
            )
        if self._closed:
            raise HostClosed(self.name, function, "the host is closed")
        actor = self._actor
        if actor is None:
            raise WorkerCrashed(
                self.name, function, "was never placed on Ray", details={"cause": "start"}
            )
        try:
            packed: bytes = msgpack.packb(arguments, **PACK_OPTIONS)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise InvalidArguments(
                self.name,
                function,
                f"the arguments cannot be sent: {exc}",
                details={"path": "$", "expected": "JSON-compatible values", "got": str(exc)},
            ) from None
        return actor, packed

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def _result(self, function: str, answer: bytes) -> CallResult:
        data = unpack(answer)
        self._view.see_answer(data)
        if "error" in data:
            raise call_error_from_data(data["error"], self.name, function)
        return CallResult(
            data["value"],
            data["stdout"],
            data["stderr"],
            self.name,
            function,
            tuple(EgressRecord(**r) for r in data.get("egress") or ()),
        )

    def _lost(self, function: str, exc: Exception) -> CallError:
        if self._closed:
            return HostClosed(self.name, function, "the host was closed while the call was running")
        self._lost_actor = True
        self._view.lost()
        return WorkerCrashed(
            self.name,
            function,
            f"was lost with its Ray actor or node ({_why(exc)}); the set is placed "
            "again and the next call runs there",
            details={"cause": "placement", "ray_error": type(exc).__name__},
        )

    def _await_placed(self, function: str) -> None:
        """Wait until Ray has placed the lost actor again and its worker is
        loaded, asking the actor's ``load`` (never a user's call, so asking
        again is harmless). ``WorkerCrashed`` (cause ``placement``) if that
        takes longer than ``PLACE_TIMEOUT`` plus ``Limits.start_timeout`` or
        the actor is gone for good; cause ``start`` if the set no longer
        loads there."""
        import ray

        deadline = time.monotonic() + PLACE_TIMEOUT + self.spec.limits.start_timeout
        while True:
            try:
                data = unpack(
                    ray.get(
                        self._actor.load.remote(), timeout=max(0.1, deadline - time.monotonic())
                    )
                )
                break
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() >= deadline:
                    raise self._not_placed(function, "it was not placed again in time") from None
                time.sleep(0.1)
            except ray.exceptions.RayError as exc:
                raise self._not_placed(function, _why(exc)) from None
        try:
            self._check_versions(data)
            if "error" in data:
                raise load_error_from_data(data["error"], self.name)
        except LoadError as error:
            raise WorkerCrashed(
                self.name,
                function,
                f"cannot start where the set was placed again: {error.message}",
                details={"cause": "start"},
            ) from None
        self._view.see(data.get("view"))
        self._lost_actor = False

    def _not_placed(self, function: str, why: str) -> WorkerCrashed:
        return WorkerCrashed(
            self.name,
            function,
            f"has no Ray actor: the lost one was not placed again ({why})",
            details={"cause": "placement"},
        )

    # -- reloading -------------------------------------------------------------

    def start_replacement(self) -> tuple[Any, dict[str, Any]]:
        """Start the set's new version beside the serving one, on the actor's
        node (its environment prepared there): a token for ``swap`` or
        ``discard``, and the ``ready`` params; ``LoadError`` as locally, or
        when the actor was lost during the reload."""
        import ray

        try:
            data = unpack(ray.get(self._actor.start_replacement.remote()))
        except ray.exceptions.RayError as exc:
            raise LoadError(
                self.name,
                f"its Ray actor was lost during the reload: {_why(exc)}",
                source=self.spec.source,
            ) from None
        if "error" in data:
            raise load_error_from_data(data["error"], self.name)
        return data["token"], data["ready"]

    def respec(self, spec: WorkerSpec) -> None:
        # The environment is prepared on the node (SetEndpoint.start_replacement).
        self.spec = spec

    def swap(self, started: Any) -> None:
        self._view.see(self._on_actor("swap", started))

    def discard(self, started: Any) -> None:
        self._on_actor("discard", started)

    def _on_actor(self, method: str, *args: Any) -> Any:
        """``method`` on the actor, or ``None`` if it is gone (a restarted
        actor loads the set's current version by itself)."""
        import ray

        if self._actor is None:
            return None
        try:
            return ray.get(getattr(self._actor, method).remote(*args))
        except ray.exceptions.RayError:
            return None

    # -- closing ---------------------------------------------------------------

    def begin_close(self) -> None:
        """Ask the actor to stop its workers (as ``WorkerHandle.begin_close``); no wait."""
        self._closed = True
        if self._actor is not None and self._closing is None:
            self._closing = self._actor.close.remote(self.spec.limits.shutdown_grace)

    def finish_close(self, deadline: float) -> None:
        """Wait for the actor to reap its workers (until ``deadline`` plus
        ``CLOSE_SLACK``), then remove the actor for good."""
        import ray

        if self._actor is None:
            return
        with contextlib.suppress(ray.exceptions.RayError):
            wait = max(0.0, deadline - time.monotonic()) + CLOSE_SLACK
            ray.get(self._closing, timeout=wait)
        with contextlib.suppress(ray.exceptions.RayError, ValueError):
            ray.kill(self._actor, no_restart=True)

    # -- views ---------------------------------------------------------------

    def protections(self) -> dict[str, bool]:
        """What the set's current worker reported applying to itself, as the
        actor last sent it (at load, reload, re-placement); asked of the
        actor only after an answer showed a worker restarted."""
        return self._view.protections(lambda: self._on_actor("protections"))

    @property
    def pids(self) -> list[int | None]:
        """The workers' process ids on their node (not this machine's, unless
        it is the node), as of the set's last answer (load, reload,
        re-placement, or any call's): no actor round trip."""
        return self._view.pids

    @property
    def pid(self) -> int | None:
        pids = self.pids
        return pids[0] if pids else None

    @property
    def load(self) -> int:
        """Calls this host has in flight to the set."""
        return self._in_flight


def _why(exc: Exception) -> str:
    """The first line of a Ray error, which repeats its whole story below."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()
