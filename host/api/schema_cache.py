"""Schemas of unchanged sets, kept on disk so that loading them needs no import.

A worker's ``ready`` report (its exported functions and their schemas, the
functions it skipped and why) depends on the set's file and on what reads
it: the worker's Python, fnhost's worker code, the set's limits and
sandbox, its environment variables and its own environment. ``SchemaCache``
keys the report by a hash of all of these, so a set loaded again with none
of them changed is registered from the cache without starting its worker
(``SetLoader``); its first call starts one.

What the key does not see, and a cached load therefore does not notice
until the worker starts: other files the module imports (a sibling helper
module, a data file read at import), and anything else its import depends
on (the clock, the network). Only single-file sets (a ``.py`` that is not
a package's ``__init__.py``) are cached. The protections report is never
cached: it is measured by each worker as it starts. A set with
``Sandbox(required=True)`` is never served from the cache: its load must
fail unless every layer is verified, which only a started worker can do.

Entries are written by the host only, from reports it has validated, for
a key computed again after the worker loaded (a file changed meanwhile is
not cached), atomically (a temporary file renamed into place), in a
directory of mode 0700. A directory that belongs to another user is not
used (a warning is logged; sets load as usual); one of ours that others
could write is emptied and made 0700 first, since anyone may have planted
entries there. An entry that is not a regular file of ours, is
unreadable, malformed or fails the ``ready`` checks is ignored and
removed: the set then loads as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgpack

from host.environments.env_cache import cache_root
from host.launch.launcher import WorkerSpec
from host.set_file import read_set_file
from protocol import PROTOCOL_VERSION, ProtocolViolation
from protocol.handshake import validate_ready

logger = logging.getLogger("fnhost")

#: Bumped when what an entry holds changes shape.
FORMAT = b"fnhost-schema-cache-1"
#: The largest entry read back (a report is bounded by the worker's frame).
MAX_ENTRY_BYTES = 16 * 1024 * 1024


def _code_fingerprint() -> bytes:
    """The files of the code that builds schemas (the worker and protocol
    packages), by path, size and modification time, and fnhost's version:
    an edited checkout invalidates the cache as a new release does."""
    h = hashlib.sha256()
    try:
        from importlib.metadata import version

        h.update(version("fnhost").encode())
    except Exception:  # run from a source tree that was never installed
        h.update(b"0+unknown")
    for package in ("worker", "protocol"):
        spec = importlib.util.find_spec(package)  # located, not imported
        for root in (spec.submodule_search_locations or []) if spec else []:
            for path in sorted(Path(root).glob("*.py")):
                st = path.stat()
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.digest()


class SchemaCache:
    """A directory of cached ``ready`` reports (see the module). Thread-safe."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._code = _code_fingerprint()
        self._usable: bool | None = None  # checked at first use

    def _private(self) -> bool:
        """The directory exists, is ours and no one else may write it
        (see the module); checked once."""
        if self._usable is None:
            self._usable = self._make_private()
        return self._usable

    def _make_private(self) -> bool:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.lstat(self.directory)
        except OSError as exc:
            logger.warning("schema cache %s not used: %s", self.directory, exc)
            return False
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            logger.warning(
                "schema cache %s not used: not a directory of this user's", self.directory
            )
            return False
        if st.st_mode & 0o077:
            # Others could write it: whatever is there may be theirs.
            try:
                os.chmod(self.directory, 0o700)
                for entry in self.directory.iterdir():
                    entry.unlink()
            except OSError as exc:
                logger.warning("schema cache %s not used: %s", self.directory, exc)
                return False
        return True

    @classmethod
    def at(cls, setting: bool | str | os.PathLike[str]) -> SchemaCache | None:
        """``FunctionHost(schema_cache=...)``: ``False`` for none, ``True`` for
        ``<cache root>/schemas`` (``$FNHOST_CACHE_DIR``, ``~/.cache/fnhost``),
        or a directory. Raises ``TypeError`` for anything else."""
        if setting is False:
            return None
        if setting is True:
            return cls(cache_root() / "schemas")
        if isinstance(setting, (str, os.PathLike)):
            return cls(setting)
        raise TypeError("schema_cache must be True, False or a directory")

    def key(self, spec: WorkerSpec) -> str | None:
        """The key of ``spec``'s report, or None for a set that is not cached:
        not a single ``.py`` file, unreadable, or with ``Sandbox(required=True)``
        (such a load must fail unless a worker verifies every layer, and the
        key cannot see the kernel's layers or the host's identity)."""
        path = spec.path
        if path is None or not path.endswith(".py") or Path(path).name == "__init__.py":
            return None
        if spec.limits.sandbox.required:
            return None
        try:
            content = read_set_file(path)
        except OSError:
            return None
        h = hashlib.sha256(FORMAT)
        h.update(self._code)
        for part in (
            str(PROTOCOL_VERSION),
            str(os.geteuid()),  # what the worker may read (and be) follows from it
            sys.version,
            sys.executable,
            os.path.abspath(path),
            spec.set_name,
            repr(spec.module),
            repr(spec.limits),
            repr(sorted(spec.env.items())),
            repr(spec.extra_sys_path),
            repr(spec.requirements),
            repr(spec.interpreter),
        ):
            h.update(part.encode("utf-8", "surrogatepass") + b"\0")
        h.update(content)
        return h.hexdigest()

    def _entry(self, key: str) -> Path:
        return self.directory / f"{key}.msgpack"

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached report (``functions`` and ``skipped``, as ``ready``
        has them), or None if there is none or it does not pass the checks
        (then it is removed). Never raises."""
        if not self._private():
            return None
        entry = self._entry(key)
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                    raise ValueError("not a file of this user's")
                data = f.read(MAX_ENTRY_BYTES + 1)
            if len(data) > MAX_ENTRY_BYTES:
                raise ValueError("too large")
            report = msgpack.unpackb(data, raw=False, strict_map_key=True)
            if not isinstance(report, dict):
                raise ValueError("not a map")
            # The same checks as a worker's report: names, shapes.
            validate_ready({"protocol": PROTOCOL_VERSION, "pid": 0, **report})
            return {"functions": report["functions"], "skipped": report.get("skipped", [])}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, ProtocolViolation, msgpack.UnpackException):
            with contextlib.suppress(OSError):
                entry.unlink()
            return None

    def put(self, key: str, ready: dict[str, Any]) -> None:
        """Keep ``ready``'s ``functions`` and ``skipped`` under ``key``.
        Never raises: a cache that cannot be written is only slower."""
        report = {"functions": ready["functions"], "skipped": ready.get("skipped", [])}
        if not self._private():
            return
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".put-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(msgpack.packb(report, use_bin_type=True))
                os.replace(tmp, self._entry(key))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except (OSError, ValueError, TypeError):
            pass
