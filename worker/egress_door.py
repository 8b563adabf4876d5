"""The worker's one way out under an egress policy (``host.egress``).

The worker sits in a network namespace of its own, which has a loopback
device and nothing else: no route leaves it. ``open_door`` (run while the
worker still holds capabilities in that namespace, before user code)
brings loopback up, listens on ``127.0.0.1:PROXY_PORT`` and hands the
listening socket to the host over the door socket the host gave it (then
closes both): the host passes it on to its egress proxy, which accepts the
worker's connections there and is the only thing that can take them
anywhere. User code never holds the listening socket, so it can neither
accept its own connections nor close the door.

``announce`` then writes the CA bundle (the system's CAs, the set's
interception CA, any extra upstream CAs) into the scratch directory and
sets the proxy and bundle variables every common HTTP client reads.
``probe`` checks that the namespace has no way out but loopback.
"""

from __future__ import annotations

import _socket
import array
import errno
import fcntl
import os
import struct

#: Where the proxy answers inside every egress worker's namespace.
PROXY_PORT = 3128
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
#: The bundle, in the scratch directory.
BUNDLE_NAME = ".fnhost-egress-ca.pem"

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFF_RUNNING = 0x40
#: An address that is never routed (TEST-NET-1, RFC 5737): a connection to
#: it fails at once without a route and sends nothing anywhere.
_OUTSIDE = ("192.0.2.1", 80)


def _loopback_up() -> None:
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        wanted = flags | _IFF_UP | _IFF_RUNNING
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", wanted))
    finally:
        sock.close()


def open_door(door_fd: int) -> str | None:
    """Loopback up, the listener made and sent over ``door_fd``; ``door_fd``
    is closed whatever happens. None on success, else what failed."""
    listener = None
    try:
        _loopback_up()
        listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", PROXY_PORT))
        listener.listen(128)
        door = _socket.socket(fileno=door_fd)
        door_fd = -1  # the socket object owns it now
        try:
            fds = array.array("i", [listener.fileno()])
            door.sendmsg([b"door"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds.tobytes())])
        finally:
            door.close()
        return None
    except OSError as exc:
        return f"egress door: {exc.strerror or exc}"
    finally:
        if listener is not None:
            listener.close()
        if door_fd >= 0:
            try:
                os.close(door_fd)
            except OSError:
                pass


def announce(config: dict, scratch: str) -> None:
    """Write the CA bundle and set the variables HTTP clients read:
    ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` (and lowercase) and, where
    the set has an interception CA or extra upstream CAs, ``SSL_CERT_FILE``,
    ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE``. ``NO_PROXY`` is dropped:
    nothing bypasses the proxy (nothing else leads anywhere)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ[name] = os.environ[name.lower()] = PROXY_URL
    os.environ.pop("NO_PROXY", None)
    os.environ.pop("no_proxy", None)
    extra = config.get("ca") or ""
    if not extra:
        return
    parts = []
    system = config.get("system_cafile")
    if system:
        try:
            with open(system, "rb") as f:
                parts.append(f.read())
        except OSError:
            pass
    parts.append(extra.encode())
    path = os.path.join(scratch, BUNDLE_NAME)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    with open(fd, "wb") as f:
        f.write(b"\n".join(parts))
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ[name] = path


def probe() -> bool:
    """Loopback is the namespace's only interface, and a connection to an
    outside address fails for want of a route."""
    try:
        names = [name for _index, name in _socket.if_nameindex()]
    except OSError:
        return False
    if names != ["lo"]:
        return False
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.settimeout(0.5)
        sock.connect(_OUTSIDE)
    except OSError as exc:
        return exc.errno == errno.ENETUNREACH
    finally:
        sock.close()
    return False
