"""Per-set limits: how long, how much memory, how big."""

from __future__ import annotations

from dataclasses import dataclass

from host.placement.resources import RayResources
from host.sandbox import Sandbox
from protocol.decode_budget import MIN_DECODE_BUDGET

MIB = 1024 * 1024
#: ``max_decoded_bytes`` per byte of ``max_result_mb``. Records of short
#: fields take 8-12 bytes of memory per encoded byte (their lists and maps
#: about 9), pairs of small numbers 27: a reply at the limit may be a third
#: such records.
DECODED_PER_RESULT_BYTE = 4


@dataclass(frozen=True)
class Limits:
    """Limits for one function set's worker (defaults suit agent tools).

    - ``timeout``: seconds a call may run before its worker is killed and
      ``CallTimeout`` raised (``None``: no deadline). A per-call ``timeout=``
      overrides it.
    - ``memory_mb``: address-space limit of the worker (``RLIMIT_AS``); user
      code that exceeds it gets ``MemoryError``, reported as ``out_of_memory``.
    - ``start_timeout``: seconds for a worker to import its module and report
      ready; past it the load fails (``LoadError``).
    - ``open_files``, ``file_size_mb``, ``cpu_seconds``: ``RLIMIT_NOFILE``,
      ``RLIMIT_FSIZE``, ``RLIMIT_CPU`` (``None``: unlimited).
    - ``max_processes``: processes and threads the worker may have at once,
      its children and their zombies included (``RLIMIT_NPROC``; ``None``:
      unlimited). Past it ``fork`` and ``Thread.start`` fail (``EAGAIN``).
      Set only where the count is the worker's own and the kernel applies
      it: its own uid, or its own user namespace over a uid that is not
      root (``fh.protections(set)["rlimit_processes"]``). A worker sharing
      the host's uid and user namespace would share the host user's count,
      and uid 0 (a root host's worker with ``Sandbox(own_uid=False)``) is
      exempt, so those get no such limit.
    - ``disk_mb``: size of the private tmpfs that holds the worker's scratch
      directory and its ``/dev/shm`` together (memory, not disk: it counts
      apart from ``memory_mb``; the worker gets ``ENOSPC`` past it). Only
      where the worker has its own mount namespace (``fh.protections(set)
      ["scratch_tmpfs"]``); elsewhere scratch is a directory on the host's
      temp filesystem and only ``file_size_mb`` bounds each file.
    - ``max_result_mb`` / ``max_argument_mb``: the largest encoded reply /
      request frame; a larger result is ``result_too_large``. So is a reply
      whose lists and maps would take more than ``max_decoded_bytes`` (4 ×
      ``max_result_mb``, at least 32 MiB) of the host's memory once decoded.
    - ``crash_limit`` deaths within ``crash_window`` seconds park the set for
      ``crash_window`` seconds instead of restarting it in a loop.
    - ``shutdown_grace``: seconds a worker gets to exit on ``close()`` before
      it is killed.
    - ``workers``: worker processes for the set (for CPU-bound sets); each
      call goes to the one with the fewest calls running or waiting.
    - ``idle_timeout``: seconds without a call after which the worker is
      stopped (``None``: it lives until ``close()``). The set stays loaded;
      its next call starts a worker again, at restart cost, and waits for
      it within its own timeout. An idle stop is not a crash: it never
      counts toward ``crash_limit``.
    - ``standby``: once the set's worker has died unintentionally (a crash,
      a timeout), keep a second worker ready for the next restart: started,
      confined and probed, the set not imported until it is taken (a
      restart then skips the spawn and the wall: ~6 ms instead of ~11 here).
      It costs one more process tree (~11 MB PSS) while the set is served, and is
      started only where ``max_live_workers`` has room. ``False``: none.
    - ``sandbox``: the stronger isolation layers (``Sandbox``): by default no
      network, writes only in the scratch directory, no access to other
      processes, own user namespace; each verified where the kernel allows.
    - ``placement``: what the set asks of a Ray cluster's node when its host
      places sets on Ray (``RayResources``: CPUs, memory, custom
      resources; ``docs/ray.md``). Ignored by a host that runs sets here.
    """

    timeout: float | None = 30.0
    memory_mb: int | None = 512
    start_timeout: float = 10.0
    open_files: int | None = 256
    file_size_mb: int | None = 64
    cpu_seconds: int | None = None
    max_processes: int | None = 256
    disk_mb: int | None = 256
    max_result_mb: int = 64
    max_argument_mb: int = 256
    crash_limit: int = 5
    crash_window: float = 10.0
    shutdown_grace: float = 1.0
    workers: int = 1
    idle_timeout: float | None = None
    standby: bool = True
    sandbox: Sandbox = Sandbox()
    placement: RayResources | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive or None")
        if self.start_timeout <= 0:
            raise ValueError("start_timeout must be positive")
        if self.memory_mb is not None and self.memory_mb < 64:
            raise ValueError("memory_mb below 64 cannot start a Python worker")
        if self.disk_mb is not None and self.disk_mb < 1:
            raise ValueError("disk_mb must be at least 1 or None")
        if self.crash_limit < 1:
            raise ValueError("crash_limit must be at least 1")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ValueError("idle_timeout must be positive or None")
        if not isinstance(self.sandbox, Sandbox):
            raise TypeError("sandbox must be a Sandbox")
        if self.placement is not None and not isinstance(self.placement, RayResources):
            raise TypeError("placement must be a RayResources or None")

    @property
    def max_result_bytes(self) -> int:
        return self.max_result_mb * MIB

    @property
    def max_decoded_bytes(self) -> int:
        """The memory one reply's lists and maps may take in the host once
        decoded (``protocol.decode_budget``): an empty map is one byte on
        the wire and 64 in memory, so the encoded size alone does not bound
        it. Strings and numbers take at most about 20 bytes per byte besides."""
        return max(MIN_DECODE_BUDGET, DECODED_PER_RESULT_BYTE * self.max_result_bytes)

    @property
    def max_argument_bytes(self) -> int:
        return self.max_argument_mb * MIB

    def worker_rlimits(self) -> dict[str, int | None]:
        return {
            "memory_mb": self.memory_mb,
            "open_files": self.open_files,
            "file_size_mb": self.file_size_mb,
            "cpu_seconds": self.cpu_seconds,
            "max_processes": self.max_processes,
            "disk_mb": self.disk_mb,
        }
