"""A worker's own identity and view of the system, set up while it may still.

Runs first in the start sequence (``worker.start``), before anything else
forks or registers fork hooks, and before any user code, in two phases.

``enter`` (phase A; needs nothing of the request, so the zygote's spare
runs it ahead of one, off the restart's path):

1. a host that is not root first enters a user namespace in which its
   uid is 0 (capabilities over the namespaces made from it, none over the
   host's): where ``/etc/subuid`` and ``/etc/subgid`` grant the host's
   user a range, the one ``worker.subordinate_ids`` made with
   ``newuidmap``/``newgidmap``, in which the worker will have an id of
   the range; otherwise one of its own that maps only the host's uid. The
   worker later leaves it for a nested one with nothing mapped, in
   ``worker.confinement``;
2. a new PID namespace (``unshare``), then a split in three (a PID
   namespace takes effect for children only):

   - the *warden*, this process: stays outside the new namespaces, is the
     pid the host and the zygote know, waits for ``init`` and ends the way
     the worker ended (the same exit code, or killed by the same signal);
   - *init*, pid 1 of the new namespace: enters new mount, IPC (and
     network) namespaces, forks the worker, reaps every orphan, and when
     the worker is gone exits, which makes the kernel kill every process
     left in the namespace: nothing a worker starts (daemons in new
     sessions included) outlives it. The warden stays out of the mount
     namespace: its teardown (an RCU grace period) is then not on the
     warden's exit, the death the host sees (docs/sandbox.md);
   - the *worker*, which returns. Inside its namespace it has the warden's
     pid number (``kernel.ns_last_pid``), so ``os.getpid()`` matches the
     pid the host reports for the set. It is not pid 1, so signals it sends
     itself and ``os.abort`` behave as anywhere else.

   Warden and init drop to the worker's uid at once and are not dumpable.

``finish`` (phase B, in the worker, with the request): a network
namespace for a set without network access, the filesystem view
(``worker.private_view``), and the drop to its own uid and gid:
``uid_base + warden pid`` (unique on the machine while the warden lives)
where the host is root; where it is not, an id of its subordinate range
(``Grant.worker_id``), unless the set needs the host's uid (a
``writable_paths`` entry, or a module file others may not read: both
would need an idmapped mount, which only root may make). The kernel then
refuses ``prlimit``, ``setpriority``, ``sched_setaffinity``,
``ioprio_set``, signals and ``ptrace`` against the host and other
workers, and every file the worker creates is its own.

Neither raises for a layer the kernel refuses: the result says what holds
and ``worker.confinement`` probes it. ``enter`` raises ``OSError`` only if
a fork fails after the namespaces were entered (the worker cannot start).
"""

from __future__ import annotations

import ctypes
import os
from typing import NoReturn

from worker import egress_door, identity, private_view, sandbox, subordinate_ids, warden

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

#: What ``ps`` calls a worker's init.
INIT_NAME = b"fnhost-init"
PR_SET_NAME, PR_GET_NAME = 15, 16


class Enclosure:
    """What ``finish`` achieved (each True only if the kernel agreed)."""

    __slots__ = ("uid", "own_uid", "namespaces", "network", "view", "mapped", "door")

    def __init__(self) -> None:
        self.uid: int | None = None
        self.own_uid = self.namespaces = self.network = False
        #: The egress door (``worker.egress_door``): None if not tried, ""
        #: if open, else why it is not.
        self.door: str | None = None
        self.view = private_view.View()
        #: In a user namespace with the host's uid mapped to root (a host
        #: that is not root); the worker must leave it (nested, unmapped).
        self.mapped = False

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


