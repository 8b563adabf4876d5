"""An environment for a spec: found in the cache, or built once, atomically.

``ensure_environment`` looks for a finished environment under the spec's
key; if there is none it takes the key's build lock (another host building
the same spec is waited for, and its result used), builds in a directory
beside it, writes the marker last and renames the directory into place.
An interrupted build leaves only a ``.build-`` directory, which the next
builder of that key (or ``prune``) removes.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from host.environments.build_lock import LockTimeout, build_lock
from host.environments.env_cache import (
    discard_leftovers,
    envs_dir,
    new_build_dir,
    read_marker,
    remove_dir,
    runtime_dir,
    touch_last_used,
    write_marker,
)
from host.environments.env_spec import EnvSpec, python_identity
from host.environments.uv_build import TIMEOUT, UvFailed, build_with_uv
from host.environments.worker_runtime import worker_runtime

logger = logging.getLogger("fnhost.environments")


class EnvBuildError(Exception):
    """An environment could not be built (or found).

    ``cause``: ``uv_missing``, ``invalid_requirement``, ``unresolvable``,
    ``index_unreachable``, ``requires_python``, ``sdist_only``, ``timeout``,
    ``build_failed`` or ``cache_failed``; ``requirements``: those the cause
    concerns; ``detail``: what uv (or the system) said.
    """

    def __init__(self, cause: str, requirements: tuple[str, ...], detail: str) -> None:
        super().__init__(detail)
        self.cause = cause
        self.requirements = requirements
        self.detail = detail


@dataclass(frozen=True)
class Environment:
    """A finished environment: its directory, interpreter and the worker runtime."""

    key: str
    path: str
    python: str
    runtime: str
    built_now: bool
    build_seconds: float


def _found(final: Path, runtime: str, built_now: bool) -> Environment | None:
    marker = read_marker(final)
    if marker is None:
        return None
    touch_last_used(final)
    return Environment(
        key=final.name,
        path=str(final),
        python=str(final / "bin" / "python"),
        runtime=runtime,
        built_now=built_now,
        build_seconds=float(marker.get("build_seconds") or 0.0),
    )


def environment_path(spec: EnvSpec) -> Path:
    return envs_dir(spec.options.cache_dir) / spec.key


def is_built(spec: EnvSpec) -> bool:
    """Whether a finished environment for ``spec`` is in the cache now."""
    return read_marker(environment_path(spec)) is not None


def ensure_environment(spec: EnvSpec, label: str) -> Environment:
    """The environment for ``spec``, built if the cache has none (``label``
    names the set in log lines).

    Raises ``EnvBuildError``; nothing a later call could take for a good
    environment is left behind.
    """
    options = spec.options
    try:
        runtime = worker_runtime(str(runtime_dir(options.cache_dir)))
        touch_last_used(Path(runtime))
    except OSError as exc:
        raise EnvBuildError("cache_failed", (), f"cannot set up fnhost's worker code: {exc}")
    final = environment_path(spec)
    found = _found(final, runtime, False)
    if found is not None:
        return found
    root = final.parent
    deadline = time.monotonic() + options.build_timeout
    try:
        root.mkdir(parents=True, exist_ok=True)
        with build_lock(str(root / f"{spec.key}.lock"), options.build_timeout):
            # Another host may have built it while we waited for the lock.
            found = _found(final, runtime, False)
            if found is not None:
                logger.info("%s: environment %s was built by another process", label, spec.key)
                return found
            discard_leftovers(root, spec.key)
            _build(spec, final, label, deadline)
    except LockTimeout as exc:
        raise EnvBuildError(TIMEOUT, spec.normalized, f"waited for another build: {exc}")
    except OSError as exc:
        raise EnvBuildError(
            "cache_failed", spec.normalized, f"cannot write the cache at {root}: {exc}"
        )
    found = _found(final, runtime, True)
    if found is None:  # removed between the rename and now (a prune)
        raise EnvBuildError("cache_failed", (), f"{final} vanished right after its build")
    return found


def _build(spec: EnvSpec, final: Path, label: str, deadline: float) -> None:
    """Build into a directory beside ``final`` and rename it into place (lock held)."""
    logger.info("%s: building environment %s (%s)", label, spec.key, spec.describe())
    start = time.monotonic()
    tmp = new_build_dir(final.parent, spec.key)
    try:
        build_with_uv(str(tmp), spec, label, deadline)
        seconds = time.monotonic() - start
        # Written last: only a directory with it is ever taken for finished.
        write_marker(
            tmp,
            {
                "key": spec.key,
                "requirements": list(spec.normalized),
                "options": spec.options.key_fields(),
                "python": python_identity(),
                "built_at": time.time(),
                "build_seconds": round(seconds, 3),
                "builder_pid": os.getpid(),
                "fnhost_python": sys.executable,
            },
        )
        # Readable by workers that run under their own uid.
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)
    except UvFailed as exc:
        remove_dir(tmp)
        raise EnvBuildError(exc.cause, exc.requirements, exc.detail) from None
    except BaseException:
        remove_dir(tmp)
        raise
    logger.info("%s: built environment %s in %.1f s", label, spec.key, seconds)
