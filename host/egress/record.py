"""What a call's ``CallResult.egress`` holds: the egress proxy's decisions
for the call's worker while the call ran."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EgressRecord:
    """One decision of the egress proxy for a worker: a tunnel (``kind``
    ``"connect"``), or a request (``"http"``, or ``"https"`` inside an
    intercepted tunnel). ``status``, ``sent`` and ``received`` (bytes from
    and to the worker) are filled in when the exchange ends, which may be
    after the call that made it returned (a kept-alive connection)."""

    allowed: bool
    kind: str
    host: str
    port: int
    method: str
    path: str
    reason: str
    status: int | None = None
    sent: int | None = None
    received: int | None = None
