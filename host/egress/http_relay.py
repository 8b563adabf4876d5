"""One HTTP request of a worker, in the proxy: checked, relayed upstream
with its credentials, and the response relayed back scrubbed.

What upstream receives is what was checked: the target is parsed once
(``rules.RequestTarget``) and upstream gets its origin form (the path and
query the rules saw; never a scheme, host or fragment of the worker's);
the body's framing is the proxy's own (``Transfer-Encoding: chunked`` if
the worker's request had one, else its ``Content-Length``; never both);
hop-by-hop headers, and for a credential host ``Range``/``If-Range`` and
``Accept-Encoding``, are the proxy's to set. What the worker receives has
the set's secrets replaced (headers, reason phrase and body, after undoing
at most one ``gzip``/``deflate`` coding, in bounded pieces).
"""

from __future__ import annotations

import zlib
from typing import Any

import h11

from host.egress import rules
from host.egress.peer import Peer, Refused, Stalled
from host.egress.scrubbing import Decoder, Scrubber
from host.egress.set_rules import Report, SetRules, report_decision, report_done

#: Headers that describe one hop, never forwarded.
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
#: The body's framing: the proxy sets its own.
FRAMING = {b"content-length", b"transfer-encoding"}
#: What a credentialed request may not carry (an echo fetched in pieces
#: would pass the scrubber a piece at a time; an encoding it cannot undo).
CREDENTIAL_DROPS = {b"range", b"if-range", b"accept-encoding"}

Opener = Any  # (host, port, tls context | None, SetRules) -> (reader, writer)


async def relay_request(
    client: Peer,
    request: h11.Request,
    door: int,
    rules_: SetRules,
    report: Report,
    host: str,
    port: int,
    tls: bool,
    open_upstream: Opener,
) -> bool:
    """Check one request, relay it and the response; whether the worker's
    connection may carry another. Raises ``Refused`` (the caller answers
    the worker), ``Stalled``, ``h11`` errors and ``OSError``."""
    method = request.method.decode("latin-1")
    target = rules.RequestTarget.parse(request.target.decode("latin-1"))
    decision = rules.check_target(rules_.policy, rules_.name, host, port)
    if decision.allowed:
        decision = rules.check_request(
            rules_.name, host, port, decision.entries, method, request.target.decode("latin-1")
        )
    where = f"{method} {host}:{port}{target.path} for set '{rules_.name}'"
    if decision.allowed and tls:
        sent_host = dict(request.headers).get(b"host", b"").decode("latin-1")
        try:
            named = rules.split_authority(sent_host, port)[0] if sent_host else host
        except ValueError:
            raise Refused(400, f"fnhost egress proxy: bad Host header {sent_host[:200]!r}")
        if named != host:
            decision = rules.Decision(
                False,
                f"{rules.BLOCKED} {where}: Host header {sent_host!r} does not name "
                "the tunnel's host",  # fmt: skip
            )
        elif not target.origin.startswith("/") and target.origin != "*":
            decision = rules.Decision(
                False, f"{rules.BLOCKED} {where}: inside a tunnel the target must be a path"
            )
    xid = report_decision(report, door, "https" if tls else "http", host, port, method,
                          target.path, decision)  # fmt: skip
    if not decision.allowed:
        raise Refused(403, decision.reason)
    # Over TLS only: a credential never crosses the network in clear.
    credentials = rules_.headers_for(host) if tls else []
    headers = _forwarded_headers(request, credentials, host, port, tls)
    scrubber = rules_.scrubber() if credentials else Scrubber([])
    status = 0
    idle = rules_.policy["idle_timeout"]
    up_writer = None
    try:
        up_reader, up_writer = await open_upstream(
            host, port, rules_.upstream_context() if tls else None, rules_
        )
        upstream = Peer(up_reader, up_writer, h11.CLIENT, idle)
        await upstream.send(
            h11.Request(method=request.method, target=target.origin.encode(), headers=headers)
        )
        if client.conn.they_are_waiting_for_100_continue:
            await client.send(h11.InformationalResponse(status_code=100, headers=[]))
        body = 0
        while True:
            event = await client.next_event(idle)
            if isinstance(event, h11.Data):
                body += len(event.data)
                if body > rules_.policy["max_body_bytes"]:
                    raise Refused(413, "fnhost egress proxy: request body over "
                                       f"{rules_.policy['max_body_bytes']} bytes")  # fmt: skip
                await upstream.send(event)
            elif isinstance(event, h11.EndOfMessage):
                await upstream.send(h11.EndOfMessage())
                break
            else:
                return False
        status = await relay_response(client, upstream, request.method, scrubber, idle)
        return client.conn.our_state is h11.DONE and client.conn.their_state is h11.DONE
    except Stalled:
        return False
    except Refused as exc:
        status = exc.status
        raise
    except h11.RemoteProtocolError:
        if upstream.conn.their_state is h11.ERROR:
            status = 502
            # Not the parser's message: it quotes upstream's bytes.
            raise Refused(502, f"fnhost egress proxy: {host}:{port} sent a malformed "
                               "response (not HTTP/1.1)") from None  # fmt: skip
        raise
    finally:
        if up_writer is not None:
            up_writer.close()
        report_done(report, door, xid, status, client.received, client.sent)


