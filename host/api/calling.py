"""Calling a host's functions: ``call``, ``call_detailed``, ``acall``,
``acall_detailed``, streams (``call_stream``, ``acall_stream``), and a
model's tool calls, ``dispatch`` and ``adispatch``.

``FunctionHost`` inherits these methods from ``Calling``; its sets are
loaded, listed and closed in ``host.api.function_host``. A call reaches
them through a ``CallRoute`` (the name resolved to its set's workers, the
arguments and the timeout checked, the context door chosen) and runs on
the set's workers (``host.workers.call_path``); dispatch also asks the
``ToolCatalog`` about the loaded functions (``host.api.dispatch``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from host.api.call_arguments import call_arguments, call_timeout
from host.api.dispatch import ToolCatalog, run_async, run_sync
from host.api.registry import Registry
from host.api.set_contexts import SetContexts, WhereExposed
from host.tools.tool_results import DEFAULT_MAX_RESULT_CHARS, MaxResultChars, ToolResult
from host.workers.call_path import OnProgress
from host.workers.call_result import CallResult
from host.workers.context_door import ContextDoor
from host.workers.set_workers import SetWorkers
from host.workers.stream import iterate, iterate_async

#: Where a call goes: its set's workers, the function, the arguments, the
#: timeout and the context door (``None``: the call reaches no context).
Target = tuple[SetWorkers, str, dict[str, Any], float | None, ContextDoor | None]


class CallRoute:
    """Resolves each call on the host's registry and context doors, and
    asks the host's ``check_open`` first."""

    def __init__(
        self, registry: Registry, contexts: SetContexts, check_open: Callable[[], None]
    ) -> None:
        self._registry = registry
        self._contexts = contexts
        self._check_open = check_open

    def target(self, name: str, arguments: Any, timeout: float | None, context: Any) -> Target:
        """Where a call to ``name`` goes, with the arguments as a dict.

        Raises, before anything runs, as ``Calling.call`` describes:
        ``HostClosed``, ``UnknownFunction``, ``InvalidArguments``, and
        ``ValueError`` for a timeout that is not positive or a context for a
        set without an allow-list.
        """
        # (on_progress is passed straight through by the callers.)
        self._check_open()
        loaded, func = self._registry.resolve(name)
        if type(arguments) is not dict:  # (the usual dict needs no normalising)
            arguments = call_arguments(loaded.name, func, arguments)
        timeout = call_timeout(timeout, loaded.handle.spec.limits.timeout)
        door = self._contexts.door(loaded.name, context)
        return loaded.handle, func, arguments, timeout, door


