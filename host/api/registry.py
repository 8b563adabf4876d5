"""Loaded function sets, the names they export, and how names collide.

Every function is reachable as ``"set.function"``. The merged view maps a
bare name to one function; when two sets export the same name the policy
decides: ``"error"`` refuses the later set (``NameConflict``), ``"prefix"``
exports the later set's colliding names as ``<set>__<function>``.

A name with a dot is only ever resolved as ``set.function``: no merged name
contains a dot (function names obey ``protocol.names``, checked in the
worker and again on the host; set names are refused with a dot), and
``resolve`` never looks a dotted name up in the merged view anyway, so no
set can answer a call meant for another by its qualified name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from host.errors import NameConflict, UnknownFunction
from host.workers.set_workers import SetWorkers
from protocol.names import function_name_problem

ConflictPolicy = Literal["error", "prefix"]


@dataclass
class LoadedSet:
    name: str
    source: str
    origin: str  # "builtin", "user" or "explicit"
    handle: SetWorkers
    functions: dict[str, dict[str, Any]]  # bare name -> function info from the worker
    skipped: dict[str, str]  # function name -> reason it is not exported
    protections: dict[str, bool] = field(default_factory=dict)
    stamp: tuple[int, int] | None = None  # the file's (mtime_ns, size) when loaded
    exported: dict[str, str] = field(default_factory=dict)  # bare -> merged name


def json_schema(info: dict[str, Any], name: str) -> dict[str, Any]:
    """The MemGPT/OpenAI function shape: ``{name, description, parameters}``."""
    return {"name": name, "description": info["description"], "parameters": info["parameters"]}


class Registry:
    def __init__(self, on_conflict: ConflictPolicy) -> None:
        if on_conflict not in ("error", "prefix"):
            raise ValueError('on_conflict must be "error" or "prefix"')
        self.on_conflict = on_conflict
        self.sets: dict[str, LoadedSet] = {}
        self.merged: dict[str, tuple[str, str]] = {}  # exported name -> (set, function)

    def check_set_name(self, name: str, source: str) -> LoadedSet | None:
        """The already-loaded set of that name from the same source, or None.

        Raises ``NameConflict`` if the name is taken by another source (a
        user set named like a built-in set included).
        """
        existing = self.sets.get(name)
        if existing is None:
            return None
        if existing.source == source:
            return existing
        raise NameConflict(name, f"{existing.name} ({existing.source})", source, what="set")

    def plan_exports(self, loaded: LoadedSet) -> dict[str, str]:
        """Merged names for ``loaded``'s functions under the policy, or ``NameConflict``.

        A prefixed name must be a valid tool name too (a set called
        ``"my tools"`` or a long set name cannot make one): ``NameConflict``
        with ``what="prefix"`` then. A prefixed name that is taken (another
        set exports ``<set>__<func>`` itself) is a ``NameConflict``, never a
        silent takeover.
        """
        exported: dict[str, str] = {}
        for func in loaded.functions:
            name = func
            if name in self.merged:
                if self.on_conflict == "error":
                    raise NameConflict(func, self.merged[name][0], loaded.name)
                name = f"{loaded.name}__{func}"
                problem = function_name_problem(name)
                if problem is not None:
                    raise NameConflict(
                        func, self.merged[func][0], loaded.name, what="prefix", reason=problem
                    )
                if name in self.merged or name in loaded.functions:
                    raise NameConflict(name, self.merged.get(name, (loaded.name,))[0], loaded.name)
            exported[func] = name
        return exported

    def add(self, loaded: LoadedSet) -> None:
        """Register ``loaded`` (``NameConflict`` leaves the registry unchanged)."""
        loaded.exported = self.plan_exports(loaded)
        self.sets[loaded.name] = loaded
        for func, name in loaded.exported.items():
            self.merged[name] = (loaded.name, func)

    def replace_functions(
        self, loaded: LoadedSet, functions: dict[str, dict[str, Any]], skipped: dict[str, str]
    ) -> dict[str, list[str]]:
        """Swap in a reloaded version of ``loaded``'s functions.

        Returns ``{"added", "removed", "changed"}`` function names. Raises
        ``NameConflict`` (and changes nothing) if a new name collides with
        another set under the policy.
        """
        old_exports = loaded.exported
        for name in old_exports.values():
            self.merged.pop(name, None)
        old_functions = loaded.functions
        loaded.functions = functions
        try:
            loaded.exported = self.plan_exports(loaded)
        except NameConflict:
            loaded.functions = old_functions
            for func, name in old_exports.items():
                self.merged[name] = (loaded.name, func)
            raise
        loaded.skipped = skipped
        for func, name in loaded.exported.items():
            self.merged[name] = (loaded.name, func)
        return {
            "added": sorted(set(functions) - set(old_functions)),
            "removed": sorted(set(old_functions) - set(functions)),
            "changed": sorted(
                f for f in set(functions) & set(old_functions) if functions[f] != old_functions[f]
            ),
        }

    def resolve(self, name: str) -> tuple[LoadedSet, str]:
        """``"func"`` (merged name) or ``"set.func"`` -> (set, bare function name).

        A name with a dot is looked up only as set + function (split at the
        last dot), never in the merged view. Raises ``UnknownFunction``
        naming the set and why (no such set, or the function was skipped or
        is not exported).
        """
        set_name, dot, func = name.rpartition(".")
        if not dot:
            target = self.merged.get(name)
            if target is not None:
                return self.sets[target[0]], target[1]
            available = ", ".join(sorted(self.merged)[:50]) or "none"
            raise UnknownFunction(
                None, name, f"no loaded function set exports it (available: {available})"
            )
        loaded = self.sets.get(set_name)
        if loaded is None:
            raise UnknownFunction(
                set_name,
                func,
                f"there is no function set {set_name!r} (loaded: {', '.join(self.sets) or 'none'})",
            )
        if func in loaded.functions:
            return loaded, func
        why = loaded.skipped.get(func)
        text = (
            f"it was not exported: {why}"
            if why
            else f"the set exports {', '.join(loaded.functions) or 'nothing'}"
        )
        raise UnknownFunction(set_name, func, text)

    def view(self, merge: bool, make_entry: Any) -> dict[str, Any]:
        """``{name: entry}`` merged, or ``{set: {function: entry}}`` nested."""
        if merge:
            return {name: make_entry(self.sets[s], f, name) for name, (s, f) in self.merged.items()}
        return {s.name: {f: make_entry(s, f, f) for f in s.functions} for s in self.sets.values()}
