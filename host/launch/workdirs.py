"""A worker's directory in the temp dir: made for each start, removed when
the start fails, and swept after hosts that died.

``fnhost-<set>-<host pid>-<random>`` holds the worker's ``scratch`` (its
cwd, ``HOME`` and ``TMPDIR``) and its ``stdout``/``stderr`` capture files.
A worker's own removal, once it has exited, is ``tree_removal``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from host.launch.tree_removal import remove_tree


def make_workdir(set_name: str, host_pid: int) -> str:
    """A new, empty directory for a worker of ``set_name`` (``OSError`` if
    none can be made)."""
    return tempfile.mkdtemp(prefix=f"fnhost-{_safe(set_name)}-{host_pid}-")


def discard_workdir(workdir: str) -> None:
    """Remove the directory of a worker that did not start. Without opening
    anything first: a spawn that failed for want of fds (EMFILE) left at most
    the capture files and an empty scratch, which unlink and rmdir remove
    where ``remove_tree`` (which must open directories) cannot."""
    for name in ("stdout", "stderr"):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(workdir, name))
    for path in (os.path.join(workdir, "scratch"), workdir):
        with contextlib.suppress(OSError):
            os.rmdir(path)
    if os.path.lexists(workdir):
        remove_tree(workdir)


def sweep_stale_workdirs() -> int:
    """Remove worker directories of hosts that died without cleaning up
    (a SIGKILLed host cannot). Returns how many were removed.

    Never raises: a directory that cannot be removed is logged and left,
    so it cannot stop a host from starting."""
    removed = 0
    try:
        entries = os.listdir(tempfile.gettempdir())
    except OSError:
        return 0
    for name in entries:
        if not name.startswith("fnhost-"):
            continue
        parts = name.rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue
        if remove_tree(os.path.join(tempfile.gettempdir(), name)):
            removed += 1
    return removed


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
