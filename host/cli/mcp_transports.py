"""How ``fnhost mcp`` reaches its clients: stdio (``serve``) or the
streamable HTTP transport (``serve_http``), each until the client leaves or
a signal (SIGTERM, SIGHUP; SIGINT too for HTTP), then returning normally so
the caller closes the host (stops the workers, removes their directories).
The server itself is ``host.cli.mcp_server.FunctionHostMCPServer``."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import stat
import sys
from collections.abc import Iterator

import anyio
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings

from host.api.function_host import FunctionHost
from host.cli.mcp_server import FunctionHostMCPServer, log


async def serve_stdio(server: FunctionHostMCPServer) -> None:
    """Serve on stdin/stdout until the client closes stdin, or SIGTERM/SIGHUP.

    Returns normally in every one of those cases so the caller can close
    the host (stop the workers, remove their scratch directories).
    """
    server.refresh()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        if server.watch:
            tg.start_soon(server.watch_tools)
        # The SDK reads stdin in a thread, which a signal cannot interrupt;
        # read a pipe through the event loop instead, so SIGTERM stops us.
        stdin = _StdinLines(0) if _pollable(0) else None
        async with stdio_server(stdin=stdin) as (read_stream, write_stream):  # type: ignore[arg-type]
            await server.server.run(
                read_stream, write_stream, server.server.create_initialization_options()
            )
        tg.cancel_scope.cancel()


def _rebinding_checks(host: str) -> TransportSecuritySettings | None:
    """DNS-rebinding checks for a server bound to ``host``: requests must
    name it (or, on loopback, a loopback name) in ``Host`` and ``Origin``.
    The SDK turns them on only for 127.0.0.1, localhost and ::1, not for
    the rest of loopback (127.0.0.2...) or a named address. None for a
    wildcard address, whose name cannot be known (the CLI warns)."""
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        return None
    name = f"[{host}]" if ip.version == 6 else host
    hosts = [name, *(("127.0.0.1", "localhost", "[::1]") if ip.is_loopback else ())]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{h}:*" for h in dict.fromkeys(hosts)],
        allowed_origins=[f"http://{h}:*" for h in dict.fromkeys(hosts)],
    )


async def serve_http_on(server: FunctionHostMCPServer, sock: socket.socket) -> None:
    """Serve the streamable HTTP transport (path ``/mcp``) on the bound,
    listening ``sock`` until SIGTERM, SIGHUP or SIGINT; then returns
    normally (open sessions are ended), so the caller closes the host."""

    import uvicorn  # the MCP SDK's own dependency

    class _Uvicorn(uvicorn.Server):
        # Ours, not uvicorn's: it re-raises the signal after shutting
        # down, which would kill this process before the host is closed.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server.refresh()
    host = sock.getsockname()[0]
    app = server.server.streamable_http_app(host=host, transport_security=_rebinding_checks(host))
    web = _Uvicorn(uvicorn.Config(app, log_level="warning", lifespan="on"))

    async def stop_on_signal() -> None:
        signals_ = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
        with anyio.open_signal_receiver(*signals_) as received:
            async for signum in received:
                log.info("received %s; shutting down", signal.Signals(signum).name)
                web.should_exit = True
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_on_signal)
        if server.watch:
            tg.start_soon(server.watch_tools)
        await web.serve(sockets=[sock])
        tg.cancel_scope.cancel()


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("received %s; shutting down", signal.Signals(signum).name)
            scope.cancel()
            return


class _StdinLines:
    """The lines of a pipe, socket or terminal, read through the event loop.

    Duck-types what ``stdio_server`` uses of an ``anyio.AsyncFile`` (async
    iteration over text lines); unlike a reader thread, cancelling it works.
    Invalid UTF-8 is replaced (the SDK then reports a parse error).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""
        self._eof = False

    def __aiter__(self) -> _StdinLines:
        return self

    async def __anext__(self) -> str:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or (self._eof and self._buffer):
                cut = end + 1 if end >= 0 else len(self._buffer)
                line, self._buffer = self._buffer[:cut], self._buffer[cut:]
                return line.decode("utf-8", errors="replace")
            if self._eof:
                raise StopAsyncIteration
            await anyio.wait_readable(self.fd)
            try:
                chunk = os.read(self.fd, 1 << 16)  # readable: returns without blocking
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""  # a broken stdin is the end of the session
            self._eof = not chunk
            self._buffer += chunk


def _pollable(fd: int) -> bool:
    """Whether the event loop can wait on ``fd`` (a pipe, socket or terminal)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


def serve(fh: FunctionHost, watch: bool = False) -> None:
    """Serve ``fh``'s loaded function sets over stdio until the client goes away.

    Blocks; the caller closes ``fh`` afterwards. Errors of single calls never
    end it (see the module docstring). ``watch``: send ``list_changed``
    when the host's catalog changes (make ``fh`` with ``watch=True``).
    """
    anyio.run(serve_stdio, FunctionHostMCPServer(fh, watch=watch))


def serve_http(fh: FunctionHost, host: str, port: int, watch: bool = False) -> None:
    """Serve over streamable HTTP on ``host:port`` (port 0: any free one)
    until SIGTERM or SIGINT; the URL goes to stderr as ``fnhost mcp: serving
    on http://HOST:PORT/mcp``. ``OSError`` if the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"fnhost mcp: serving on http://{shown}:{bound}/mcp", file=sys.stderr, flush=True)
    anyio.run(serve_http_on, FunctionHostMCPServer(fh, watch=watch), sock)
