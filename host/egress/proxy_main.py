"""The egress proxy process: ``python -I -m host.egress.proxy_main FD``.

Started by the host (``host.egress.gateway``) on demand and again if it
dies; never part of the host process, since hostile bytes from workers
reach its HTTP and TLS parsing here. ``FD`` is its end of the control
socket (``host.egress.control``). It serves until that socket closes (the
host closed it, or died), then exits.

It holds the sets' policies (secrets included) in memory only, is not
dumpable (no other process of its uid may read its memory or attach to
it), writes no core file, and keeps within ``OPEN_FILES`` descriptors and
``ADDRESS_SPACE`` bytes.
Each door (a listening socket in one worker's network namespace) is served
by ``asyncio``; each connection by ``host.egress.exchange.serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import resource
import select
import socket
import sys
from typing import Any

from host.egress import control
from host.egress.exchange import serve
from host.egress.set_rules import SetRules

OPEN_FILES = 8192
#: Address space: a backstop (its memory per connection is bounded: heads,
#: reads and decoded pieces of at most 64 KiB each).
ADDRESS_SPACE = 4 << 30
PR_SET_DUMPABLE = 4


class _Door:
    def __init__(self, key: int, sock: socket.socket) -> None:
        self.key = key
        self.sock = sock
        self.server: asyncio.base_events.Server | None = None
        self.open = 0


class Proxy:
    def __init__(self, sock: socket.socket) -> None:
        self.control = sock
        self.sets: dict[int, SetRules] = {}
        self.doors: dict[int, _Door] = {}
        self.finished = asyncio.Event()
        self.dropped = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._on_loop_error)
        self.control.setblocking(False)
        loop.add_reader(self.control.fileno(), self._on_control)
        self.send({"op": "ready"})
        await self.finished.wait()

    # -- the host's side -------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """To the host, at once (a decision must be there before the worker
        sees its answer). A host that does not read for a second loses the
        message (counted), rather than stalling every worker."""
        data = control.encode(message)
        for _ in range(2):
            try:
                self.control.send(data)
                return
            except BlockingIOError:
                select.select([], [self.control], [], 1.0)
            except OSError:
                self.finished.set()
                return
        self.dropped += 1

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        text = str(context.get("exception") or context.get("message"))
        self.send({"op": "log", "text": f"egress proxy: {text}"[:2000]})

    def _on_control(self) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(
                    self.control, control.MAX_DATAGRAM, 1, socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self.finished.set()
                asyncio.get_running_loop().remove_reader(self.control.fileno())
                return
            try:
                self._handle(control.decode(data), fds)
            except (ValueError, KeyError, TypeError) as exc:
                for fd in fds:
                    os.close(fd)
                self.send({"op": "log", "text": f"egress proxy: bad control message: {exc}"})

    def _handle(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message["op"]
        if op == "set":
            self._add_set(message)
        elif op == "door":
            if len(fds) != 1:
                raise ValueError("a door comes with one fd")
            self._add_door(int(message["door"]), int(message["set"]), fds[0])
        elif op == "close":
            door = self.doors.pop(int(message["door"]), None)
            if door is not None:
                if door.server is not None:
                    door.server.close()
                door.sock.close()
        elif op == "ping":
            self.send({"op": "pong", "id": message["id"]})
        for fd in fds if op != "door" else ():
            os.close(fd)

    def _add_set(self, message: dict[str, Any]) -> None:
        policy = message["policy"]
        leaf = None
        if message.get("ca"):
            from host.egress.certificates import LeafContexts

            leaf = LeafContexts(message["ca"][0], message["ca"][1])
        secrets = [
            secret.encode()
            for headers in policy["credentials"].values()
            for _name, _value, secret in headers
        ]
        self.sets[int(message["key"])] = SetRules(message["name"], policy, leaf, None, secrets)

    def _add_door(self, door_id: int, key: int, fd: int) -> None:
        sock = socket.socket(fileno=fd)
        if key not in self.sets or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 1:
            sock.close()
            raise ValueError(f"door {door_id}: not a listening socket of a known set")
        door = self.doors[door_id] = _Door(key, sock)
        handler = functools.partial(self._client, door_id, door)
        asyncio.ensure_future(self._listen(door, handler))

    async def _listen(self, door: _Door, handler: Any) -> None:
        if door.sock.fileno() < 0:
            return  # closed (its worker gone) before this task ran
        door.server = await asyncio.start_server(handler, sock=door.sock, limit=1 << 16)

    # -- the workers' side -----------------------------------------------

    async def _client(
        self, door_id: int, door: _Door, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        rules = self.sets[door.key]
        if door.open >= rules.policy["max_connections"]:
            reason = (
                f"fnhost egress proxy: set '{rules.name}' has "
                f"{rules.policy['max_connections']} connections open (max_connections)"
            )
            writer.write(
                f"HTTP/1.1 503 {reason}\r\nContent-Length: {len(reason) + 1}\r\n"
                f"Connection: close\r\n\r\n{reason}\n".encode()
            )
            self.send({"op": "log", "text": reason})
            writer.close()
            return
        door.open += 1
        try:
            await serve(reader, writer, door_id, rules, self.send)
        finally:
            door.open -= 1


def _harden() -> None:
    """No core file, not dumpable, bounded descriptors and address space."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(ValueError, OSError):  # a lower hard limit stays
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, resource.RLIM_INFINITY))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def main() -> None:
    fd = int(sys.argv[1])
    _harden()
    sock = socket.socket(fileno=fd)
    asyncio.run(Proxy(sock).run())
    os._exit(0)


if __name__ == "__main__":
    main()