class Calling:
    """The call methods of ``FunctionHost``, its base class (see there).

    ``route`` resolves each call; ``tool_catalog`` answers dispatch's
    questions about the loaded functions.
    """

    #: ``FunctionHost(request_heartbeat=...)`` (set there), read by each dispatch.
    request_heartbeat: bool | str

    def __init__(self, route: CallRoute, tool_catalog: ToolCatalog) -> None:
        self._route = route
        self._tool_catalog = tool_catalog

    # -- a function by name (host/workers/call_path.py) ----------------------

    def call(
        self,
        name: str,
        arguments: Any = None,
        timeout: float | None = None,
        *,
        context: Any = None,
        on_progress: OnProgress | None = None,
    ) -> Any:
        """Call ``name`` (``"func"`` or ``"set.func"``) in its set's worker.

        ``arguments``: a dict, a JSON object as text (what models send) or
        ``None``. ``timeout`` (seconds; default the set's ``Limits.timeout``,
        ``math.inf`` for none) bounds the wait for the call's turn (a set's
        worker runs one call at a time) and, from when the call starts, the
        function's run: the caller waits at most about twice ``timeout``. A
        call that waited behind one that crashed or timed out never started
        and runs on the restarted worker; it does not fail. ``context``:
        this call's context object (the set's default otherwise), reached
        only through the set's ``expose`` list. ``on_progress(done, total,
        message)``: called for each progress report of the function
        (``worker.progress``); with ``acall`` on its event loop, with
        ``call`` on the thread reading the worker's pipe (keep it quick).

        Returns the function's value (JSON-like data as msgpack carries it).

        Raises (each a ``CallError`` naming the set, the function and the
        cause; the host stays usable and the set restarts by itself):
            UnknownFunction: no exported function has that name; nothing ran.
            InvalidArguments: not an object of named arguments, not JSON,
                not encodable, over ``Limits.max_argument_mb``, or not matching
                the signature (``.path``, ``.expected``, ``.got``); the
                function did not run. Fix the arguments and call again.
            UserFunctionError: the function raised (``.remote_type``,
                ``.traceback``); the worker lives on.
            CallTimeout: the deadline passed. ``details["cause"]`` is
                ``"queued"`` (earlier calls were still running) or
                ``"starting"`` (its worker was still starting): the call never
                ran and nothing was disturbed. Otherwise it was running: its
                worker's process group was killed and restarts; what the
                function did before is not undone.
            WorkerCrashed: the worker died during the call (``.signal`` or
                ``.exit_code``, ``.traceback``, ``.stderr_tail``) and restarts;
                a call with the same arguments will probably crash again.
                ``details["cause"]`` when the host ended it: ``"parked"``
                (crash loop: calls fail at once for ``Limits.crash_window``;
                do not retry now), ``"timeout"`` (another call on the same
                worker timed out), ``"recycle"`` or ``"retired"`` (its worker
                was being replaced: call again), ``"start"`` (a new worker
                could not start), ``"interrupted"`` (the host was
                interrupted while writing to the worker, e.g. by
                ``KeyboardInterrupt``, and replaced it: the call may have
                run).
            OutOfMemory: the function hit the memory limit; its worker is
                replaced by a fresh one.
            ResultError: the function ran (its effects stand) but its value
                cannot be sent back; the worker lives on.
            ProtocolError: the worker sent malformed or forged bytes; it was
                killed and restarts.
            HostClosed: the host is closed, or closed while the call waited
                or ran past ``Limits.shutdown_grace``; every later call too.
            ValueError: ``timeout`` is not positive; nothing ran.
        """
        handle, func, arguments, timeout, door = self._route.target(
            name, arguments, timeout, context
        )
        return handle.call(func, arguments, timeout, door, on_progress).value

    def call_detailed(
        self,
        name: str,
        arguments: Any = None,
        timeout: float | None = None,
        *,
        context: Any = None,
        on_progress: OnProgress | None = None,
    ) -> CallResult:
        """``call``, returning a ``CallResult``: ``value``, what the call printed
        (``stdout``, ``stderr``: the last 65,536 characters of each),
        ``set_name`` and ``function``. Raises as ``call`` does (a
        ``CallError`` keeps what was printed in ``.stdout``/``.stderr``).
        """
        handle, func, arguments, timeout, door = self._route.target(
            name, arguments, timeout, context
        )
        return handle.call(func, arguments, timeout, door, on_progress)

    async def acall(
        self,
        name: str,
        arguments: Any = None,
        timeout: float | None = None,
        *,
        context: Any = None,
        on_progress: OnProgress | None = None,
        stop_on_cancel: bool = False,
    ) -> Any:
        """asyncio ``call``: the same arguments, value, timeout and errors.

        Never blocks the event loop, except to write a large argument (a
        worker's start or restart runs in a thread).

        Cancelling the awaiting task abandons the call: ``CancelledError``
        propagates at once. A call still waiting for its turn leaves the
        queue (the worker is told to skip it); one that has started runs to
        its end in the background, still under its timeout, and its reply
        is discarded, or with ``stop_on_cancel=True`` its worker is killed
        at once (and restarted, as after a timeout: what the function did so
        far is not undone). Either way the calls behind it go on.
        """
        handle, func, arguments, timeout, door = self._route.target(
            name, arguments, timeout, context
        )
        return (
            await handle.acall(func, arguments, timeout, door, on_progress, stop_on_cancel)
        ).value

    async def acall_detailed(
        self,
        name: str,
        arguments: Any = None,
        timeout: float | None = None,
        *,
        context: Any = None,
        on_progress: OnProgress | None = None,
        stop_on_cancel: bool = False,
    ) -> CallResult:
        """asyncio ``call_detailed`` (cancellation as in ``acall``)."""
        handle, func, arguments, timeout, door = self._route.target(
            name, arguments, timeout, context
        )
        return await handle.acall(func, arguments, timeout, door, on_progress, stop_on_cancel)

    def call_stream(
        self,
        name: str,
        arguments: Any = None,
        timeout: float | None = None,
        *,
        context: Any = None,
        on_progress: OnProgress | None = None,
    ) -> Iterator[Any]:
        """Run a generator function and yield its items as the worker
        produces them (``call`` of the same function returns them as a
        list). A function that is not a generator yields its value as one
        item. The call starts at the first ``next``.

        Raises as ``call`` does, with the same ``timeout`` (it bounds the
        whole stream, including time the worker waits for this iterator to
        take items): name, arguments and ``timeout`` problems here, at once;
        the call's own errors from the iterator, after the items that came
        before them. A streamed item that is not data, or larger than
        ``Limits.max_result_mb``, ends the stream with ``ResultError``.

        Flow control: the worker runs at most ``STREAM_WINDOW`` (32) items,
        and ``Limits.max_result_mb`` of them, ahead of this iterator, then
        waits for it. Closing the iterator
        early (``break``, ``close()``) stops the stream at its next item:
        the generator is closed in the worker (its ``finally`` blocks run)
        and its set is free for the next call; a stream that computes for
        long without yielding is stopped only at its next item or timeout.
        """
        handle, func, arguments, timeout, door = self._route.target(
            name, arguments, timeout, context
        )
        return iterate(
            lambda sink: handle.call(func, arguments, timeout, door, on_progress, sink), func
        )

    def acall_stream(
        self,
        name: str,
        arguments: Any = None,
        timeout: float | None = None,
        *,
        context: Any = None,
        on_progress: OnProgress | None = None,
    ) -> AsyncIterator[Any]:
        """asyncio ``call_stream``: ``async for item in fh.acall_stream(...)``.
        The same items, timeout, errors and early stop; never blocks the
        event loop. Cancelling the task reading it stops the stream as
        closing does."""
        handle, func, arguments, timeout, door = self._route.target(
            name, arguments, timeout, context
        )
        return iterate_async(
            lambda sink: handle.acall(func, arguments, timeout, door, on_progress, False, sink)
        )

    # -- a model's tool calls (host/api/dispatch.py; tool_calls.py, tool_results.py) --

    def dispatch(
        self,
        tool_calls: Any,
        *,
        timeout: float | None = None,
        max_result_chars: MaxResultChars = DEFAULT_MAX_RESULT_CHARS,
        context: Any = None,
    ) -> ToolResult | list[ToolResult]:
        """Run a model's tool call(s) and return the provider's result message(s).

        ``tool_calls`` is one tool call as an SDK returns it (an OpenAI Chat
        Completions tool call, a Responses ``function_call`` item, an
        Anthropic ``tool_use`` block, a Gemini ``function_call`` part; a dict
        or an SDK object) or a list of them, the parallel calls of one turn,
        which run concurrently on threads, one thread per function set: a
        set's worker runs one call at a time anyway, so its calls are sent
        one after another and a crash or timeout cannot take a sibling call
        down with it. ``timeout`` applies to each call as in ``call``
        (default: its set's ``Limits.timeout``); ``max_result_chars`` caps
        each result's text (``None``: no cap; a dict ``{name: cap}`` per
        function, ``"*"`` for the rest), see ``host.tools.tool_results``.
        ``context``: each call's context, as in ``call``, for the sets that
        have an allow-list (``expose``); the tools of the other sets run
        without it.

        Returns one ``ToolResult`` (a dict: the result message in the same
        provider's shape) or a list in the same order. A failed call, for
        any reason (its timeout included), is an error result (``is_error``,
        ``.error``; a short text the model can act on), never an exception;
        the other calls of the batch are unaffected.

        Raises ``ValueError`` before running anything if a payload is not a
        recognisable tool call (or lacks the id its result must echo) or an
        option is invalid.
        """
        heartbeats = bool(self.request_heartbeat)
        where = None if context is None else WhereExposed(context)
        return run_sync(
            self, self._tool_catalog, tool_calls, timeout, max_result_chars, heartbeats, where
        )

    async def adispatch(
        self,
        tool_calls: Any,
        *,
        timeout: float | None = None,
        max_result_chars: MaxResultChars = DEFAULT_MAX_RESULT_CHARS,
        context: Any = None,
    ) -> ToolResult | list[ToolResult]:
        """asyncio ``dispatch``: a list's sets run with ``asyncio.gather``.

        Returns and raises as ``dispatch``. Cancelling the awaiting task
        cancels every call of the batch as ``acall`` describes, and
        ``CancelledError`` propagates: no result is returned.
        """
        heartbeats = bool(self.request_heartbeat)
        where = None if context is None else WhereExposed(context)
        return await run_async(
            self, self._tool_catalog, tool_calls, timeout, max_result_chars, heartbeats, where
        )
