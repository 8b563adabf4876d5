"""Import a function set's module and discover the functions it exports.

Both steps run user code (the module's top level, decorators, module
``__getattr__``), which is why they happen here in the worker and never in
the host.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
from types import ModuleType
from typing import Any


class ModuleLoadError(Exception):
    """The module could not be found or imported (the cause is chained)."""


def environment_site_packages() -> str | None:
    """On an interpreter started with ``-S`` (a set's own environment, see
    ``host.launch.interpreter``): its site-packages, which is not on
    ``sys.path`` until ``add_site_packages``; None elsewhere."""
    if not sys.flags.no_site:
        return None
    environment = os.path.dirname(os.path.dirname(sys.executable))  # <env>/bin/python
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return os.path.join(environment, "lib", version, "site-packages")


def add_site_packages() -> None:
    """Inside the wall, just before the set is imported: the environment's
    site-packages on ``sys.path`` and its ``.pth`` files read (their
    ``import`` lines run here, as the set's code; their directory lines
    join ``sys.path``). Nothing on an interpreter that ran ``site`` itself."""
    directory = environment_site_packages()
    if directory is None:
        return
    import site

    site.addsitedir(directory)


def import_module(
    path: str | None, module_name: str | None, set_name: str, missing: bool = False
) -> ModuleType:
    """Import by file path or by importable name.

    ``missing``: the start sequence found no file at ``path`` before the
    worker dropped its uid (after that, a file in a directory others may
    not search looks the same as no file: ``PermissionError``).

    A file's directory goes at the *end* of ``sys.path``: sibling helper
    modules import, but a user file named ``json.py`` or ``msgpack.py`` can
    never shadow what the worker itself uses. The module is registered in
    ``sys.modules`` before it executes (dataclasses and pickling by name look
    it up there); its name is the file stem unless that would replace an
    existing or standard-library module.
    """
    if module_name is not None:
        return importlib.import_module(module_name)
    assert path is not None
    path = os.path.abspath(path)
    if missing:
        raise ModuleLoadError(f"no such file: {path}")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise ModuleLoadError(
            f"permission denied: {path}. The worker runs as a uid of its own and reads "
            "only what others may: make the file readable by others (chmod o+r, and o+x "
            "on its directory) or use Sandbox(own_uid=False)"
        )
    except OSError:
        raise ModuleLoadError(f"no such file: {path}")
    if not os.path.isfile(path):
        raise ModuleLoadError(f"no such file: {path}")
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.append(directory)
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem
    if not stem.isidentifier() or stem in sys.modules or stem in sys.stdlib_module_names:
        name = f"fnhost_set_{set_name if set_name.isidentifier() else 'module'}"
    spec = importlib.util.spec_from_file_location(name, path, loader=_SourceLoader(name, path))
    if spec is None or spec.loader is None:
        raise ModuleLoadError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles the set's file from source every time, never from ``__pycache__``.

    A cached ``.pyc`` is validated by mtime in whole seconds and size, so an
    edit within the same second that keeps the size (a hot reload) would run
    the old code.
    """

    def get_code(self, fullname: str) -> Any:
        return self.source_to_code(self.get_data(self.path), self.path)


def discover_functions(module: ModuleType) -> dict[str, Any]:
    """The module's exported functions, in definition order.

    Read from ``vars(module)`` (never ``dir()``, which a module ``__dir__``
    can forge, and never ``getattr``, which runs a module ``__getattr__``).
    Exported: plain and ``async`` functions defined in this module, or named
    in ``__all__``, without a leading underscore. Re-exports such as
    ``from os import system`` (builtins, or functions of other modules not
    in ``__all__``), classes, lambdas and callable instances are not.
    """
    namespace = vars(module)
    listed = namespace.get("__all__")
    explicit = (
        {n for n in listed if isinstance(n, str)} if isinstance(listed, list | tuple) else set()
    )
    found: dict[str, Any] = {}
    for name, obj in list(namespace.items()):
        if not isinstance(name, str) or name.startswith("_"):
            continue
        if not inspect.isfunction(obj):  # excludes builtins, classes, instances, partials
            continue
        if obj.__name__ == "<lambda>":
            continue
        if obj.__module__ != module.__name__ and name not in explicit:
            continue
        found[name] = obj
    return found
