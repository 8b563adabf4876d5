"""One running worker process as the host holds it: its pid and pidfd,
the host's ends of its pipes, its directory, its memory cgroup and egress
door; how to kill, reap and clean up after it (``WorkerProcess``), and how
an exit status reads (``describe_exit``, ``zombie_status``)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess

from host.egress.gateway import Gateway
from host.launch.memory_cgroups import MemoryCgroups
from host.launch.workdirs import remove_workdir
from host.launch.zygote import Zygote

STDERR_TAIL_BYTES = 4096


class WorkerProcess:
    """One running worker process and the host's ends of its pipes.

    Started either by ``subprocess`` (our child: ``popen``) or by the zygote
    (its child: the exit status comes from ``zygote.wait_status``).
    """

    def __init__(
        self,
        pid: int,
        req_w: int,
        resp_r: int,
        workdir: str,
        popen: subprocess.Popen | None = None,
        zygote: Zygote | None = None,
        cgroups: MemoryCgroups | None = None,
        egress_door: tuple[Gateway, int] | None = None,
    ) -> None:
        self.pid = pid
        self.cgroups = cgroups
        #: Its egress door (``host.egress.gateway``), for a set with an
        #: egress policy: the gateway and the door's id.
        self.egress_door = egress_door
        self.req_w = req_w
        self.resp_r = resp_r
        self.workdir = workdir
        self.popen = popen
        self.zygote = zygote
        self.returncode: int | None = None
        self.pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            # Our child cannot be reused before we reap it. A zygote child may
            # have died and been reaped already: then pidfd_open fails and the
            # spawn is refused below rather than watching a stranger.
            self.pidfd = os.pidfd_open(pid)
        if self.pidfd is None and zygote is not None:
            raise OSError("a worker forked by the zygote needs a pidfd")

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        if self.returncode is not None:
            return False
        assert self.pidfd is not None  # a zygote's child is refused without one
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return not poller.poll(0)

    def kill_group(self) -> None:
        """SIGKILL the worker (through its pidfd, which cannot misfire) and its
        process group (itself and the children it kept).

        Only while its exit status is unknown. Our own child cannot be reaped
        behind our back, so its pid, the group id, cannot be reused; a zygote
        child is reaped by the zygote at once, after which the group id stays
        reserved only while a member of the group lives (a reuse in that
        window needs the kernel's pids to wrap around within milliseconds).
        """
        if self.returncode is not None or (self.popen and self.popen.returncode is not None):
            return
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def reap(self, timeout: float | None = None) -> int | None:
        """Wait for the exit status (``None`` if still unknown after ``timeout``)."""
        if self.returncode is not None:
            return self.returncode
        if self.popen is not None:
            try:
                self.returncode = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        elif self.zygote is not None:
            # Dead but not yet reaped: the zygote may be busy (importing its
            # preloads, forking for a restart, which holds its lock); the
            # kernel shows the status anyway.
            status = zombie_status(self.pid)
            if status is not None:
                self.zygote.forget(self.pid)
            else:
                status = self.zygote.wait_status(self.pid, 5.0 if timeout is None else timeout)
            self.returncode = status
        return self.returncode

    def stderr_tail(self, limit: int = STDERR_TAIL_BYTES) -> str:
        """The last ``limit`` bytes the worker wrote to stderr since the last call."""
        try:
            # O_NONBLOCK: a lease the worker holds on the file (refused by its
            # syscall filter, but not every worker has one) fails the open
            # at once instead of making it wait lease-break-time.
            fd = os.open(os.path.join(self.workdir, "stderr"), os.O_RDONLY | os.O_NONBLOCK)
            with open(fd, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - limit))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def oom_killed(self) -> str | None:
        """Once it has died: ``"limit"`` if the kernel's OOM killer killed a
        process in its memory cgroup at the cgroup's limit, ``"machine"`` if
        the machine ran out of memory, else None (``MemoryCgroups``)."""
        return None if self.cgroups is None else self.cgroups.oom_killed(self.pid)

    def remove_workdir(self) -> None:
        """Remove the worker's directory (scratch and capture files) and its
        memory cgroup, once reaped.

        The pipe fds and the pidfd belong to the ``Channel`` built on them.
        Never raises: whatever the worker made there is removed (see
        ``workdirs.remove_workdir``); what cannot be is logged and left.
        """
        remove_workdir(self.workdir)
        if self.cgroups is not None:
            self.cgroups.release(self.pid)
        if self.egress_door is not None:
            self.egress_door[0].close_door(self.egress_door[1])


def describe_exit(returncode: int | None) -> tuple[int | None, str | None, str]:
    """(exit_code, signal_name, text) for a Popen return code."""
    if returncode is None:
        return None, None, "is not responding"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return None, name, f"was killed by {name}"
    return returncode, None, f"exited with status {returncode}"


def zombie_status(pid: int) -> int | None:
    """The exit status (as ``Popen.returncode``) of ``pid`` if it is a zombie
    whose status we may read, else ``None``. While unreaped its pid cannot be
    reused, so the status is this process's. A status of 0 is not trusted:
    the kernel shows 0 to readers it does not let see the real one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 50 or fields[0] != b"Z":
        return None
    status = int(fields[49])  # field 52, exit_code: the raw wait status
    return os.waitstatus_to_exitcode(status) if status else None