class Entered:
    """What ``enter`` set up, as the process it returned in sees it.

    ``role``: ``"worker"`` (go on with the start), ``"warden"`` (call
    ``run_warden``), or ``"alone"`` (no namespaces: this process is the
    worker, and ``finish`` still drops its uid).
    """

    __slots__ = (
        "role", "uid", "mapped", "subordinate", "namespaces", "warden_pid", "init_pid",
        "status_r", "life_w", "parent_death", "network", "host_net", "view", "taken",
    )  # fmt: skip

    def __init__(self) -> None:
        self.role = "alone"
        self.uid: int | None = None
        self.mapped = self.namespaces = self.parent_death = self.network = False
        #: In the namespace of the host's subordinate ids (a host that is
        #: not root): ``uid`` is the worker's id there, not the host's.
        self.subordinate = False
        #: The network namespace we left (an fd), to go back to for a
        #: request with network access (entered ahead, root only); or -1.
        self.host_net = -1
        self.view = private_view.View()
        #: Entered ahead: a pipe on which the worker tells the warden that a
        #: request came (the warden's end in the warden, the other in the
        #: worker), or -1.
        self.taken = -1
        self.warden_pid = os.getpid()
        self.init_pid = self.status_r = self.life_w = -1


_libc: list[ctypes.CDLL] = []


def _c() -> ctypes.CDLL:
    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    return _libc[0]


def prepare() -> None:
    """Open libc now, and make the namespace of the host's subordinate ids
    (a host that is not root; ``worker.subordinate_ids``): the zygote calls
    it, so its children skip the work."""
    try:
        _c()
    except OSError:
        pass
    private_view.load()
    subordinate_ids.prepare()


def prepare_ids(policy: dict) -> None:
    """In a worker that is not the zygote's: make the namespace of the
    host's subordinate ids now if ``enter`` will use it (a host that is not
    root, a policy with ``own_uid``, private and user namespaces). Before
    ``no_new_privs``: the tools it runs are setuid."""
    if _wants_ids(policy):
        subordinate_ids.prepare()


def _wants_ids(policy: dict) -> bool:
    return (
        os.geteuid() != 0
        and bool(policy.get("private_namespaces", True))
        and bool(policy.get("user_namespace", True))
        and bool(policy.get("own_uid", True))
    )


def enclose(
    policy: dict,
    limits: dict,
    scratch: str,
    keep_fds: list[int],
    reach: list[str],
    granted: list[str],
    parent_reaps_orphans: bool = False,
    egress_fd: int | None = None,
    ahead: Entered | None = None,
) -> Enclosure:
    """Both phases (or only ``finish``, for a worker entered ``ahead``:
    ``worker.ahead``).

    ``policy``: the sandbox policy (``own_uid``, ``uid_base``,
    ``private_namespaces``, ``user_namespace``, ``network``,
    ``confine_writes``, ``writable_paths``). ``limits``: the worker's limits
    map (``memory_mb``, ``disk_mb``). ``scratch``: the scratch directory
    (the cwd; its parent is the worker's directory). ``keep_fds``: fds only
    the worker may hold (the protocol pipes); the warden and init close
    them. ``reach``: paths a worker with its own uid must be able to reach
    (interpreter, import path); ``granted``: paths it must read whatever
    their modes (the set's directory and import paths, ``readable_paths``).
    ``parent_reaps_orphans``: see ``run_warden``. ``egress_fd``: the door
    socket of an egress set, opened (and closed) in the worker's own network
    namespace while the worker may still raise its loopback.

    Returns in the worker only, whose cwd is then its scratch directory
    (the private one when ``scratch_tmpfs`` holds). Raises ``OSError`` only
    if a fork fails: the worker cannot start then.
    """
    entered = ahead if ahead is not None else enter(policy, keep_fds)
    if entered.role == "warden":
        run_warden(entered, parent_reaps_orphans=parent_reaps_orphans)
    return finish(entered, policy, limits, scratch, reach, granted, egress_fd)


