"""The host's side of the zygote: start it, ask it to fork workers, learn exits.

A worker forked by the zygote is the zygote's child, not ours: the zygote
reaps it and reports its exit status over the control socket. The host
still learns of the death itself, at once, from a pidfd on the worker (a
pidfd works for any process), and asks for the status afterwards.

What travels over the control socket is ``protocol.zygote_control``; the
fds that go with a spawn request (SCM_RIGHTS) are passed here.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import sys
import threading
import time

from protocol import ProtocolViolation
from protocol.worker_config import WorkerConfig
from protocol.zygote_control import (
    Exited,
    Spawned,
    SpawnFailed,
    SpawnRequest,
    ZygoteConfig,
    decode_reply,
    encode_spawn_request,
)

SPAWN_TIMEOUT = 10.0


class ZygoteError(OSError):
    """The zygote is gone or refused a spawn (the caller may fall back)."""


class Zygote:
    """One zygote process. Thread-safe. Must be created on the launcher thread
    (its parent-death signal is tied to the creating thread)."""

    def __init__(
        self,
        host_pid: int,
        env: dict[str, str],
        memory_cgroup: str | None = None,
        argv: list[str] | None = None,
    ) -> None:
        """``argv``: the command without its config argument (default
        ``python -I -m worker.zygote`` on the host's interpreter; a set
        environment's zygote runs on that environment's)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            config = ZygoteConfig(
                control_fd=theirs.fileno(), host_pid=host_pid, memory_cgroup=memory_cgroup
            )
            command = argv or [sys.executable, "-I", "-m", "worker.zygote"]
            self.proc = subprocess.Popen(
                [*command, json.dumps(config.to_wire())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=env,
                cwd="/",
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._lock = threading.Lock()
        self._ids = 0
        self._replies: dict[int, Spawned | SpawnFailed] = {}
        self._statuses: dict[int, int] = {}
        #: Workers whose status the host learned elsewhere: drop their report.
        self._forgotten: set[int] = set()
        self._dead = False
        #: Why the zygote is taken for broken, if it broke the control protocol.
        self._violation: str | None = None

    @property
    def alive(self) -> bool:
        return not self._dead and self.proc.poll() is None

    def spawn(
        self, config: WorkerConfig, env: dict[str, str], cwd: str, fds: tuple[int, int, int, int]
    ) -> int:
        """Fork a worker with ``fds`` = (req_r, resp_w, stdout, stderr), in
        the order ``zygote_control.SPAWN_FDS`` describes; its pid.

        Raises ``ZygoteError`` if the zygote is gone, broke the control
        protocol, or cannot fork.
        """
        with self._lock:
            self._ids += 1
            rid = self._ids
            payload = encode_spawn_request(SpawnRequest(rid, config, env, cwd))
            try:
                socket.send_fds(self._sock, [payload], list(fds))
            except OSError as exc:
                self._dead = True
                raise ZygoteError(f"the zygote is gone: {exc}") from None
            deadline = time.monotonic() + SPAWN_TIMEOUT
            while rid not in self._replies:
                if not self._receive(deadline):
                    raise ZygoteError(
                        self._violation or "the zygote did not answer a spawn request"
                    )
            reply = self._replies.pop(rid)
        if isinstance(reply, SpawnFailed):
            raise ZygoteError(f"the zygote could not fork: {reply.error}")
        return reply.pid

    def wait_status(self, pid: int, timeout: float) -> int | None:
        """The exit status of a forked worker (as ``Popen.returncode``), or None."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while pid not in self._statuses:
                if not self._receive(deadline):
                    return None
            return self._statuses.pop(pid)

    def forget(self, pid: int) -> None:
        """The host knows ``pid``'s exit status already (``zombie_status``):
        its report, when the zygote gets to it, is dropped, not kept."""
        # Without the lock (a spawn may hold it for its round trip); each step
        # is atomic, and _receive checks the set after storing a status.
        self._forgotten.add(pid)
        if self._statuses.pop(pid, None) is not None:
            self._forgotten.discard(pid)

    def _receive(self, deadline: float) -> bool:
        """Read one message into the tables (lock held); False on timeout, EOF
        or a message that breaks the control protocol (the zygote is then
        taken for dead: ``_violation`` says why)."""
        if self._dead:
            return False
        remaining = max(0.0, deadline - time.monotonic())  # 0: only what is there
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        if not poller.poll(min(int(remaining * 1000) + 1, 2**31 - 1)):
            return False
        try:
            data = self._sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self._dead = True
            return False
        try:
            msg = decode_reply(data)
        except ProtocolViolation as exc:
            self._dead = True
            self._violation = f"the zygote broke the control protocol: {exc}"
            return False
        if isinstance(msg, Exited):
            self._statuses[msg.pid] = msg.status
            if msg.pid in self._forgotten:
                self._forgotten.discard(msg.pid)
                self._statuses.pop(msg.pid, None)
        else:
            self._replies[msg.id] = msg
        return True

    def close(self, grace: float = 1.0) -> None:
        """Close the socket: the zygote kills every process it still has (workers
        and adopted escapees) and exits. Killed if it has not within ``grace``."""
        self._dead = True
        with contextlib.suppress(OSError):
            self._sock.close()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
