"""The cache directory: where environments live, how a finished one is
recognised, listing and pruning.

Layout under ``cache_root()``::

    envs/<key>/            a finished environment (its ``fnhost-env.json`` says so)
    envs/<key>.lock        the key's build lock (``build_lock``)
    envs/.build-<key>-*/   a build under way, or one that was interrupted
    runtime/<hash>/        fnhost's worker code for environments (``worker_runtime``)

An environment directory counts only when its marker, written last in the
build (before the rename into place), parses and names its own key: a
half-built or half-removed directory is never taken for a good one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host.environments.build_lock import LockTimeout, build_lock

MARKER = "fnhost-env.json"
LAST_USED = "fnhost-last-used"
BUILDING = ".build-"
TRASH = ".trash-"


def cache_root(cache_dir: str | None = None) -> Path:
    """``cache_dir``, else ``$FNHOST_CACHE_DIR``, else ``$XDG_CACHE_HOME/fnhost``,
    else ``~/.cache/fnhost``."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("FNHOST_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "fnhost" if xdg else Path.home() / ".cache" / "fnhost"


def envs_dir(cache_dir: str | None = None) -> Path:
    return cache_root(cache_dir) / "envs"


def runtime_dir(cache_dir: str | None = None) -> Path:
    return cache_root(cache_dir) / "runtime"


def read_marker(env_dir: Path) -> dict[str, Any] | None:
    """The marker of a finished environment at ``env_dir``, or None if it is
    missing, unreadable or names another key."""
    try:
        data = json.loads((env_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != env_dir.name:
        return None
    if not os.path.exists(env_dir / "bin" / "python"):
        return None
    return data


def write_marker(env_dir: Path, data: dict[str, Any]) -> None:
    """Write the marker (atomically: a reader sees all of it or none)."""
    tmp = env_dir / (MARKER + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.rename(tmp, env_dir / MARKER)


def touch_last_used(env_dir: Path) -> None:
    """Record a use (for ``prune``); best effort."""
    with contextlib.suppress(OSError):
        (env_dir / LAST_USED).touch()


def last_used(env_dir: Path) -> float:
    for name in (LAST_USED, MARKER):
        with contextlib.suppress(OSError):
            return (env_dir / name).stat().st_mtime
    with contextlib.suppress(OSError):
        return env_dir.stat().st_mtime
    return 0.0


def remove_dir(path: Path) -> None:
    """Rename ``path`` aside, then delete it: a reader never finds a half-deleted
    directory under its name. Never raises (what cannot be removed stays)."""
    aside = path.parent / f"{TRASH}{path.name}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(path, aside)
    except OSError:
        aside = path
    shutil.rmtree(aside, ignore_errors=True)


@dataclass(frozen=True)
class EnvInfo:
    """One entry of the cache, for ``fnhost env list``."""

    key: str
    path: str
    state: str  # "ready", "incomplete" (interrupted or under way)
    requirements: list[str]
    python: str | None
    built_at: float | None
    build_seconds: float | None
    last_used: float
    size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def list_environments(cache_dir: str | None = None) -> list[EnvInfo]:
    """Every environment in the cache, finished or not, newest use first."""
    root = envs_dir(cache_dir)
    found: list[EnvInfo] = []
    if not root.is_dir():
        return found
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or entry.name.startswith(TRASH):
            continue
        marker = None if entry.name.startswith(BUILDING) else read_marker(entry)
        key = entry.name
        if entry.name.startswith(BUILDING):
            key = entry.name[len(BUILDING) :].split("-")[0]
        found.append(
            EnvInfo(
                key=key,
                path=str(entry),
                state="ready" if marker else "incomplete",
                requirements=list(marker["requirements"]) if marker else [],
                python=marker["python"]["version"] if marker else None,
                built_at=marker.get("built_at") if marker else None,
                build_seconds=marker.get("build_seconds") if marker else None,
                last_used=last_used(entry),
                size_bytes=_size(entry),
            )
        )
    return sorted(found, key=lambda e: -e.last_used)


def prune(
    cache_dir: str | None = None, older_than_days: float | None = 30.0, dry_run: bool = False
) -> list[str]:
    """Remove what the cache no longer needs; the paths removed (or that would be).

    Always: interrupted builds and half-removed directories whose key no
    builder holds now. Also: finished environments (and worker runtimes)
    not used for ``older_than_days`` days (every one with ``None``; a
    running host whose set uses one then builds it again on its next load,
    but its running workers lose their interpreter's packages). A key whose
    lock is held (a build under way) is left alone.
    """
    root = envs_dir(cache_dir)
    removed: list[str] = []
    if not root.is_dir():
        return removed
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            continue
        name = entry.name
        if name.startswith(TRASH):
            key = None
        elif name.startswith(BUILDING):
            key = name[len(BUILDING) :].split("-")[0]
        else:
            key = name
            if read_marker(entry) is not None and cutoff is not None:
                if last_used(entry) >= cutoff:
                    continue
        try:
            with build_lock(str(root / f"{key}.lock"), 0) if key else contextlib.nullcontext():
                if not dry_run:
                    remove_dir(entry)
                removed.append(str(entry))
        except (LockTimeout, OSError):
            continue  # a build of that key is under way
    runtimes = runtime_dir(cache_dir)
    for entry in sorted(runtimes.iterdir()) if runtimes.is_dir() else []:
        if entry.name.startswith(BUILDING):
            # No lock guards these: only one idle for an hour is taken for dead.
            gone = time.time() - last_used(entry) > 3600
        else:
            gone = cutoff is None or last_used(entry) < cutoff
        if entry.is_dir() and gone:
            if not dry_run:
                remove_dir(entry)
            removed.append(str(entry))
    return removed


def new_build_dir(root: Path, key: str) -> Path:
    """An empty directory beside the environment, to build it in."""
    return Path(tempfile.mkdtemp(prefix=f"{BUILDING}{key}-", dir=root))


def discard_leftovers(root: Path, key: str) -> None:
    """Remove what earlier builds of ``key`` left (lock held): interrupted
    build directories, and a directory under the key's name without a good
    marker."""
    for entry in root.glob(f"{BUILDING}{key}-*"):
        remove_dir(entry)
    final = root / key
    if final.exists() and read_marker(final) is None:
        remove_dir(final)
