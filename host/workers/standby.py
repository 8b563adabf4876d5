"""A set's standby: a second worker kept ready to replace the current one
after a crash, so that a restart skips the spawn and the wall.

A restart costs a set ~10 ms on this machine kind, and most of it is not
the set's import: the zygote's hand-over (~1 ms), the worker's view,
identity and filters (~4 ms), each hop between processes that a busy
machine delays. Once a set's worker has died unintentionally (a crash, a
timeout, a protocol error, a recycle), ``STANDBY_DELAY`` after its
replacement is ready (a call waited for it), a standby is started: the same spec, spawned the
same way, confined and probed, but waiting for the host's ``load``
before it imports the set (``WorkerConfig.standby``, ``worker.standby``).
The next restart takes it (``_take_standby``): one message, then the
import, the schemas and ``ready``; and a new standby is started after.

No user code runs in a standby before it is taken, so it holds nothing of
the set's but its place: it imports the set's file as it is at the
restart. Its view was built at its spawn, though, and where the file or
its directory is mounted into it as a clone (a file others may not read,
a directory they may not search) a file replaced since (renamed over, as
editors, ``git`` and deploys do) would show it the old one: a standby is
taken only if the set's file and directory are the ones it was spawned
with (``_source_identity``), else it is dropped and the restart spawns.
``Limits(standby=False)`` keeps none. A standby costs a worker's memory
without the set's imports (~11 MB PSS for its warden, init and worker,
6.4 MB of it private), one more process counted
under ``max_live_workers`` (a standby is only started where one more
fits; it never evicts, and is the first to go when another set's worker
needs room), and three more fds in the host. It is dropped
(killed and reaped) when the set stops being served as before: an idle
stop, a new spec, the host's close. A standby that died while it waited
(the OOM killer, a kill from outside) is dropped when a restart finds it
dead, and that restart spawns as before; its death is not counted
against the set.

Borrowed from pebble's pool (``pool/process.py``): the bookkeeping of a
worker kept for later apart from the life of the one serving.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from host.launch.launcher import Launcher, WorkerSpec
from host.workers.crash_loop import CrashLoop
from host.workers.incarnation import CLOSING, REAP_TIMEOUT, Incarnation
from host.workers.live_workers import LiveWorkers
from protocol import Verb

#: Seconds after a restart's worker is ready before its standby is
#: started: not beside the restart, which it would slow on two cores.
STANDBY_DELAY = 0.05
#: How many times a standby waits ``STANDBY_DELAY`` more for the
#: replacement to become ready before it gives up (until the next restart).
STANDBY_TRIES = 40


class Standby:
    """The standby half of ``WorkerHandle`` (see the module)."""

    spec: WorkerSpec
    name: str
    current: Incarnation | None
    _lock: threading.Lock
    _closed: bool
    _crashes: CrashLoop
    _launcher: Launcher
    _live: LiveWorkers | None
    _retiring: set[Incarnation]
    _log: logging.Logger

    #: The worker waiting for its ``load``, if any.
    _standby: Incarnation | None = None
    #: A restart followed an unintended death: keep a standby.
    _standby_wanted: bool = False

    #: ``WorkerHandle._spawn`` and ``WorkerStops._stop``.
    _spawn: Callable[..., Incarnation]
    _stop: Callable[..., None]

    def _want_standby(self) -> None:
        """A restart that followed a death (lock held): the set keeps a
        standby from now on (``Limits.standby``), started once its new
        worker is ready (``_standby_due``). Never blocks."""
        if self.spec.limits.standby:
            self._standby_wanted = True

    def _standby_due(self, tries: int = STANDBY_TRIES) -> None:
        """The current worker just became ready: start a standby
        ``STANDBY_DELAY`` from now, on the launcher thread, if the set
        wants one and has none. Never blocks."""
        if self._standby_wanted and self._standby is None and tries > 0:
            self._launcher.submit_later(STANDBY_DELAY, lambda: self._start_standby(tries - 1))

    def _start_standby(self, tries: int) -> None:
        """On the launcher thread: start the standby if the set still wants
        one, has none, and its current worker is ready and serving (else
        try again later, up to ``tries`` more times). Never raises."""
        if not self._lock.acquire(blocking=False):
            self._standby_due(tries)  # a caller (re)starting the worker: later
            return
        try:
            if (
                self._closed
                or not self._standby_wanted
                or self._standby is not None
                or self._crashes.parked()
            ):
                return
            inc = self.current
            if inc is None or inc.channel.broken or inc.kill_reason is not None:
                return
            if inc.ready is None:
                self._standby_due(tries)  # still starting: not beside it
                return
            if self._live is not None and not self._live.has_room():
                return
            source = _source_identity(self.spec)  # before the spawn: conservative
            try:
                standby = self._spawn(standby=True)
            except Exception as exc:  # noqa: BLE001 - a standby is an optimisation only
                self._log.debug("no standby for %s: %s", self.name, exc)
                return
            # Until it is taken its death is no crash of the set's.
            standby.death_counted = True
            standby.standby_source = source
            self._standby = standby
            if self._closed or standby.spec is not self.spec or not self._standby_wanted:
                # A close or a respec that began while it was spawning (neither
                # takes the lock): each reads _standby after its own change, so
                # one of us sees the other. A respec would leave a standby of
                # the old spec (environment) to serve after the next crash.
                self._standby = None
                standby.kill(CLOSING, "its standby was dropped")
                standby.channel.wait(standby.channel.exit, time.monotonic() + REAP_TIMEOUT)
                standby.channel.close()
                standby.proc.remove_workdir()
        finally:
            self._lock.release()

    def _take_standby(self) -> Incarnation | None:
        """The standby, told to load (lock held), or None if there is none
        or it died meanwhile (dropped then). Its start clock starts now:
        ``start_timeout`` counts from its ``load``."""
        standby, self._standby = self._standby, None
        if standby is None:
            return None
        ch = standby.channel
        ch.wait(ch.exit, time.monotonic())  # a death it had meanwhile is seen now
        if (
            ch.broken
            or standby.kill_reason is not None
            or standby.standby_source != _source_identity(standby.spec)
            or not ch.notify(Verb.LOAD, {})
        ):
            self._release_standby(standby)
            return None
        standby.started = time.monotonic()
        standby.death_counted = False
        standby.was_standby = True
        return standby

    def drop_standby(self) -> Incarnation | None:
        """Kill the standby, if any, to make room for another set's worker
        (``LiveWorkers.make_room``), and keep none until the next death;
        the killed incarnation, for ``reap_stopped``, or None. Never blocks:
        a handle busy (re)starting keeps its standby."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self._standby_wanted = False
            standby, self._standby = self._standby, None
            if standby is not None:
                self._retiring.add(standby)
                standby.kill(CLOSING, "its standby made room for another set's worker")
            return standby
        finally:
            self._lock.release()

    def _drop_standby(self, reap: bool = True) -> None:
        """Kill the standby, if any, and stop wanting one. ``reap``: release
        it on a thread of its own; else it is left in ``_retiring`` for
        the caller (a close) to reap."""
        self._standby_wanted = False
        standby, self._standby = self._standby, None
        if standby is not None:
            if reap:
                self._release_standby(standby)
            else:
                self._retiring.add(standby)
                standby.kill(CLOSING, "its standby was dropped")

    def _release_standby(self, standby: Incarnation) -> None:
        standby.kill(CLOSING, "its standby was dropped")
        self._retiring.add(standby)
        threading.Thread(
            target=self._stop,
            args=(standby, time.monotonic() + REAP_TIMEOUT),
            name=f"fnhost-standby-{self.name}",
            daemon=True,
        ).start()


def _source_identity(spec: WorkerSpec) -> tuple[int, ...] | None:
    """The set's file and its directory as (device, inode) pairs (None for
    a set imported by name, or one whose file is missing): what a worker's
    view, built at its spawn, holds of them."""
    if spec.path is None:
        return None
    try:
        real = os.path.realpath(spec.path)
        file, directory = os.stat(real), os.stat(os.path.dirname(real))
    except OSError:
        return None
    return (file.st_dev, file.st_ino, directory.st_dev, directory.st_ino)
