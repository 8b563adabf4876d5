"""The zygote: a pre-loaded, single-threaded template process that forks workers.

``python -I -m worker.zygote CONFIG_JSON`` imports everything a worker
needs once, then waits on a Unix SEQPACKET socket from the host. Each spawn
request carries a worker config plus four fds (SCM_RIGHTS): the protocol
pipe ends and the stdout/stderr capture files. The zygote forks; the child
takes its own session, its capture files as fd 1/2, its scratch dir as cwd
and exactly the environment in the request, and then runs the normal start
sequence (``worker.start.run``): rlimits, parent-death signal, and only then
the user module. A fork costs a few milliseconds; a fresh interpreter tens.

To keep the fork off a restart's path, the zygote forks one child ahead of
the next request (a *spare*, named ``fnhost-spare`` while it waits). The
spare enters the worker's namespaces ahead too and splits into warden,
init and worker-to-be (``worker.enclosure``; see ``worker.spare``): the
request and its fds go over a private socket straight to the
worker-to-be, and a new spare is forked ``SPARE_DELAY`` after the reply,
when the zygote has nothing else to do (from a frame that no longer holds
the served request, which belongs to another set; the worker just handed
the request starts without a spare entering beside it on the other CPU).
How the two hand the request over is ``worker.hand_over``: a spare that is
gone, stopped, or silent for ``SPARE_ACK_TIMEOUT`` is killed and a fresh
fork takes the request (a request whose policy the head start does not
fit, a request that comes before the spare is due, and one already waiting
when the zygote starts, too). Before
forking, ``gc.freeze()`` moves everything loaded so far out of the
collector's sight, so a worker's collections do not copy those pages.

The messages on the control socket (a spawn request and its fds, the
reply, each child's exit status) are ``protocol.zygote_control``; a
request the zygote cannot read is answered with ``SpawnFailed`` naming
what is wrong (or, without a readable id, ends the zygote as an EOF does).

The zygote dies with the host (parent-death signal) and exits on EOF of
its socket; its children die with it (each warden arms its own
parent-death signal; init and the worker follow their warden).
"""

from __future__ import annotations

import _socket  # not socket: its enums cost ~3 ms of every host's first start
import gc
import json
import os
import select
import signal
import sys
import time
from typing import NoReturn

from protocol.memory_cgroup import limit_bytes
from protocol.zygote_control import (
    BadSpawnRequest,
    Exited,
    Spawned,
    SpawnFailed,
    SpawnRequest,
    ZygoteConfig,
    ZygoteReply,
    decode_spawn_request,
    encode_reply,
)
from worker import confinement, enclosure, memory_cgroup, process_table, rehearsal, sandbox
from worker import spare as spare_life
from worker.ahead import fits_ahead
from worker.hand_over import LOST, hand_over

#: How long a closing zygote reaps what it killed (the host waits 1 s for it).
LEAVE_REAP_SECONDS = 0.8


#: Imported once the zygote has been idle for a while, so that they never
#: delay a worker: later children get them free (a worker forked before that
#: imports asyncio itself on its first async call). The import takes ~20 ms,
#: during which a restart waits: after a second of idleness that is unlikely
#: to be the moment a crash or timeout needs one (an agent is usually waiting
#: for its model then).
IDLE_PRELOADS = ("asyncio",)
IDLE_AFTER = 1.0

#: How long after a request the next spare is forked. A spare entering its
#: namespaces takes ~8 ms of CPU; forked at once, it competed with the
#: worker it had just handed a request to (and with the host and the dying
#: worker) for this machine's two cores: restarts took 1-2 ms longer, more
#: when busy. Requests that come sooner (a burst of loads, a second crash)
#: get a fresh fork each, and push the spare back again.
SPARE_DELAY = 0.03


def _preload() -> None:
    import importlib

    for name in IDLE_PRELOADS:
        try:
            importlib.import_module(name)
        except Exception:  # a preload is an optimisation only
            pass


