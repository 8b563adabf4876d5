"""How a worker process comes to life: forked by the zygote (the default,
``host.launch.zygote``), or a plain spawn of ``python -I -m worker``.

Either way each worker gets a private directory (``scratch/`` as cwd and
HOME, and the ``stdout``/``stderr`` capture files beside it), its own
session, an environment built from an allow-list plus the caller's
``env=``, and the two protocol pipes (their fd numbers are in its config).

Spawns run on one long-lived thread owned by the launcher: the worker's
parent-death signal fires when the *thread* that forked it exits, so a
worker started from a short-lived caller thread would be killed with it.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import queue
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from host.egress.gateway import Gateway
from host.launch.env_zygotes import EnvZygotes
from host.launch.interpreter import Interpreter, worker_argv
from host.launch.memory_cgroups import MemoryCgroups
from host.launch.workdirs import discard_workdir, make_workdir, sweep_stale_workdirs
from host.launch.worker_process import WorkerProcess
from host.launch.zygote import Zygote, ZygoteError
from host.limits import Limits
from protocol.frame_limits import request_frame_limit
from protocol.worker_config import WorkerConfig

T = TypeVar("T")
_swept = False

#: Variables a worker gets besides the caller's ``env=``. HOME and TMPDIR
#: point into its scratch dir; nothing is copied from the host's environment.
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class WorkerSpec:
    """What to run: one function set, by file path or importable module name."""

    set_name: str
    path: str | None
    module: str | None
    limits: Limits
    env: dict[str, str] = field(default_factory=dict)
    extra_sys_path: tuple[str, ...] = ()
    #: Requirements the host passed for the set (``None``: what its file declares).
    requirements: tuple[str, ...] | None = None
    #: The set's own environment's interpreter (``None``: the host's).
    interpreter: Interpreter | None = None

    @property
    def source(self) -> str:
        return self.path or self.module or "?"


def worker_env(spec: WorkerSpec, scratch: str) -> dict[str, str]:
    env = {
        "PATH": BASE_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": scratch,
        "TMPDIR": scratch,
        "PYTHONUNBUFFERED": "1",  # ignored under -I; the worker flushes itself
    }
    env.update(spec.env)
    return env


def spawn_process(
    spec: WorkerSpec,
    host_pid: int,
    zygote: Zygote | None = None,
    cgroups: MemoryCgroups | None = None,
    gateway: Gateway | None = None,
    standby: bool = False,
) -> WorkerProcess:
    """Start one worker, forked by ``zygote`` or as a new interpreter, in a
    memory cgroup of its own under ``cgroups`` (where available and the
    set's sandbox asks for it), with a door to ``gateway`` for a set with
    an egress policy; a ``standby`` waits for its ``load`` before it
    imports the set (``host.workers.standby``).

    Raises ``OSError`` (``ZygoteError`` for a zygote failure), leaving
    nothing behind; ``ValueError``/``RuntimeError`` from the gateway (a
    credential that cannot be read, the ``egress`` extra missing).
    """
    limits = spec.limits
    fds: list[int] = []
    door: tuple[Gateway, int] | None = None
    egress_config = None
    workdir = make_workdir(spec.set_name, host_pid)
    try:
        egress = limits.sandbox.egress
        if egress is not None:
            if gateway is None:
                raise RuntimeError("an egress policy needs the launcher's gateway")
            door_id, door_fd, egress_config = gateway.open_door(spec.set_name, egress)
            door = (gateway, door_id)
            fds.append(door_fd)
            egress_config["fd"] = door_fd
        scratch = os.path.join(workdir, "scratch")
        os.mkdir(scratch, 0o700)
        req_r, req_w = os.pipe()
        fds += (req_r, req_w)
        resp_r, resp_w = os.pipe()
        fds += (resp_r, resp_w)
        # Read-write + append: the worker reads back and truncates its output.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        out = os.open(os.path.join(workdir, "stdout"), flags, 0o600)
        fds.append(out)
        err = os.open(os.path.join(workdir, "stderr"), flags, 0o600)
        fds.append(err)
        config = WorkerConfig(
            in_fd=req_r,
            out_fd=resp_w,
            host_pid=host_pid,
            host_uid=os.getuid(),
            set_name=spec.set_name,
            path=spec.path,
            module=spec.module,
            extra_sys_path=spec.extra_sys_path,
            limits=limits.worker_rlimits(),
            max_frame_size=request_frame_limit(limits.max_argument_bytes),
            max_result_bytes=limits.max_result_bytes,
            sandbox=limits.sandbox.worker_policy(),
            memory_cgroup=(
                cgroups.parent if cgroups is not None and limits.sandbox.memory_cgroup else None
            ),
            egress=egress_config,
            standby=standby,
        )
        door_fds = (egress_config["fd"],) if egress_config is not None else ()
        popen = None
        if zygote is not None:
            pid = zygote.spawn(
                config, worker_env(spec, scratch), scratch, (req_r, resp_w, out, err, *door_fds)
            )
        else:
            popen = subprocess.Popen(
                worker_argv(spec.interpreter, "worker", json.dumps(config.to_wire())),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=(req_r, resp_w, *door_fds),
                cwd=scratch,
                env=worker_env(spec, scratch),
                start_new_session=True,
                close_fds=True,
            )
            pid = popen.pid
    except BaseException:
        for fd in fds:
            os.close(fd)
        if door is not None:
            door[0].close_door(door[1])
        discard_workdir(workdir)
        raise
    for fd in (req_r, resp_w, out, err, *door_fds):
        os.close(fd)
    # Non-blocking host ends: reads and writes are driven by poll with deadlines.
    os.set_blocking(req_w, False)
    os.set_blocking(resp_r, False)
    try:
        return WorkerProcess(
            pid,
            req_w,
            resp_r,
            workdir,
            popen=popen,
            zygote=zygote,
            cgroups=cgroups,
            egress_door=door,
        )
    except OSError:
        os.close(req_w)
        os.close(resp_r)
        if popen is not None:
            popen.kill()
            popen.wait()
        if door is not None:
            door[0].close_door(door[1])
        discard_workdir(workdir)
        raise


#: The most open files the host asks for (its soft limit, up to the hard one).
OPEN_FILES_WANTED = 1 << 20


def raise_open_files_limit() -> int:
    """Raise this process's soft open-files limit to its hard limit (at
    most ``OPEN_FILES_WANTED``), once per process: each set holds three fds
    in the host (its pipes and pidfd), so the common default of 1,024 would
    fail a host's 340th set with "too many open files". Workers set their
    own limit (``Limits.open_files``). Returns the soft limit in force;
    never raises (a limit the kernel keeps stays)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return want
        return soft
    except (OSError, ValueError):
        return -1


