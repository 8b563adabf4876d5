"""``FunctionHost``: load function sets into worker processes and call them.

The API's rooms: where sets come from (``set_sources``), loading and
reloading them (``set_loading``), calling their functions (``calling``:
``FunctionHost`` inherits ``call``, ``acall``, ``dispatch`` and their kin
from ``Calling``), a call's arguments (``call_arguments``), tool calls
(``tool_calls``, ``tool_results``, ``dispatch``). This class holds them
together with the registry and the lock they share; its own methods load,
list and close the sets.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from host.api.async_loading import AsyncLoading
from host.api.calling import Calling, CallRoute
from host.api.catalog import Catalog
from host.api.exit_close import close_at_exit
from host.api.proxy import FunctionProxy
from host.api.registry import ConflictPolicy, LoadedSet, Registry, json_schema
from host.api.schema_cache import SchemaCache
from host.api.set_contexts import SetContexts
from host.api.set_loading import SetLoader, close_handles
from host.api.set_sources import BUILTIN_DIR, default_user_dirs, found_sets, worker_spec
from host.api.watcher import Watcher
from host.environments.options import EnvironmentOptions
from host.errors import HostClosed, LoadError, NameConflict
from host.launch.launcher import Launcher
from host.limits import Limits
from host.placement.host_placement import HostPlacement
from host.placement.ray_placement import RayPlacement
from host.tools.tool_calls import add_heartbeat, check_heartbeat_options, tool_name
from host.workers.live_workers import LiveWorkers


class FunctionHost(Calling, AsyncLoading):
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
    - ``request_heartbeat``: MemGPT-style heartbeats. ``True``: ``tools()``
      adds an optional ``request_heartbeat`` boolean to every tool (required
      under OpenAI strict mode). ``"memgpt"``: as MemGPT does, a required
      one, with MemGPT's description, on every tool except those that end
      the agent's turn (``send_message`` and ``pause_heartbeats``). Either
      way ``dispatch`` strips it from the arguments of every call and
      reports it as ``ToolResult.heartbeat_requested``.
    - ``heartbeat_exempt``: the tools (as ``tools()`` names them) that get no
      ``request_heartbeat``, instead of those defaults (none under ``True``).
    - ``environments``: how sets that declare dependencies get their
      environments (index, wheels only or sources, cache directory); see
      ``EnvironmentOptions`` and ``docs/environments.md``.
    - ``placement``: where the sets' workers run. ``None`` (default): on
      this machine. ``"ray"`` or a ``RayPlacement``: each set on a Ray
      cluster, as one actor that runs the same worker, sandbox and limits
      on the node Ray picked for the set's ``Limits.placement`` resources
      (``docs/ray.md``; needs ``fnhost[ray]``). Calls, errors, reloads and
      views behave as locally; ``expose``, streams and ``on_progress``
      are not available there yet.
    - ``max_live_workers``: worker processes kept alive at most; past it,
      starting one stops the least recently used idle worker (its set stays
      loaded; its next call starts one again). ``None``: as many as the
      open-files limit leaves room for. A soft cap: busy workers are never
      stopped (``host.workers.live_workers``). With ``Limits.idle_timeout``,
      only the sets in use keep a worker.
    - ``schema_cache``: ``True`` (in ``$FNHOST_CACHE_DIR`` or
      ``~/.cache/fnhost``) or a directory: a ``.py`` set whose schemas were
      cached for the same file content, Python, fnhost version, limits and
      environment loads without starting its worker or importing its
      module; its first call starts the worker (``docs/density.md``).
      Neither applies to sets placed on Ray.

    Raises ``ValueError`` for a ``request_heartbeat`` other than ``False``,
    ``True`` or ``"memgpt"``, a ``heartbeat_exempt`` without one, a
    ``placement`` other than ``None``, ``"ray"`` or a ``RayPlacement``, or a
    ``max_live_workers`` below 1; ``TypeError`` for a ``schema_cache`` that
    is not a bool or a path. Nothing is started then.
    """

    def __init__(
        self,
        builtin_dir: str | os.PathLike[str] | None = None,
        user_dirs: Iterable[str | os.PathLike[str]] | None = None,
        limits: Limits | None = None,
        env: dict[str, str] | None = None,
        on_conflict: ConflictPolicy = "error",
        start_method: str = "zygote",
        request_heartbeat: bool | Literal["memgpt"] = False,
        heartbeat_exempt: Iterable[str] | None = None,
        watch: bool = False,
        watch_interval: float = 1.0,
        environments: EnvironmentOptions | None = None,
        placement: str | RayPlacement | None = None,
        max_live_workers: int | None = None,
        schema_cache: bool | str | os.PathLike[str] = False,
    ) -> None:
        self._placement = HostPlacement(placement, environments)
        self.builtin_dir = Path(builtin_dir) if builtin_dir is not None else BUILTIN_DIR
        self.user_dirs = (
            [Path(d) for d in user_dirs] if user_dirs is not None else default_user_dirs()
        )
        self.limits = limits or Limits()
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.request_heartbeat, self.heartbeat_exempt = check_heartbeat_options(
            request_heartbeat, heartbeat_exempt
        )
        self._registry = Registry(on_conflict)
        # Checked before anything is started (ValueError, TypeError).
        self._live = None if self._placement.cluster else LiveWorkers(max_live_workers)
        schemas = SchemaCache.at(schema_cache)
        self._load_errors: dict[str, LoadError] = {}
        self._lock = threading.RLock()
        self._launcher = Launcher(self._placement.start_method(start_method))
        self._closed = False
        self._atexit = close_at_exit(self)
        self._catalog = Catalog(self._registry, self._lock)
        self._contexts = SetContexts()
        super().__init__(CallRoute(self._registry, self._contexts, self._check_open), self._catalog)
        self._loader = SetLoader(
            self._registry,
            self._load_errors,
            self._lock,
            self._launcher,
            self._check_open,
            self._placement.environments(),
            self._placement.make_workers(),
            self._live,
            None if self._placement.cluster else schemas,  # an actor loads its set itself
        )
        self._watcher = Watcher(self._watch_targets, self.reload, watch_interval) if watch else None

    # -- loading (host/api/set_sources.py, host/api/set_loading.py) ---------------------

    def load_function_set(
        self,
        source: str | os.PathLike[str] | ModuleType,
        name: str | None = None,
        limits: Limits | None = None,
        *,
        context: Any = None,
        expose: Sequence[str] | None = None,
        requirements: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Load one function set in its own worker and return its functions.

        ``source`` is a ``.py`` file, an importable module name (resolved in
        the worker, never imported here), or an imported module object, as
        MemGPT takes it (``import my_tools; fh.load_function_set(my_tools)``):
        its file (``__file__``) runs in the worker exactly as if its path had
        been given; the host's module object is never called or changed.
        ``name`` defaults to the file stem (a package's name for its
        ``__init__.py``) or the module's last component; ``limits`` to the
        host's.
        ``expose``: the dotted paths of a context object the set's functions
        may use (methods to call, attributes to read and assign; nothing
        else is reachable), and ``context``: the object, for calls that pass
        none (see ``docs/context.md``). Without ``expose`` the set has no
        way to its caller: its context parameters receive ``None``.
        ``requirements``: the packages the set needs (PEP 508 strings), in
        place of the ``dependencies`` of its file's PEP 723 ``# /// script``
        block. A set that declares dependencies either way runs in a virtual
        environment of exactly those, built with uv on first use and cached
        (``docs/environments.md``).

        Returns ``{function: {"json_schema", "function", "python_function"}}``
        (``function`` and, under MemGPT's key, ``python_function``: the same
        callable proxy). Loading a set again from the same source returns it
        as it is.

        Raises:
            LoadError: the module raised, exited, crashed or hung past
                ``Limits.start_timeout`` while importing (``.remote_type``,
                ``.traceback``, ``.stderr_tail``), or its environment cannot
                be built (an unresolvable requirement, no reachable index,
                a ``requires-python`` this Python does not meet: the
                message names the requirement and the cause); also kept in
                ``load_errors``. Its worker is stopped; fix the set and load
                it again.
            NameConflict: the set name is taken by another source, or (with
                ``on_conflict="error"``) a function name by another set;
                nothing was registered and the worker is stopped. Pass
                ``name=...`` or rename.
            HostClosed: the host is closed (also when it closed while the set
                was loading).
            ValueError: the set name is empty or contains a dot; ``context``
                without ``expose``; a malformed path in ``expose``.
            TypeError: a module object without a Python source file (a
                built-in module, a namespace package, an extension module);
                ``requirements`` that is a string, not a list of them;
                nothing was started.
        """
        exposed = SetContexts.check(context, expose)
        self._placement.check_expose(exposed)
        spec = worker_spec(source, name, limits or self.limits, self.env)
        if requirements is not None:
            if isinstance(requirements, str) or not all(isinstance(r, str) for r in requirements):
                raise TypeError("requirements must be a list of strings, e.g. ['requests>=2.31']")
            spec = dataclasses.replace(spec, requirements=tuple(requirements))
        with self._contexts.doors_for(self._set_names, [spec.set_name], context, exposed):
            loaded, errors = self._loader.load([spec], "explicit", self.limits.shutdown_grace)
        if errors:
            raise errors[0]
        return self._entries(loaded[0])

    def load_all_function_sets(
        self, merge: bool = True, *, context: Any = None, expose: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Load the built-in sets, then every ``*.py`` in the user dirs, in parallel.

        Files starting with ``_`` are skipped. A set that fails to import is
        recorded in ``load_errors`` and the rest load. So is a file whose set
        name (its stem) is taken by a set loaded before it, a built-in one
        included: the earlier set keeps the name, and the error names both
        files. Returns ``functions(merge)``. ``context`` and ``expose`` are
        given to every set, as in ``load_function_set``.

        Raises ``NameConflict`` for a function name conflict, after every
        other set has been registered (the refused set is not); ``HostClosed``
        if the host is closed; ``ValueError`` for a file whose stem has a dot,
        before anything loads.
        """
        exposed = SetContexts.check(context, expose)
        self._placement.check_expose(exposed)
        specs = [
            (worker_spec(path, None, self.limits, self.env), origin)
            for path, origin in found_sets(self.builtin_dir, self.user_dirs)
        ]
        with self._contexts.doors_for(
            self._set_names, [spec.set_name for spec, _ in specs], context, exposed
        ):
            errors = self._loader.load_all(specs, self.limits.shutdown_grace)
        conflicts = [e for e in errors if isinstance(e, NameConflict)]
        if conflicts:
            raise conflicts[0]
        return self.functions(merge)

    def _set_names(self) -> set[str]:
        with self._lock:
            return set(self._registry.sets)

    # -- reloading -------------------------------------------------------------

    def reload(self, name: str) -> dict[str, list[str]]:
        """Load set ``name`` again from its source in a new worker, and swap it in.

        The new worker starts while the old one keeps serving; once it is
        ready, new calls go to it: the call running on the old worker
        finishes there, the calls waiting in its pipe run on the new one,
        and the old one then exits. ``watch=True`` calls this when a file
        changes.

        Returns the schema changes: ``{"added", "removed", "changed"}``
        function names.

        Raises:
            KeyError: no loaded set has that name; nothing changed.
            LoadError: the new version does not load (it raised, exited,
                crashed or hung past ``Limits.start_timeout``); it is kept in
                ``load_errors`` until a reload succeeds. The last good version
                keeps serving; fix the file and reload again.
            NameConflict: the new version exports a name another set has; its
                worker is stopped and the last good version keeps serving.
            HostClosed: the host is closed.
        """
        self._check_open()
        return self._loader.reload(name)

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
        proxy = FunctionProxy(self, loaded.name, func, schema)
        # "python_function" is MemGPT's key for the callable: code written
        # against MemGPT's function dicts works unchanged.
        return {"json_schema": schema, "function": proxy, "python_function": proxy}

    def functions(self, merge: bool = True) -> dict[str, Any]:
        """``{name: {"json_schema", "function", "python_function"}}`` or
        ``{set: {function: entry}}`` (``python_function``, MemGPT's key, is the
        same callable proxy as ``function``)."""
        with self._lock:
            return self._registry.view(merge, self._entry)

    def schemas(self, merge: bool = True) -> dict[str, Any]:
        """``{name: json_schema}``, or ``{set: {function: json_schema}}`` when not merged."""
        with self._lock:
            return self._registry.view(merge, lambda s, f, name: json_schema(s.functions[f], name))

    def tools(self, format: str = "openai", strict: bool = False) -> list[dict[str, Any]]:
        """Tool definitions for every exported function, in a provider's shape.

        ``format``: ``openai``, ``openai-responses``, ``anthropic``, ``gemini``,
        ``mcp`` or ``raw`` (see ``host.tools.formats``); ``strict`` for OpenAI strict
        mode. Names are the merged names (``<set>__<func>`` for prefixed
        collisions). Raises ``SchemaFormatError`` naming the function and the
        parameter when the format cannot express a type as it is. With
        ``request_heartbeat`` on the host, every tool but those in
        ``heartbeat_exempt`` gets a ``request_heartbeat`` parameter (see
        the class).
        """
        tools = self._catalog.tools(format, strict)
        if self.request_heartbeat:
            memgpt = self.request_heartbeat == "memgpt"
            tools = [
                t
                if tool_name(t, format) in self.heartbeat_exempt
                else add_heartbeat(t, format, strict, memgpt=memgpt)
                for t in tools
            ]
        return tools

    @property
    def load_errors(self) -> dict[str, LoadError]:
        """``{set: LoadError}`` for sets that failed to load (latest attempt)."""
        with self._lock:
            return dict(self._load_errors)

    def protections(self, name: str) -> dict[str, Any]:
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

        The network door: ``egress`` is ``"none"`` (``network=False``),
        ``"unrestricted"`` (``True``) or ``"allow-list"`` (an ``Egress``
        policy), then with ``egress_allow`` (the list), ``egress_credentials``
        (the hosts whose HTTPS the proxy intercepts to add credentials) and
        ``egress_only`` (probed by the worker: loopback is its only interface,
        no route leaves it, and its door to the proxy is open).
        """
        with self._lock:
            loaded = self._registry.sets[name]
        report: dict[str, Any] = dict(loaded.handle.protections())
        if report:
            # The door through the wall to a context: open if anything is exposed.
            report["context_door_closed"] = not self._contexts.exposed(name)
            report.update(loaded.handle.spec.limits.sandbox.network_door())
        return report

    @property
    def function_sets(self) -> dict[str, dict[str, Any]]:
        """Per loaded set: source, origin, worker pid, exported and skipped functions,
        schema warnings, its own environment's directory (``environment``,
        None on the host's interpreter), the protections the worker reported
        applying to itself at start (each the result of the actual system
        call), and its network door by policy (``egress``: ``"none"``,
        ``"unrestricted"`` or ``"allow-list"``, as in ``protections``).
        """
        summaries = self._catalog.set_summaries()
        with self._lock:
            sandboxes = {n: s.handle.spec.limits.sandbox for n, s in self._registry.sets.items()}
        for name, summary in summaries.items():
            if name in sandboxes:
                summary["egress"] = sandboxes[name].network_door()["egress"]
            summary["exposed"] = exposed = self._contexts.exposed(name)
            if summary.get("protections"):
                summary["protections"]["context_door_closed"] = not exposed
        return summaries

    # -- closing -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise HostClosed(None, None, "the host is closed")

    def close(self) -> None:
        """Stop every worker: ask nicely, wait ``Limits.shutdown_grace``, then kill.

        Each worker is asked to exit after the call it is running; the grace
        runs for all of them at once, then what is left is killed with its
        process group. A running call that finishes within the grace returns
        normally; one that does not, and every call waiting for its turn or
        for a worker, fails with ``HostClosed``. Later calls, loads and
        reloads raise ``HostClosed``.

        Returns when every worker is reaped and its scratch directory removed
        (what cannot be removed is logged and left). Idempotent; also run by
        ``with`` and at interpreter exit.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = [s.handle for s in self._registry.sets.values()]
        if self._watcher is not None:
            self._watcher.close()
        if self._live is not None:
            self._live.close()  # no idle stop runs beside the close
        close_handles(handles, self.limits.shutdown_grace)
        self._launcher.close()
        self._placement.close()
        atexit.unregister(self._atexit)

    def __enter__(self) -> FunctionHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._registry.sets)} sets"
        return f"<FunctionHost {state}>"
