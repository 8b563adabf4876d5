"""A worker's own identity and view of the system, set up while it may still.

Runs first in the start sequence (``worker.start``), before anything else
forks or registers fork hooks, and before any user code. Where the process
holds ``CAP_SYS_ADMIN`` (a host running as root: the zygote and its children
are root too), it:

1. enters new mount, IPC, PID and (for a set without network access)
   network namespaces (``unshare``);
2. splits in three (a PID namespace takes effect for children only):

   - the *warden*, this process: stays outside the PID namespace, is the
     pid the host and the zygote know, waits for ``init`` and ends the way
     the worker ended (the same exit code, or killed by the same signal);
   - *init*, pid 1 of the new namespace: mounts the private view (below),
     forks the worker, reaps every orphan, and when the worker is gone
     exits, which makes the kernel kill every process left in the
     namespace: nothing a worker starts (daemons in new sessions included)
     outlives it;
   - the *worker*, which returns from ``enclose`` and runs the rest of the
     start sequence. Inside its namespace it has the warden's pid number
     (``kernel.ns_last_pid``), so ``os.getpid()`` matches the pid the host
     reports for the set. It is not pid 1, so signals it sends itself and
     ``os.abort`` behave as anywhere else;

3. has init build the worker's filesystem view (``worker.private_view``):
   read-only outside its scratch, a capped private tmpfs scratch and
   ``/dev/shm``, its own ``/proc`` and ``devpts``, and, for a worker with
   its own uid, the paths it must read made reachable;
4. drops all three processes to their own uid and gid, ``uid_base + pid``
   (the warden's pid, unique on the machine while it lives): not the host's,
   not another worker's. The kernel then refuses ``prlimit``,
   ``setpriority``, ``sched_setaffinity``, ``ioprio_set``, signals and
   ``ptrace`` against the host and other workers, and every file the worker
   creates is its own.

Without ``CAP_SYS_ADMIN`` (a host that is not root) nothing here applies,
the report says so (``own_uid`` and the namespace claims stay false), and
the worker keeps the layers of ``worker.confinement``.

``enclose`` never raises for a layer the kernel refuses: it reports what
holds. It exits the process (warden and init never return) and raises
only if it cannot fork at all.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import struct

from worker import private_view, sandbox

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000


#: The first uid (and gid) of the range workers run as when the host is root:
#: a worker gets ``uid_base + pid`` (pids stay below ``kernel.pid_max``,
#: 4,194,304 at most). Above the ranges ``/etc/subuid`` and container
#: runtimes hand out by default, below systemd's reserved ones.
DEFAULT_UID_BASE = 0x70000000
PID_MAX_LIMIT = 4_194_304

#: Exit code of the warden when init vanished without a status (should not
#: happen: init is killed only together with the warden).
EXIT_LOST = 75


class Enclosure:
    """What ``enclose`` achieved (each True only if the kernel agreed)."""

    __slots__ = ("uid", "own_uid", "namespaces", "network", "view", "mapped")

    def __init__(self) -> None:
        self.uid: int | None = None
        self.own_uid = self.namespaces = self.network = False
        #: In a user namespace of our own with our uid mapped to root (a
        #: host that is not root); the worker must leave it (nested, unmapped).
        self.mapped = False
        self.view = private_view.View()

    def report(self) -> dict[str, bool]:
        """The layers as entered (``worker.confinement`` adds the probes)."""
        view = self.view
        return {
            "mount_namespace": self.namespaces,
            "ipc_namespace": self.namespaces,
            "scratch_tmpfs": view.tmpfs,
            "private_devpts": view.devpts,
            "private_proc": view.proc,
            "sysv_memory_capped": view.sysv,
            "read_only_view": view.read_only,
            "paths_revealed": view.revealed,
            "writable_paths_open": view.writable,
        }


_libc: list[ctypes.CDLL] = []


def _c() -> ctypes.CDLL:
    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    return _libc[0]


def prepare() -> None:
    """Open libc now (the zygote calls it, so its children skip the work)."""
    try:
        _c()
    except OSError:
        pass
    private_view.prepare()


def enclose(
    policy: dict,
    limits: dict,
    scratch: str,
    keep_fds: list[int],
    reach: list[str],
    granted: list[str],
) -> Enclosure:
    """Enter the namespaces and identity the policy asks for (see the module).

    ``policy``: the sandbox policy (``own_uid``, ``uid_base``,
    ``private_namespaces``, ``network``, ``confine_writes``,
    ``writable_paths``). ``limits``: the worker's limits map (``memory_mb``,
    ``disk_mb``). ``scratch``: the scratch directory (the cwd; its parent is
    the worker's directory). ``keep_fds``: fds only the worker may hold (the
    protocol pipes); the warden and init close them. ``reach``: paths a
    worker with its own uid must be able to reach (interpreter, import
    path); ``granted``: paths it must read whatever their modes (the set's
    directory and import paths, ``readable_paths``).

    Returns in the worker only, whose cwd is then its scratch directory
    (the private one when ``scratch_tmpfs`` holds). Raises ``OSError`` only
    if a fork fails after the namespaces were entered: the worker cannot
    start then.
    """
    result = Enclosure()
    private = policy.get("private_namespaces", True)
    if os.geteuid() != 0:
        # Not root: no uid to give away, but a user namespace in which we are
        # root gives the capabilities the rest needs; the worker leaves it
        # for a nested one with nothing mapped (worker.confinement).
        if not (private and policy.get("user_namespace", True) and _root_in_own_userns()):
            return result
        result.mapped = True
    warden_pid = os.getpid()
    uid = None
    if policy.get("own_uid", True) and not result.mapped:
        uid = int(policy.get("uid_base", DEFAULT_UID_BASE)) + warden_pid
    if private:
        no_net = not policy.get("network", False)
        flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID | (CLONE_NEWNET if no_net else 0)
        before = _namespace_ids()
        if _c().unshare(ctypes.c_int(flags)) == 0:
            # Counted only if the kernel shows new ones (pid: for children).
            after = _namespace_ids()
            result.namespaces = all(
                after[kind] != before[kind] for kind in ("mnt", "ipc", "pid_for_children")
            )
            result.network = no_net and after["net"] != before["net"]
    if result.namespaces:
        _split(keep_fds, uid)  # returns in init, pid 1 of the new namespace
        result.view = private_view.build(policy, limits, scratch, uid, reach, granted)
        if not result.view.tmpfs:
            _share_scratch(scratch, uid)
    else:
        _share_scratch(scratch, uid)
    if result.namespaces:
        # The worker's pid number inside: the warden's (set while still root).
        private_view.write_sysctl("kernel/ns_last_pid", str(warden_pid - 1))
    parent = os.getppid()
    if uid is not None:
        for fd in (1, 2):  # the capture files: /dev/stdout must open as ours
            try:
                os.fchown(fd, uid, uid)
            except OSError:
                pass
        result.own_uid = _become(uid)
        result.uid = uid if result.own_uid else None
        # A change of uid disarms the parent-death signal: arm it again.
        if result.namespaces:
            _stay_with_warden(_life_r[0])
        else:
            sandbox.die_with_parent(parent)
    if result.namespaces:
        _fork_worker(keep_fds)  # returns in the worker
    return result


def _root_in_own_userns() -> bool:
    """Enter a new user namespace with our uid and gid mapped to 0 inside:
    capabilities over the namespaces created from it, none over the host's."""
    uid, gid = os.getuid(), os.getgid()
    if _c().unshare(ctypes.c_int(CLONE_NEWUSER)) != 0:
        return False
    try:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"0 {uid} 1"),
            ("gid_map", f"0 {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError:
        return False  # in a namespace with nothing mapped: as unprivileged as before
    return os.geteuid() == 0


def _namespace_ids() -> dict[str, int | None]:
    ids: dict[str, int | None] = {}
    for kind in ("mnt", "ipc", "pid_for_children", "net"):
        try:
            ids[kind] = os.stat(f"/proc/self/ns/{kind}").st_ino
        except OSError:
            ids[kind] = None
    return ids


def _share_scratch(scratch: str, uid: int | None) -> None:
    """No private view: the host-made scratch directory becomes the
    worker's, and its directory passable (not readable) by it."""
    if uid is None:
        return
    try:
        os.chown(scratch, uid, uid)
        os.chmod(os.path.dirname(scratch), 0o711)
    except OSError:
        pass


def _become(uid: int) -> bool:
    """Drop to uid and gid ``uid`` with no supplementary groups, for good
    (the saved ids change too, capabilities are gone). True if it holds:
    switching back to root is refused."""
    try:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    except OSError:
        return False
    try:
        os.setuid(0)
    except PermissionError:
        return True
    return False


#: init's ends of its two pipes to the warden (set by ``_split``).
_status_w: list[int] = []


def _split(keep_fds: list[int], uid: int | None) -> None:
    """Fork init; this process becomes the warden. Returns in init."""
    status_r, status_w = os.pipe()
    life_r, life_w = os.pipe()
    init_pid = os.fork()
    if init_pid:
        os.close(status_w)
        os.close(life_r)
        sandbox.not_dumpable()  # no ptrace or /proc/<pid>/mem by the same uid
        _warden(init_pid, status_r, keep_fds, uid)
    sandbox.not_dumpable()
    os.close(status_r)
    os.close(life_w)
    # Dies with the warden. If the warden died before this was armed, its
    # end of the life pipe is closed already: exit now.
    _stay_with_warden(life_r)
    _status_w.append(status_w)
    _life_r.append(life_r)


def _stay_with_warden(life_r: int) -> None:
    """In init: die with the warden. If the warden died before the signal
    was armed, its end of the life pipe is closed already: exit now."""
    sandbox.arm_parent_death()
    if select.select([life_r], [], [], 0)[0]:
        os._exit(EXIT_LOST)


#: init's end of the pipe that tells it the warden is alive (``_split``).
_life_r: list[int] = []


def _fork_worker(keep_fds: list[int]) -> None:
    """In init: fork the worker, which returns; init never returns.

    The worker gets the warden's pid number inside its namespace, so that
    ``os.getpid()`` in user code is the pid the host shows for the set (and
    differs between incarnations), not 2 in every worker.
    """
    status_w = _status_w.pop()
    os.close(_life_r.pop())
    worker_pid = os.fork()
    if worker_pid == 0:
        os.close(status_w)
        sandbox.dumpable()  # as any process: its own children may debug it
        sandbox.arm_parent_death()
        if os.getppid() != 1:
            os._exit(EXIT_LOST)
        return
    _init(worker_pid, status_w, keep_fds)


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _init(worker_pid: int, status_w: int, keep_fds: list[int]) -> None:
    """pid 1: reap everything; hand the worker's wait status to the warden,
    then exit (the kernel kills what is left in the namespace)."""
    _close_fds(keep_fds)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(EXIT_LOST)
        if pid == worker_pid:
            try:
                os.write(status_w, struct.pack("=i", status))
            finally:
                os._exit(0)


def _warden(init_pid: int, status_r: int, keep_fds: list[int], uid: int | None) -> None:
    """Outside the namespace: wait for init, then end as the worker ended
    (its exit code, or killed by its signal). Never returns."""
    _close_fds(keep_fds)
    if uid is not None:
        parent = os.getppid()
        _become(uid)
        sandbox.die_with_parent(parent)  # a change of uid disarmed it
    data = b""
    while len(data) < 4:
        try:
            chunk = os.read(status_r, 4 - len(data))
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    init_status = 0
    while True:
        try:
            init_status = os.waitpid(init_pid, 0)[1]
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            break
    # No status: init itself was killed (the host's SIGKILL); end the same way.
    status = struct.unpack("=i", data)[0] if len(data) == 4 else init_status
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)  # refused for SIGKILL/SIGSTOP: fine
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else EXIT_LOST)
