"""fnhost's own worker code, copied where an environment's interpreter can
import it: ``<cache>/runtime/<hash>/`` holds the ``worker`` and ``protocol``
packages and the two libraries they import (``msgpack``,
``docstring_parser``), and nothing else of the host's site-packages.

A worker on an environment's interpreter puts this directory first on its
``sys.path`` (``host.launch.interpreter``), so a set sees its own packages
and fnhost's worker, never the host's other packages. The directory is
named by a hash of what it holds: hosts of different fnhost versions share
the environments and each brings its own worker.
"""

from __future__ import annotations

import compileall
import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

#: Top-level packages a worker imports: fnhost's own two, which sit beside
#: ``host`` (found there, not on ``sys.path``, where a directory of the
#: caller's named ``worker`` could come first), and the two libraries they
#: import, found (not imported) on the host's path.
OWN_PACKAGES = ("worker", "protocol")
LIBRARIES = ("msgpack", "docstring_parser")
PACKAGES = OWN_PACKAGES + LIBRARIES
COMPLETE = ".complete"


def _package_dir(name: str) -> Path:
    if name in OWN_PACKAGES:
        return Path(__file__).resolve().parents[2] / name
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise OSError(f"fnhost's worker needs the package {name!r}, which is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


@functools.cache
def _sources() -> tuple[dict[str, Path], str]:
    """The package directories and a hash of every file in them (once per process)."""
    dirs = {name: _package_dir(name) for name in PACKAGES}
    digest = hashlib.sha256()
    for name, directory in dirs.items():
        for path in _files(directory):
            digest.update(f"{name}/{path.relative_to(directory)}\0".encode())
            digest.update(path.read_bytes())
    return dirs, digest.hexdigest()[:20]


def worker_runtime(root: str) -> str:
    """The runtime directory under ``root`` (``<cache>/runtime``), made if missing.

    Made in a temporary directory beside it and renamed into place, so a
    reader finds it whole or not at all; two hosts making it at once both
    end up using the one that was renamed first. Raises ``OSError`` if it
    cannot be made.
    """
    dirs, digest = _sources()
    final = os.path.join(root, digest)
    if os.path.exists(os.path.join(final, COMPLETE)):
        return final
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=root)
    try:
        for name, directory in dirs.items():
            shutil.copytree(
                directory, os.path.join(tmp, name), ignore=shutil.ignore_patterns("__pycache__")
            )
        # Compiled now: a worker with its own uid could not write the cache.
        compileall.compile_dir(tmp, quiet=1, ddir=final, workers=1)
        Path(tmp, COMPLETE).touch()
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.exists(os.path.join(final, COMPLETE)):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another host was first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
