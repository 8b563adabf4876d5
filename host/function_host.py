"""``FunctionHost``: load function sets into worker processes and call them."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from host.dispatch import run_async, run_sync
from host.errors import HostClosed, HostError, InvalidArguments, LoadError, NameConflict
from host.formats import tool_definition
from host.launcher import Launcher, WorkerSpec
from host.limits import Limits
from host.proxy import FunctionProxy
from host.registry import ConflictPolicy, LoadedSet, Registry, json_schema
from host.set_workers import SetWorkers
from host.tool_calls import add_heartbeat
from host.tool_results import DEFAULT_MAX_RESULT_CHARS, MaxResultChars, ToolResult
from host.watcher import Watcher, file_stamp
from host.worker_handle import CallResult, WorkerHandle
from host.worker_pool import WorkerPool

logger = logging.getLogger("fnhost")

BUILTIN_DIR = Path(__file__).with_name("function_sets")


def default_user_dirs() -> list[Path]:
    env = os.environ.get("FNHOST_FUNCTIONS_DIR")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path.home() / ".fnhost" / "functions"]


def _set_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


class FunctionHost:
    """Runs function sets (Python modules of plain functions) in worker processes.

    One worker subprocess per set; a crash, hang or hostile trick in user
    code becomes a ``CallError`` for that call and the host carries on.
    Thread-safe, with an asyncio API beside the sync one. Use it as a
    context manager, or call ``close()``: every worker is shut down within
    ``Limits.shutdown_grace`` seconds and then killed, with its process
    group and scratch directory.

    - ``builtin_dir``: the bundled built-in sets when ``None``.
    - ``user_dirs``: ``$FNHOST_FUNCTIONS_DIR`` (``os.pathsep``-separated) or
      ``~/.fnhost/functions`` when ``None``.
    - ``limits``: the default ``Limits`` of every set.
    - ``env``: the only variables a worker sees besides PATH, LANG, HOME
      and TMPDIR; nothing of the host's environment is passed on.
    - ``on_conflict``: ``"error"`` or ``"prefix"`` (see ``Registry``).
    - ``start_method``: ``"zygote"`` (default) forks each worker from a
      pre-loaded template process in a few milliseconds, with its own
      session, limits, scratch dir and environment, importing the user
      module only after the fork; ``"spawn"`` starts a new interpreter per
      worker (tens of milliseconds). The zygote falls back to spawning by
      itself if it cannot run.
    - ``watch``: reload a set when its file changes (polled every
      ``watch_interval`` seconds); see ``reload``.
    - ``request_heartbeat``: MemGPT-style heartbeats: ``tools()`` adds an
      optional ``request_heartbeat`` boolean to every tool (required under
      OpenAI strict mode) and ``dispatch`` strips it from the arguments and
      reports it as ``ToolResult.heartbeat_requested``.
    """

    def __init__(
        self,
        builtin_dir: str | os.PathLike[str] | None = None,
        user_dirs: Iterable[str | os.PathLike[str]] | None = None,
        limits: Limits | None = None,
        env: dict[str, str] | None = None,
        on_conflict: ConflictPolicy = "error",
        start_method: str = "zygote",
        request_heartbeat: bool = False,
        watch: bool = False,
        watch_interval: float = 1.0,
    ) -> None:
        self.builtin_dir = Path(builtin_dir) if builtin_dir is not None else BUILTIN_DIR
        self.user_dirs = (
            [Path(d) for d in user_dirs] if user_dirs is not None else default_user_dirs()
        )
        self.limits = limits or Limits()
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.request_heartbeat = request_heartbeat
        self._registry = Registry(on_conflict)
        self._load_errors: dict[str, LoadError] = {}
        self._lock = threading.RLock()
        self._launcher = Launcher(start_method)
        self._closed = False
        self._atexit = _close_at_exit(self)
        self._dispatching = _Dispatching(self, self._registry, self._lock)
        self._watcher = Watcher(self._watch_targets, self.reload, watch_interval) if watch else None

    # -- loading -------------------------------------------------------------

    def _spec(
        self, source: str | os.PathLike[str], name: str | None, limits: Limits | None
    ) -> WorkerSpec:
        text = os.fspath(source)
        is_path = text.endswith(".py") or os.sep in text or os.path.exists(text)
        if is_path:
            path = os.path.abspath(text)
            set_name = name or Path(path).stem
            module = None
        else:
            path, module = None, text
            set_name = name or text.rpartition(".")[2]
        if not set_name or "." in set_name:
            raise ValueError(f"invalid function set name {set_name!r}: it must not contain '.'")
        extra = tuple(os.path.abspath(p or ".") for p in sys.path) if module else ()
        return WorkerSpec(set_name, path, module, limits or self.limits, self.env, extra)

    def load_function_set(
        self,
        source: str | os.PathLike[str],
        name: str | None = None,
        limits: Limits | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Load one function set and return ``{function: {"json_schema", "function"}}``.

        ``source`` is a ``.py`` file or an importable module name (resolved in
        the worker, never imported here). ``name`` defaults to the file stem
        or the module's last component.

        Raises ``LoadError`` (also recorded in ``load_errors``) if the module
        raises, exits, crashes or hangs while importing, and ``NameConflict``
        if the set name or (with ``on_conflict="error"``) a function name is
        taken; a refused set's worker is stopped.
        """
        loaded, errors = self._load([self._spec(source, name, limits)], "explicit")
        if errors:
            raise errors[0]
        return self._entries(loaded[0])

    def load_all_function_sets(self, merge: bool = True) -> dict[str, Any]:
        """Load the built-in sets, then every ``*.py`` in the user dirs, in parallel.

        Files starting with ``_`` are skipped. A set that fails to import is
        recorded in ``load_errors`` and the rest load. So is a file whose set
        name (its stem) is taken by a set loaded before it, a built-in one
        included: the earlier set keeps the name, and the error names both
        files. Function name conflicts raise ``NameConflict`` after every
        other set has been registered. Returns ``functions(merge)``.
        """
        specs: list[tuple[WorkerSpec, str]] = []
        for origin, directory in [("builtin", self.builtin_dir)] + [
            ("user", d) for d in self.user_dirs
        ]:
            specs += [(self._spec(p, None, None), origin) for p in _set_files(directory)]
        specs, refused = self._refuse_taken_names(specs)
        errors: list[HostError] = []
        for origin in ("builtin", "user"):
            errors += self._load([s for s, o in specs if o == origin], origin)[1]
        with self._lock:
            for name, error in refused.items():
                # The holder's own load error, if it failed too, comes first.
                if name not in self._load_errors:
                    self._load_errors[name] = error
        conflicts = [e for e in errors if isinstance(e, NameConflict)]
        if conflicts:
            raise conflicts[0]
        return self.functions(merge)

    def _refuse_taken_names(
        self, specs: list[tuple[WorkerSpec, str]]
    ) -> tuple[list[tuple[WorkerSpec, str]], dict[str, LoadError]]:
        """``specs`` without those whose set name an earlier spec or a loaded
        set (from another file) holds, and a ``LoadError`` naming both files
        for each of those (logged)."""
        holders: dict[str, tuple[str, str]] = {}
        with self._lock:
            for name, existing in self._registry.sets.items():
                holders[name] = (existing.source, existing.origin)
        kept: list[tuple[WorkerSpec, str]] = []
        refused: dict[str, LoadError] = {}
        batch: set[str] = set()
        for spec, origin in specs:
            holder = holders.get(spec.set_name)
            if spec.set_name in batch and holder is not None and holder[0] == spec.source:
                continue  # the same file twice (a directory listed twice)
            if holder is None or holder[0] == spec.source:
                holders[spec.set_name] = (spec.source, origin)
                batch.add(spec.set_name)
                kept.append((spec, origin))
                continue
            source, holder_origin = holder
            which = "the built-in set" if holder_origin == "builtin" else "the set"
            error = LoadError(
                spec.set_name,
                f"its name is taken by {which} loaded from {source}; rename "
                f"{spec.source} to load it (a set is named after its file)",
                source=spec.source,
            )
            logger.warning("%s", error)
            refused.setdefault(spec.set_name, error)
        return kept, refused

    def _load(
        self, specs: list[WorkerSpec], origin: str
    ) -> tuple[list[LoadedSet], list[HostError]]:
        """Start every set's worker first (in parallel), then register them in order.

        Returns the loaded sets and the failures (``LoadError``, recorded in
        ``load_errors``, or ``NameConflict``); a refused set's worker is stopped.
        """
        self._check_open()
        started: list[SetWorkers | LoadedSet] = []
        stamps: dict[str, tuple[int, int] | None] = {}
        with self._lock:
            for spec in specs:
                existing = self._registry.check_set_name(spec.set_name, spec.source)
                if existing is not None:
                    started.append(existing)
                    continue
                stamps[spec.set_name] = file_stamp(spec.path) if spec.path else None
                handle: SetWorkers = (
                    WorkerPool(spec, self._launcher)
                    if spec.limits.workers > 1
                    else WorkerHandle(spec, self._launcher)
                )
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
                    loaded.append(self._register(item, origin, stamps[item.spec.set_name]))
            except (LoadError, NameConflict) as exc:
                errors.append(exc)
        return loaded, errors

    def _register(
        self, handle: SetWorkers, origin: str, stamp: tuple[int, int] | None
    ) -> LoadedSet:
        """Wait for ``handle``'s worker and register its set; ``stamp`` is the
        file's stamp taken before the worker read it (for ``watch``)."""
        spec = handle.spec
        try:
            ready = handle.wait_loaded()
        except LoadError as exc:
            self._close_handles([handle])
            with self._lock:
                self._load_errors[spec.set_name] = exc
            raise
        loaded = LoadedSet(
            name=spec.set_name,
            source=spec.source,
            origin=origin,
            handle=handle,
            functions={f["name"]: f for f in ready["functions"]},
            skipped={s["name"]: s["reason"] for s in ready.get("skipped", [])},
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
            self._close_handles([handle])
            raise
        return loaded

    def _close_handles(self, handles: list[SetWorkers]) -> None:
        for h in handles:
            h.begin_close()
        deadline = time.monotonic() + self.limits.shutdown_grace
        for h in handles:
            h.finish_close(deadline)

    # -- reloading -------------------------------------------------------------

    def reload(self, name: str) -> dict[str, list[str]]:
        """Load set ``name`` again from its source in a new worker, and swap it in.

        The new worker starts while the old one keeps serving; once it is
        ready, new calls go to it, and calls in flight finish on the old one,
        which then exits. Returns the schema changes: ``{"added", "removed",
        "changed"}`` function names.

        Raises ``KeyError`` for an unknown set; ``LoadError`` if the new
        version does not load and ``NameConflict`` if it exports a name
        another set has: in both cases the last good version keeps serving
        (a load error is also in ``load_errors`` until a reload succeeds).
        """
        self._check_open()
        with self._lock:
            loaded = self._registry.sets[name]
        handle = loaded.handle
        stamp = file_stamp(loaded.source) if loaded.source.endswith(".py") else None
        try:
            inc, ready = handle.start_replacement()
        except LoadError as exc:
            with self._lock:
                self._load_errors[name] = exc
            raise
        with self._lock:
            try:
                changes = self._registry.replace_functions(
                    loaded,
                    {f["name"]: f for f in ready["functions"]},
                    {s["name"]: s["reason"] for s in ready.get("skipped", [])},
                )
            except NameConflict:
                handle.discard(inc)
                raise
            loaded.protections = dict(ready.get("protections") or {})
            loaded.stamp = stamp
            self._load_errors.pop(name, None)
            handle.swap(inc)
        return changes

    def _watch_targets(self) -> dict[str, tuple[str, tuple[int, int] | None]]:
        with self._lock:
            return {
                s.name: (s.source, s.stamp)
                for s in self._registry.sets.values()
                if s.source.endswith(".py")
            }

    # -- views ---------------------------------------------------------------

    def _entries(self, loaded: LoadedSet) -> dict[str, dict[str, Any]]:
        return {f: self._entry(loaded, f, f) for f in loaded.functions}

    def _entry(self, loaded: LoadedSet, func: str, name: str) -> dict[str, Any]:
        schema = json_schema(loaded.functions[func], name)
        return {"json_schema": schema, "function": FunctionProxy(self, loaded.name, func, schema)}

    def functions(self, merge: bool = True) -> dict[str, Any]:
        """``{name: {"json_schema", "function"}}`` or ``{set: {function: entry}}``."""
        with self._lock:
            return self._registry.view(merge, self._entry)

    def schemas(self, merge: bool = True) -> dict[str, Any]:
        """``{name: json_schema}``, or ``{set: {function: json_schema}}`` when not merged."""
        with self._lock:
            return self._registry.view(merge, lambda s, f, name: json_schema(s.functions[f], name))

    def tools(self, format: str = "openai", strict: bool = False) -> list[dict[str, Any]]:
        """Tool definitions for every exported function, in a provider's shape.

        ``format``: ``openai``, ``openai-responses``, ``anthropic``, ``gemini``,
        ``mcp`` or ``raw`` (see ``host.formats``); ``strict`` for OpenAI strict
        mode. Names are the merged names (``<set>__<func>`` for prefixed
        collisions). Raises ``SchemaFormatError`` naming the function and the
        parameter when the format cannot express a type as it is. With
        ``request_heartbeat=True`` on the host, every tool gets a
        ``request_heartbeat`` parameter.
        """
        with self._lock:
            merged = [
                (name, self._registry.sets[s].functions[f])
                for name, (s, f) in self._registry.merged.items()
            ]
        tools = [tool_definition(info, name, format, strict) for name, info in merged]
        if self.request_heartbeat:
            tools = [add_heartbeat(t, format, strict) for t in tools]
        return tools

    @property
    def load_errors(self) -> dict[str, LoadError]:
        """``{set: LoadError}`` for sets that failed to load (latest attempt)."""
        with self._lock:
            return dict(self._load_errors)

    def protections(self, name: str) -> dict[str, bool]:
        """The isolation layers in force for set ``name``'s current worker, as
        that worker reported them (each the result of the actual system
        call, never assumed), plus how it was started. ``KeyError`` for an
        unknown set; ``{}`` while its worker is down. See also ``fnhost doctor``.

        The claims of the set's ``Sandbox`` policy (``network_blocked``,
        ``writes_confined``, ``reads_confined``, ``host_signals_blocked``,
        ``host_memory_hidden``) are True only when the worker tried the
        forbidden thing at start, the kernel refused it, and the layer that
        covers the other ways to it is in place; the mechanisms
        (``user_namespace``, ``network_namespace``, ``landlock``, ``seccomp``)
        are True when their system calls succeeded (``seccomp`` also probed).
        """
        with self._lock:
            loaded = self._registry.sets[name]
        return loaded.handle.protections()

    @property
    def function_sets(self) -> dict[str, dict[str, Any]]:
        """Per loaded set: source, origin, worker pid, exported and skipped functions,
        schema warnings, and the protections the worker reported applying to
        itself at start (each the result of the actual system call).
        """
        with self._lock:
            return {
                s.name: {
                    "source": s.source,
                    "origin": s.origin,
                    "pid": s.handle.pid,
                    "pids": s.handle.pids,
                    "functions": dict(s.exported),
                    "skipped": dict(s.skipped),
                    "protections": dict(s.protections),
                    "warnings": {
                        f: list(info.get("warnings") or []) for f, info in s.functions.items()
                    },
                }
                for s in self._registry.sets.values()
            }

    # -- calling -------------------------------------------------------------

    def _prepare(
        self, name: str, arguments: Any, timeout: float | None
    ) -> tuple[SetWorkers, str, dict[str, Any], float | None]:
        self._check_open()
        loaded, func = self._registry.resolve(name)
        if arguments is None:
            arguments = {}
        elif isinstance(arguments, str | bytes):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except (ValueError, RecursionError) as exc:
                raise InvalidArguments(
                    loaded.name,
                    func,
                    f"the arguments are not valid JSON ({exc})",
                    details={"path": "$", "expected": "a JSON object", "got": "invalid JSON"},
                )
        if not isinstance(arguments, dict):
            got = type(arguments).__name__
            raise InvalidArguments(
                loaded.name,
                func,
                f"$: expected an object of named arguments, got {got}",
                details={"path": "$", "expected": "an object of named arguments", "got": got},
            )
        if timeout is None:
            timeout = loaded.handle.spec.limits.timeout
        elif not timeout > 0:
            raise ValueError("timeout must be positive")
        if timeout is not None and math.isinf(timeout):
            timeout = None  # no deadline
        return loaded.handle, func, arguments, timeout

    def call(self, name: str, arguments: Any = None, timeout: float | None = None) -> Any:
        """Call ``name`` (``"func"`` or ``"set.func"``) and return its value.

        ``arguments`` is a dict, a JSON object string (what models send) or
        ``None``. ``timeout`` defaults to the set's ``Limits.timeout``; past it
        the worker is killed and restarted and ``CallTimeout`` is raised.
        Every failure is a ``CallError`` subclass naming the set, the
        function and the cause; the host stays usable.
        """
        handle, func, arguments, timeout = self._prepare(name, arguments, timeout)
        return handle.call(func, arguments, timeout).value

    def call_detailed(
        self, name: str, arguments: Any = None, timeout: float | None = None
    ) -> CallResult:
        """Like ``call``, but returns a ``CallResult`` with the call's stdout and stderr."""
        handle, func, arguments, timeout = self._prepare(name, arguments, timeout)
        return handle.call(func, arguments, timeout)

    async def acall(self, name: str, arguments: Any = None, timeout: float | None = None) -> Any:
        """asyncio ``call``. Cancelling the awaiting task abandons the call: the
        ``CancelledError`` propagates at once, and the worker finishes (or
        times out on) the call in the background, its reply discarded.
        """
        handle, func, arguments, timeout = self._prepare(name, arguments, timeout)
        return (await handle.acall(func, arguments, timeout)).value

    async def acall_detailed(
        self, name: str, arguments: Any = None, timeout: float | None = None
    ) -> CallResult:
        handle, func, arguments, timeout = self._prepare(name, arguments, timeout)
        return await handle.acall(func, arguments, timeout)

    # -- dispatch (host/dispatch.py: running; tool_calls.py, tool_results.py: pure) --

    def dispatch(
        self,
        tool_calls: Any,
        *,
        timeout: float | None = None,
        max_result_chars: MaxResultChars = DEFAULT_MAX_RESULT_CHARS,
    ) -> ToolResult | list[ToolResult]:
        """Run a model's tool call(s) and return the provider's result message(s).

        ``tool_calls`` is one tool call as an SDK returns it (an OpenAI Chat
        Completions tool call, a Responses ``function_call`` item, an
        Anthropic ``tool_use`` block, a Gemini ``function_call`` part; a dict
        or an SDK object) or a list of them, the parallel calls of one turn,
        which run concurrently on threads, one thread per function set: a
        set's worker runs one call at a time anyway, so its calls are sent
        one after another and a crash or timeout cannot take a sibling call
        down with it. Returns one ``ToolResult`` (a dict: the result message
        in the same provider's shape) or a list in the same order.

        Never raises for a failed call: the failure becomes an error result
        (``is_error``; a short text the model can act on). Raises
        ``ValueError`` before running anything if a payload is not a
        recognisable tool call or an option is invalid. ``timeout`` applies
        to each call (default: its set's ``Limits.timeout``);
        ``max_result_chars`` caps each result's text (``None``: no cap; a
        dict ``{name: cap}`` per function, ``"*"`` for the rest), see
        ``host.tool_results``.
        """
        return run_sync(self._dispatching, tool_calls, timeout, max_result_chars)

    async def adispatch(
        self,
        tool_calls: Any,
        *,
        timeout: float | None = None,
        max_result_chars: MaxResultChars = DEFAULT_MAX_RESULT_CHARS,
    ) -> ToolResult | list[ToolResult]:
        """asyncio ``dispatch``: a list runs with ``asyncio.gather``. Never raises
        for a failed call; ``ValueError`` for an unrecognisable payload.
        """
        return await run_async(self._dispatching, tool_calls, timeout, max_result_chars)

    # -- closing -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise HostClosed(None, None, "the host is closed")

    def close(self) -> None:
        """Stop every worker: ask nicely, wait ``shutdown_grace``, then kill.

        Calls still in flight fail with ``HostClosed``; later calls raise it.
        Idempotent; returns when every worker is reaped and its scratch
        directory removed.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = [s.handle for s in self._registry.sets.values()]
        if self._watcher is not None:
            self._watcher.close()
        self._close_handles(handles)
        self._launcher.close()
        atexit.unregister(self._atexit)

    def __enter__(self) -> FunctionHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._registry.sets)} sets"
        return f"<FunctionHost {state}>"


def _close_at_exit(host: FunctionHost) -> Any:
    ref = weakref.ref(host)

    def close() -> None:
        h = ref()
        if h is not None:
            h.close()

    atexit.register(close)
    return close


class _Dispatching:
    """The host as ``host.dispatch`` sees it (a ``DispatchHost``): its calls and
    two questions about its registry, answered under the host's lock."""

    def __init__(self, host: FunctionHost, registry: Registry, lock: threading.RLock) -> None:
        self._host = host
        self._registry = registry
        self._lock = lock

    @property
    def request_heartbeat(self) -> bool:
        return self._host.request_heartbeat

    def set_of(self, name: str) -> str | None:
        with self._lock:
            try:
                return self._registry.resolve(name)[0].name
            except HostError:
                return None

    def declares_parameter(self, name: str, parameter: str) -> bool:
        with self._lock:
            try:
                loaded, func = self._registry.resolve(name)
            except HostError:
                return False
            properties = loaded.functions[func].get("parameters", {}).get("properties", {})
            return parameter in properties

    def tool_names(self) -> list[str]:
        return list(self._host.schemas())

    def call_detailed(self, name: str, arguments: Any, timeout: float | None) -> CallResult:
        return self._host.call_detailed(name, arguments, timeout)

    async def acall_detailed(self, name: str, arguments: Any, timeout: float | None) -> CallResult:
        return await self._host.acall_detailed(name, arguments, timeout)
