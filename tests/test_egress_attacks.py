"""An adversarial review of the egress door: a tool module written as a
hostile model or plugin author would write it, against real workers, the real
proxy process and a real, odd upstream on 127.0.0.1 (``Reflector``: an HTTPS
or HTTP server that quotes the request's credential back in the ways real
servers do). Nothing leaves 127.0.0.1.

Each test is named for a promise of the egress door (issue 16) and fails
while the proxy breaks it.
"""

from __future__ import annotations

import base64
import gc
import gzip
import json
import os
import socket
import ssl
import threading
import zlib
from urllib.parse import quote

import pytest

from host import Allow, Egress, Header, Limits, Sandbox, Secret
from host.egress.gateway import KEPT_PER_DOOR
from host.egress.record import EgressRecord
from tests import egress_servers
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)

#: Holds the characters that JSON (PHP's escaping) and percent-encoding change.
SECRET = "sk-live/0123+4567=abcdef-SECRET"

#: The untrusted tool module: raw sockets to the proxy, its own TLS client
#: (trusting the bundle fnhost gave it), and some decoding.
ATTACKS = r'''
import base64, gzip, json, os, socket, ssl
from urllib.parse import unquote


def _read_all(sock, limit=1 << 20):
    data = b""
    sock.settimeout(20)
    try:
        while len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (OSError, ssl.SSLError):
        pass
    return data


def _body(response: bytes) -> bytes:
    head, _, body = response.partition(b"\r\n\r\n")
    if b"chunked" not in head.lower():
        return body
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2:]
    return out


def plain(raw: str) -> str:
    """Raw bytes to the proxy; all it answers."""
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(raw.encode("latin-1"))
    return _read_all(s).decode("latin-1")


def _tunnel(authority: str, raw: str, sni: str = "127.0.0.1") -> bytes:
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = s.recv(1)
        if not byte:
            return head
        head += byte
    if not head.startswith(b"HTTP/1.1 200"):
        return head + _read_all(s)
    tls = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    t = tls.wrap_socket(s, server_hostname=sni)
    t.sendall(raw.encode("latin-1"))
    return _read_all(t)


def tunnel(authority: str, raw: str) -> str:
    """CONNECT, TLS verified against the worker's bundle, raw bytes; all answered."""
    return _tunnel(authority, raw).decode("latin-1")


def get(authority: str, path: str, extra: str = "") -> str:
    """GET path over an intercepted tunnel; the body, unchunked."""
    raw = f"GET {path} HTTP/1.1\r\nHost: {authority}\r\n{extra}Connection: close\r\n\r\n"
    return _body(_tunnel(authority, raw)).decode("latin-1")


def ungzip_all(authority: str, path: str) -> str:
    """The body, gunzipped for as long as it is gzip."""
    data = _body(_tunnel(authority, f"GET {path} HTTP/1.1\r\nHost: {authority}\r\n"
                         "Connection: close\r\n\r\n"))
    while data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("latin-1")


def decoded(authority: str, path: str, how: str) -> str:
    """The echo undone: percent-encoding, JSON escapes or base64."""
    text = get(authority, path)
    if how == "percent":
        return unquote(text)
    if how == "json":
        return json.dumps(json.loads(text))  # json.loads undoes \/
    return base64.b64decode(text).decode("latin-1")


def slice_secret(authority: str) -> str:
    """The credential, fetched in two byte ranges of an echo."""
    def piece(a: int, b: int) -> str:
        return get(authority, "/range", f"Range: bytes={a:06d}-{b:06d}\r\n")

    whole = piece(0, 999999)
    start = whole.find("[fnhost:credential]")
    return piece(start, start + 9) + piece(start + 10, 999999)


def bomb(authority: str, mib: int) -> int:
    """GET a gzip bomb (read 1 MiB of it); how many bytes came."""
    return len(_tunnel(authority, f"GET /bomb?n={mib} HTTP/1.1\r\nHost: {authority}\r\n"
                       "Connection: close\r\n\r\n"))


def connect_names(suffix: str, n: int, port: int) -> int:
    """n CONNECTs to distinct names ending in suffix; how many got a 200."""
    ok = 0
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
        s.sendall(f"CONNECT n{i}{suffix}:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        ok += s.recv(64).startswith(b"HTTP/1.1 200")
        s.close()
    return ok


def refused(n: int, port: int) -> int:
    """n requests to an unlisted port, a connection each; how many got a 403."""
    count = 0
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
        s.sendall(f"GET http://127.0.0.1:{port}/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        count += s.recv(64).startswith(b"HTTP/1.1 403")
        s.close()
    return count


def https_get(url: str) -> str:
    """requests, as any tool would."""
    import requests

    r = requests.get(url, timeout=20)
    return f"{r.status_code} {r.text}"


def urllib_get(url: str) -> str:
    """urllib (the standard library's default TLS context), as any tool would."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=20) as r:
        return f"{r.status} {r.read().decode()}"


def urllib_gets(url: str, n: int) -> int:
    """n urllib GETs, a new connection (and TLS handshake) each; how many
    answered 200. A failure raises."""
    import urllib.request

    ok = 0
    for _ in range(n):
        with urllib.request.urlopen(url, timeout=20) as r:
            r.read()
            ok += r.status == 200
    return ok
'''


