"""Loading function sets: start their workers, wait for them, register them; reload one.

``SetLoader`` is the loading side of ``FunctionHost``. It works on the
host's registry, its load errors and its lock (the host owns all three and
reads them under that lock), and asks the host's ``check_open`` before
registering, so a set whose worker finishes loading after ``close()`` is
stopped instead of registered.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from host.api.registry import LoadedSet, Registry
from host.api.schema_cache import SchemaCache
from host.api.set_sources import BUILTIN, USER, refuse_taken_names
from host.api.watcher import file_stamp, settled_stamp
from host.environments.set_environments import SetEnvironments
from host.errors import HostError, LoadError, NameConflict
from host.launch.launcher import Launcher, WorkerSpec
from host.tools.formats import MAX_SCHEMA_DEPTH, schema_too_deep
from host.workers.live_workers import LiveWorkers
from host.workers.set_workers import SetWorkers
from host.workers.worker_handle import WorkerHandle
from host.workers.worker_pool import WorkerPool


class Environments(Protocol):
    """Gives a spec its environment's interpreter (``SetEnvironments``; for
    sets placed on Ray, ``NodeEnvironments``: prepared on the node)."""

    def prepare(self, spec: WorkerSpec) -> WorkerSpec: ...


def local_workers(
    launcher: Launcher, live: LiveWorkers | None = None
) -> Callable[[WorkerSpec], SetWorkers]:
    """The workers of a set on this machine: a pool for ``Limits.workers > 1``;
    counted, stopped when idle and evicted by ``live``."""

    def make(spec: WorkerSpec) -> SetWorkers:
        if spec.limits.workers > 1:
            return WorkerPool(spec, launcher, live)
        return WorkerHandle(spec, launcher, live)

    return make


def exported(ready: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """A worker's ``ready`` report as (functions by name, skipped: name ->
    reason). A function whose schema nests deeper than ``MAX_SCHEMA_DEPTH``
    is skipped here (the worker cannot be trusted to have done it)."""
    functions: dict[str, dict[str, Any]] = {}
    skipped = {s["name"]: s["reason"] for s in ready.get("skipped", [])}
    for f in ready["functions"]:
        if schema_too_deep(f, MAX_SCHEMA_DEPTH + 2):  # the function's own map, parameters
            skipped[f["name"]] = (
                f"its schema nests lists and maps more than {MAX_SCHEMA_DEPTH} levels deep"
            )
        else:
            functions[f["name"]] = f
    return functions, skipped


def close_handles(handles: list[SetWorkers], grace: float) -> None:
    """Ask every worker to stop at once, then give them all ``grace`` seconds
    together before each is killed; returns when every one is reaped."""
    for h in handles:
        h.begin_close()
    deadline = time.monotonic() + grace
    for h in handles:
        h.finish_close(deadline)


class SetLoader:
    """Starts, registers and reloads sets in the host's registry (see the module docstring)."""

    def __init__(
        self,
        registry: Registry,
        load_errors: dict[str, LoadError],
        lock: threading.RLock,
        launcher: Launcher,
        check_open: Callable[[], None],
        environments: Environments | None = None,
        make_workers: Callable[[WorkerSpec], SetWorkers] | None = None,
        live: LiveWorkers | None = None,
        cache: SchemaCache | None = None,
    ) -> None:
        self._environments = environments or SetEnvironments()
        self._live = live
        self._cache = cache
        self._make_workers = make_workers or local_workers(launcher, live)
        self._registry = registry
        self._load_errors = load_errors
        self._lock = lock
        self._launcher = launcher
        self._check_open = check_open

    def load(
        self, specs: list[WorkerSpec], origin: str, grace: float
    ) -> tuple[list[LoadedSet], list[HostError]]:
        """Start every set's worker first (in parallel), then register them in order.

        With a cap on live workers (``LiveWorkers``), sets are started half
        a cap at a time, so that the sets already loaded (idle until
        called) can be stopped to make room for the next ones.

        Returns the loaded sets (a set already loaded from the same source is
        returned as it is) and the failures (``LoadError``, recorded in
        ``load_errors``, or ``NameConflict``); a refused set's worker is
        stopped (``grace``: its ``shutdown_grace``). Raises ``HostClosed``
        before starting anything if the host is closed.
        """
        self._check_open()
        specs, errors = self._with_environments(specs)
        window = len(specs) if self._live is None else max(1, self._live.cap // 2)
        loaded: list[LoadedSet] = []
        for at in range(0, len(specs), max(1, window)):
            more, failed = self._load_window(specs[at : at + window], origin, grace)
            loaded += more
            errors += failed
        return loaded, errors

    def _load_window(
        self, specs: list[WorkerSpec], origin: str, grace: float
    ) -> tuple[list[LoadedSet], list[HostError]]:
        started: list[SetWorkers | LoadedSet] = []
        stamps: dict[str, tuple[int, int] | None] = {}
        cached: dict[str, dict[str, Any]] = {}
        keys: dict[str, str | None] = {}
        with self._lock:
            for spec in specs:
                existing = self._registry.check_set_name(spec.set_name, spec.source)
                if existing is not None:
                    started.append(existing)
                    continue
                stamps[spec.set_name] = file_stamp(spec.path) if spec.path else None
                # Keyed before the worker reads the file (see _cache_report).
                keys[spec.set_name] = key = None if self._cache is None else self._cache.key(spec)
                report = None if key is None or self._cache is None else self._cache.get(key)
                handle = self._make_workers(spec)
                if report is not None:
                    cached[spec.set_name] = report  # its first call starts the worker
                else:
                    with contextlib.suppress(LoadError):  # wait_loaded() raises it again
                        handle.start()
                started.append(handle)
        loaded: list[LoadedSet] = []
        errors: list[HostError] = []
        for item in started:
            try:
                if isinstance(item, LoadedSet):
                    loaded.append(item)
                else:
                    name = item.spec.set_name
                    stamp = stamps[name]
                    loaded.append(
                        self._register(item, origin, stamp, grace, keys[name], cached.get(name))
                    )
            except (LoadError, NameConflict) as exc:
                errors.append(exc)
        return loaded, errors

    def _cache_report(self, spec: WorkerSpec, key: str | None, ready: dict[str, Any]) -> None:
        """Keep a report the worker made for ``key``, unless the set's file
        changed while it loaded (the key, computed again, differs)."""
        if self._cache is not None and key is not None and self._cache.key(spec) == key:
            self._cache.put(key, ready)

    def _with_environments(
        self, specs: list[WorkerSpec]
    ) -> tuple[list[WorkerSpec], list[HostError]]:
        """Each spec with its environment's interpreter (built first if
        needed, outside the host's lock), and the ``LoadError`` of each set
        whose environment cannot be had (recorded in ``load_errors``; the
        other sets load). A set already loaded from the same source is left
        as it is."""
        ready: list[WorkerSpec] = []
        errors: list[HostError] = []
        for spec in specs:
            with self._lock:
                existing = self._registry.sets.get(spec.set_name)
            if existing is not None and existing.source == spec.source:
                ready.append(spec)
                continue
            try:
                ready.append(self._environments.prepare(spec))
            except LoadError as exc:
                with self._lock:
                    self._load_errors[spec.set_name] = exc
                errors.append(exc)
        return ready, errors

    def load_all(self, specs: list[tuple[WorkerSpec, str]], grace: float) -> list[HostError]:
        """Load ``(spec, origin)`` pairs: the built-in ones first, then the user ones.

        A spec whose set name another file holds is not started; its
        ``LoadError`` (naming both files) goes to ``load_errors`` unless the
        holder's own failure is already there. Returns the failures of the
        sets that were started (see ``load``).
        """
        with self._lock:
            holders = {name: (s.source, s.origin) for name, s in self._registry.sets.items()}
        specs, refused = refuse_taken_names(specs, holders)
        errors: list[HostError] = []
        for origin in (BUILTIN, USER):
            errors += self.load([s for s, o in specs if o == origin], origin, grace)[1]
        with self._lock:
            for name, error in refused.items():
                # The holder's own load error, if it failed too, comes first.
                if name not in self._load_errors:
                    self._load_errors[name] = error
        return errors

    def _register(
        self,
        handle: SetWorkers,
        origin: str,
        stamp: tuple[int, int] | None,
        grace: float,
        key: str | None = None,
        cached: dict[str, Any] | None = None,
    ) -> LoadedSet:
        """Wait for ``handle``'s worker and register its set; ``stamp`` is the
        file's stamp taken before the worker read it (for ``watch``).
        ``key``: its schema-cache key, taken before its worker started;
        ``cached``: the set's report from the schema cache, registered
        without a worker (its ``protections`` are then empty)."""
        spec = handle.spec
        if cached is not None:
            ready = cached
        else:
            try:
                ready = handle.wait_loaded()
            except LoadError as exc:
                close_handles([handle], grace)
                with self._lock:
                    self._load_errors[spec.set_name] = exc
                raise
            self._cache_report(spec, key, ready)
            stamp = settled_stamp(spec.set_name, spec.path, stamp)
        functions, skipped = exported(ready)
        loaded = LoadedSet(
            name=spec.set_name,
            source=spec.source,
            origin=origin,
            handle=handle,
            functions=functions,
            skipped=skipped,
            protections=dict(ready.get("protections") or {}),
            stamp=stamp,
        )
        try:
            with self._lock:
                self._check_open()
                self._registry.check_set_name(spec.set_name, spec.source)
                self._registry.add(loaded)
                self._load_errors.pop(spec.set_name, None)
        except HostError:
            close_handles([handle], grace)
            raise
        return loaded

    def reload(self, name: str) -> dict[str, list[str]]:
        """``FunctionHost.reload`` (see there), once the host is known to be open."""
        with self._lock:
            loaded = self._registry.sets[name]
        handle = loaded.handle
        stamp = file_stamp(loaded.source) if loaded.source.endswith(".py") else None
        try:
            # Built (if its declared dependencies changed) while the old worker serves.
            spec = self._environments.prepare(handle.spec)
            if spec != handle.spec:
                handle.respec(spec)
            key = None if self._cache is None else self._cache.key(spec)
            inc, ready = handle.start_replacement()
        except LoadError as exc:
            with self._lock:
                self._load_errors[name] = exc
            raise
        with self._lock:
            try:
                changes = self._registry.replace_functions(loaded, *exported(ready))
            except NameConflict:
                handle.discard(inc)
                raise
            loaded.protections = dict(ready.get("protections") or {})
            loaded.stamp = settled_stamp(name, loaded.source, stamp)
            self._load_errors.pop(name, None)
            handle.swap(inc)
        self._cache_report(spec, key, ready)
        return changes
