"""One function set's host-side end on a Ray node: the body of its actor.

Ray runs this class as the set's actor (``ray_set_workers`` makes it one);
it imports ``ray`` only to name its node. It holds the set's ``WorkerHandle`` (or
``WorkerPool``) and a ``Launcher`` of its own, so the worker on the node is
started, sandboxed, limited, timed out, restarted and parked exactly as on
the host's machine; the actor is where the host's side of the pipe lives,
not a replacement for the worker process.

Every method takes and returns plain data: arguments come as msgpack bytes
and every answer goes back as msgpack bytes (a value, or an error as
``error_data``), so nothing the worker made is ever pickled. No method
raises for a load or call failure; those are answers.

What the driver shows of the set without asking the node travels with the
answers: ``load`` reports the actor's versions (``versions``), its node and
the workers' view (``pids``, ``protections``); every call's answer carries
the workers' ``pids``, and their ``protections`` when the view changed (a
worker restarted on the node shows there), and ``swap`` returns the view
after a reload.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from typing import Any

import msgpack

from host.environments.options import EnvironmentOptions
from host.environments.set_environments import SetEnvironments
from host.errors import HostError, LoadError
from host.launch.launcher import Launcher, WorkerSpec
from host.placement.call_loop import CallCancelled, CallLoop
from host.placement.error_data import error_to_data
from host.placement.versions import local_versions
from host.workers.call_result import CallResult
from host.workers.set_workers import SetWorkers
from host.workers.worker_handle import WorkerHandle
from host.workers.worker_pool import WorkerPool
from protocol.framing import PACK_OPTIONS, unpack


def pack(obj: Any) -> bytes:
    """msgpack bytes of an answer (values decoded from the worker re-encode as they came)."""
    packed: bytes = msgpack.packb(obj, **PACK_OPTIONS)
    return packed


class SetEndpoint:
    """The actor of one set (see the module docstring).

    The worker starts when the actor does (its environment, if the set
    declares dependencies, is built or found here, on the node, in the
    node's cache, as ``SetEnvironments`` does locally); ``load`` waits for
    it. When Ray restarts the actor on another node, that start repeats
    there.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        start_method: str = "zygote",
        environments: EnvironmentOptions | None = None,
    ) -> None:
        self._launcher = Launcher(start_method)
        self._environments = SetEnvironments(environments)
        self._spec = spec
        self._workers: SetWorkers | None = None
        self._load_error: LoadError | None = None
        self._replacements: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._calls = CallLoop(spec.set_name)
        #: The view of the last answer (``_pids``).
        self._sent_view: dict[str, Any] = {}
        try:
            spec = self._environments.prepare(spec)
            workers: SetWorkers = (
                WorkerPool(spec, self._launcher)
                if spec.limits.workers > 1
                else WorkerHandle(spec, self._launcher)
            )
            self._workers = workers
            with contextlib.suppress(LoadError):  # load() reports it
                workers.start()
        except LoadError as exc:
            self._load_error = exc

    def load(self) -> bytes:
        """Wait for the worker's first start: ``{"ready": params, "view": ...}``
        or ``{"error": data}``, each with ``versions`` and ``node``."""
        answer: dict[str, Any] = {"versions": local_versions(), "node": _node()}
        if self._load_error is not None:
            return pack({**answer, "error": error_to_data(self._load_error)})
        assert self._workers is not None
        try:
            answer["ready"] = self._workers.wait_loaded()
        except HostError as exc:
            return pack({**answer, "error": error_to_data(exc)})
        view = self.view()
        with self._lock:
            self._sent_view = view
        return pack({**answer, "view": view})

    def call(self, function: str, arguments: bytes, timeout: float | None) -> bytes:
        """Run one call on the worker: ``{"value", "stdout", "stderr",
        "egress", "pids"}`` or ``{"error": data, "pids"}``. The call's timeout
        is kept here, beside the worker (it is killed past it, and the actor
        lives on)."""
        if self._workers is None:
            assert self._load_error is not None
            return pack({"error": error_to_data(self._load_error)})
        try:
            result = self._workers.call(function, unpack(arguments), timeout)
        except HostError as exc:
            return pack({"error": error_to_data(exc), **self._pids()})
        return self._answer(result)

    def acall(
        self,
        call_id: int,
        function: str,
        arguments: bytes,
        timeout: float | None,
        stop_on_cancel: bool = False,
    ) -> bytes:
        """``call``, cancellable by ``cancel(call_id)``: it runs as the
        worker's ``acall`` (``call_loop``), so a cancel does here what
        cancelling a local ``acall`` does (skipped if it has not started;
        else run to its end under its timeout, or with ``stop_on_cancel``
        its worker killed and restarted). A cancelled call's answer is
        ``{"cancelled": True}``, which no one reads."""
        workers = self._workers
        if workers is None:
            assert self._load_error is not None
            return pack({"error": error_to_data(self._load_error)})
        args = unpack(arguments)
        try:
            result = self._calls.run(
                call_id,
                lambda: workers.acall(function, args, timeout, stop_on_cancel=stop_on_cancel),
            )
        except CallCancelled:
            return pack({"cancelled": True})
        except HostError as exc:
            return pack({"error": error_to_data(exc), **self._pids()})
        return self._answer(result)

    def cancel(self, call_id: int) -> None:
        """Cancel the ``acall`` with ``call_id`` (now, or when it arrives)."""
        self._calls.cancel(call_id)

    def _answer(self, result: CallResult) -> bytes:
        return pack(
            {
                "value": result.value,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "egress": [vars(r) for r in result.egress],
                **self._pids(),
            }
        )

    def _pids(self) -> dict[str, Any]:
        """A call answer's ``pids``, and ``protections`` too when they differ
        from the previous answer's (a worker restarted, or its restart
        became ready: the driver's copy is stale)."""
        view = self.view()
        with self._lock:
            changed, self._sent_view = view != self._sent_view, view
        return view if changed else {"pids": view["pids"]}

    def view(self) -> dict[str, Any]:
        """The workers' ``pids`` and the current worker's ``protections``."""
        if self._workers is None:
            return {"pids": [], "protections": {}}
        return {"pids": self._workers.pids, "protections": dict(self._workers.protections())}

    def start_replacement(self) -> bytes:
        """A reload's new worker, started beside the serving one:
        ``{"token", "ready"}`` or ``{"error": data}`` (nothing changed then)."""
        if self._workers is None:
            assert self._load_error is not None
            return pack({"error": error_to_data(self._load_error)})
        try:
            spec = self._environments.prepare(self._spec)
            if spec != self._workers.spec:
                self._workers.respec(spec)
            started, ready = self._workers.start_replacement()
        except HostError as exc:
            return pack({"error": error_to_data(exc)})
        with self._lock:
            token = next(self._ids)
            self._replacements[token] = started
        return pack({"token": token, "ready": ready})

    def swap(self, token: int) -> dict[str, Any]:
        """Serve new calls from replacement ``token`` (``WorkerHandle.swap``);
        the workers' ``view`` after it."""
        with self._lock:
            started = self._replacements.pop(token, None)
        if started is not None and self._workers is not None:
            self._workers.swap(started)
        view = self.view()
        with self._lock:
            self._sent_view = view
        return view

    def discard(self, token: int) -> None:
        """Stop replacement ``token``, which will not be swapped in."""
        with self._lock:
            started = self._replacements.pop(token, None)
        if started is not None and self._workers is not None:
            self._workers.discard(started)

    def protections(self) -> dict[str, bool]:
        """What the current worker reported applying to itself (``{}`` while it is down)."""
        return {} if self._workers is None else dict(self._workers.protections())

    def pids(self) -> list[int | None]:
        """The node's process ids of the set's workers (``None`` for one that is down)."""
        return [] if self._workers is None else list(self._workers.pids)

    def where(self) -> dict[str, Any]:
        """The actor's process id and Ray node id (for tests and operators)."""
        return {"pid": os.getpid(), "node_id": _node()["id"]}

    def close(self, grace: float) -> None:
        """Stop the workers as ``FunctionHost.close`` does (ask, wait
        ``grace``, kill) and return when every one is reaped."""
        with self._lock:
            pending = list(self._replacements.values())
            self._replacements.clear()
        if self._workers is not None:
            for started in pending:
                self._workers.discard(started)
            self._workers.begin_close()
            self._workers.finish_close(time.monotonic() + grace)
        self._calls.close()
        self._launcher.close()


def _node() -> dict[str, Any]:
    """The Ray node this actor runs on: its id and address."""
    import ray  # only ever called inside a Ray actor

    return {
        "id": ray.get_runtime_context().get_node_id(),
        "address": ray.util.get_node_ip_address(),
    }
