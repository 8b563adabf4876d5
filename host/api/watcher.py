"""Hot reload by polling: reload a function set when its file changes.

Polling modification times is enough here: function sets are a handful of
files, a stat costs microseconds, and polling works on every file system
(no inotify limits, no extra dependency).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from host.errors import HostError

logger = logging.getLogger("fnhost")


def file_stamp(path: str) -> tuple[int, int] | None:
    """(mtime_ns, size) of ``path``, or None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def settled_stamp(
    set_name: str, path: str | None, before: tuple[int, int] | None
) -> tuple[int, int] | None:
    """The stamp ``watch`` compares against once a set has loaded: the one
    taken ``before`` its worker read the file, unless the file changed
    while the worker loaded it. Then the new one, with a warning: a set
    that may write its own file (``writable_paths``) and edits it as it
    imports would otherwise be reloaded on every poll, each reload starting
    a worker (and, at ``max_live_workers``, stopping another set's). Such a
    change is loaded by ``reload()``, or by the next edit."""
    if path is None or before is None:
        return before
    after = file_stamp(path)
    if after != before:
        logger.warning(
            "function set %r: its file changed while it loaded (by the set itself, or an "
            "edit at that moment); watch does not reload it for that change: call "
            "reload(%r) to load what the file holds now",
            set_name,
            set_name,
        )
    return after


class Watcher:
    """Calls ``reload(name)`` for every set whose file stamp changed.

    ``targets()`` returns ``{set name: (path, stamp when loaded)}`` for the
    sets loaded from files, so an edit made right after loading is seen.
    A failed reload is logged (the host keeps the last good version and
    records the error in ``load_errors``) and not retried until the file
    changes again.
    """

    def __init__(
        self,
        targets: Callable[[], dict[str, tuple[str, tuple[int, int] | None]]],
        reload: Callable[[str], object],
        interval: float,
    ) -> None:
        self._targets = targets
        self._reload = reload
        self._interval = interval
        self._stamps: dict[str, tuple[int, int] | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fnhost-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.check()

    def check(self) -> None:
        """One polling pass (also callable directly, e.g. from tests)."""
        for name, (path, loaded_stamp) in self._targets().items():
            stamp = file_stamp(path)
            known = self._stamps.setdefault(name, loaded_stamp)
            if stamp == known:
                continue
            self._stamps[name] = stamp
            try:
                changes = self._reload(name)
            except HostError as exc:
                logger.error(
                    "reloading function set %r failed; the last good version keeps serving: %s",
                    name,
                    exc,
                )
                continue
            except Exception:  # never let the watcher thread die
                logger.exception("reloading function set %r failed", name)
                continue
            logger.info("reloaded function set %r: %s", name, changes)

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
