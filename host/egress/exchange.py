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
import itertools
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11

from host.egress import rules
from host.egress.scrubbing import Decoder, Scrubber

#: The largest request or response head (the worker's or upstream's).
MAX_HEAD = 32 * 1024
CONNECT_TIMEOUT = 10.0
CHUNK = 64 * 1024
#: Headers that describe one hop, never forwarded (framing headers are
#: re-made by h11 from the events).
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authorization",
    b"proxy-authenticate",
    b"te",
    b"trailer",
    b"upgrade",
    b"expect",
}
_xids = itertools.count(1)


@dataclass
class SetRules:
    """A set's policy as the proxy holds it."""

    name: str
    policy: dict[str, Any]
    leaf: Any = None  # certificates.LeafContexts, for a set with credentials
    upstream_ssl: ssl.SSLContext | None = None
    secrets: list[bytes] = field(default_factory=list)

    def upstream_context(self) -> ssl.SSLContext:
        if self.upstream_ssl is None:
            ctx = ssl.create_default_context()  # the system's CAs, hostname checked
            if self.policy.get("upstream_cafile"):
                ctx.load_verify_locations(self.policy["upstream_cafile"])
            ctx.set_alpn_protocols(["http/1.1"])
            self.upstream_ssl = ctx
        return self.upstream_ssl

    def headers_for(self, host: str) -> list[tuple[bytes, bytes]]:
        return [
            (name.encode(), value.encode())
            for name, value, _secret in self.policy["credentials"].get(host, ())
        ]


Report = Callable[[dict[str, Any]], None]


class Refused(Exception):
    """Answer the worker with ``status`` and ``reason`` and end the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Timeout(Exception):
    pass


class Peer:
    """One side of the relay: a stream and its h11 state machine."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, role: Any
    ) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(role, max_incomplete_event_size=MAX_HEAD)
        self.received = 0
        self.sent = 0

    async def next_event(self, timeout: float) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await asyncio.wait_for(self.reader.read(CHUNK), timeout)
            except TimeoutError:
                raise _Timeout from None
            self.received += len(data)
            self.conn.receive_data(data)

    async def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.sent += len(data)
            self.writer.write(data)
            await self.writer.drain()


async def serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    door: int,
    rules_: SetRules,
    report: Report,
) -> None:
    """Serve one connection from a worker until it or upstream closes, a
    timeout passes or the policy refuses (never raises)."""
    client = Peer(reader, writer, h11.SERVER)
    policy = rules_.policy
    try:
        while True:
            try:
                event = await client.next_event(policy["head_timeout"])
            except _Timeout:
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
        await _refuse(client, exc.status, exc.reason)
    except h11.RemoteProtocolError as exc:
        await _refuse(client, 400, f"fnhost egress proxy: malformed request: {exc}")
    except (OSError, EOFError, asyncio.IncompleteReadError, h11.LocalProtocolError, _Timeout):
        pass
    finally:
        writer.close()


async def _refuse(client: Peer, status: int, reason: str) -> None:
    if client.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = (reason + "\n").encode()
    try:
        await client.send(
            h11.Response(
                status_code=status,
                reason=_phrase(reason),
                headers=[
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    (b"x-fnhost-egress", b"blocked" if status == 403 else b"error"),
                ],
            )
        )
        await client.send(h11.Data(data=body))
        await client.send(h11.EndOfMessage())
    except (OSError, h11.LocalProtocolError):
        pass


