"""Linux namespaces the worker moves itself into before user code runs.

- user namespace: the worker keeps its real uid (the kernel still checks
  files against it) but holds no capability in the host's namespaces: it
  cannot mount, load modules, change network or system settings, or use a
  capability on the host's objects. No id is mapped into the namespace (it
  sees itself as the overflow uid 65534): a mapped id would let the
  namespace's own capabilities override permissions on files that id owns.
  For a host running as root, the owner permission bits of root-owned files
  still apply to its workers (writes are confined by Landlock; reads are
  not).
- network namespace: a fresh one has only a loopback device, down, so every
  connection (127.0.0.1 included) fails with ``ENETUNREACH``, and abstract
  Unix sockets of the host are out of reach. Created only when the set has
  no network access.

``unshare`` needs a single-threaded process: the zygote's children and a
freshly spawned worker are. It fails where unprivileged user namespaces are
disabled (``max_user_namespaces`` 0, AppArmor's restriction on Ubuntu
24.04+, some containers); a process with ``CAP_SYS_ADMIN`` (root here)
can then still take a network namespace alone. Nothing raises: the result
says what happened, and ``worker.confinement`` probes the effect.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


@dataclass
class Namespaces:
    user: bool = False
    network: bool = False
    error: str | None = None


def _unshare(flags: int) -> str | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError as exc:
        return str(exc)
    if libc.unshare(ctypes.c_int(flags)) == 0:
        return None
    return os.strerror(ctypes.get_errno())


def isolate(user: bool, network: bool) -> Namespaces:
    """Enter a new user namespace (if ``user``) and network namespace (if
    ``network``), together where possible, then each alone as a fallback."""
    result = Namespaces()
    wanted = (CLONE_NEWUSER if user else 0) | (CLONE_NEWNET if network else 0)
    if not wanted:
        return result
    error = _unshare(wanted)
    if error is None:
        result.user, result.network = user, network
    else:
        result.error = f"unshare: {error}"
        # Without user namespaces, CAP_SYS_ADMIN still allows a network one.
        if network and user and _unshare(CLONE_NEWNET) is None:
            result.network = True
    return result
