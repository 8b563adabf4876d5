"""Run a model's tool calls: ``FunctionHost.dispatch`` and ``adispatch``.

Parse the payload (``host.tool_calls``), run each call through the host,
render each outcome (``host.tool_results``). The host is seen only through
``DispatchHost``, the few things running calls needs from it.

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
from host.tool_calls import HEARTBEAT, ToolCall, parse_tool_calls, strip_heartbeat
from host.tool_results import MaxResultChars, ToolResult, build_result, check_limit

if TYPE_CHECKING:
    from host.worker_handle import CallResult

log = logging.getLogger("fnhost.dispatch")


class DispatchHost(Protocol):
    """What running tool calls needs from the host (``FunctionHost`` provides it)."""

    @property
    def request_heartbeat(self) -> bool:
        """Whether ``request_heartbeat`` is stripped from the arguments and reported."""
        ...

    def set_of(self, name: str) -> str | None:
        """The set the function ``name`` resolves to (``None`` if it does not)."""
        ...

    def declares_parameter(self, name: str, parameter: str) -> bool:
        """Whether the function ``name`` has a parameter ``parameter`` (False if unknown)."""
        ...

    def tool_names(self) -> list[str]:
        """Every exported name, for an unknown function's error text."""
        ...

    def call_detailed(self, name: str, arguments: Any, timeout: float | None) -> CallResult:
        """Run one call; every failure raises (``FunctionHost.call_detailed``)."""
        ...

    async def acall_detailed(self, name: str, arguments: Any, timeout: float | None) -> CallResult:
        """asyncio ``call_detailed``."""
        ...


def _check_options(timeout: float | None, max_result_chars: MaxResultChars) -> None:
    """Raise ``ValueError`` for a timeout that is not positive or an invalid cap."""
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be positive")
    check_limit(max_result_chars)


def _groups(host: DispatchHost, calls: list[ToolCall]) -> list[list[int]]:
    """Indices of ``calls`` grouped by the function set each call resolves to."""
    groups: dict[object, list[int]] = {}
    for i, call in enumerate(calls):
        key = host.set_of(call.name)
        groups.setdefault(key if key is not None else ("unresolved", i), []).append(i)
    return list(groups.values())


def _prepare(host: DispatchHost, call: ToolCall) -> tuple[Any, bool]:
    if not host.request_heartbeat:
        return call.arguments, False
    return strip_heartbeat(call.arguments, host.declares_parameter(call.name, HEARTBEAT))


def _finish(
    host: DispatchHost,
    call: ToolCall,
    outcome: CallResult | BaseException,
    heartbeat: bool,
    max_result_chars: MaxResultChars,
) -> ToolResult:
    available: list[str] = []
    if isinstance(outcome, UnknownFunction):
        try:
            available = host.tool_names()
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
    host: DispatchHost,
    payload: Any,
    timeout: float | None,
    max_result_chars: MaxResultChars,
) -> ToolResult | list[ToolResult]:
    """``FunctionHost.dispatch``: parse, run (a batch's sets on threads), render."""
    _check_options(timeout, max_result_chars)
    calls, batch = parse_tool_calls(payload)
    results: list[ToolResult | None] = [None] * len(calls)

    def run(call: ToolCall) -> ToolResult:
        arguments, heartbeat = _prepare(host, call)
        try:
            outcome: CallResult | BaseException = host.call_detailed(call.name, arguments, timeout)
        except Exception as exc:
            outcome = exc
        return _finish(host, call, outcome, heartbeat, max_result_chars)

    def run_group(indices: list[int]) -> None:
        for i in indices:
            results[i] = run(calls[i])

    groups = _groups(host, calls)
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
    host: DispatchHost,
    payload: Any,
    timeout: float | None,
    max_result_chars: MaxResultChars,
) -> ToolResult | list[ToolResult]:
    """``FunctionHost.adispatch``: parse, run (a batch's sets with ``asyncio.gather``), render."""
    _check_options(timeout, max_result_chars)
    calls, batch = parse_tool_calls(payload)
    results: list[ToolResult | None] = [None] * len(calls)

    async def run(call: ToolCall) -> ToolResult:
        arguments, heartbeat = _prepare(host, call)
        try:
            outcome: CallResult | BaseException = await host.acall_detailed(
                call.name, arguments, timeout
            )
        except Exception as exc:
            outcome = exc
        return _finish(host, call, outcome, heartbeat, max_result_chars)

    async def run_group(indices: list[int]) -> None:
        for i in indices:
            results[i] = await run(calls[i])

    await asyncio.gather(*(run_group(g) for g in _groups(host, calls)))
    done = [r for r in results if r is not None]
    return done if batch else done[0]
