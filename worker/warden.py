"""The two small processes around a worker in its own PID namespace (see
``worker.enclosure``): the *warden*, outside the namespace, which the host
and the zygote know as the worker and which ends the way the worker ended,
and *init*, pid 1 inside, which reaps orphans and hands the worker's wait
status to the warden.

Status travels over a pipe from init to the warden as one native ``int``
(the raw wait status). Everything here is plain system calls: the warden
and init are forks of the start sequence that never run user code.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import struct
from typing import NoReturn

from worker import sandbox

#: Exit code of a warden or init whose partner vanished without a status
#: (not expected: they are killed together).
EXIT_LOST = 75
PR_SET_NAME = 15


def _rename(name: str) -> None:
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def stay_with_warden(life_r: int) -> None:
    """In init: die with the warden. If the warden died before the signal
    was armed, its end of the life pipe is closed already: exit now."""
    sandbox.arm_parent_death()
    if select.select([life_r], [], [], 0)[0]:
        os._exit(EXIT_LOST)


def run_init(worker_pid: int, status_w: int) -> NoReturn:
    """pid 1: reap everything; hand the worker's wait status to the warden,
    then exit (the kernel kills what is left in the namespace)."""
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


def wait_for(pid: int) -> int:
    """Reap our child ``pid``; its wait status (0 if it is not ours)."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


def run_warden(
    status_r: int,
    init_pid: int,
    taken_r: int,
    parent_reaps_orphans: bool,
    name_when_taken: str | None = None,
) -> NoReturn:
    """Outside the namespace: wait for the worker's status, then end as the
    worker ended (its exit code, or killed by its signal). Never returns.

    ``name_when_taken``: for a warden entered ahead, the name to take back
    once its worker has a request (``ps`` shows a spare until then).
    ``parent_reaps_orphans``: our parent is a subreaper (the zygote), which
    reaps init after us: then we end as soon as init hands us the status,
    and init's exit (the namespace's teardown) runs beside the restart.
    Otherwise (a worker spawned by the host) we wait for init first, so
    that nothing of ours is left to be reaped by someone else."""
    if taken_r >= 0:
        # Entered ahead: a spare until the worker takes a request; then the
        # warden of a worker, under the name it had before.
        try:
            select.select([status_r, taken_r], [], [])
            if os.read(taken_r, 1) == b"t" and name_when_taken:
                _rename(name_when_taken)
        except (OSError, InterruptedError):
            pass
    data = b""
    while len(data) < 4:
        try:
            chunk = os.read(status_r, 4 - len(data))
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    if len(data) == 4 and parent_reaps_orphans:
        # The worker's status, and init is on its way out. Not waiting for
        # it keeps the namespace's teardown (unmounting, killing what is
        # left, which init's exit makes the kernel do) off the crash's path.
        status = struct.unpack("=i", data)[0]
    elif len(data) == 4:
        status = struct.unpack("=i", data)[0]
        wait_for(init_pid)
    else:
        # No status: init itself was killed (the host's SIGKILL); end the same way.
        status = wait_for(init_pid)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)  # refused for SIGKILL/SIGSTOP: fine
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else EXIT_LOST)
