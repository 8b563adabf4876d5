"""Removing a directory tree that an untrusted process shaped.

A worker's scratch directory holds whatever its functions made: trees
thousands of levels deep (deeper than ``PATH_MAX`` and than Python's
recursion limit), directories without read, write or search bits, fifos,
sockets, files still open, names that are not valid UTF-8, symbolic links
pointing anywhere. ``shutil.rmtree`` recurses (``RecursionError`` on a deep
tree, in Python 3.11 and 3.12) and gives up on directories it cannot open.

``remove_tree`` walks iteratively and holds one directory fd at a time: it
goes down with ``openat(O_NOFOLLOW)`` (a link is unlinked, never followed),
and up with ``..``, checked against the device and inode recorded on the
way down, so a tree moved while it is being removed (by a process the
worker left behind) stops the removal instead of leading it outside.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass, field

logger = logging.getLogger("fnhost")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Passes over the tree: a process the worker left behind may add entries
#: while it is being removed.
_PASSES = 3
#: Problems kept for the log message.
_MAX_PROBLEMS = 5


@dataclass
class _Frame:
    """A directory on the way down: its name in its parent, its identity,
    and the entries still to remove (listed when it is entered)."""

    name: str
    ident: tuple[int, int]
    names: list[str] = field(default_factory=list)


def remove_tree(path: str) -> bool:
    """Remove ``path`` (a directory tree, a file or a link) and everything in it.

    Never raises: returns True when ``path`` is gone (or never existed),
    False when something could not be removed, which is then logged as a
    warning naming the first entries that stayed and why.
    """
    problems: list[str] = []
    try:
        for _ in range(_PASSES):
            problems.clear()
            _remove_once(os.path.abspath(path), problems)
            if not os.path.lexists(path):
                return True
    except Exception as exc:  # cleanup must never take the host down
        problems.append(f"{path}: {type(exc).__name__}: {exc}")
    if not problems:
        problems.append(f"{path}: entries kept appearing while it was removed")
    logger.warning("could not remove %s: %s", path, "; ".join(problems[:_MAX_PROBLEMS]))
    return False


def _remove_once(path: str, problems: list[str]) -> None:
    parent_path, top = os.path.split(path)
    try:
        cur = os.open(parent_path or "/", _DIR_FLAGS & ~os.O_NOFOLLOW)
    except OSError as exc:
        problems.append(f"{parent_path}: {exc.strerror}")
        return
    st = os.fstat(cur)
    # The bottom frame is the parent, never removed itself.
    stack = [_Frame(parent_path, (st.st_dev, st.st_ino), [top])]
    try:
        while stack:
            frame = stack[-1]
            child = _next_subdirectory(cur, frame, stack, problems)
            if child is not None:
                fd, ident = child
                os.close(cur)
                cur = fd
                stack.append(_Frame(frame.names.pop(), ident))
                try:
                    stack[-1].names = os.listdir(cur)
                except OSError as exc:
                    _note(problems, stack, "", exc.strerror)
                continue
            # Everything in this directory is gone (or reported): go up.
            done = stack.pop()
            if not stack:
                return
            parent = os.open("..", _DIR_FLAGS, dir_fd=cur)
            st = os.fstat(parent)
            os.close(cur)
            cur = parent
            if (st.st_dev, st.st_ino) != stack[-1].ident:
                _note(problems, stack, done.name, "moved while it was being removed")
                return
            try:
                os.rmdir(done.name, dir_fd=cur)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if not problems:  # else: not empty because of what was reported
                    _note(problems, stack, done.name, exc.strerror)
    finally:
        os.close(cur)


def _next_subdirectory(
    cur: int, frame: _Frame, stack: list[_Frame], problems: list[str]
) -> tuple[int, tuple[int, int]] | None:
    """Remove ``frame``'s entries from its end until one is a non-empty
    directory; return that one opened (readable, writable, searchable) and
    its identity, left last in ``frame.names``. ``None`` once all are done."""
    while frame.names:
        name = frame.names[-1]
        try:
            os.unlink(name, dir_fd=cur)  # files, fifos, sockets, links
            frame.names.pop()
            continue
        except FileNotFoundError:
            frame.names.pop()
            continue
        except IsADirectoryError:
            pass
        except OSError as exc:
            if exc.errno != errno.EPERM or not _is_directory(cur, name):
                _note(problems, stack, name, exc.strerror)
                frame.names.pop()
                continue
        try:
            os.rmdir(name, dir_fd=cur)
            frame.names.pop()
            continue
        except FileNotFoundError:
            frame.names.pop()
            continue
        except OSError:
            pass  # not empty (or not writable): go in
        try:
            return _open_directory(cur, name)
        except OSError as exc:
            _note(problems, stack, name, exc.strerror)
            frame.names.pop()
    return None


def _open_directory(parent: int, name: str) -> tuple[int, tuple[int, int]]:
    """Open ``parent``/``name`` (a directory, never through a link) for
    listing and removing, first giving it rwx for its owner if it lacks any.

    Raises ``OSError`` (``ENOTDIR``/``ELOOP`` if it is not a directory).
    """
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except PermissionError:
        _make_searchable(parent, name)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o700 != 0o700:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
    except OSError:
        os.close(fd)
        raise
    return fd, (st.st_dev, st.st_ino)


def _make_searchable(parent: int, name: str) -> None:
    """Give the directory ``parent``/``name`` rwx for its owner without
    opening it for reading (it has no read bit) and without following a link."""
    path_fd = os.open(name, os.O_PATH | _DIR_FLAGS, dir_fd=parent)
    try:
        mode = stat.S_IMODE(os.fstat(path_fd).st_mode) | 0o700
        try:
            # fchmod refuses an O_PATH fd; its /proc link names this very
            # directory, with no name lookup a swapped-in link could redirect.
            os.chmod(f"/proc/self/fd/{path_fd}", mode)
        except FileNotFoundError:  # no /proc: by name (just seen as a directory)
            os.chmod(name, mode, dir_fd=parent)
    finally:
        os.close(path_fd)


def _is_directory(parent: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _note(problems: list[str], stack: list[_Frame], name: str, reason: str | None) -> None:
    """Keep the first few problems, each with a readable path (shortened in
    the middle for deep trees)."""
    if len(problems) >= _MAX_PROBLEMS:
        return
    parts = [frame.name for frame in stack] + ([name] if name else [])
    if len(parts) > 8:
        parts = [*parts[:4], f"... ({len(parts) - 7} levels) ...", *parts[-3:]]
    where = os.path.join(*parts).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    problems.append(f"{where}: {reason or 'failed'}")