def _forwarded_headers(
    request: h11.Request, credentials: list[tuple[bytes, bytes]], host: str, port: int, tls: bool
) -> list[tuple[bytes, bytes]]:
    """What upstream gets: the worker's headers (as it spelled them) but
    the hop's own, the framing and what credentials replace; then ours."""
    dropped = {name.lower() for name, _ in credentials} | HOP_BY_HOP | FRAMING | {b"host"}
    if credentials:
        dropped |= CREDENTIAL_DROPS
    framing: list[tuple[bytes, bytes]] = []
    for name, value in request.headers:  # h11's: lowercase, validated
        if name == b"connection":
            dropped |= {v.strip().lower() for v in value.split(b",")}
        elif name == b"transfer-encoding":
            framing = [(b"Transfer-Encoding", b"chunked")]
        elif name == b"content-length" and not framing:
            framing = [(b"Content-Length", value)]
    headers = [(n, v) for n, v in request.headers.raw_items() if n.lower() not in dropped]
    if credentials:
        headers.append((b"Accept-Encoding", b"identity"))
    authority = host if port == (443 if tls else 80) else f"{host}:{port}"
    if ":" in host:
        authority = f"[{host}]" if port == (443 if tls else 80) else f"[{host}]:{port}"
    return [
        (b"Host", authority.encode()),
        *headers,
        *framing,
        *credentials,
        (b"Connection", b"close"),
    ]


async def relay_response(
    client: Peer, upstream: Peer, method: bytes, scrubber: Scrubber, idle: float
) -> int:
    """Upstream's response to the worker (secrets scrubbed); its status."""
    while True:
        try:
            event = await upstream.next_event(idle)
        except Stalled:
            raise Refused(504, "fnhost egress proxy: upstream did not answer in time") from None
        if isinstance(event, h11.InformationalResponse):
            continue  # a 100 Continue was ours to give; others are not relayed
        if isinstance(event, h11.Response):
            break
        raise Refused(502, "fnhost egress proxy: upstream closed without a response")
    status = event.status_code
    bodiless = method == b"HEAD" or status in (204, 304)
    codings = [
        c.strip().lower()
        for name, value in event.headers
        if name == b"content-encoding"
        for c in value.decode("latin-1").split(",")
        if c.strip() and c.strip().lower() != "identity"
    ]
    decoder = None
    if scrubber.active and codings and not bodiless:
        if len(codings) > 1:
            raise Refused(502, "fnhost egress proxy: upstream encoded the body more than "
                               "once, which cannot be checked for the credential")  # fmt: skip
        try:
            decoder = Decoder(codings[0])
        except ValueError:
            raise Refused(502, f"fnhost egress proxy: upstream sent Content-Encoding "
                               f"{codings[0]!r}, which cannot be checked for the "
                               "credential") from None  # fmt: skip
    chunked = any(name == b"transfer-encoding" for name, _ in event.headers)
    headers = []
    for name, value in event.headers.raw_items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP:
            continue
        if lowered in FRAMING and not bodiless and (scrubber.active or chunked):
            continue  # h11 frames the body anew (a scrubbed body's length differs)
        if lowered == b"content-encoding" and decoder is not None:
            continue
        headers.append((name, scrubber.scrub(value)))
    await client.send(
        h11.Response(status_code=status, reason=scrubber.scrub(event.reason), headers=headers)
    )
    while True:
        event = await upstream.next_event(idle)
        if isinstance(event, h11.Data):
            pieces = decoder.feed(event.data) if decoder is not None else [event.data]
            try:
                for piece in pieces:
                    data = scrubber.feed(piece)
                    if data:
                        await client.send(h11.Data(data=data))
            except zlib.error:
                return status  # a corrupt body: cut short (the worker sees it end early)
        elif isinstance(event, h11.EndOfMessage):
            tail = scrubber.feed(decoder.flush()) if decoder is not None else b""
            tail += scrubber.flush()
            if tail:
                await client.send(h11.Data(data=tail))
            await client.send(h11.EndOfMessage())
            return status
        else:
            raise Refused(502, "fnhost egress proxy: upstream closed mid-response")
