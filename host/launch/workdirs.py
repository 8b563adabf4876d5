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


def remove_workdir(workdir: str) -> bool:
    """Remove the directory of a worker that has exited (or never existed).

    Its usual shape, the capture files and an empty scratch (what a worker
    with the scratch tmpfs made vanished with its mount namespace), goes in
    five system calls through the directory opened without following a
    link: this is on the way of a crashed call's error. Anything else (a
    worker without the tmpfs leaves what it made; a link, a directory where
    a file was) goes to ``remove_tree``. Never raises; True when it is gone.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(workdir, flags)
    except FileNotFoundError:
        return True
    except OSError:
        return remove_tree(workdir)
    try:
        for name in ("stdout", "stderr"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir("scratch", dir_fd=fd)
        emptied = True
    except OSError:
        emptied = False
    finally:
        os.close(fd)
    if emptied:
        try:
            os.rmdir(workdir)  # the last component is never followed
            return True
        except FileNotFoundError:
            return True
        except OSError:
            pass
    return remove_tree(workdir)


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
