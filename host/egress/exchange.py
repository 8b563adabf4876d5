"""One connection from a worker to the egress proxy, in the proxy process.

A worker's connection carries either a ``CONNECT host:port`` (HTTPS and any
other TCP: a tunnel, or for a host with credentials or method/path rules an
interception: TLS terminated with the set's CA, each request checked and
given its headers, then re-encrypted upstream) or plain HTTP requests in
absolute form (``GET http://host:port/path``), each checked and relayed.

HTTP is parsed by ``h11`` (the ``egress`` extra), TLS by the standard
``ssl`` module; nothing here parses HTTP or TLS by hand. Every refusal is an
HTTP response whose reason phrase and body start with ``rules.BLOCKED``
and name the set, host and port; every failure to reach upstream is a 502
that says so. A connection never outlives ``idle_timeout`` without traffic,
nor a request head ``head_timeout``; bodies past ``max_body_bytes`` end
the exchange with a 413.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, cast
from urllib.parse import urlsplit

import h11

from host.egress import rules
from host.egress.http_relay import relay_request
from host.egress.peer import CHUNK, Peer, Refused, Stalled, refuse
from host.egress.set_rules import Report, SetRules, report_decision, report_done

CONNECT_TIMEOUT = 10.0


async def serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    door: int,
    rules_: SetRules,
    report: Report,
) -> None:
    """Serve one connection from a worker until it or upstream closes, a
    timeout passes or the policy refuses (never raises)."""
    policy = rules_.policy
    client = Peer(reader, writer, h11.SERVER, policy["idle_timeout"])
    scrubber = rules_.scrubber()  # a refusal's text may quote upstream
    try:
        while True:
            try:
                event = await client.next_event(policy["idle_timeout"], policy["head_timeout"])
            except Stalled:
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed, or the worker's half-close
            if event.method == b"CONNECT":
                await _connect(client, event, door, rules_, report)
                return
            if not await _plain(client, event, door, rules_, report):
                return
            client.conn.start_next_cycle()
    except Refused as exc:
        await refuse(client, exc.status, exc.reason, scrubber)
    except h11.RemoteProtocolError as exc:
        await refuse(client, 400, f"fnhost egress proxy: malformed request: {exc}", scrubber)
    except (OSError, EOFError, asyncio.IncompleteReadError, h11.LocalProtocolError, Stalled):
        pass
    finally:
        writer.close()


async def open_upstream(
    host: str, port: int, tls: ssl.SSLContext | None, rules_: SetRules
) -> tuple[Any, Any]:
    """A connection to ``host:port``, resolved here (never by the worker):
    to the first address the policy lets it reach (``rules.internal``
    addresses only for a host listed by its exact name). ``Refused`` (502,
    or 403 for an internal address) if there is none or it fails."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), CONNECT_TIMEOUT
        )
    except (TimeoutError, OSError) as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise Refused(502, f"fnhost egress proxy: cannot resolve {host}: {why}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not rules.listed_exactly(rules_.policy, host):
        outside = [a for a in addresses if not rules.internal(a)]
        if not outside:
            raise Refused(
                403,
                f"{rules.BLOCKED} {host}:{port} for set '{rules_.name}': it resolves to "
                f"{addresses[0]}, an internal address, which only a host listed by its "
                "exact name may reach",
            )
        addresses = outside
    try:
        return await asyncio.wait_for(
            asyncio.open_connection(
                addresses[0], port, ssl=tls, server_hostname=host if tls else None, limit=CHUNK
            ),
            CONNECT_TIMEOUT,
        )
    except ssl.SSLCertVerificationError as exc:
        raise Refused(
            502,
            f"fnhost egress proxy: {host}:{port} failed TLS verification: "
            f"{exc.verify_message or exc}",
        ) from None
    except (TimeoutError, OSError) as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise Refused(502, f"fnhost egress proxy: cannot connect to {host}:{port}: {why}") from None


async def _connect(
    client: Peer, request: h11.Request, door: int, rules_: SetRules, report: Report
) -> None:
    try:
        host, port = rules.split_authority(request.target.decode("latin-1"), 443)
    except ValueError as exc:
        raise Refused(400, f"fnhost egress proxy: CONNECT to a {exc}") from None
    decision = rules.check_target(rules_.policy, rules_.name, host, port)
    xid = report_decision(report, door, "connect", host, port, "CONNECT", "", decision)
    if not decision.allowed:
        raise Refused(403, decision.reason)
    intercept = rules.needs_interception(rules_.policy, host, decision.entries)
    status = 0
    up_writer = None
    try:
        if intercept and rules_.leaf is None:
            raise Refused(403, f"{rules.BLOCKED} {host}:{port} for set '{rules_.name}': "
                               "its rules need TLS interception, which has no CA here")  # fmt: skip
        if not intercept:
            up_reader, up_writer = await open_upstream(host, port, None, rules_)
        else:
            # Made before the 200, and reading stopped before it too: bytes
            # read between the 200 and start_tls would land in the plain
            # stream's buffer, where the TLS layer never sees them. Sending
            # the 200 awaits (its drain runs the loop), and a client such as
            # urllib sends its ClientHello the moment the 200 arrives; read
            # as plain, it stalled the handshake until the client gave up.
            # Paused, it waits in the kernel; start_tls resumes reading.
            leaf = await rules_.leaf_context(host)
            cast(asyncio.Transport, client.writer.transport).pause_reading()
        await client.send(
            h11.Response(status_code=200, reason=b"Connection established", headers=[])
        )
        status = 200
        leftover, _closed = client.conn.trailing_data
        if not intercept:
            await _tunnel(client, leftover, up_reader, up_writer, rules_.policy["idle_timeout"])
            return
        if leftover:
            return  # TLS bytes before our 200: not a client we can intercept
        await client.writer.start_tls(leaf)
        await _intercepted(client, door, rules_, report, host, port)
    except Refused as exc:
        status = exc.status
        raise
    except (TimeoutError, OSError, ssl.SSLError, Stalled):
        status = 0
    finally:
        if up_writer is not None:
            up_writer.close()
        report_done(report, door, xid, status, client.received, client.sent)


async def _intercepted(
    client: Peer, door: int, rules_: SetRules, report: Report, host: str, port: int
) -> None:
    """The requests inside a tunnel whose TLS the proxy terminated."""
    inner = Peer(client.reader, client.writer, h11.SERVER, rules_.policy["idle_timeout"])
    policy = rules_.policy
    scrubber = rules_.scrubber()
    try:
        while True:
            try:
                event = await inner.next_event(policy["idle_timeout"], policy["head_timeout"])
            except Stalled:
                return
            if not isinstance(event, h11.Request):
                return
            try:
                keep = await relay_request(
                    inner, event, door, rules_, report, host, port, True, open_upstream
                )
            except Refused as exc:
                await refuse(inner, exc.status, exc.reason, scrubber)
                return
            except h11.RemoteProtocolError as exc:
                await refuse(inner, 400, f"fnhost egress proxy: malformed request: {exc}", scrubber)
                return
            if not keep:
                return
            inner.conn.start_next_cycle()
    finally:
        client.sent += inner.sent
        client.received += inner.received


async def _tunnel(
    client: Peer, leftover: bytes, up_reader: Any, up_writer: Any, idle: float
) -> None:
    """Bytes both ways until either side closes or ``idle`` seconds pass
    with no traffic in either direction."""
    last = [asyncio.get_running_loop().time()]

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: str) -> None:
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    break
                last[0] = asyncio.get_running_loop().time()
                setattr(client, count, getattr(client, count) + len(data))
                dst.write(data)
                # A side that stops reading is idle too: no wait without end.
                await asyncio.wait_for(dst.drain(), idle)
        finally:
            if dst.can_write_eof():
                try:
                    dst.write_eof()
                except OSError:
                    pass

    if leftover:
        client.received += len(leftover)
        up_writer.write(leftover)
    tasks = [
        asyncio.ensure_future(pump(client.reader, up_writer, "received")),
        asyncio.ensure_future(pump(up_reader, client.writer, "sent")),
    ]
    try:
        loop = asyncio.get_running_loop()
        while not all(t.done() for t in tasks):
            remaining = last[0] + idle - loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.ALL_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        up_writer.close()


async def _plain(
    client: Peer, request: h11.Request, door: int, rules_: SetRules, report: Report
) -> bool:
    """A plain-HTTP request in absolute form; whether the worker's
    connection may carry another."""
    target = request.target.decode("latin-1")
    try:
        parts = urlsplit(target)
        port = parts.port or 80
    except ValueError as exc:
        raise Refused(400, f"fnhost egress proxy: bad URL {target[:200]!r}: {exc}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise Refused(400, "fnhost egress proxy: expected CONNECT or an absolute http:// URL "
                           f"(got {target[:200]!r})")  # fmt: skip
    host = rules.normal_host(parts.hostname)
    return await relay_request(
        client, request, door, rules_, report, host, port, False, open_upstream
    )
