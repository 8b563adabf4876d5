"""One function set's host-side end on a Ray node: the body of its actor.

Ray runs this class as the set's actor (``ray_set_workers`` makes it one);
it does not import ``ray``. It holds the set's ``WorkerHandle`` (or
``WorkerPool``) and a ``Launcher`` of its own, so the worker on the node is
started, sandboxed, limited, timed out, restarted and parked exactly as on
the host's machine; the actor is where the host's side of the pipe lives,
not a replacement for the worker process.

Every method takes and returns plain data: arguments come as msgpack bytes
and every answer goes back as msgpack bytes (a value, or an error as
``error_data``), so nothing the worker made is ever pickled. No method
raises for a load or call failure; those are answers.
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
from host.placement.error_data import error_to_data
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
        """Wait for the worker's first start: ``{"ready": params}`` or ``{"error": data}``."""
        if self._load_error is not None:
            return pack({"error": error_to_data(self._load_error)})
        assert self._workers is not None
        try:
            return pack({"ready": self._workers.wait_loaded()})
        except HostError as exc:
            return pack({"error": error_to_data(exc)})

    def call(self, function: str, arguments: bytes, timeout: float | None) -> bytes:
        """Run one call on the worker: ``{"value", "stdout", "stderr", "egress"}``
        or ``{"error": data}``. The call's timeout is kept here, beside the
        worker (it is killed past it, and the actor lives on)."""
        if self._workers is None:
            assert self._load_error is not None
            return pack({"error": error_to_data(self._load_error)})
        try:
            result = self._workers.call(function, unpack(arguments), timeout)
        except HostError as exc:
            return pack({"error": error_to_data(exc)})
        return pack(
            {
                "value": result.value,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "egress": [vars(r) for r in result.egress],
            }
        )

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

    def swap(self, token: int) -> None:
        """Serve new calls from replacement ``token`` (``WorkerHandle.swap``)."""
        with self._lock:
            started = self._replacements.pop(token, None)
        if started is not None and self._workers is not None:
            self._workers.swap(started)

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
        import ray  # only ever called inside a Ray actor

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

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
        self._launcher.close()