def _phrase(reason: str) -> bytes:
    """A reason phrase h11 accepts: printable ASCII."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in reason)[:900].encode()


def _decide(
    report: Report,
    door: int,
    kind: str,
    host: str,
    port: int,
    method: str,
    path: str,
    decision: rules.Decision,
) -> int:
    """Report a decision (before the worker sees its answer); its xid."""
    xid = next(_xids)
    report(
        {
            "op": "decision",
            "door": door,
            "xid": xid,
            "allowed": decision.allowed,
            "kind": kind,
            "host": host,
            "port": port,
            "method": method,
            "path": path,
            "reason": decision.reason,
        }
    )
    return xid


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` (IPv6 in brackets) -> (normal host, port)."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    elif authority.count(":") == 1:
        host, port = authority.split(":")
    elif ":" not in authority:
        host, port = authority, ""
    else:
        raise Refused(400, f"fnhost egress proxy: bad authority {authority[:200]!r}")
    port = port or str(default_port)
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise Refused(400, f"fnhost egress proxy: bad authority {authority[:200]!r}")
    return rules.normal_host(host), int(port)


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
    authority = request.target.decode("latin-1")
    host, port = _split_authority(authority, 443)
    decision = rules.check_target(rules_.policy, rules_.name, host, port)
    xid = _decide(report, door, "connect", host, port, "CONNECT", "", decision)
    if not decision.allowed:
        raise Refused(403, decision.reason)
    intercept = rules.needs_interception(rules_.policy, host, decision.entries)
    if intercept and rules_.leaf is None:
        raise Refused(
            403,
            f"{rules.BLOCKED} {host}:{port} for set '{rules_.name}': "
            "method or path rules need the egress extra's TLS interception",
        )
    status = 0
    up_writer = None
    try:
        if not intercept:
            up_reader, up_writer = await open_upstream(host, port, None, rules_)
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
        await client.writer.start_tls(rules_.leaf.context(host))
        await _intercepted(client, door, rules_, report, host, port)
    except Refused as exc:
        status = exc.status
        raise
    except (TimeoutError, OSError, ssl.SSLError):
        status = 0
    finally:
        if up_writer is not None:
            up_writer.close()
        report({"op": "done", "door": door, "xid": xid, "status": status,
                "sent": client.received, "received": client.sent})  # fmt: skip


async def _intercepted(
    client: Peer, door: int, rules_: SetRules, report: Report, host: str, port: int
) -> None:
    """The requests inside a tunnel whose TLS the proxy terminated."""
    inner = Peer(client.reader, client.writer, h11.SERVER)
    try:
        while True:
            try:
                event = await inner.next_event(rules_.policy["head_timeout"])
            except _Timeout:
                return
            if not isinstance(event, h11.Request):
                return
            try:
                keep = await _exchange(inner, event, door, rules_, report, host, port, tls=True)
            except Refused as exc:
                await _refuse(inner, exc.status, exc.reason)
                return
            except h11.RemoteProtocolError as exc:
                await _refuse(inner, 400, f"fnhost egress proxy: malformed request: {exc}")
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
                await dst.drain()
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
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise Refused(
            400,
            "fnhost egress proxy: expected CONNECT or an absolute http:// URL "
            f"(got {target[:200]!r})",
        )
    host, port = rules.normal_host(parts.hostname), parts.port or 80
    return await _exchange(client, request, door, rules_, report, host, port, tls=False)


async def _exchange(
    client: Peer,
    request: h11.Request,
    door: int,
    rules_: SetRules,
    report: Report,
    host: str,
    port: int,
    tls: bool,
) -> bool:
    """Check one request, relay it (with its credentials) and the response;
    whether the worker's connection may carry another."""
    method = request.method.decode("latin-1")
    target = request.target.decode("latin-1")
    path, _ = rules.request_path(target)
    decision = rules.check_target(rules_.policy, rules_.name, host, port)
    if decision.allowed:
        decision = rules.check_request(rules_.name, host, port, decision.entries, method, target)
    if decision.allowed and tls:
        sent_host = dict(request.headers).get(b"host", b"").decode("latin-1")
        if sent_host and _split_authority(sent_host, port)[0] != host:
            decision = rules.Decision(
                False,
                f"{rules.BLOCKED} {method} {host}:{port}{path} for "
                f"set '{rules_.name}': Host header {sent_host!r} "
                "does not name the tunnel's host",
            )
    kind = "https" if tls else "http"
    xid = _decide(report, door, kind, host, port, method, path, decision)
    if not decision.allowed:
        raise Refused(403, decision.reason)
    # Over TLS only: a credential never crosses the network in clear.
    credentials = rules_.headers_for(host) if tls else []
    # Ours replace the worker's; so do the hop's own (and those its
    # Connection header names).
    dropped = {name.lower() for name, _ in credentials} | HOP_BY_HOP | {b"host"}
    for name, value in request.headers:
        if name == b"connection":
            dropped |= {v.strip().lower() for v in value.split(b",")}
    origin = (
        target
        if not target.startswith("http://")
        else (urlsplit(target)._replace(scheme="", netloc="").geturl() or "/")
    )
    headers = [
        (name, value)
        for name, value in request.headers.raw_items()  # the worker's spelling
        if name.lower() not in dropped
    ]
    if credentials:
        headers = [(n, v) for n, v in headers if n.lower() != b"accept-encoding"]
        headers.append((b"Accept-Encoding", b"identity"))
    authority = host if port == (443 if tls else 80) else f"{host}:{port}"
    headers = [(b"Host", authority.encode()), *headers, *credentials]
    scrubber = Scrubber(rules_.secrets if credentials else [])
    status = 0
    idle = rules_.policy["idle_timeout"]
    up_writer = None
    try:
        up_reader, up_writer = await open_upstream(
            host, port, rules_.upstream_context() if tls else None, rules_
        )
        upstream = Peer(up_reader, up_writer, h11.CLIENT)
        await upstream.send(
            h11.Request(
                method=request.method,
                target=origin.encode("latin-1"),
                headers=[*headers, (b"connection", b"close")],
            )
        )
        if client.conn.they_are_waiting_for_100_continue:
            await client.send(h11.InformationalResponse(status_code=100, headers=[]))
        body = 0
        while True:
            event = await client.next_event(idle)
            if isinstance(event, h11.Data):
                body += len(event.data)
                if body > rules_.policy["max_body_bytes"]:
                    raise Refused(
                        413,
                        f"fnhost egress proxy: request body over "
                        f"{rules_.policy['max_body_bytes']} bytes",
                    )
                await upstream.send(event)
            elif isinstance(event, h11.EndOfMessage):
                await upstream.send(h11.EndOfMessage())
                break
            else:
                return False
        status = await _relay_response(client, upstream, request.method, scrubber, idle)
        return client.conn.our_state is h11.DONE and client.conn.their_state is h11.DONE
    except _Timeout:
        return False
    except Refused as exc:
        status = exc.status
        raise
    except h11.RemoteProtocolError as exc:
        if upstream.conn.their_state is h11.ERROR:
            status = 502
            raise Refused(
                502, f"fnhost egress proxy: {host}:{port} sent a malformed response: {exc}"
            ) from None
        raise
    finally:
        if up_writer is not None:
            up_writer.close()
        report(
            {
                "op": "done",
                "door": door,
                "xid": xid,
                "status": status,
                "sent": client.received,
                "received": client.sent,
            }
        )