def main() -> None:
    config = ZygoteConfig.from_wire(json.loads(sys.argv[1]))
    sock = _socket.socket(fileno=config.control_fd)
    host_pid = config.host_pid
    sandbox.detach_stdin()
    sandbox.die_with_parent(host_pid)
    # Orphans in our subtree (a daemon a worker double-forked out of its
    # process group) are re-parented to us instead of to init, so we can
    # kill them: nothing a worker starts outlives it for long.
    sandbox.become_subreaper()
    rehearsal.warm_up()
    confinement.prepare(host_pid, os.getpid())
    enclosure.prepare()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    me = os.getpid()
    workers: set[int] = set()
    #: Orphans we killed: as each dies, its own children are handed to us.
    doomed: set[int] = set()
    #: (pid, socket) of the children forked ahead of the next request, if
    #: any: by whether they entered a worker's namespaces ahead (the spare
    #: for requests that fit, always kept) or not (a plain spare, kept once
    #: a request did not fit: it has joined its memory cgroup and rehearsed).
    spares: dict[bool, list[tuple[int, _socket.socket]]] = {True: [], False: []}
    spare = spares[True]
    want_plain = False
    #: Spares forked and not handed a request: their cgroups are ours to remove.
    spare_pids: set[int] = set()
    #: The memory limit of the last request served, which the next spares
    #: set on their cgroups ahead (a set's restart asks for the same one),
    #: and the limit each spare was given.
    last_limit: list[int | None] = [None]
    presets: dict[int, int | None] = {}

    def fork_spare(ahead: bool = True) -> None:
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        # The spare is born with its name: there is no moment when ps shows
        # it as a worker of ours (our name) before it renames itself.
        name = spare_life.rename(spare_life.SPARE_NAME)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return
        finally:
            if name is not None and os.getpid() == me:
                spare_life.rename(name)
        if pid == 0:
            ours.close()
            close_spare_sockets()  # the other spares' ends: no child may hold one
            spare_life.wait_as_spare(
                theirs,
                sock,
                (wake_r, wake_w),
                me,
                config.memory_cgroup,
                ahead,
                name,
                preset=last_limit[0],
            )
        theirs.close()
        spares[ahead].append((pid, ours))
        spare_pids.add(pid)
        presets[pid] = last_limit[0]
        rehearsal.rehearse_hand_over(pid)

    def close_spare_sockets() -> None:
        """In a fresh child: close our ends of the spares' sockets. A worker
        holding one could hand that spare a request of its own making and
        get a worker under a policy of its choosing."""
        for kind in spares.values():
            for _, conn in kind:
                conn.close()

    def drop_spare() -> None:
        for kind in spares.values():
            while kind:
                kind.pop()[1].close()  # EOF: it exits

    def hand_to_spare(
        request: SpawnRequest, data: bytes, fds: list[int], ahead: bool = True
    ) -> int | None:
        """Give the request to a spare of that kind (``worker.hand_over``);
        its pid, None if there is none or it did not take it (a fresh fork
        may), or ``LOST``."""
        if not spares[ahead]:
            return None
        pid, conn = spares[ahead].pop()
        return hand_over(pid, conn, presets.pop(pid, None), ahead, request, data, fds)

    def send(reply: ZygoteReply) -> None:
        try:
            sock.send(encode_reply(reply))
        except OSError:
            leave()  # the host is gone

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in workers:
                workers.discard(pid)
                send(Exited(pid, os.waitstatus_to_exitcode(status)))
                kill_orphans()
                continue
            if pid in spare_pids:
                spare_pids.discard(pid)
                presets.pop(pid, None)
                if config.memory_cgroup is not None:
                    # A spare that died, was dropped or given up on: the host
                    # never knew it (a worker's cgroup is the host's to remove).
                    memory_cgroup.remove(config.memory_cgroup, pid)
            if any(kind and kind[0][0] == pid for kind in spares.values()):
                # A spare died waiting: forget it before its pid is reused.
                for kind in spares.values():
                    if kind and kind[0][0] == pid:
                        kind.pop()[1].close()
            elif pid in doomed:
                # Its children (a daemon whose parent stayed in the dead
                # worker's group, say) became ours as it died: they go too.
                doomed.discard(pid)
                kill_orphans()
            # else: an adopted orphan that exited; nothing to report

    def kill_orphans(everyone: bool = False) -> None:
        """SIGKILL our children that are not workers (adopted escapees), with
        their process groups; with ``everyone``, the workers too."""
        keep = set() if everyone else workers | {p for kind in spares.values() for p, _ in kind}
        for pid in process_table.children(me):
            if pid not in keep:
                doomed.add(pid)
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except OSError:
                        pass

    def leave() -> NoReturn:
        kill_orphans(everyone=True)
        # Reap them before exiting (a subreaper: a killed warden's init and
        # worker come to us too), so that once the host sees the zygote gone,
        # no process of ours is left. Within the host's grace for our exit.
        deadline = time.monotonic() + LEAVE_REAP_SECONDS
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break  # none left
            if pid == 0:
                kill_orphans(everyone=True)  # the ones adopted since
                select.select([], [], [], 0.002)
        os._exit(0)

    # What every worker inherits stays out of its collector's way: a
    # collection would otherwise touch (and so copy) every inherited page.
    gc.freeze()
    preloaded = False
    control = sock.fileno()
    request: SpawnRequest | None = None
    data, fds = b"", list[int]()
    # When the spares are due (forked when the zygote finds nothing to do
    # then): at once at the start, where a request already waiting (the
    # host's first load) is served first, by a fresh fork, instead of
    # waiting for a spare to enter and rehearse; SPARE_DELAY after each
    # request later.
    spares_due: float | None = time.monotonic()
    while True:
        timeout = None if preloaded else IDLE_AFTER
        if spares_due is not None:
            timeout = max(0.0, spares_due - time.monotonic())
        try:
            readable, _, _ = select.select([control, wake_r], [], [], timeout)
        except InterruptedError:
            continue
        if not readable and spares_due is not None:
            if time.monotonic() >= spares_due:
                spares_due = None
                if not spare:
                    fork_spare()
                if want_plain and not spares[False]:
                    fork_spare(ahead=False)
            continue
        if not readable and not preloaded:
            preloaded = True
            _preload()
            gc.freeze()
            drop_spare()  # forked before the preload
            request, data, fds = None, b"", []
            fork_spare()
            if want_plain:
                fork_spare(ahead=False)
            continue
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        reap()
        if control not in readable:
            continue
        try:
            data, fds = spare_life.recv_request(sock)
        except OSError:
            leave()
        if not data:
            leave()  # EOF: the host closed us
        try:
            request = decode_spawn_request(data)
            if len(fds) != request.config.fd_count:
                raise BadSpawnRequest(
                    f"expected {request.config.fd_count} fds, got {len(fds)}", request.id
                )
        except BadSpawnRequest as exc:
            for fd in fds:
                os.close(fd)
            if exc.request_id is None:
                leave()  # no answer can reach the request: the host sees EOF
            send(SpawnFailed(exc.request_id, str(exc)))
            request, data, fds = None, b"", []
            continue
        fits = fits_ahead(request.config.sandbox)
        last_limit[0] = limit_bytes(request.config.limits)
        pid = hand_to_spare(request, data, fds, ahead=fits)
        want_plain = want_plain or not fits
        if pid == LOST:
            # A spare that answered too late, when it was given up on: it
            # may have touched them, so no other process gets these fds.
            for fd in fds:
                os.close(fd)
            send(SpawnFailed(request.id, "a spare answered too late; ask again"))
            request, data, fds = None, b"", []
            spares_due = time.monotonic() + SPARE_DELAY
            continue
        if pid is None:
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                send(SpawnFailed(request.id, f"fork failed: {exc}"))
                request, data, fds = None, b"", []  # not on a spare's stack either
                spares_due = time.monotonic() + SPARE_DELAY
                continue
            if pid == 0:
                close_spare_sockets()
                spare_life.detach(sock, (wake_r, wake_w))
                spare_life.become_worker(request, fds, me)
        for fd in fds:
            os.close(fd)
        spare_pids.discard(pid)  # a worker now: its cgroup is the host's
        workers.add(pid)
        send(Spawned(request.id, pid))
        # The next spare must not inherit this request (another set's
        # config and environment) on its stack.
        request, data, fds = None, b"", []
        if not spare or (want_plain and not spares[False]):
            spares_due = time.monotonic() + SPARE_DELAY


if __name__ == "__main__":
    main()
