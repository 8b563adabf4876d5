"""An egress policy: which hosts a set's workers may reach, how, and with
which credentials the worker never sees (``Sandbox(network=Egress(...))``).

What the policy means at run time (the proxy, the door into the worker's
network namespace, the probes) is in ``docs/egress.md``. This module only
describes and checks a policy; it imports nothing heavy, so a host that
never uses one pays nothing for it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

#: A host pattern: a DNS name (``*.`` in front for any subdomain), an IPv4
#: address, or an IPv6 address in brackets.
_NAME = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_-]{1,63}$")
_METHOD = re.compile(r"^[A-Z]{1,20}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")


def split_target(target: str) -> tuple[str, str]:
    """``"host:port"`` (IPv6 as ``"[::1]:443"``) -> (host, port text).
    Raises ``ValueError`` naming what is wrong."""
    if not isinstance(target, str):
        raise TypeError(f"an egress target must be 'host:port', not {type(target).__name__}")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port:
        raise ValueError(
            f"egress target {target!r}: expected 'host:port' (e.g. 'api.example.com:443')"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.lower(), port


def check_host_pattern(host: str, what: str) -> str:
    """``host`` lowercased if it is a name, ``*.name`` or an IP address."""
    host = host.lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host == "*":
        raise ValueError(f"{what}: '*' alone would allow every host; list them")
    if not _NAME.match(host):
        raise ValueError(f"{what}: {host!r} is not a host name, '*.name' or an IP address")
    return host


@dataclass(frozen=True)
class Allow:
    """One allowed destination, ``"host:port"``, and optionally the HTTP
    methods and paths allowed there.

    - ``target``: ``"api.example.com:443"``; ``"*.example.com:443"`` allows
      every subdomain (not ``example.com`` itself); the port may be ``*``.
      IP addresses are matched as written (``"127.0.0.1:8080"``,
      ``"[::1]:8443"``); a name never matches an address or the reverse.
    - ``methods``: e.g. ``("GET", "POST")``; ``None`` allows any.
    - ``paths``: glob patterns of the request path without its query, e.g.
      ``("/v1/*",)`` (``*`` spans ``/`` too); ``None`` allows any. A path
      with dot segments (``/../``) or an encoded slash is refused.

    With ``methods`` or ``paths`` set, HTTPS to that host is intercepted
    (the proxy terminates TLS to see each request; see ``Egress``).
    """

    target: str
    methods: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        host, port = split_target(self.target)
        host = check_host_pattern(host, f"egress target {self.target!r}")
        if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"egress target {self.target!r}: the port must be 1-65535 or '*'")
        if self.methods is not None:
            methods = _tuple(self.methods, "methods")
            methods = tuple(m.upper() for m in methods)
            for method in methods:
                if not _METHOD.match(method):
                    raise ValueError(f"egress target {self.target!r}: bad method {method!r}")
            object.__setattr__(self, "methods", methods)
        if self.paths is not None:
            paths = _tuple(self.paths, "paths")
            for path in paths:
                if not path.startswith("/"):
                    raise ValueError(
                        f"egress target {self.target!r}: path pattern {path!r} must start with '/'"
                    )
            object.__setattr__(self, "paths", paths)

    @property
    def host(self) -> str:
        return check_host_pattern(split_target(self.target)[0], self.target)

    @property
    def port(self) -> int | None:
        """The port, or ``None`` for any."""
        port = split_target(self.target)[1]
        return None if port == "*" else int(port)

    def to_wire(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "methods": None if self.methods is None else list(self.methods),
            "paths": None if self.paths is None else list(self.paths),
        }


@dataclass(frozen=True)
class Secret:
    """Where a credential's value comes from, read by the host when a
    worker of the set starts (never by the worker): ``Secret.env("NAME")``
    (the host's environment) or ``Secret.file(path)`` (a file's content,
    surrounding whitespace stripped). Its ``repr`` names the source only.
    """

    kind: str
    ref: str

    @classmethod
    def env(cls, name: str) -> Secret:
        return cls("env", name)

    @classmethod
    def file(cls, path: str | os.PathLike[str]) -> Secret:
        return cls("file", os.path.abspath(os.fspath(path)))

    def __post_init__(self) -> None:
        if self.kind not in ("env", "file") or not isinstance(self.ref, str) or not self.ref:
            raise ValueError("use Secret.env(NAME) or Secret.file(PATH)")

    def read(self) -> str:
        """The value. Raises ``ValueError`` saying which variable or file is
        missing or empty."""
        if self.kind == "env":
            value = os.environ.get(self.ref)
            if not value:
                raise ValueError(f"environment variable {self.ref} is not set in the host")
            return value
        try:
            with open(self.ref, encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as exc:
            raise ValueError(f"cannot read {self.ref}: {exc.strerror or exc}") from None
        if not value:
            raise ValueError(f"{self.ref} is empty")
        return value

    def __repr__(self) -> str:
        return f"Secret.{self.kind}({self.ref!r})"


@dataclass(frozen=True)
class Header:
    """A header the proxy adds (or replaces) on every request to a host,
    after the allow-list check: ``Header("Authorization", "Bearer {}",
    Secret.env("API_KEY"))``. ``template`` holds ``{}`` once, where the
    secret goes."""

    name: str
    template: str
    secret: Secret

    def __post_init__(self) -> None:
        if not _HEADER_NAME.match(self.name):
            raise ValueError(f"credential header name {self.name!r} is not a header name")
        if not isinstance(self.template, str) or self.template.count("{}") != 1:
            raise ValueError(f"credential header template {self.template!r} must hold '{{}}' once")
        if any(c in self.template for c in "\r\n\0"):
            raise ValueError("credential header template must not hold CR, LF or NUL")
        if not isinstance(self.secret, Secret):
            raise TypeError("secret must be a Secret (Secret.env(NAME) or Secret.file(PATH))")


@dataclass(frozen=True)
class Egress:
    """Network access through fnhost's egress proxy only.

    The worker keeps its own network namespace (no route anywhere); inside
    it, ``127.0.0.1:3128`` leads to a proxy process fnhost runs, announced
    in ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``, so ``requests``,
    ``httpx``, ``urllib`` and ``aiohttp`` (``trust_env=True``) use it with
    no code change. The proxy resolves names, enforces ``allow`` and answers
    anything else with 403 and a reason that names the fnhost egress
    policy, the set, the host and the port.

    - ``allow``: ``"host:port"`` strings or ``Allow`` entries.
    - ``credentials``: ``{host: Header or [Header, ...]}``. For HTTPS to
      such a host (it must be allowed) the proxy terminates TLS with a
      certificate from a CA it made for this set alone (the worker's
      ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE`` bundle holds it beside the
      system's CAs), sets the headers, and connects upstream verifying the
      server against the system's CAs. The secret's value never enters the
      worker; the proxy replaces it with ``[fnhost:credential]`` in the
      response headers and plain bodies it relays back.
    - ``upstream_cafile``: extra CA certificates (PEM) trusted for upstream
      servers, besides the system's (the worker trusts them too).
    - ``max_connections``: open connections per worker (past it, 503).
    - ``head_timeout``: seconds to send a request's head; ``idle_timeout``:
      seconds a connection may sit without traffic either way.
    - ``max_body_bytes``: the largest request body the proxy relays.
    """

    allow: Sequence[str | Allow] = ()
    credentials: Mapping[str, Header | Sequence[Header]] = field(default_factory=dict)
    upstream_cafile: str | None = None
    max_connections: int = 64
    head_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_body_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if isinstance(self.allow, (str, Allow)):
            raise TypeError("allow must be a list of 'host:port' targets, not one target")
        allow = tuple(a if isinstance(a, Allow) else Allow(a) for a in self.allow)
        object.__setattr__(self, "allow", allow)
        if not isinstance(self.credentials, Mapping):
            raise TypeError("credentials must map a host to a Header or a list of Headers")
        credentials: dict[str, tuple[Header, ...]] = {}
        for host, headers in self.credentials.items():
            name = check_host_pattern(str(host), f"credential host {host!r}")
            if name.startswith("*."):
                raise ValueError(f"credential host {host!r}: name one host, not a pattern")
            items = (headers,) if isinstance(headers, Header) else tuple(headers)
            if not items or not all(isinstance(h, Header) for h in items):
                raise TypeError(f"credentials[{host!r}] must be a Header or a list of Headers")
            if not any(a.host == name or _covers(a.host, name) for a in allow):
                raise ValueError(f"credential host {host!r} is not in the allow-list")
            credentials[name] = items
        object.__setattr__(self, "credentials", _FrozenMap(credentials))
        if self.upstream_cafile is not None:
            object.__setattr__(self, "upstream_cafile", os.path.abspath(self.upstream_cafile))
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.head_timeout <= 0 or self.idle_timeout <= 0:
            raise ValueError("head_timeout and idle_timeout must be positive")
        if self.max_body_bytes < 0:
            raise ValueError("max_body_bytes must be >= 0")

    @property
    def targets(self) -> list[str]:
        """The allow-list as written (``host:port``), for reports."""
        return [a.target for a in self.allow]  # type: ignore[union-attr]

    def intercepted_hosts(self) -> list[str]:
        """Hosts whose HTTPS the proxy terminates: those with credentials,
        and those whose entries restrict methods or paths (``*.name`` for a
        pattern)."""
        hosts = set(self.credentials)
        for entry in self.allow:
            assert isinstance(entry, Allow)
            if entry.methods is not None or entry.paths is not None:
                hosts.add(entry.host)
        return sorted(hosts)

    def to_proxy(self) -> dict[str, Any]:
        """What the proxy needs (secrets read now). Raises ``ValueError``
        naming the credential whose secret cannot be read."""
        credentials = {}
        for host, headers in self.credentials.items():
            values = []
            for h in cast(tuple[Header, ...], headers):  # made a tuple by __post_init__
                try:
                    secret = h.secret.read()
                except ValueError as exc:
                    raise ValueError(f"egress credential for {host}: {exc}") from None
                if any(c in secret for c in "\r\n\0"):
                    raise ValueError(
                        f"egress credential for {host}: the secret holds CR, LF or NUL"
                    )
                values.append([h.name, h.template.replace("{}", secret), secret])
            credentials[host] = values
        return {
            "allow": [a.to_wire() for a in self.allow],  # type: ignore[union-attr]
            "credentials": credentials,
            "upstream_cafile": self.upstream_cafile,
            "max_connections": self.max_connections,
            "head_timeout": self.head_timeout,
            "idle_timeout": self.idle_timeout,
            "max_body_bytes": self.max_body_bytes,
        }


def _covers(pattern: str, host: str) -> bool:
    return pattern.startswith("*.") and host.endswith(pattern[1:])


def _tuple(value: Iterable[str] | str, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"{what} must be a list of strings, not one string")
    items = tuple(value)
    if not items or not all(isinstance(v, str) for v in items):
        raise TypeError(f"{what} must be a non-empty list of strings")
    return items


class _FrozenMap(Mapping[str, tuple[Header, ...]]):
    """A read-only, hashable mapping (``Egress`` is frozen and hashable)."""

    def __init__(self, items: dict[str, tuple[Header, ...]]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> tuple[Header, ...]:
        return self._items[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return repr(self._items)