def enter(
    policy: dict, keep_fds: list[int], ahead: bool = False, worker_name: str | None = None
) -> Entered:
    """Phase A (see the module). Returns in the warden and in the worker;
    init never returns. ``keep_fds``: fds only the worker may hold (closed
    in warden and init). ``ahead``: entered before the request is known
    (the zygote's spare): the worker keeps the host's network namespace at
    hand (``Entered.host_net``) for a request with network access.
    ``worker_name``: the worker's process name (default: this process's).
    Raises ``OSError`` if a fork fails."""
    entered = Entered()
    private = policy.get("private_namespaces", True)
    # Whatever happens, this process gives up its fd of the subordinate ids'
    # namespace here (enter does, or release): no user code may hold it.
    grant = subordinate_ids.enter() if _wants_ids(policy) else None
    subordinate_ids.release()
    if grant is not None:
        entered.mapped = entered.subordinate = True
        entered.uid = grant.worker_id(entered.warden_pid)
    elif os.geteuid() != 0:
        if not (private and policy.get("user_namespace", True) and identity.root_in_own_userns()):
            return entered
        entered.mapped = True
    if policy.get("own_uid", True) and not entered.mapped:
        entered.uid = int(policy.get("uid_base", DEFAULT_UID_BASE)) + entered.warden_pid
    if not private:
        return entered
    no_net = not policy.get("network", False)
    if no_net and ahead and not entered.mapped:
        entered.host_net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    before = _namespace_ids()
    if _c().unshare(ctypes.c_int(CLONE_NEWPID)) != 0:
        return entered
    if _namespace_ids()["pid_for_children"] == before["pid_for_children"]:
        return entered  # counted only if the kernel shows a new one
    status_r, status_w = os.pipe()
    life_r, life_w = os.pipe()
    taken_r, taken_w = os.pipe() if ahead else (-1, -1)
    name = _name()
    parent = os.getppid()
    init_pid = os.fork()
    if init_pid:
        os.close(status_w)
        os.close(life_r)
        _close_fds([*keep_fds, entered.host_net, taken_w])
        entered.host_net, entered.taken = -1, taken_r
        sandbox.not_dumpable()  # no ptrace or /proc/<pid>/mem by the same uid
        if entered.uid is not None:
            identity.become(entered.uid)
        # Armed here whatever happened before: a spare is a fresh fork (the
        # signal is not inherited) and a change of uid disarms it.
        entered.parent_death = sandbox.die_with_parent(parent)
        entered.role = "warden"
        entered.init_pid, entered.status_r, entered.life_w = init_pid, status_r, life_w
        return entered
    # init, pid 1 of the new namespace: dies with the warden.
    _close_fds([taken_r])
    _c().prctl(PR_SET_NAME, INIT_NAME, 0, 0, 0)
    sandbox.not_dumpable()
    os.close(status_r)
    os.close(life_w)
    warden.stay_with_warden(life_r)
    # Not the warden's (see the module). Counted only if the kernel shows
    # new ones; if not, the worker reports none.
    flags = CLONE_NEWNS | CLONE_NEWIPC | (CLONE_NEWNET if no_net else 0)
    if _c().unshare(ctypes.c_int(flags)) == 0:
        after = _namespace_ids()
        entered.namespaces = all(after[kind] != before[kind] for kind in ("mnt", "ipc"))
        entered.network = entered.namespaces and no_net and after["net"] != before["net"]
    # The worker's pid number inside: the warden's (set while still root).
    private_view.write_sysctl("kernel/ns_last_pid", str(entered.warden_pid - 1))
    worker_pid = os.fork()
    if worker_pid == 0:
        os.close(status_w)
        os.close(life_r)
        sandbox.dumpable()  # as any process: its own children may debug it
        # Not init's name: this process's, or the one asked for.
        _c().prctl(PR_SET_NAME, worker_name.encode()[:15] if worker_name else name, 0, 0, 0)
        entered.parent_death = sandbox.arm_parent_death()
        if os.getppid() != 1:
            os._exit(warden.EXIT_LOST)
        entered.role = "worker"
        entered.taken = taken_w
        entered.view = private_view.prepare(bool(policy.get("confine_writes", True)))
        return entered
    _close_fds([*keep_fds, entered.host_net, taken_w])
    if entered.uid is not None:
        identity.become(entered.uid)
        warden.stay_with_warden(life_r)  # a change of uid disarmed it
    os.close(life_r)
    warden.run_init(worker_pid, status_w)


