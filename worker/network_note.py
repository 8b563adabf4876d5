"""Why a connection failed, added to a call's error when the sandbox is the
cause: a tool that meets "Temporary failure in name resolution" or
"Network is unreachable" in a worker without network access (or with
egress through the proxy only) says so, instead of leaving the reader to
guess at the remote service."""

from __future__ import annotations

import _socket  # not socket: a few ms less at start
import errno

_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED}
#: What the syscall filter answers for an IP socket where there is no
#: network namespace: counted only for errors that name no file.
_REFUSED = {errno.EACCES, errno.EPERM}
#: What resolvers and HTTP libraries print when they give up for want of a route.
_PHRASES = (
    "temporary failure in name resolution",
    "name or service not known",
    "network is unreachable",
    "no address associated with hostname",
)


def note_for(policy: dict, set_name: str, allow: list[str]) -> str:
    """The sentence to add for this set ("" for a set with full network)."""
    if policy.get("network", False):
        return ""
    if policy.get("egress", False):
        listed = ", ".join(allow) if allow else "nothing"
        return (
            f" [fnhost sandbox: set '{set_name}' reaches the network only through the fnhost "
            f"egress proxy (HTTP_PROXY), which allows {listed}; direct connections and DNS "
            "lookups from the worker fail]"
        )
    return (
        f" [fnhost sandbox: set '{set_name}' has no network access (Sandbox(network=False)); "
        "every connection and DNS lookup fails]"
    )


def explains(exc: BaseException, message: str, refusals: bool = False) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a failed
    connection or name lookup. ``refusals``: the worker has no network
    namespace, so its syscall filter refuses IP sockets: a permission error
    that names no file counts too (elsewhere it is anything but the network:
    a signal to another process, say)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 16:
        if isinstance(current, _socket.gaierror):
            return True
        if isinstance(current, OSError) and (
            current.errno in _ERRNOS
            or (refusals and current.errno in _REFUSED and current.filename is None)
        ):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    lowered = message.lower()
    return any(phrase in lowered for phrase in _PHRASES)
