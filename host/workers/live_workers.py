"""How many workers a host keeps alive: idle stops and a cap with LRU eviction.

A host with many sets should not need a process (and its descriptors and
memory) for each set that is not being called. ``LiveWorkers`` is the one
place that knows every ``WorkerHandle`` of a host and does two things:

- **Idle stops.** A set with ``Limits.idle_timeout`` has its worker stopped
  once it has had no call for that long. One thread per host (started only
  if some set has an idle timeout) sweeps all of them: nothing per set
  costs a thread.
- **A cap on live workers.** Before a worker is started, if the host already
  has ``cap`` live worker processes, the least recently used idle ones are
  stopped to make room. The cap is soft: when every live worker is busy
  (a call running or waiting), the new one starts anyway; the count comes
  back under the cap only as later starts stop idle workers (the sweep
  stops workers past their idle timeout, never for the cap). A call is
  never failed to honour the cap; a start waits at most ``shutdown_grace``
  for each idle worker it stops.

A stopped worker's set stays loaded: its next call starts a worker again,
at restart cost (``WorkerHandle.ready_incarnation``). Stopping is never a
crash: it does not count toward ``Limits.crash_limit``.

The default cap comes from the open-files limit: each live worker holds
``FDS_PER_WORKER`` descriptors in the host, and ``RESERVED_FDS`` (or an
eighth of the limit, if more) are left for everything else the process
does. It is computed per host when the host is made: several hosts in one
process each assume the whole limit, so a start that still runs out of
descriptors stops an idle worker and tries again
(``WorkerHandle._spawn``).
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from typing import Any, Protocol

from host.launch.launcher import raise_open_files_limit

logger = logging.getLogger("fnhost")

#: Descriptors a live worker holds in the host: its two pipes and its pidfd,
#: plus one for a set with an egress door (the gateway's copy of its listener).
FDS_PER_WORKER = 4
#: Descriptors left for the rest of the process, at least.
RESERVED_FDS = 128
#: How often the sweep looks, at most and at least (seconds).
SWEEP_MIN, SWEEP_MAX = 0.05, 1.0


class Stoppable(Protocol):
    """What ``LiveWorkers`` needs of a worker handle (``WorkerHandle``)."""

    @property
    def idle_timeout(self) -> float | None: ...

    @property
    def idle_since(self) -> float | None: ...

    @property
    def live_processes(self) -> int: ...

    def stop_if_idle(self, since: float) -> Any: ...

    def drop_standby(self) -> Any: ...

    def reap_stopped(self, stopped: Any) -> None: ...


def default_cap() -> int:
    """Live workers the open-files soft limit leaves room for (see the module),
    once the limit is raised as far as it goes (``raise_open_files_limit``,
    which the host's launcher would do a moment later)."""
    raise_open_files_limit()
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(1, (soft - max(RESERVED_FDS, soft // 8)) // FDS_PER_WORKER)


class LiveWorkers:
    """The live workers of one host, their idle stops and their cap. Thread-safe.

    ``cap``: live worker processes at most (soft, see the module); ``None``
    for ``default_cap()``. Raises ``ValueError`` for a cap below 1.
    """

    def __init__(self, cap: int | None = None) -> None:
        if cap is not None and cap < 1:
            raise ValueError("max_live_workers must be at least 1 or None")
        self.cap = default_cap() if cap is None else cap
        self._handles: set[Stoppable] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._sweeper: threading.Thread | None = None
        self._closed = False

    def add(self, handle: Stoppable) -> None:
        """Count ``handle``'s workers from now on; start the sweep if it has an idle timeout."""
        with self._lock:
            self._handles.add(handle)
            if handle.idle_timeout is not None and self._sweeper is None and not self._closed:
                self._sweeper = threading.Thread(
                    target=self._sweep_loop, name="fnhost-idle-sweep", daemon=True
                )
                self._sweeper.start()
            self._wake.notify()

    def remove(self, handle: Stoppable) -> None:
        """Forget ``handle`` (its set was closed or refused)."""
        with self._lock:
            self._handles.discard(handle)

    def make_room(self, starting: Stoppable) -> int:
        """Before ``starting`` starts a worker: if the cap is reached, drop
        other sets' standbys, then stop the least recently used idle workers
        of other sets until it is not (or none is idle). Waits for each to
        exit (up to its ``shutdown_grace``), so its descriptors are free
        when this returns, unless a call slipped in ahead of its stop
        (``WorkerHandle.reap_stopped``). Returns how many were stopped
        (standbys included); never raises."""
        with self._lock:
            handles = [h for h in self._handles if h is not starting]
        over = sum(h.live_processes for h in handles) + starting.live_processes + 1 - self.cap
        if over <= 0:
            return 0
        # Other sets' standbys first (host.workers.standby): an optimisation
        # each, where the idle worker beside it still serves its set.
        dropped: list[tuple[Stoppable, Any]] = []
        for handle in handles:
            if len(dropped) == over:
                break
            inc = handle.drop_standby()
            if inc is not None:
                dropped.append((handle, inc))
        for handle, inc in dropped:
            handle.reap_stopped(inc)
        if over - len(dropped) <= 0:
            return len(dropped)
        return len(dropped) + self.evict(handles, over - len(dropped))

    def has_room(self) -> bool:
        """Whether one more worker process fits under the cap without
        stopping another (what a standby may take: it never evicts)."""
        with self._lock:
            handles = list(self._handles)
        return sum(h.live_processes for h in handles) + 1 <= self.cap

    def evict(self, handles: list[Stoppable], count: int) -> int:
        """Stop up to ``count`` of ``handles``' idle workers, least recently
        used first, and reap them (``reap_stopped``); how many were stopped."""
        idle = [(since, h) for h in handles if (since := h.idle_since) is not None]
        idle.sort(key=lambda pair: pair[0])
        stopped: list[tuple[Stoppable, Any]] = []
        for since, handle in idle:
            if len(stopped) == count:
                break
            inc = handle.stop_if_idle(since)
            if inc is not None:
                stopped.append((handle, inc))
        for handle, inc in stopped:
            handle.reap_stopped(inc)
        return len(stopped)

    def evict_one(self, starting: Stoppable) -> bool:
        """Stop the least recently used idle worker of another set (the
        process ran out of descriptors); False if none was idle."""
        with self._lock:
            handles = [h for h in self._handles if h is not starting]
        return self.evict(handles, 1) == 1

    def sweep(self, now: float) -> float:
        """Stop every worker idle past its set's ``idle_timeout``; returns
        the seconds until the next one may be due (clamped to the sweep's
        bounds)."""
        with self._lock:
            handles = list(self._handles)
        due: list[tuple[Stoppable, Any]] = []
        wait = SWEEP_MAX
        for h in handles:
            timeout = h.idle_timeout
            since = h.idle_since
            if timeout is None:
                continue
            wait = min(wait, timeout / 4)
            if since is not None and now - since >= timeout:
                inc = h.stop_if_idle(since)
                if inc is not None:
                    due.append((h, inc))
        for h, inc in due:
            h.reap_stopped(inc)
        return max(SWEEP_MIN, wait)

    def _sweep_loop(self) -> None:
        while True:
            try:
                wait = self.sweep(time.monotonic())
            except Exception:  # never let one bad handle end the sweeps
                logger.exception("the idle sweep failed")
                wait = SWEEP_MAX
            with self._lock:
                if self._closed:
                    return
                self._wake.wait(wait)
                if self._closed:
                    return

    def close(self) -> None:
        """Stop the sweep (the host closes the workers itself); idempotent."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            sweeper = self._sweeper
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join()