class Reflector:
    """An upstream on 127.0.0.1 that quotes the request back (with TLS from
    the test CA, or plain). Records each request's raw head (and body)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.sock.getsockname()[1]
        self.tls = tls
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def heads(self) -> list[str]:
        return [r.split(b"\r\n\r\n")[0].decode("latin-1") for r in self.requests]

    def close(self) -> None:
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head = data.split(b"\r\n\r\n")[0].lower()
            if b"content-length" in head or b"transfer-encoding" in head:
                conn.settimeout(0.3)  # the body, whatever framing it claims
                try:
                    while chunk := conn.recv(65536):
                        data += chunk
                except OSError:
                    pass
                conn.settimeout(10)
            self.requests.append(data)
            conn.sendall(self._answer(data))
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def _answer(self, request: bytes) -> bytes:
        lines = request.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        auth = headers.get("authorization", "")
        echo = "".join(f"{k}: {v}\n" for k, v in headers.items()).encode("latin-1")

        def ok(body: bytes, *extra: str) -> bytes:
            head = "".join(f"{h}\r\n" for h in extra)
            return (
                f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body

        if path == "/reason":  # an API whose 401 quotes the token it got
            return f"HTTP/1.1 401 invalid token {auth}\r\nContent-Length: 0\r\n\r\n".encode()
        if path == "/badheader":  # a sloppy server: a header line without a colon
            return (
                f"HTTP/1.1 401 No\r\nWWW-Authenticate {auth}\r\nContent-Length: 0\r\n\r\n".encode()
            )
        if path == "/badstatus":
            return f"HTTP/1.1 four-oh-one {auth}\r\nContent-Length: 0\r\n\r\n".encode()
        if path == "/gz2":  # encoded twice, one header per coding
            body = gzip.compress(gzip.compress(echo))
            return ok(body, "Content-Encoding: gzip", "Content-Encoding: gzip")
        if path == "/range":
            spec = headers.get("range", "")
            if spec.startswith("bytes="):
                a, b = (int(x) for x in spec[6:].split("-"))
                part = echo[a : b + 1]
                return (
                    f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-"
                    f"{a + len(part) - 1}/{len(echo)}\r\nContent-Length: {len(part)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode() + part
            return ok(echo, "Accept-Ranges: bytes")
        if path == "/percent":
            return ok(quote(echo.decode("latin-1"), safe="").encode())
        if path == "/json":  # PHP's json_encode escapes slashes
            return ok(json.dumps(dict(headers)).replace("/", "\\/").encode())
        if path == "/base64":
            return ok(base64.b64encode(echo))
        if path.startswith("/bomb"):
            mib = int(path.split("n=")[1])
            packer = zlib.compressobj(9, zlib.DEFLATED, 31)
            zeros = bytes(1 << 20)
            body = b"".join(packer.compress(zeros) for _ in range(mib)) + packer.flush()
            return ok(body, "Content-Encoding: gzip")
        return ok(lines[0].encode("latin-1") + b"\n" + echo)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("egress-attacks"))
    ca_file, tls = egress_servers.make_test_ca(directory)
    secure, plain = Reflector(tls), Reflector()
    yield {"https": secure, "http": plain, "ca": ca_file}
    secure.close()
    plain.close()


@pytest.fixture
def up(upstream, monkeypatch):
    monkeypatch.setenv("FNHOST_ATTACK_KEY", SECRET)
    for key in ("https", "http"):
        upstream[key].requests.clear()
    return upstream


def limits(up, *allow, credentials=True, **extra) -> Limits:
    creds = {"127.0.0.1": Header("Authorization", "Bearer {}", Secret.env("FNHOST_ATTACK_KEY"))}
    egress = Egress(
        allow=[up["https"].target, up["http"].target, *allow],
        credentials=creds if credentials else {},
        upstream_cafile=up["ca"],
        **extra,
    )
    return Limits(timeout=60.0, memory_mb=512, sandbox=Sandbox(network=egress))


def load(make_host, write_set, lim: Limits):
    fh = make_host()
    fh.load_function_set(str(write_set("tool", ATTACKS)), limits=lim)
    assert fh.load_errors == {}, fh.load_errors
    return fh


def _proxy_pid() -> int:
    [pid] = [
        int(e)
        for e in os.listdir("/proc")
        if e.isdigit() and _is_our_proxy(e)  # this test host's proxy only
    ]
    return pid


def _is_our_proxy(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat") as f:
            parent = f.read().rsplit(")", 1)[1].split()[1]
    except OSError:
        return False
    return b"host.egress.proxy_main" in argv and parent == str(os.getpid())


def _memory_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


# -- the credential never reaches the worker -----------------------------------


@pytest.mark.parametrize("path", ["/badheader", "/badstatus"])
def test_the_proxys_own_error_text_never_quotes_the_credential(make_host, write_set, up, path):
    """A malformed response head that quotes the credential: the 502 the
    proxy makes of it must not hand the quoted bytes to the worker."""
    https = up["https"]
    fh = load(make_host, write_set, limits(up))
    raw = f"GET {path} HTTP/1.1\r\nHost: {https.target}\r\nConnection: close\r\n\r\n"
    answer = fh.call("tool.tunnel", {"authority": https.target, "raw": raw})
    assert answer.startswith("HTTP/1.1 502")
    assert SECRET in https.requests[-1].decode("latin-1")  # upstream got it, and quoted it
    assert SECRET not in answer


def test_the_reason_phrase_relayed_from_upstream_is_scrubbed(make_host, write_set, up):
    https = up["https"]
    fh = load(make_host, write_set, limits(up))
    raw = f"GET /reason HTTP/1.1\r\nHost: {https.target}\r\nConnection: close\r\n\r\n"
    answer = fh.call("tool.tunnel", {"authority": https.target, "raw": raw})
    assert answer.startswith("HTTP/1.1 401")
    assert SECRET not in answer


def test_a_body_encoded_twice_is_decoded_twice_or_refused(make_host, write_set, up):
    """Two Content-Encoding headers (gzip, then gzip): undoing one leaves
    the echoed credential compressed, out of the scrubber's sight."""
    https = up["https"]
    fh = load(make_host, write_set, limits(up))
    text = fh.call("tool.ungzip_all", {"authority": https.target, "path": "/gz2"})
    assert SECRET not in text


