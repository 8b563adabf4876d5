"""The proxy's decisions: may this set reach this host and port, and this
method and path there? Pure functions over the policy's wire form
(``Egress.to_proxy``); no I/O.

Every refusal carries a reason a person can act on; the proxy puts it in
the 403's reason phrase and body, where ``requests``, ``httpx`` and
``urllib`` show it in the exception they raise.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

#: Every refusal starts with this, so a tool's error explains itself.
BLOCKED = "fnhost egress policy blocked"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    #: The matching allow entries (for the method and path check).
    entries: tuple[dict[str, Any], ...] = ()


def normal_host(host: str) -> str:
    """Lowercase, no trailing dot, IPv6 without brackets, IPv4 canonical."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` (IPv6 in brackets) -> (normal host, port).
    ``ValueError`` for anything else (a port out of range, not ASCII digits)."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    elif authority.count(":") == 1:
        host, port = authority.split(":")
    elif ":" not in authority:
        host, port = authority, ""
    else:
        raise ValueError(f"bad authority {authority[:200]!r}")
    port = port or str(default_port)
    if not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"bad authority {authority[:200]!r}")
    return normal_host(host), int(port)


def host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


def check_target(policy: dict[str, Any], set_name: str, host: str, port: int) -> Decision:
    """Whether ``host:port`` is on the set's allow-list."""
    host = normal_host(host)
    entries = tuple(
        e
        for e in policy["allow"]
        if host_matches(e["host"], host) and (e["port"] is None or e["port"] == port)
    )
    if entries:
        return Decision(True, entries=entries)
    if any(host_matches(e["host"], host) for e in policy["allow"]):
        why = f"port {port} is not allowed for {host}"
    else:
        why = f"{host} is not in the allow-list"
    return Decision(False, f"{BLOCKED} {_show(host)}:{port} for set '{set_name}': {why}")


def listed_exactly(policy: dict[str, Any], host: str) -> bool:
    """Whether an allow entry names ``host`` itself (not a ``*.`` pattern):
    only such a host may resolve to a loopback, private or link-local
    address (else a pattern whose names an attacker can point anywhere
    would reach the host's own network)."""
    host = normal_host(host)
    return any(e["host"] == host for e in policy["allow"])


def internal(address: str) -> bool:
    """Any address that is not globally routable: loopback, private,
    link-local, shared (100.64.0.0/10: carrier NAT, tailnets, some clouds'
    metadata service), multicast, unspecified, reserved, documentation...
    An IPv6 address that carries an IPv4 one (mapped, IPv4-compatible,
    6to4, Teredo, NAT64's 64:ff9b::/96) is judged by the IPv4 address too,
    since a translator on the way would deliver it there; local-use NAT64
    (64:ff9b:1::/48) is internal."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _not_global(ip)
    if ip in _NAT64_LOCAL:
        return True
    if ip in _NAT64:  # reserved space itself: judged by the address it carries
        return _not_global(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    carried = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo is not None:
        carried += list(ip.teredo)
    return _not_global(ip) or any(_not_global(a) for a in carried)


def _not_global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not ip.is_global or ip.is_multicast or ip.is_unspecified or ip.is_reserved


#: NAT64's well-known prefix (RFC 6052): the last 32 bits are an IPv4
#: address; and the local-use one (RFC 8215), internal by definition.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def needs_interception(
    policy: dict[str, Any], host: str, entries: tuple[dict[str, Any], ...]
) -> bool:
    """HTTPS to this host must be terminated to enforce the policy: it has
    credentials, or every matching entry restricts methods or paths."""
    if normal_host(host) in policy["credentials"]:
        return True
    return not any(e["methods"] is None and e["paths"] is None for e in entries)


def check_request(
    set_name: str,
    host: str,
    port: int,
    entries: tuple[dict[str, Any], ...],
    method: str,
    target: str,
) -> Decision:
    """Whether ``method target`` is allowed by one of ``entries`` (the
    allow entries that matched the host and port). ``target`` as the worker
    sent it: origin form (``/a/b?q``) or absolute (``http://h/a/b``)."""
    host = normal_host(host)
    where = f"{method} {_show(host)}:{port}"
    parsed = RequestTarget.parse(target)
    if parsed.problem:
        return Decision(
            False, f"{BLOCKED} {where}{parsed.path} for set '{set_name}': {parsed.problem}"
        )
    for entry in entries:
        if entry["methods"] is not None and method not in entry["methods"]:
            continue
        if entry["paths"] is not None and not any(
            fnmatch.fnmatchcase(parsed.path, p) for p in entry["paths"]
        ):
            continue
        return Decision(True, entries=(entry,))
    return Decision(
        False, f"{BLOCKED} {where}{parsed.path} for set '{set_name}': method or path not allowed"
    )


@dataclass(frozen=True)
class RequestTarget:
    """A request target, parsed once: ``path`` is what rules are checked
    against (decoded, no query), ``origin`` what upstream is sent (the same
    path as sent, and the query; never a fragment, a scheme or a host), and
    ``problem`` why it is refused ("" if it is not)."""

    path: str
    origin: str
    problem: str = ""

    @classmethod
    def parse(cls, target: str) -> RequestTarget:
        if target == "*":
            return cls("*", "*")  # OPTIONS *: no path to check or to send
        if "://" in target:
            try:
                parts = urlsplit(target)
            except ValueError:
                return cls(target[:200], "", "an unparsable URL")
            raw, query = parts.path or "/", parts.query
        elif target.startswith("/"):
            raw, _, query = target.partition("#")[0].partition("?")
        else:
            return cls(target[:200], "", "the request target is not a path")
        origin = raw + (f"?{query}" if query else "")
        lowered = raw.lower()
        if "%2f" in lowered or "%5c" in lowered or "\\" in raw:
            return cls(raw, origin, "an encoded slash or a backslash in the path")
        path = unquote(raw)
        if "\0" in path:
            return cls(raw, origin, "a NUL in the path")
        # ("..;" too: servers that read path parameters take it for "..")
        segments = [segment.split(";", 1)[0] for segment in path.split("/")]
        if "." in segments or ".." in segments:
            return cls(path, origin, "dot segments in the path")
        if not path.startswith("/"):
            return cls(path, origin, "the path does not start with '/'")
        return cls(path, origin)


def _show(host: str) -> str:
    return f"[{host}]" if ":" in host else host
