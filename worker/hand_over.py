"""How the zygote hands a spawn request to one of its spares, and what the
two say to each other over the spare's socket (``worker.spare`` is the
other end).

The zygote checks the spare first: every process of it (the warden, and for
a spare entered ahead its init and worker-to-be) is there and not stopped
(a worker allowed to signal others could stop one). Then it sends the
request and its fds, with one byte ahead of it that says whether the spare
may go on at once:

- ``GO``: yes. The request's memory limit is in force on the spare's
  cgroup (the zygote wrote it before sending), or there is none to set.
- ``GO_IF_LIMITED``: yes if the limit the zygote gave the spare at its fork
  (the same as the request's) is in force, which the spare knows.
- ``WAIT``: no, not before the zygote's ``g``: the zygote could not write
  the limit yet (a spare forked a moment ago has not joined its cgroup, or
  may still be setting another limit given at its fork).

The spare answers ``LIMITED`` (its limit from the fork is in force) or
``ACK`` at once. One round trip fewer than a ``g`` for every request: on
this 2-core machine each hop between processes costs 0.1-0.5 ms of a
restart.

A spare that does not answer within ``SPARE_ACK_TIMEOUT`` may still go on
later, so before a fresh fork may have the request's fds the spare's
process that would act on them is killed and seen dead (a pidfd); if its
answer came meanwhile, it had gone on, and neither gets the fds: the
request fails (the host asks again, with new ones).
"""

from __future__ import annotations

import _socket
import os
import select
import signal
import sys

from protocol.memory_cgroup import limit_bytes, worker_dir_name
from protocol.zygote_control import SpawnRequest
from worker import memory_cgroup, process_table

#: Ahead of the request: may the spare go on (see the module).
GO, GO_IF_LIMITED, WAIT = b"-", b"p", b"w"
#: The spare's answers, and the zygote's go after a ``WAIT``.
ACK, LIMITED, GO_ON = b"k", b"l", b"g"

#: How long a spare has to answer a request before a fresh fork takes it.
SPARE_ACK_TIMEOUT = 0.1
#: How long a spare that did not answer has to be seen dead once killed.
DEATH_TIMEOUT = 2.0

#: ``hand_over``'s result when neither the spare nor a fresh fork may serve.
LOST = -1


def spare_waits(mode: bytes, answer: bytes) -> bool:
    """In the spare: whether it waits for the zygote's ``GO_ON`` after
    sending ``answer`` to a request sent with ``mode`` (an unknown mode:
    it waits)."""
    return mode != GO and not (mode == GO_IF_LIMITED and answer == LIMITED)


def hand_over(
    pid: int,
    conn: _socket.socket,
    preset: int | None,
    ahead: bool,
    request: SpawnRequest,
    data: bytes,
    fds: list[int],
) -> int | None:
    """Hand ``request`` (``data``, its bytes, and its ``fds``) to the spare
    ``pid`` on ``conn``, whose cgroup it set to ``preset`` at its fork;
    ``ahead``: entered ahead (warden, init and worker-to-be), else a plain
    spare (one process).

    Returns ``pid`` once the spare took it; ``None`` if it did not and
    never will (a fresh fork may take the request); ``LOST`` if it did not
    answer in time and could not be made sure of (the request fails).
    Closes ``conn``; kills a spare that does not serve. Never raises.
    """
    target = -1
    served = False
    try:
        tree = process_table.tree(pid)
        if len(tree) not in ((1, 3) if ahead else (1,)) or not all(
            state in ("S", "R", "D") for _, state in tree
        ):
            return None
        limit = limit_bytes(request.config.limits)
        parent = request.config.memory_cgroup
        cgroup = None if parent is None else os.path.join(parent, worker_dir_name(pid))
        mode = GO
        if cgroup is not None and limit is not None:
            # The limit is the request's (its worker checks it before its
            # report). A spare joins its cgroup, and sets ``preset`` on it,
            # first thing after its fork: one forked a moment ago may not
            # have yet, and has by its answer. A limit written now could be
            # overwritten by its preset: then ours is written after.
            if preset == limit:
                mode = GO_IF_LIMITED
            elif preset is not None or not (
                memory_cgroup.member(cgroup, pid) and memory_cgroup.set_limit(cgroup, limit)
            ):
                mode = WAIT
        # The process that acts on the fds, watched from now on: a spare
        # given up on is seen dead before anyone else gets them.
        target = os.pidfd_open(tree[-1][0])
        conn.sendmsg([mode + data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _pack_fds(fds))])
        ready, _, _ = select.select([conn], [], [], SPARE_ACK_TIMEOUT)
        answer = conn.recv(1) if ready else b""
        if answer in (ACK, LIMITED):
            if spare_waits(mode, answer):
                if cgroup is not None and limit is not None and parent is not None:
                    # Moved in by us only if its own join failed (~10 ms).
                    memory_cgroup.join(parent, pid, process=pid)
                    memory_cgroup.set_limit(cgroup, limit)
                conn.send(GO_ON)
            served = True
            return pid
        # No answer in time. Waiting for our GO_ON it acts on nothing;
        # otherwise it is dead, and never answered, before a fresh fork.
        return None if mode == WAIT or _killed(target, conn) else LOST
    except OSError:
        return None if target < 0 or _killed(target, conn) else LOST
    finally:
        conn.close()
        if target >= 0:
            os.close(target)
        if not served:
            _kill(pid)


def _killed(target: int, conn: _socket.socket) -> bool:
    """Kill the spare's acting process (``target``, a pidfd) and wait for
    its end; True if it is dead without having answered (it never went on)."""
    try:
        signal.pidfd_send_signal(target, signal.SIGKILL)
    except OSError:
        pass  # gone already
    poller = select.poll()
    poller.register(target, select.POLLIN)
    if not poller.poll(int(DEATH_TIMEOUT * 1000)):
        return False
    try:
        # Its end is closed now: readable, with its answer if it sent one.
        return conn.recv(1) not in (ACK, LIMITED)
    except OSError:
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _pack_fds(fds: list[int]) -> bytes:
    return b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
