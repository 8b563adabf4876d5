"""``FunctionHost``'s asyncio face for loading and closing (``async with``).

A load starts processes and waits for their imports, and close waits for
workers to exit: both block for milliseconds to seconds, so from a
coroutine they run on a thread. Cancelling the await does not cancel the
work: the load or close runs to its end on its thread, as if called
synchronously (a load then leaves the set loaded or in ``load_errors``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Self

from host.limits import Limits


class AsyncLoading:
    """Inherited by ``FunctionHost`` (see the module)."""

    if TYPE_CHECKING:  # FunctionHost's own, which these run on a thread

        def load_function_set(
            self,
            source: str | os.PathLike[str] | ModuleType,
            name: str | None = None,
            limits: Limits | None = None,
            *,
            context: Any = None,
            expose: Sequence[str] | None = None,
            requirements: Sequence[str] | None = None,
        ) -> dict[str, dict[str, Any]]: ...

        def load_all_function_sets(
            self, merge: bool = True, *, context: Any = None, expose: Sequence[str] | None = None
        ) -> dict[str, Any]: ...

        def close(self) -> None: ...

    async def aload_function_set(
        self,
        source: str | os.PathLike[str] | ModuleType,
        name: str | None = None,
        limits: Limits | None = None,
        *,
        context: Any = None,
        expose: Sequence[str] | None = None,
        requirements: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """``load_function_set`` without blocking the event loop (same
        result, same errors; a set's environment is built on the thread too)."""
        return await asyncio.to_thread(
            self.load_function_set,
            source,
            name,
            limits,
            context=context,
            expose=expose,
            requirements=requirements,
        )

    async def aload_all_function_sets(
        self, merge: bool = True, *, context: Any = None, expose: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """``load_all_function_sets`` without blocking the event loop."""
        return await asyncio.to_thread(
            self.load_all_function_sets, merge, context=context, expose=expose
        )

    async def aclose(self) -> None:
        """``close`` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
