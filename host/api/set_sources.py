"""Where function sets come from: the built-in and user directories, a source
(a ``.py`` path, a module name, or an imported module's file) named as a set,
and the files whose set name another file already holds. Pure, apart from
listing directories."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import ModuleType

from host.errors import LoadError
from host.launch.launcher import WorkerSpec
from host.limits import Limits

logger = logging.getLogger("fnhost")

#: The bundled built-in sets.
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "function_sets"

#: ``origin`` of a set found in ``builtin_dir`` / in a user dir (``"explicit"``:
#: passed to ``load_function_set``).
BUILTIN, USER = "builtin", "user"


def default_user_dirs() -> list[Path]:
    """``$FNHOST_FUNCTIONS_DIR`` (``os.pathsep``-separated) or ``~/.fnhost/functions``."""
    env = os.environ.get("FNHOST_FUNCTIONS_DIR")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path.home() / ".fnhost" / "functions"]


def set_files(directory: Path) -> list[Path]:
    """The set files of ``directory``: ``*.py`` not starting with ``_``, sorted
    (``[]`` if it is not a directory)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


def found_sets(builtin_dir: Path, user_dirs: list[Path]) -> list[tuple[Path, str]]:
    """``(file, origin)`` for every set file: the built-in dir's first, then each user dir's."""
    dirs = [(BUILTIN, builtin_dir)] + [(USER, d) for d in user_dirs]
    return [(path, origin) for origin, directory in dirs for path in set_files(directory)]


def module_file(module: ModuleType) -> tuple[str, str]:
    """``(file, set name)`` of an imported module: its ``__file__``, and the
    file's stem (a package's last name component rather than ``__init__``).

    The host only reads these two attributes; the file runs in a worker,
    as if its path had been given. Raises ``TypeError`` naming the module
    when it has no Python source file to run there: a built-in module, a
    namespace package, an extension module or a sourceless ``.pyc``.
    """
    label = getattr(module, "__name__", None)
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file:
        raise TypeError(
            f"module {label!r} has no file (a built-in module or a namespace package); "
            "a set runs from a .py file in its worker: pass the module's path or name"
        )
    if not file.endswith(".py"):
        raise TypeError(
            f"module {label!r} is not Python source ({file}); "
            "a set runs from a .py file in its worker"
        )
    stem = Path(file).stem
    if stem == "__init__" and isinstance(label, str) and label:
        stem = label.rpartition(".")[2]
    return file, stem


def worker_spec(
    source: str | os.PathLike[str] | ModuleType,
    name: str | None,
    limits: Limits,
    env: dict[str, str],
) -> WorkerSpec:
    """The ``WorkerSpec`` of the set at ``source``: a ``.py`` file (or any
    existing path, or text with a path separator), an imported module (its
    file, see ``module_file``) or else a module name, resolved in the
    worker. ``name`` defaults to the file stem or the module's last
    component. Raises ``ValueError`` for a set name with a dot, and
    ``TypeError`` for a module without a source file."""
    if isinstance(source, ModuleType):
        source, stem = module_file(source)
        name = name or stem
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
    return WorkerSpec(set_name, path, module, limits, env, extra)


def refuse_taken_names(
    specs: list[tuple[WorkerSpec, str]], holders: dict[str, tuple[str, str]]
) -> tuple[list[tuple[WorkerSpec, str]], dict[str, LoadError]]:
    """``specs`` without those whose set name an earlier spec or a loaded set
    (``holders``: ``{name: (source, origin)}``) from another file holds, and
    a ``LoadError`` naming both files for each of those (logged)."""
    holders = dict(holders)
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
        which = "the built-in set" if holder_origin == BUILTIN else "the set"
        error = LoadError(
            spec.set_name,
            f"its name is taken by {which} loaded from {source}; rename "
            f"{spec.source} to load it (a set is named after its file)",
            source=spec.source,
        )
        logger.warning("%s", error)
        refused.setdefault(spec.set_name, error)
    return kept, refused
