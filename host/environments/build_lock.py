"""One builder per environment key, across threads and processes: an
exclusive ``flock`` on ``<key>.lock`` beside the environment.

The kernel drops the lock when its holder's file is closed, which a
process's death does too, so a killed builder never leaves it held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

#: How often a waiting builder tries again (flock has no timeout of its own).
POLL = 0.05


class LockTimeout(TimeoutError):
    """Another builder held the lock for longer than the wait allowed."""


@contextlib.contextmanager
def build_lock(path: str, timeout: float) -> Iterator[None]:
    """Hold the exclusive lock at ``path`` (created if needed) for the block.

    Raises ``LockTimeout`` if it is not free within ``timeout`` seconds, and
    ``OSError`` if the lock file cannot be opened.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{path} was held for more than {timeout:g} s") from None
                time.sleep(POLL)
        yield
    finally:
        os.close(fd)  # releases the lock
