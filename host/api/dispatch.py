"""Run a model's tool calls: ``FunctionHost.dispatch`` and ``adispatch``.

Parse the payload (``host.tools.tool_calls``), run each call through the host,
render each outcome (``host.tools.tool_results``). The host is seen only through
two narrow interfaces: ``ToolCaller`` (run one call) and ``ToolCatalog``
(three questions about the loaded functions).

A batch is grouped by function set: groups run concurrently (threads for
``run_sync``, ``asyncio.gather`` for ``run_async``), and the calls of one
group run one after another. A worker runs one call at a time anyway, so
this costs no concurrency; what it buys is isolation: a call that crashes
or times out kills its worker, and calls pipelined behind it would die with
it (and be reported as crashes they did not cause).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from host.errors import CallError, UnknownFunction
from host.tools.tool_calls import HEARTBEAT, ToolCall, parse_tool_calls, strip_heartbeat
from host.tools.tool_results import MaxResultChars, ToolResult, build_result, check_limit

if TYPE_CHECKING:
    from host.workers.call_result import CallResult

log = logging.getLogger("fnhost.dispatch")


class ToolCaller(Protocol):
    """How dispatch runs one call (``FunctionHost`` is one)."""

    def call_detailed(
        self, name: str, arguments: Any, timeout: float | None, *, context: Any = None
    ) -> CallResult:
        """Run one call; every failure raises (``FunctionHost.call_detailed``)."""
        ...

    async def acall_detailed(
        self, name: str, arguments: Any, timeout: float | None, *, context: Any = None
    ) -> CallResult:
        """asyncio ``call_detailed``."""
        ...


class ToolCatalog(Protocol):
    """What dispatch asks about the loaded functions (``host.api.catalog.Catalog`` is one)."""

    def set_of(self, name: str) -> str | None:
        """The set the function ``name`` resolves to (``None`` if it does not)."""
        ...

    def declares_parameter(self, name: str, parameter: str) -> bool:
        """Whether the function ``name`` has a parameter ``parameter`` (False if unknown)."""
        ...

    def tool_names(self) -> list[str]:
        """Every exported name, for an unknown function's error text."""
        ...


def _check_options(timeout: float | None, max_result_chars: MaxResultChars) -> None:
    """Raise ``ValueError`` for a timeout that is not positive or an invalid cap."""
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be positive")
    check_limit(max_result_chars)


def _groups(catalog: ToolCatalog, calls: list[ToolCall]) -> list[list[int]]:
    """Indices of ``calls`` grouped by the function set each call resolves to."""
    groups: dict[object, list[int]] = {}
    for i, call in enumerate(calls):
        key = catalog.set_of(call.name)
        groups.setdefault(key if key is not None else ("unresolved", i), []).append(i)
    return list(groups.values())


def _prepare(catalog: ToolCatalog, call: ToolCall, heartbeats: bool) -> tuple[Any, bool]:
    if not heartbeats:
        return call.arguments, False
    return strip_heartbeat(call.arguments, catalog.declares_parameter(call.name, HEARTBEAT))


def _finish(
    catalog: ToolCatalog,
    call: ToolCall,
    outcome: CallResult | BaseException,
    heartbeat: bool,
    max_result_chars: MaxResultChars,
) -> ToolResult:
    available: list[str] = []
    if isinstance(outcome, UnknownFunction):
        try:
            available = catalog.tool_names()
        except Exception:  # the error text then lists no names; never fail the dispatch
            available = []
    elif isinstance(outcome, BaseException) and not isinstance(outcome, CallError):
        log.error("dispatching %s failed unexpectedly", call.name, exc_info=outcome)
    return build_result(
        call,
        outcome,
        max_result_chars=max_result_chars,
        heartbeat_requested=heartbeat,
        available=available,
    )


def run_sync(
    caller: ToolCaller,
    catalog: ToolCatalog,
    payload: Any,
    timeout: float | None,
    max_result_chars: MaxResultChars,
    heartbeats: bool,
    context: Any = None,
) -> ToolResult | list[ToolResult]:
    """``FunctionHost.dispatch``: parse, run (a batch's sets on threads), render.

    ``heartbeats``: strip ``request_heartbeat`` from the arguments (unless
    the function declares it) and report it on the result. ``context``:
    every call's context (``FunctionHost.call``'s).
    """
    _check_options(timeout, max_result_chars)
    calls, batch = parse_tool_calls(payload)
    results: list[ToolResult | None] = [None] * len(calls)

    def run(call: ToolCall) -> ToolResult:
        arguments, heartbeat = _prepare(catalog, call, heartbeats)
        try:
            outcome: CallResult | BaseException = caller.call_detailed(
                call.name, arguments, timeout, context=context
            )
        except Exception as exc:
            outcome = exc
        return _finish(catalog, call, outcome, heartbeat, max_result_chars)

    def run_group(indices: list[int]) -> None:
        for i in indices:
            results[i] = run(calls[i])

    groups = _groups(catalog, calls)
    if len(groups) <= 1:
        for group in groups:
            run_group(group)
    else:
        with ThreadPoolExecutor(min(len(groups), 32), thread_name_prefix="fnhost-dispatch") as pool:
            for future in [pool.submit(run_group, g) for g in groups]:
                future.result()
    done = [r for r in results if r is not None]
    return done if batch else done[0]


async def run_async(
    caller: ToolCaller,
    catalog: ToolCatalog,
    payload: Any,
    timeout: float | None,
    max_result_chars: MaxResultChars,
    heartbeats: bool,
    context: Any = None,
) -> ToolResult | list[ToolResult]:
    """``FunctionHost.adispatch``: ``run_sync`` with ``asyncio.gather`` for the sets."""
    _check_options(timeout, max_result_chars)
    calls, batch = parse_tool_calls(payload)
    results: list[ToolResult | None] = [None] * len(calls)

    async def run(call: ToolCall) -> ToolResult:
        arguments, heartbeat = _prepare(catalog, call, heartbeats)
        try:
            outcome: CallResult | BaseException = await caller.acall_detailed(
                call.name, arguments, timeout, context=context
            )
        except Exception as exc:
            outcome = exc
        return _finish(catalog, call, outcome, heartbeat, max_result_chars)

    async def run_group(indices: list[int]) -> None:
        for i in indices:
            results[i] = await run(calls[i])

    await asyncio.gather(*(run_group(g) for g in _groups(catalog, calls)))
    done = [r for r in results if r is not None]
    return done if batch else done[0]