async def _relay_response(
    client: Peer, upstream: Peer, method: bytes, scrubber: Scrubber, idle: float
) -> int:
    """Upstream's response to the worker (secrets scrubbed); its status."""
    while True:
        try:
            event = await upstream.next_event(idle)
        except _Timeout:
            raise Refused(504, "fnhost egress proxy: upstream did not answer in time") from None
        if isinstance(event, h11.InformationalResponse):
            continue  # a 100 Continue was ours to give; others are not relayed
        if isinstance(event, h11.Response):
            break
        raise Refused(502, "fnhost egress proxy: upstream closed without a response")
    status = event.status_code
    decoder = None
    headers = []
    bodiless = method == b"HEAD" or event.status_code in (204, 304)
    for name, value in event.headers:
        if name in HOP_BY_HOP:
            continue
        if scrubber.active:
            if name == b"content-encoding" and not bodiless:
                try:
                    decoder = Decoder(value.decode("latin-1"))
                except ValueError:
                    raise Refused(
                        502,
                        "fnhost egress proxy: upstream sent Content-Encoding "
                        f"{value.decode('latin-1')!r}, which cannot be checked "
                        "for the credential",
                    ) from None
                continue
            if name in (b"content-length", b"transfer-encoding") and not bodiless:
                continue  # the scrubbed body's length differs: h11 frames it anew
            value = scrubber.scrub(value)
        headers.append((name, value))
    await client.send(
        h11.Response(status_code=event.status_code, reason=event.reason, headers=headers)
    )
    while True:
        event = await upstream.next_event(idle)
        if isinstance(event, h11.Data):
            data = event.data
            if decoder is not None:
                data = decoder.feed(data)
            data = scrubber.feed(data)
            if data:
                await client.send(h11.Data(data=data))
        elif isinstance(event, h11.EndOfMessage):
            tail = scrubber.feed(decoder.flush()) if decoder is not None else b""
            tail += scrubber.flush()
            if tail:
                await client.send(h11.Data(data=tail))
            await client.send(h11.EndOfMessage())
            return status
        else:
            raise Refused(502, "fnhost egress proxy: upstream closed mid-response")
