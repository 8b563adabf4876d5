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
from collections.abc import Callable

from protocol import ProtocolViolation
from protocol.worker_config import WorkerConfig
from protocol.zygote_control import (
    Exited,
    Spawned,
    SpawnFailed,
    SpawnRequest,
    ZygoteConfig,
    ZygoteReply,
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
        #: Held while a request is sent (ids in order, one datagram at a time).
        self._lock = threading.Lock()
        #: Guards the tables below; notified whenever a message is stored.
        self._state = threading.Condition()
        #: A waiter is reading the socket for everyone (the others sleep on
        #: ``_state``): a worker's exit status is never held up behind a
        #: spawn's round trip, as it was when one lock covered the wait.
        self._reading = False
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
        if not self._wait(lambda: rid in self._replies, time.monotonic() + SPAWN_TIMEOUT):
            raise ZygoteError(self._violation or "the zygote did not answer a spawn request")
        with self._state:
            reply = self._replies.pop(rid)
        if isinstance(reply, SpawnFailed):
            raise ZygoteError(f"the zygote could not fork: {reply.error}")
        return reply.pid

    def wait_status(self, pid: int, timeout: float) -> int | None:
        """The exit status of a forked worker (as ``Popen.returncode``), or None."""
        if not self._wait(lambda: pid in self._statuses, time.monotonic() + timeout):
            return None
        with self._state:
            return self._statuses.pop(pid)

    def forget(self, pid: int) -> None:
        """The host knows ``pid``'s exit status already (``zombie_status``):
        its report, when the zygote gets to it, is dropped, not kept."""
        with self._state:  # held only briefly, never across a read
            self._forgotten.add(pid)
            if self._statuses.pop(pid, None) is not None:
                self._forgotten.discard(pid)

    def _wait(self, have: Callable[[], bool], deadline: float) -> bool:
        """Until ``have()`` (True) or ``deadline``, EOF or a broken control
        protocol (False). One waiter at a time reads the socket and stores
        what it reads; the others sleep until it has. A deadline already
        past still gets one look at what is there."""
        with self._state:
            looked = False
            while not have():
                now = time.monotonic()
                if self._dead:
                    return False
                if self._reading:  # another waiter reads: woken when it stored one
                    if now >= deadline:
                        return False
                    self._state.wait(deadline - now)
                    continue
                if looked and now >= deadline:
                    return False
                looked = True
                self._reading = True
                self._state.release()
                msg = None
                try:
                    msg = self._read(deadline)
                finally:
                    self._state.acquire()
                    self._reading = False
                    if msg is not None:
                        self._store(msg)
                    self._state.notify_all()
            return True

    def _read(self, deadline: float) -> ZygoteReply | None:
        """One message from the socket, or None on timeout, EOF or a message
        that breaks the control protocol (the zygote is then taken for dead:
        ``_violation`` says why). Only the waiter that is ``_reading``."""
        if self._dead:
            return None
        remaining = max(0.0, deadline - time.monotonic())  # 0: only what is there
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        if not poller.poll(min(int(remaining * 1000) + 1, 2**31 - 1)):
            return None
        try:
            data = self._sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self._dead = True
            return None
        try:
            return decode_reply(data)
        except ProtocolViolation as exc:
            self._dead = True
            self._violation = f"the zygote broke the control protocol: {exc}"
            return None

    def _store(self, msg: ZygoteReply) -> None:
        """File a message in the tables (``_state`` held)."""
        if isinstance(msg, Exited):
            if msg.pid in self._forgotten:
                self._forgotten.discard(msg.pid)
            else:
                self._statuses[msg.pid] = msg.status
        else:
            self._replies[msg.id] = msg

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