#: Put on the launcher's queue to make its thread look at the jobs for later.
_WAKE: Any = ("wake",)


def _run_job(job: tuple[Callable[[], Any], Future]) -> None:
    fn, fut = job
    if not fut.set_running_or_notify_cancel():
        return
    try:
        fut.set_result(fn())
    except BaseException as exc:
        fut.set_exception(exc)


class Launcher:
    """Runs spawns (and restart jobs) on one long-lived daemon thread.

    ``start_method``: ``"zygote"`` forks workers from a pre-loaded template
    process (started on first use; if it cannot start or dies twice in a
    row, spawning falls back to a new interpreter per worker), ``"spawn"``
    starts a new interpreter per worker.
    """

    def __init__(self, start_method: str = "zygote") -> None:
        if start_method not in ("zygote", "spawn"):
            raise ValueError('start_method must be "zygote" or "spawn"')
        self.start_method = start_method
        self._zygote: Zygote | None = None
        self._zygote_failures = 0
        self.host_pid = os.getpid()
        self.cgroups = MemoryCgroups()
        #: The egress proxy's host end, made for the first egress set.
        self.gateway: Gateway | None = None
        #: One zygote per set environment's interpreter (started on first use).
        self._env_zygotes = EnvZygotes(
            self.host_pid, {"PATH": BASE_PATH, "LANG": "C.UTF-8"}, self.cgroups.parent
        )
        global _swept
        if not _swept:
            _swept = True
            sweep_stale_workdirs()
            raise_open_files_limit()
        self._lock = threading.Lock()
        self._closed = False
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future] | None] = queue.SimpleQueue()
        #: Jobs for later (``submit_later``): (due, order, job), a heap.
        self._later: list[tuple[float, int, tuple[Callable[[], Any], Future]]] = []
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name="fnhost-launcher", daemon=True)
        self._thread.start()
        if start_method == "zygote":
            # Boot it now, in the background: the first load finds it ready
            # or at least started.
            self.submit(self._ensure_zygote)

    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._until_due())
            except queue.Empty:
                job = _WAKE
            if job is None:
                break
            if job is not _WAKE:
                _run_job(job)
            for due in self._take_due():
                _run_job(due)
        # Closed: fail whatever was queued behind the stop marker, or for later.
        with self._lock:
            later, self._later = self._later, []
        left = [job for _, _, job in later]
        while not self._jobs.empty():
            job = self._jobs.get()
            if job is not None and job is not _WAKE:
                left.append(job)
        for _, fut in left:
            if fut.set_running_or_notify_cancel():
                fut.set_exception(RuntimeError("launcher is closed"))

    def _until_due(self) -> float | None:
        """Seconds until the next job for later is due (None: there is none)."""
        with self._lock:
            if not self._later:
                return None
            return max(0.0, self._later[0][0] - time.monotonic())

    def _take_due(self) -> list[tuple[Callable[[], Any], Future]]:
        now = time.monotonic()
        due = []
        with self._lock:
            while self._later and self._later[0][0] <= now:
                due.append(heapq.heappop(self._later)[2])
        return due

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        fut: Future[T] = Future()
        with self._lock:
            if self._closed:
                fut.set_exception(RuntimeError("launcher is closed"))
            else:
                self._jobs.put((fn, fut))
        return fut

    def submit_later(self, delay: float, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the launcher thread ``delay`` seconds from now (or
        later, behind the jobs then running); its future fails with
        ``RuntimeError`` if the launcher closes first."""
        fut: Future[T] = Future()
        with self._lock:
            if self._closed:
                fut.set_exception(RuntimeError("launcher is closed"))
                return fut
            heapq.heappush(self._later, (time.monotonic() + delay, next(self._order), (fn, fut)))
        self._jobs.put(_WAKE)  # the thread waits for the earliest due now
        return fut

    def spawn(self, spec: WorkerSpec, standby: bool = False) -> WorkerProcess:
        """Start a worker (a ``standby`` one: see ``spawn_process``) from the
        launcher thread; blocks until it exists.

        Raises ``OSError`` if the process cannot be created, ``RuntimeError``
        after ``close()``.
        """
        if self.on_thread():
            return self._spawn(spec, standby)
        return self.submit(lambda: self._spawn(spec, standby)).result()

    def _ensure_zygote(self) -> Zygote:
        """The running zygote, started (again) if needed. Launcher thread only."""
        if self._zygote is None or not self._zygote.alive:
            if self._zygote is not None:
                self._zygote.close()
            self._zygote = Zygote(
                self.host_pid, {"PATH": BASE_PATH, "LANG": "C.UTF-8"}, self.cgroups.parent
            )
        return self._zygote

    def _spawn_in_env(
        self, spec: WorkerSpec, interpreter: Interpreter, gateway: Gateway | None, standby: bool
    ) -> WorkerProcess:
        """``_spawn`` for a set with its own environment: through its own zygote."""
        zygotes = self._env_zygotes
        while self.start_method == "zygote" and zygotes.usable(interpreter):
            try:
                zygote = zygotes.get(interpreter)
                process = spawn_process(spec, self.host_pid, zygote, self.cgroups, gateway, standby)
                zygotes.record(interpreter, ok=True)
                return process
            except ZygoteError:
                zygotes.record(interpreter, ok=False)
        return spawn_process(
            spec, self.host_pid, cgroups=self.cgroups, gateway=gateway, standby=standby
        )

    def _spawn(self, spec: WorkerSpec, standby: bool = False) -> WorkerProcess:
        """On the launcher thread: fork from the zygote, or fall back to a spawn."""
        gateway = None
        if spec.limits.sandbox.egress is not None:
            if self.gateway is None:
                self.gateway = Gateway()
            gateway = self.gateway
        if spec.interpreter is not None:
            return self._spawn_in_env(spec, spec.interpreter, gateway, standby)
        while self.start_method == "zygote" and self._zygote_failures < 2:
            try:
                zygote = self._ensure_zygote()
                process = spawn_process(spec, self.host_pid, zygote, self.cgroups, gateway, standby)
                self._zygote_failures = 0
                return process
            except ZygoteError:
                self._zygote_failures += 1
        return spawn_process(
            spec, self.host_pid, cgroups=self.cgroups, gateway=gateway, standby=standby
        )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # The zygote first, while the launcher thread lives: its parent-death
        # signal is tied to that thread, and it must get the chance to kill
        # the escaped processes it adopted before it goes.
        zygote = self._zygote
        if zygote is not None:
            zygote.close()
        self._env_zygotes.close()
        self._jobs.put(None)
        if not self.on_thread():
            self._thread.join(timeout=5)
        if self._zygote is not None and self._zygote is not zygote:
            # Started by a job still running when we closed the first one.
            self._zygote.close()
        self._env_zygotes.close()  # again: one started by a late job
        self.cgroups.close()
        if self.gateway is not None:
            self.gateway.close()
