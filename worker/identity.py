"""A worker's own identity, taken while the enclosure is set up
(``worker.enclosure``): the drop to its own uid and gid for good, the user
namespace a host that is not root enters to make the others, and handing
the worker what the host made for it (its capture files, its scratch
directory when there is no private view). Nothing here raises for what the
kernel refuses: each says whether it held.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWUSER = 0x10000000


def open_capture_files(uid: int, subordinate: bool) -> None:
    """Let the worker's uid open its capture files (fd 1/2) again:
    ``open("/dev/stdout")`` reopens them. A root host gives them to it; a
    host that is not root keeps them and gives the worker's gid write
    access (they lie in the host's directory, out of the worker's view)."""
    for fd in (1, 2):
        try:
            if subordinate:
                os.fchown(fd, -1, uid)
                os.fchmod(fd, 0o620)
            else:
                os.fchown(fd, uid, uid)
        except OSError:
            pass


def root_in_own_userns() -> bool:
    """Enter a new user namespace with our uid and gid mapped to 0 inside:
    capabilities over the namespaces created from it, none over the host's."""
    uid, gid = os.getuid(), os.getgid()
    if ctypes.CDLL(None, use_errno=True).unshare(ctypes.c_int(CLONE_NEWUSER)) != 0:
        return False
    try:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"0 {uid} 1"),
            ("gid_map", f"0 {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError:
        return False  # in a namespace with nothing mapped: as unprivileged as before
    return os.geteuid() == 0


def share_scratch(scratch: str, uid: int | None) -> None:
    """No private view: the host-made scratch directory becomes the
    worker's, and its directory passable (not readable) by it."""
    if uid is None:
        return
    try:
        os.chown(scratch, uid, uid)
        os.chmod(os.path.dirname(scratch), 0o711)
    except OSError:
        pass


def become(uid: int) -> bool:
    """Drop to uid and gid ``uid`` with no supplementary groups, for good
    (the saved ids change too, capabilities are gone). True if it holds:
    switching back to root is refused."""
    try:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    except OSError:
        return False
    try:
        os.setuid(0)
    except PermissionError:
        return True
    return False
