"""What the host and the egress proxy say to each other: one msgpack map per
datagram on a private Unix SEQPACKET socket pair, with an fd alongside
(SCM_RIGHTS) for ``door``. No I/O here.

host -> proxy:

- ``{"op": "set", "key", "name", "policy", "ca"}``: a set's policy
  (``Egress.to_proxy``, secrets included) and its CA (``[cert_pem,
  key_pem]`` or ``None``), under ``key``.
- ``{"op": "door", "door", "set"}`` + one fd: a listening socket in a
  worker's network namespace; its connections are that set's.
- ``{"op": "close", "door"}``: the worker is gone; stop listening there.
- ``{"op": "ping", "id"}``: answered by ``pong`` (a liveness check).

proxy -> host:

- ``{"op": "ready"}`` once, when it serves.
- ``{"op": "decision", "door", "xid", "allowed", "kind", "host", "port",
  "method", "path", "reason"}``: sent *before* the worker sees the answer,
  so a host that reads the worker's reply and then this socket sees every
  decision the call saw the answer to.
- ``{"op": "done", "door", "xid", "status", "sent", "received"}``: the
  exchange or tunnel ended; bytes from the worker and to it.
- ``{"op": "pong", "id"}``.
"""

from __future__ import annotations

from typing import Any

import msgpack

#: The largest datagram either end sends (a policy with its secrets fits).
MAX_DATAGRAM = 1 << 20


def encode(message: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"egress control message of {len(data)} bytes is too large")
    return data


def decode(data: bytes) -> dict[str, Any]:
    """The map in ``data``; ``ValueError`` if it is not one with an ``op``."""
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ValueError(f"undecodable egress control message: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ValueError("egress control message is not a map with an 'op'")
    return message
