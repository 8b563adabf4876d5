"""The host's end of the egress proxy (``host.egress.proxy_main``).

One ``Gateway`` per ``Launcher``, made on the first worker of a set with an
egress policy. It starts the proxy process, gives it each set's policy
(secrets read from the host's environment or files at that moment) and
each worker's door, reads the proxy's decisions on a thread of its own,
logs them (logger ``fnhost.egress``) and keeps each worker's recent ones
for ``call_detailed``. The host's call path never waits on the proxy.

A door: before a worker starts, ``open_door`` makes a socket pair and
gives the worker one end; the worker sends a listening socket in its own
network namespace back over it (``worker.egress_door``). The gateway's
thread takes it (checking that it is a listening TCP socket), keeps a copy
and passes one to the proxy. A proxy that dies is started again and given
every set and door again: connections waiting in a door's backlog are
served by the new one; the requests it was relaying fail (their
connections close). After ``MAX_RESTARTS`` deaths within
``RESTART_WINDOW`` seconds it is not started again: the gateway closes its
doors, so a worker's connections are refused at once instead of waiting.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from typing import Any

from host.egress import control
from host.egress.policy import Egress
from host.egress.record import EgressRecord

log = logging.getLogger("fnhost.egress")

MAX_RESTARTS = 5
RESTART_WINDOW = 30.0
#: Decisions kept per worker for ``call_detailed`` (a call that makes more
#: gets the last ones and a record saying how many were left out).
KEPT_PER_DOOR = 4096
#: Allowed exchanges whose end the gateway waits to hear of (bytes, status).
MAX_OPEN_EXCHANGES = 65536


class _Door:
    def __init__(self, door_id: int, key: int, set_name: str, sock: socket.socket) -> None:
        self.id = door_id
        self.key = key
        self.set_name = set_name
        #: Our end of the worker's door socket, until the listener came.
        self.sock: socket.socket | None = sock
        self.listener: int = -1
        self.records: collections.deque[EgressRecord] = collections.deque(maxlen=KEPT_PER_DOOR)
        self.count = 0
        #: ``count`` when the last call's records were taken (``since``).
        self.taken = 0


class Gateway:
    """See the module. Thread-safe; ``close`` is idempotent."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sets: dict[tuple[str, Egress], int] = {}
        self._set_messages: dict[int, dict[str, Any]] = {}
        #: Interception CAs by (set, hosts), kept for restarts of the proxy.
        self._cas: dict[tuple[str, tuple[str, ...]], tuple[bytes, bytes]] = {}
        self._doors: dict[int, _Door] = {}
        self._by_xid: dict[int, EgressRecord] = {}
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._deaths: list[float] = []
        self._broken = False
        self._closed = False
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="fnhost-egress", daemon=True)
        self._thread.start()

    # -- for the launcher --------------------------------------------------

    def open_door(self, set_name: str, egress: Egress) -> tuple[int, int, dict[str, Any]]:
        """For a worker of ``set_name`` about to start: (door id, the fd to
        pass the worker, the worker config's ``egress`` map without ``fd``).

        Raises ``ValueError`` if a credential's secret cannot be read or the
        proxy is given up on, ``RuntimeError`` if the ``egress`` extra
        (``h11``, ``cryptography``) is not installed.
        """
        pems = _read_pems(egress.upstream_cafile)  # ValueError, before anything is made
        with self._lock:
            if self._broken:
                raise ValueError("the egress proxy died too often and was given up on")
            key = self._register(set_name, egress)
            self._ensure_proxy()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            ours.setblocking(False)
            door = _Door(next(self._ids), key, set_name, ours)
            self._doors[door.id] = door
        self._wake()
        ca = self._cas.get((set_name, tuple(egress.intercepted_hosts())))
        pems = ([ca[0].decode()] if ca else []) + pems
        config = {
            "ca": "\n".join(pems) or None,
            "system_cafile": _system_cafile(),
            "allow": egress.targets,
        }
        return door.id, theirs.detach(), config

    def close_door(self, door_id: int) -> None:
        """The worker is gone: the proxy stops listening in its namespace."""
        with self._lock:
            door = self._doors.pop(door_id, None)
            if door is None:
                return
            records = set(map(id, door.records))
            for xid in [x for x, r in self._by_xid.items() if id(r) in records]:
                del self._by_xid[xid]
            self._send({"op": "close", "door": door_id})
            _close_door(door)

    def mark(self, door_id: int) -> int:
        """How many decisions the worker has had so far (``since``'s start)."""
        with self._lock:
            door = self._doors.get(door_id)
            return 0 if door is None else door.count

    def since(self, door_id: int, mark: int) -> tuple[EgressRecord, ...]:
        """The worker's decisions after ``mark`` and after those the previous
        call took, every one whose answer the worker could have seen before
        now included (``control``'s order). Exact for calls that do not
        overlap; for a call queued behind another in the worker's pipe, the
        boundary is when each caller took its records (best effort). Reads
        only what the proxy has sent (a dead proxy is the gateway thread's
        to restart, never the caller's)."""
        self._drain(on_caller=True)
        with self._lock:
            door = self._doors.get(door_id)
            if door is None:
                return ()
            new = door.count - max(mark, door.taken)
            door.taken = door.count
            if new <= 0:
                return ()
            kept = tuple(list(door.records)[-min(new, len(door.records)) :])
            if new <= len(kept):
                return kept
            omitted = EgressRecord(
                False, "omitted", "", 0, "", "",
                f"{new - len(kept)} earlier decisions of this call were not kept "
                f"(the last {len(kept)} follow)",
            )  # fmt: skip
            return (omitted, *kept)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for door in list(self._doors.values()):
                _close_door(door)
            self._doors.clear()
            control_sock, proc = self._control, self._proc
            self._control = self._proc = None
        self._wake()
        if control_sock is not None:
            control_sock.close()  # the proxy exits at EOF
        if proc is not None:
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- sets and the process ------------------------------------------------

    def _register(self, set_name: str, egress: Egress) -> int:
        """The set's key in the proxy. Its secrets are read again for each
        worker: a changed one (a rotated key file) is sent before the
        worker starts. ``ValueError`` if one cannot be read."""
        policy = egress.to_proxy()  # ValueError: a secret cannot be read
        key = self._sets.get((set_name, egress))
        if key is not None:
            message = self._set_messages[key]
            if message["policy"] != policy:
                message["policy"] = policy
                self._send(message)
            return key
        ca = None
        hosts = egress.intercepted_hosts()
        if hosts:
            ca = self._cas.get((set_name, tuple(hosts)))
            if ca is None:
                try:
                    from host.egress.certificates import make_ca
                except ImportError as exc:
                    raise RuntimeError(_missing_extra(exc)) from None
                ca = self._cas[(set_name, tuple(hosts))] = make_ca(set_name, hosts)
        key = next(self._ids)
        message = {"op": "set", "key": key, "name": set_name, "policy": policy,
                   "ca": None if ca is None else list(ca)}  # fmt: skip
        self._sets[(set_name, egress)] = key
        self._set_messages[key] = message
        self._send(message)
        return key

    def _ensure_proxy(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        try:
            import h11  # noqa: F401 - the proxy needs it; say so here, not in its stderr
        except ImportError as exc:
            raise RuntimeError(_missing_extra(exc)) from None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-m", "host.egress.proxy_main", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                env=_proxy_env(),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._control = ours
        for message in self._set_messages.values():
            self._send(message)
        for door in self._doors.values():
            if door.listener >= 0:
                self._send_door(door)
        self._wake()

    def _send(self, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
        sock = self._control
        if sock is None:
            return  # sent on (re)start
        try:
            socket.send_fds(sock, [control.encode(message)], list(fds))
        except OSError as exc:
            log.warning("egress proxy unreachable: %s", exc)

    def _send_door(self, door: _Door) -> None:
        self._send({"op": "door", "door": door.id, "set": door.key}, (door.listener,))

    # -- the thread ----------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                watched = {self._wake_r: None}
                if self._control is not None:
                    watched[self._control.fileno()] = None
                doors = {d.sock.fileno(): d for d in self._doors.values() if d.sock is not None}
            poller = select.poll()
            for fd in [*watched, *doors]:
                poller.register(fd, select.POLLIN)
            for fd, _events in poller.poll():
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                elif fd in doors:
                    self._take_listener(doors[fd])
                else:
                    self._drain()

    def _take_listener(self, door: _Door) -> None:
        """The worker's listening socket, if that is what came."""
        with self._lock:
            sock = door.sock
            if sock is None or self._doors.get(door.id) is not door:
                return
            try:
                _data, fds, _flags, _addr = socket.recv_fds(sock, 16, 1, socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return
            except OSError:
                fds = []
            door.sock = None
            sock.close()
            if len(fds) == 1 and _is_listener(fds[0]):
                door.listener = fds[0]
                self._send_door(door)
                return
            for fd in fds:
                os.close(fd)
            log.warning("set '%s': a worker's egress door brought no listening socket",
                        door.set_name)  # fmt: skip

    def _drain(self, on_caller: bool = False) -> None:
        """Everything the proxy has sent so far (without waiting). The end of
        the proxy is handled on the gateway's thread only (``on_caller``:
        a caller's thread leaves it there, it never waits for a restart)."""
        with self._lock:
            sock = self._control
            while sock is not None:
                try:
                    data = sock.recv(control.MAX_DATAGRAM, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return
                except OSError:
                    data = b""
                if not data:
                    if not on_caller:
                        self._proxy_died()
                    return
                try:
                    self._on_message(control.decode(data))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("egress proxy sent a bad message: %s", exc)

    def _on_message(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "decision":
            door = self._doors.get(message["door"])
            name = door.set_name if door is not None else "?"
            record = EgressRecord(
                bool(message["allowed"]), message["kind"], message["host"], int(message["port"]),
                message["method"], message["path"], message["reason"],
            )  # fmt: skip
            where = f"{record.method} {record.host}:{record.port}{record.path}"
            if record.allowed:
                log.info("set '%s': egress allowed: %s", name, where)
            else:
                log.warning("%s", record.reason)  # names the set
            if door is not None:
                door.records.append(record)
                door.count += 1
                if record.allowed:  # a "done" follows
                    self._by_xid[message["xid"]] = record
                    if len(self._by_xid) > MAX_OPEN_EXCHANGES:  # a "done" that never came
                        del self._by_xid[next(iter(self._by_xid))]
        elif op == "done":
            ended = self._by_xid.pop(message["xid"], None)
            if ended is not None:
                ended.status = message["status"] or None
                ended.sent, ended.received = message["sent"], message["received"]
                log.debug("egress done: %s:%s %s bytes out, %s in", ended.host, ended.port,
                          ended.sent, ended.received)  # fmt: skip
        elif op == "log":
            log.warning("%s", message["text"])

    def _proxy_died(self) -> None:
        proc, sock = self._proc, self._control
        self._proc = self._control = None
        if sock is not None:
            sock.close()
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1)
        if self._closed:
            return
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW] + [now]
        code = None if proc is None else proc.returncode
        if len(self._deaths) > MAX_RESTARTS:
            self._broken = True
            log.error("the egress proxy died %d times in %gs (last exit %s); egress is closed",
                      len(self._deaths), RESTART_WINDOW, code)  # fmt: skip
            for door in self._doors.values():
                _close_door(door)
            return
        log.warning("the egress proxy exited (%s); starting it again", code)
        try:
            self._ensure_proxy()
        except (OSError, RuntimeError) as exc:
            log.error("cannot start the egress proxy again: %s", exc)


def _proxy_env() -> dict[str, str]:
    """The proxy's environment: nothing of the host's but where OpenSSL
    finds the system's CAs, if the host's environment says (its upstream
    verification trusts what the host's own clients would)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def _close_door(door: _Door) -> None:
    if door.sock is not None:
        door.sock.close()
        door.sock = None
    if door.listener >= 0:
        with contextlib.suppress(OSError):
            os.close(door.listener)
        door.listener = -1


def _is_listener(fd: int) -> bool:
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return False
    try:
        return (
            sock.family == socket.AF_INET
            and sock.type == socket.SOCK_STREAM
            and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        )
    except OSError:
        return False
    finally:
        sock.close()


def _system_cafile() -> str | None:
    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.openssl_cafile):
        if path and os.path.isfile(path):
            return path
    return None


def _read_pems(path: str | None) -> list[str]:
    if path is None:
        return []
    try:
        with open(path, encoding="ascii") as f:
            return [f.read()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"upstream_cafile {path}: {exc}") from None


def _missing_extra(exc: ImportError) -> str:
    return (
        f"an egress policy needs the 'egress' extra ({exc.name or exc} is missing): "
        "pip install 'fnhost[egress]'"
    )
