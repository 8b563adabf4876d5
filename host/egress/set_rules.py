"""A set's policy as the proxy holds it, and how the proxy reports what
it decided (to the host, before the worker sees the answer)."""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from host.egress import rules
from host.egress.scrubbing import Scrubber

#: What the proxy sends the host (``host.egress.control``).
Report = Callable[[dict[str, Any]], None]
_xids = itertools.count(1)


@dataclass
class SetRules:
    """One set's policy (``Egress.to_proxy``), its leaf certificates (for
    intercepted hosts) and what it keeps out of responses."""

    name: str
    policy: dict[str, Any]
    leaf: Any = None  # certificates.LeafContexts, for a set with intercepted hosts
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
        """The credential headers for ``host`` (as the policy spells them)."""
        return [
            (name.encode(), value.encode())
            for name, value, _secret in self.policy["credentials"].get(host, ())
        ]

    def scrubber(self) -> Scrubber:
        return Scrubber(self.secrets)

    async def leaf_context(self, host: str) -> ssl.SSLContext:
        """The TLS context serving ``host``'s certificate, made off the
        event loop (a key and a signature: milliseconds)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.leaf.context, host)


def report_decision(
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
    report({"op": "decision", "door": door, "xid": xid, "allowed": decision.allowed,
            "kind": kind, "host": host, "port": port, "method": method, "path": path,
            "reason": decision.reason})  # fmt: skip
    return xid


def report_done(report: Report, door: int, xid: int, status: int, sent: int, received: int) -> None:
    """The end of an allowed exchange or tunnel (bytes from and to the worker)."""
    report({"op": "done", "door": door, "xid": xid, "status": status,
            "sent": sent, "received": received})  # fmt: skip
