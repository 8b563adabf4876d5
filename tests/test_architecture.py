"""The dependency rules of docs/architecture.md, checked on the source.

``host -> protocol <- worker``; ``protocol`` does no I/O; inside ``host``
the arrows point down only (command line -> API -> tools and workers ->
wire and launch -> the shared vocabulary); no import circle; no module uses another module's
private (underscore) names. Every import counts, including those under
``TYPE_CHECKING`` and inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("host", "worker", "protocol")

#: Modules ``protocol`` may not import: it is sans-I/O.
IO_MODULES = {
    "os",
    "subprocess",
    "asyncio",
    "socket",
    "_socket",
    "select",
    "selectors",
    "threading",
    "signal",
    "fcntl",
    "host",
    "worker",
}

#: Layers of ``host``, top (0) to bottom: a module may import its own layer
#: or a lower one. Matched by the longest prefix of the module name.
HOST_LAYERS = {
    "host.__main__": 0,
    "host.cli": 0,
    "host.adapters": 0,  # framework adapters: the public FunctionHost API, like the CLI
    "host": 1,  # host/__init__.py: the public surface, re-exports the API
    "host.api": 1,
    "host.tools": 2,
    "host.workers": 2,
    "host.environments": 2,
    "host.placement": 2,  # sets on a Ray cluster: the driver's side and the actor's body
    "host.wire": 3,
    "host.launch": 3,
    "host.egress": 3,  # the gateway, and the proxy process's modules
    "host.egress.policy": 4,  # what users write in a Sandbox
    "host.egress.record": 4,
    "host.errors": 4,
    "host.placement.resources": 4,  # what users write: RayResources, RayPlacement
    "host.placement.ray_placement": 4,
    "host.limits": 4,
    "host.sandbox": 4,
    "host.set_file": 4,  # reading a set's file: regular, bounded
    "host.terminal_text": 4,  # a set's text shown to an operator
    "host.function_sets": 5,  # built-in sets: data the workers load
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if not MODULES[module].name == "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import."""
    tree = ast.parse(MODULES[module].read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            names = [alias.name for alias in node.names]
            # ``from host import dispatch`` imports the submodule host.api.dispatch.
            subs = [n for n in names if f"{target}.{n}" in MODULES]
            out.extend((f"{target}.{n}", [], node.lineno) for n in subs)
            rest = [n for n in names if n not in subs]
            if rest or not subs:
                out.append((target, rest, node.lineno))
    return out


def _ours(name: str) -> str | None:
    """The module of ours that ``name`` is (or is inside), if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _layer(module: str) -> int:
    best = max((p for p in HOST_LAYERS if module == p or module.startswith(p + ".")), key=len)
    return HOST_LAYERS[best]


def test_protocol_is_sans_io():
    bad = [
        f"{m}:{line} imports {name}"
        for m in MODULES
        if m.split(".")[0] == "protocol"
        for name, _, line in _imports(m)
        if name.split(".")[0] in IO_MODULES
    ]
    assert bad == []


@pytest.mark.parametrize("package,forbidden", [("host", "worker"), ("worker", "host")])
def test_host_and_worker_never_import_each_other(package, forbidden):
    bad = [
        f"{m}:{line} imports {name}"
        for m in MODULES
        if m.split(".")[0] == package
        for name, _, line in _imports(m)
        if name.split(".")[0] == forbidden
    ]
    assert bad == []


def test_host_arrows_point_down():
    bad = []
    for m in MODULES:
        if m.split(".")[0] != "host":
            continue
        for name, _, line in _imports(m):
            target = _ours(name)
            if target and target.split(".")[0] == "host" and _layer(target) < _layer(m):
                bad.append(f"{m}:{line} imports {target}, a layer above it")
    assert bad == []


def test_no_import_circle():
    graph = {m: {t for name, _, _ in _imports(m) if (t := _ours(name)) and t != m} for m in MODULES}
    # A package's __init__ importing its own submodules is not a circle.
    for m, targets in graph.items():
        graph[m] = {t for t in targets if not t.startswith(m + ".")}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert cycles == []


def test_no_module_uses_another_modules_private_names():
    bad = []
    for m in MODULES:
        for name, names, line in _imports(m):
            target = _ours(name)
            if target is not None and target != m:
                bad += [f"{m}:{line} imports {n} from {target}" for n in names if _private(n)]
        tree = ast.parse(MODULES[m].read_text())
        aliases = {}  # local name -> our module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(m, node)
                for alias in node.names:
                    if f"{base}.{alias.name}" in MODULES:
                        aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
            ):
                bad.append(f"{m}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert bad == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_the_checks_see_the_imports():
    """The parser above finds what it must (else every rule passes vacuously)."""
    channel = next(m for m in MODULES if m.endswith(".channel"))
    imported = {_ours(name) for name, _, _ in _imports(channel)}
    assert "protocol.conversation" in imported
    assert any(m.endswith("loop_watch") for m in imported if m)
    assert _layer("host.cli.main") == 0
    assert _layer("host.errors") == 4 and _layer("host.wire.channel") == 3
    assert _layer("host.api.dispatch") == 1 and _layer("host.workers.call_path") == 2