def test_byte_ranges_cannot_cut_the_credential_past_the_scrubber(make_host, write_set, up):
    """An upstream that honours Range on an echo: two ranges, each holding
    part of the credential, pass a scrubber that looks for the whole."""
    https = up["https"]
    fh = load(make_host, write_set, limits(up))
    pieced = fh.call("tool.slice_secret", {"authority": https.target})
    assert SECRET not in pieced


@pytest.mark.parametrize("how", ["percent", "json", "base64"])
def test_common_encodings_of_an_echoed_credential_are_scrubbed(make_host, write_set, up, how):
    """Percent-encoded (a redirect's query), JSON with escaped slashes (PHP's
    json_encode), base64 (a debug blob): the worker decodes them."""
    https = up["https"]
    fh = load(make_host, write_set, limits(up))
    text = fh.call("tool.decoded", {"authority": https.target, "path": f"/{how}", "how": how})
    assert "authorization" in text  # the echo came through, decoded
    assert SECRET not in text


@pytest.mark.parametrize("target", ["https://evil.example/x", "HTTP://evil.example/x"])
def test_inside_a_tunnel_upstream_never_gets_a_target_naming_another_host(
    make_host, write_set, up, target
):
    """The Host header must name the tunnel's host; an absolute-form target
    overrides Host at the origin (RFC 9112 3.2.2), so it must not pass
    either: a server with virtual hosts would route the credential to
    evil.example's site on the same address."""
    https = up["https"]
    fh = load(make_host, write_set, limits(up))
    raw = f"GET {target} HTTP/1.1\r\nHost: {https.target}\r\nConnection: close\r\n\r\n"
    fh.call("tool.tunnel", {"authority": https.target, "raw": raw})
    assert [h for h in https.heads() if "evil.example" in h.split("\r\n")[0]] == []