def finish(
    entered: Entered,
    policy: dict,
    limits: dict,
    scratch: str,
    reach: list[str],
    granted: list[str],
    egress_fd: int | None = None,
) -> Enclosure:
    """Phase B, in the worker (see the module and ``enclose``)."""
    result = Enclosure()
    result.mapped, result.namespaces = entered.mapped, entered.namespaces
    uid = entered.uid
    if entered.subordinate and not _may_leave_host_uid(entered, policy, granted):
        uid = None  # stays root here (the host's uid), then leaves as without a range
    if entered.namespaces:
        wants_network = bool(policy.get("network", False))
        if wants_network and entered.network:
            # Entered ahead without network: back to the host's (root only;
            # fits_ahead sends other requests elsewhere).
            if entered.host_net < 0 or _c().setns(entered.host_net, CLONE_NEWNET) != 0:
                raise OSError("cannot return to the host's network namespace")
        elif not wants_network and not entered.network:
            before = _namespace_ids()["net"]
            if _c().unshare(ctypes.c_int(CLONE_NEWNET)) == 0:
                entered.network = _namespace_ids()["net"] != before
        result.network = entered.network and not wants_network
        if result.network and egress_fd is not None and policy.get("egress"):
            result.door = egress_door.open_door(egress_fd) or ""  # before we drop our caps
        _close_fds([entered.host_net])
        result.view = private_view.build(entered.view, policy, limits, scratch, uid, reach, granted)
        if entered.subordinate and not result.view.tmpfs:
            # Its scratch would be the host's directory, which the host could
            # not clean up once a subordinate uid owned it.
            uid = None
        elif not result.view.tmpfs:
            identity.share_scratch(scratch, uid)
    else:
        identity.share_scratch(scratch, uid)
    if uid is not None:
        identity.open_capture_files(uid, entered.subordinate)
        parent = os.getppid()
        result.own_uid = identity.become(uid)
        if entered.subordinate:
            # Its uid and gid as the kernel maps them: neither is the host's
            # (ours were 0 here, the host's ids).
            result.own_uid = result.own_uid and all(
                subordinate_ids.outside(uid, kind) not in (None, subordinate_ids.outside(0, kind))
                for kind in ("uid", "gid")
            )
        result.uid = uid if result.own_uid else None
        # A change of uid disarms the parent-death signal: arm it again.
        sandbox.die_with_parent(parent)
    return result


def _may_leave_host_uid(entered: Entered, policy: dict, granted: list[str]) -> bool:
    """Whether a worker of a host that is not root may take its
    subordinate id: the policy wants an own uid, and nothing needs the
    host's (a writable path, a module file others may not read: a root host
    gives its workers those through idmapped mounts, which need root)."""
    return (
        entered.namespaces
        and bool(policy.get("own_uid", True))
        and not policy.get("writable_paths")
        and all(private_view.open_to_others(path, 0o004) for path in granted)
    )


def _name() -> bytes:
    """This process's name (``/proc/self/comm``)."""
    buffer = ctypes.create_string_buffer(16)
    _c().prctl(PR_GET_NAME, buffer, 0, 0, 0)
    return buffer.value


def _namespace_ids() -> dict[str, int | None]:
    ids: dict[str, int | None] = {}
    for kind in ("mnt", "ipc", "pid_for_children", "net"):
        try:
            ids[kind] = os.stat(f"/proc/self/ns/{kind}").st_ino
        except OSError:
            ids[kind] = None
    return ids


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def run_warden(
    entered: Entered, parent_reaps_orphans: bool, name_when_taken: str | None = None
) -> NoReturn:
    """The warden's life (``worker.warden.run_warden``) for what ``enter``
    returned in the warden. Never returns."""
    warden.run_warden(
        entered.status_r, entered.init_pid, entered.taken, parent_reaps_orphans, name_when_taken
    )
