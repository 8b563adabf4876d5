"""A spare: a child the zygote forks ahead of its next request, and how any
child of the zygote becomes a worker.

The zygote (``worker.zygote``) keeps two kinds of spare. The *spare*
proper enters the default policy's namespaces while it waits and splits
into warden, init and worker-to-be (``worker.enclosure``), so that a
restart skips an ``unshare``, two forks and a hop; a *plain spare*, kept
once a request did not fit that policy, only joins its memory cgroup
(``worker.memory_cgroup``: the kernel's slow step) and starts the worker
from the beginning when it gets a request. Both rehearse their start while
they wait (``worker.rehearsal``), and both hand-shake the request with the
zygote (``worker.hand_over``), so that a spare the zygote gave up on never
acts on the pipes and files a fresh fork then holds. A spare exits on EOF
(the zygote dropped it, or died).
"""

from __future__ import annotations

import _socket  # not socket: its enums cost ~3 ms of every host's first start
import ctypes
import json
import os
import select
import signal
import sys

from protocol.worker_config import WorkerConfig
from protocol.zygote_control import MAX_SPAWN_FDS, SPAWN_FDS, SpawnRequest, decode_spawn_request
from worker import confinement, enclosure, memory_cgroup, private_view, rehearsal, start
from worker.ahead import AHEAD_POLICY, use_ahead
from worker.hand_over import ACK, GO_ON, LIMITED, spare_waits

PR_SET_NAME, PR_GET_NAME = 15, 16

#: What ``ps`` calls a spare while it waits (a worker takes back the name).
SPARE_NAME = "fnhost-spare"
#: ... and the worker a spare has entered its namespaces for (its init keeps
#: the spare's name until it serves).
AHEAD_NAME = "fnhost-ahead"


def recv_request(sock: _socket.socket) -> tuple[bytes, list[int]]:
    """One message and the fds passed with it (``socket.recv_fds``, inlined)."""
    data, ancdata, _, _ = sock.recvmsg(1 << 20, _socket.CMSG_LEN(MAX_SPAWN_FDS * 4))
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += [
                int.from_bytes(payload[i : i + 4], sys.byteorder, signed=True)
                for i in range(0, usable, 4)
            ]
    return data, fds


