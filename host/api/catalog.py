"""Read-only questions about the loaded sets, each answered under the host's lock.

``FunctionHost`` owns the registry and the lock; ``Catalog`` reads them for
the host's views and for ``host.api.dispatch`` (it is dispatch's ``Catalog``).
"""

from __future__ import annotations

import threading
from typing import Any

from host.api.registry import Registry
from host.errors import HostError
from host.tools.formats import tool_definition


class Catalog:
    def __init__(self, registry: Registry, lock: threading.RLock) -> None:
        self._registry = registry
        self._lock = lock

    def set_of(self, name: str) -> str | None:
        """The set the function ``name`` resolves to (``None`` if it does not)."""
        with self._lock:
            try:
                return self._registry.resolve(name)[0].name
            except HostError:
                return None

    def declares_parameter(self, name: str, parameter: str) -> bool:
        """Whether the function ``name`` has a parameter ``parameter`` (False if unknown)."""
        with self._lock:
            try:
                loaded, func = self._registry.resolve(name)
            except HostError:
                return False
            properties = loaded.functions[func].get("parameters", {}).get("properties", {})
            return parameter in properties

    def tool_names(self) -> list[str]:
        """Every exported (merged) name, in export order."""
        with self._lock:
            return list(self._registry.merged)

    def tools(self, format: str, strict: bool) -> list[dict[str, Any]]:
        """``FunctionHost.tools`` without heartbeats: every exported function's
        definition in ``format`` (``SchemaFormatError``, ``ValueError`` as
        ``tool_definition`` raises them)."""
        with self._lock:
            merged = [
                (name, self._registry.sets[s].functions[f])
                for name, (s, f) in self._registry.merged.items()
            ]
        return [tool_definition(info, name, format, strict) for name, info in merged]

    def set_summaries(self) -> dict[str, dict[str, Any]]:
        """``FunctionHost.function_sets`` (see there)."""
        with self._lock:
            return {
                s.name: {
                    "source": s.source,
                    "origin": s.origin,
                    "pid": s.handle.pid,
                    "pids": s.handle.pids,
                    "functions": dict(s.exported),
                    "skipped": dict(s.skipped),
                    # A set loaded from the schema cache reported none at load:
                    # its current worker's, if one has started since.
                    "protections": dict(s.protections or s.handle.protections()),
                    # The set's own environment's directory (None: the host's interpreter).
                    "environment": (
                        s.handle.spec.interpreter.environment
                        if s.handle.spec.interpreter is not None
                        else None
                    ),
                    "warnings": {
                        f: list(info.get("warnings") or []) for f, info in s.functions.items()
                    },
                }
                for s in self._registry.sets.values()
            }