# -- what upstream receives is what was checked --------------------------------


@pytest.mark.parametrize("where", ["http", "https"])
def test_upstream_never_gets_both_content_length_and_transfer_encoding(
    make_host, write_set, up, where
):
    """The proxy reads the body by Transfer-Encoding and forwards both
    framing headers: an upstream that reads by Content-Length sees the rest
    as a second request, one that no method or path rule checked."""
    server = up[where]
    fh = load(make_host, write_set, limits(up))
    smuggled = "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
    body = f"{len(smuggled):x}\r\n{smuggled}\r\n0\r\n\r\n"
    head = "Content-Length: 0\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    if where == "http":
        raw = f"POST http://{server.target}/v1/upload HTTP/1.1\r\nHost: x\r\n{head}{body}"
        fh.call("tool.plain", {"raw": raw})
    else:
        raw = f"POST /v1/upload HTTP/1.1\r\nHost: {server.target}\r\n{head}{body}"
        fh.call("tool.tunnel", {"authority": server.target, "raw": raw})
    [seen] = [h.lower() for h in server.heads()]
    assert not ("content-length" in seen and "transfer-encoding" in seen), seen


@pytest.mark.parametrize("cut", ["?", "#"])
def test_a_path_rule_is_checked_against_the_target_upstream_receives(make_host, write_set, up, cut):
    """``http://host?/v1/x`` is checked as the path /v1/x but sent as
    ``?/v1/x``: upstream serves a target that no rule allowed."""
    http = up["http"]
    rule = Allow(http.target, paths=("/v1/*",))
    egress = Egress(allow=[rule])
    fh = load(make_host, write_set, Limits(timeout=30.0, sandbox=Sandbox(network=egress)))
    raw = f"GET http://{http.target}{cut}/v1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    fh.call("tool.plain", {"raw": raw})
    targets = [h.split("\r\n")[0].split(" ")[1] for h in http.heads()]
    assert all(t.startswith("/v1/") for t in targets), targets