def detach(sock: _socket.socket, wake: tuple[int, int]) -> None:
    """In a fresh child: drop the zygote's signal handling and its fds."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sock.close()
    for fd in wake:
        os.close(fd)


def wait_as_spare(
    conn: _socket.socket,
    sock: _socket.socket,
    wake: tuple[int, int],
    zygote_pid: int,
    cgroup_parent: str | None,
    ahead: bool = True,
    name_before: str | None = None,
    preset: int | None = None,
) -> None:
    """A spare: wait for one spawn request from the zygote, then become that
    worker; exit on EOF (the zygote dropped it, or died). Never returns.

    While it waits it has already entered the worker's namespaces and split
    into warden (this process, which goes straight to waiting for its
    worker's end), init and the worker-to-be (``enclosure.enter``, with the
    default policy). The worker-to-be holds the socket to the zygote and
    takes the request itself, so a restart skips an ``unshare``, two forks
    and a hop. It answers at once and goes on, or waits for the zygote's
    go where the zygote says so (``worker.hand_over``). The zygote hands a
    spare only requests it fits (``ahead.fits_ahead``) and only while no
    process of it is stopped.

    Not ``ahead``: a plain spare, for the requests that do not fit; it only
    joins its memory cgroup and rehearses, then starts the worker from the
    beginning, as a fresh fork would.

    ``preset``: the memory limit of the zygote's last request, set on our
    cgroup now; the answer to a request says whether it is in force
    (``LIMITED``), and the zygote then writes none for a request with the
    same limit (the worker still checks the limit before its report).
    """
    answer = ACK
    try:
        if cgroup_parent is not None:
            # First thing (the zygote may hand us a request at once and then
            # writes the limit): before the forks below, so that init and
            # the worker-to-be are born in it.
            joined = memory_cgroup.join(cgroup_parent, os.getpid())
            if joined is not None and preset is not None:
                if memory_cgroup.set_limit(joined, preset):
                    answer = LIMITED
        detach(sock, wake)
        # Born with the spare's name (the zygote took it for the fork): ps
        # never shows a spare as a worker. ``comm`` is the one to take back.
        comm = name_before
        entered = None
        if ahead:
            os.setsid()  # the warden leads the session; init and worker join it
            # The socket to the zygote stays with the worker-to-be alone.
            entered = enclosure.enter(
                AHEAD_POLICY, [conn.fileno()], ahead=True, worker_name=AHEAD_NAME
            )
            if entered.role == "warden":
                conn.detach()  # closed by enter
                enclosure.run_warden(entered, parent_reaps_orphans=True, name_when_taken=comm)
            if entered.namespaces:
                # What its view will need to know of the paths every worker
                # reaches, now rather than on the restart's path.
                private_view.learn(confinement.readable_paths([]))
        if not select.select([conn], [], [], 0)[0]:
            # Its copy-on-write faults now, not on the restart's path; not
            # when a request is waiting already (it would only delay it).
            rehearsal.rehearse()
        data, fds = recv_request(conn)
        if not data or not SPAWN_FDS <= len(fds) <= MAX_SPAWN_FDS:
            os._exit(0)
        mode, data = data[:1], data[1:]
        if comm:
            rename(comm)  # before answering: the zygote's reply finds us renamed
        conn.send(answer)  # taken: the zygote reports our (warden's) pid
        # Read by the zygote already; decoded, and the config and the
        # process's directory and environment made as the worker's, while it
        # answers (nothing of the request's pipes and files is touched).
        request = decode_spawn_request(data)
        config: WorkerConfig | None = None
        try:
            config = handed_over(request, fds, zygote_pid)
            os.chdir(request.cwd)
            os.environ.clear()
            os.environ.update(request.env)
        except (OSError, ValueError):
            config = None  # done again by become_worker, which reports a failure
        # Nothing happens on the request's pipes and files before the zygote
        # has taken us: it reads our answer in time, or kills us and sees us
        # dead before any other process gets them (worker.hand_over); told
        # to wait, not before its GO_ON.
        if spare_waits(mode, answer) and conn.recv(1) != GO_ON:
            os._exit(0)
        if entered is not None and entered.role == "worker":
            use_ahead(entered)
        conn.close()
    except BaseException:  # noqa: BLE001 - a spare that fails only exits
        os._exit(0)
    become_worker(
        request, fds, zygote_pid, session=entered is None or entered.role == "alone", config=config
    )


def rename(name: str) -> str | None:
    """Set this process's name (``ps``, ``/proc/<pid>/comm``); the old one,
    or None if it could not be read and changed. ``prctl``, not a write to
    ``/proc/self/comm``: a warden that dropped its uid and is not dumpable
    may not open its own ``/proc`` files."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        old = ctypes.create_string_buffer(16)
        if libc.prctl(PR_GET_NAME, old, 0, 0, 0) != 0:
            return None
        if libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0) != 0:
            return None
        return old.value.decode(errors="replace")
    except (OSError, AttributeError):
        return None


def handed_over(request: SpawnRequest, fds: list[int], zygote_pid: int) -> WorkerConfig:
    """The request's config as its worker runs it, on the request's ``fds``
    (``SPAWN_FDS`` order); ``sys.argv`` shows it as a spawned worker's does
    (user code may read its out_fd there)."""
    req_r, resp_w, _, _, *door = fds
    config = request.config.handed_over(
        in_fd=req_r, out_fd=resp_w, parent_pid=zygote_pid, egress_fd=door[0] if door else None
    )
    sys.argv = [sys.argv[0], json.dumps(config.to_wire())]
    return config


def become_worker(
    request: SpawnRequest,
    fds: list[int],
    zygote_pid: int,
    session: bool = True,
    config: WorkerConfig | None = None,
) -> None:
    """Become a worker (``session``: in a session of its own; a worker
    entered ahead is in its warden's already). ``config``: ``handed_over``
    already, in the request's directory and environment (a spare does that
    while the zygote answers). Never returns."""
    try:
        if session and os.getsid(0) != os.getpid():
            os.setsid()
        _, _, out, err, *_ = fds
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        if config is None:
            os.chdir(request.cwd)
            os.environ.clear()
            os.environ.update(request.env)
            config = handed_over(request, fds, zygote_pid)
        start.run(config)
    except BaseException as exc:  # noqa: BLE001 - report, then never return to the loop
        try:
            os.write(2, f"fnhost zygote child failed to start: {exc!r}\n".encode())
        finally:
            os._exit(71)
    os._exit(71)