@pytest.mark.parametrize(
    "where,raw",
    [
        ("http", "GET http://127.0.0.1:99999/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("https", "GET / HTTP/1.1\r\nHost: 127.0.0.1:\xb2\r\n\r\n"),
    ],
    ids=["port-out-of-range", "host-header-superscript-port"],
)
def test_a_malformed_authority_gets_a_400_saying_so(make_host, write_set, up, where, raw):
    """Every bad input is a specific error: not a dropped connection."""
    fh = load(make_host, write_set, limits(up))
    if where == "http":
        answer = fh.call("tool.plain", {"raw": raw})
    else:
        answer = fh.call("tool.tunnel", {"authority": up["https"].target, "raw": raw})
    assert answer.startswith("HTTP/1.1 400 fnhost egress proxy"), repr(answer)


# -- one set cannot exhaust what the others share ------------------------------


def test_a_gzip_bomb_from_upstream_costs_the_proxy_bounded_memory(make_host, write_set, up):
    """The proxy gunzips a credential host's responses to scrub them, a
    whole read (64 KiB) at a time: 64 KiB of zeros becomes 64 MiB, several
    copies of it at once, per connection, in the one process every set's
    egress goes through (and after 5 deaths in 30 s it is given up for
    all). A worker can store such a body on many APIs and fetch it."""
    fh = load(make_host, write_set, limits(up))
    proxy = _proxy_pid()
    before = _memory_kib(proxy, "VmHWM")
    fh.call("tool.bomb", {"authority": up["https"].target, "mib": 64})
    grown_mib = (_memory_kib(proxy, "VmHWM") - before) / 1024
    assert grown_mib < 48, f"the proxy's peak grew by {grown_mib:.0f} MiB"


def test_leaf_certificates_for_pattern_hosts_do_not_grow_without_bound(make_host, write_set, up):
    """A pattern with method rules is intercepted: each new name the worker
    CONNECTs to costs the shared proxy a key, a signature (in its event
    loop) and a context kept forever; no upstream or DNS is needed."""
    fh = load(
        make_host,
        write_set,
        limits(up, Allow("*.example.test:443", methods=("GET",)), credentials=False),
    )
    proxy = _proxy_pid()

    def names(batch: str) -> None:
        args = {"suffix": f".{batch}.example.test", "n": 1500, "port": 443}
        assert fh.call("tool.connect_names", args) == 1500

    names("first")  # fills any cache of up to 1,500 leaves, warms the heap
    before = _memory_kib(proxy, "VmRSS")
    names("second")
    grown_mib = (_memory_kib(proxy, "VmRSS") - before) / 1024
    assert grown_mib < 8, f"1,500 more names grew the proxy by {grown_mib:.0f} MiB"


def test_refused_requests_leave_no_record_behind_in_the_host(make_host, write_set, up):
    """A refusal's decision waits in the gateway for a 'done' that never
    comes: each refused request is kept in the host process for good. The
    worker's records are bounded while it lives (``KEPT_PER_DOOR``, for
    call_detailed) and none outlives it (a reload replaces it)."""
    fh = load(make_host, write_set, limits(up))
    assert fh.call("tool.refused", {"n": 600, "port": 1}) == 600
    fh.call_detailed("tool.refused", {"n": 1, "port": 1})  # every decision read by now
    gc.collect()
    kept = sum(isinstance(o, EgressRecord) for o in gc.get_objects())
    assert 0 < kept <= KEPT_PER_DOOR, f"{kept} egress records kept in the host"
    fh.reload("tool")  # the worker replaced: its door closes once it is reaped

    def none_kept() -> bool:
        gc.collect()
        return not any(isinstance(o, EgressRecord) for o in gc.get_objects())

    assert wait_for(none_kept, 10), "egress records of a gone worker kept in the host"


# -- what the host says --------------------------------------------------------


def test_call_detailed_lists_every_decision_of_the_call(make_host, write_set, up):
    """CallResult.egress: 'the proxy's decisions for its worker while the
    call ran'. A worker that makes 300 hides its first 44 from the record."""
    fh = load(make_host, write_set, limits(up))
    result = fh.call_detailed("tool.refused", {"n": 300, "port": 1})
    assert result.value == 300
    assert [r.path for r in result.egress][:1] == ["/0"]
    assert len(result.egress) == 300


def test_a_credential_for_an_address_works_beside_a_name_pattern_with_rules(
    make_host, write_set, up
):
    """The set's CA is constrained to a DNS subtree and an IP: the address's
    leaf (CN 127.0.0.1, no DNS name) then fails verification ("permitted
    subtree violation") in every client that checks the CN against name
    constraints, as the standard library's default context does."""
    https = up["https"]
    fh = load(make_host, write_set, limits(up, Allow("*.example.test:443", methods=("GET",))))
    url = f"https://{https.target}/ok"
    assert fh.call("tool.https_get", {"url": url}).startswith("200")  # (urllib3 skips the CN)
    assert fh.call("tool.urllib_get", {"url": url}).startswith("200")


def test_an_intercepted_tunnel_takes_a_client_hello_sent_as_soon_as_the_200_arrives(
    make_host, write_set, up
):
    """The standard library's client sends its ClientHello the moment it has
    read the tunnel's 200. Each such handshake must be answered: a
    ClientHello the proxy read as plain bytes (before its TLS layer took
    the connection over) stalled the handshake until the client gave up."""
    https = up["https"]
    fh = load(make_host, write_set, limits(up))
    n = 100  # on the old proxy each stalled with some chance; all 9 runs of 40 did
    assert fh.call("tool.urllib_gets", {"url": f"https://{https.target}/ok", "n": n}) == n


def test_a_secret_is_read_again_when_a_new_worker_starts(make_host, write_set, up, tmp_path):
    """Secret: 'read by the host when a worker of the set starts'. A rotated
    key file must reach upstream from the next worker on."""
    https = up["https"]
    key = tmp_path / "key"
    key.write_text("first-key-0001")
    egress = Egress(
        allow=[https.target],
        credentials={"127.0.0.1": Header("X-Key", "{}", Secret.file(key))},
        upstream_cafile=up["ca"],
    )
    fh = load(make_host, write_set, Limits(timeout=30.0, sandbox=Sandbox(network=egress)))
    fh.call("tool.get", {"authority": https.target, "path": "/one"})
    key.write_text("second-key-0002")
    fh.reload("tool")
    fh.call("tool.get", {"authority": https.target, "path": "/two"})
    assert "x-key: second-key-0002" in https.heads()[-1].lower()
