"""Egress through the proxy: an allow-list per set, method and path rules,
credentials the worker never sees. Real workers, a real proxy process, real
HTTP(S) servers on 127.0.0.1 (``egress_servers``); nothing leaves the machine.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from host import (
    Allow,
    Egress,
    Header,
    Limits,
    LoadError,
    Sandbox,
    Secret,
    UserFunctionError,
)
from tests import egress_servers
from tests.conftest import both_start_methods, wait_for

pytestmark = pytest.mark.timeout(120)

SECRET = "sk-test-0123456789abcdef-SECRET"

CLIENTS = '''
import os, socket, json


def with_requests(url: str, method: str = "GET") -> str:
    """requests, no proxy configured in code."""
    import requests

    r = requests.request(method, url, timeout=10)
    return f"{r.status_code} {r.reason} | {r.text}"


def with_httpx(url: str) -> str:
    """httpx, no proxy configured in code."""
    import httpx

    r = httpx.get(url, timeout=10)
    return f"{r.status_code} {r.reason_phrase} | {r.text}"


def with_urllib(url: str) -> str:
    """urllib, no proxy configured in code."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return f"{r.status} | {r.read().decode()}"


def with_header(url: str, value: str) -> str:
    """requests with an Authorization header of the worker's making."""
    import requests

    r = requests.get(url, headers={"Authorization": value}, timeout=10)
    return r.text


def raw_connect(host: str, port: int) -> str:
    """A TCP connection without the proxy."""
    socket.create_connection((host, port), timeout=3).close()
    return "connected"


def lookup(name: str) -> str:
    """A DNS lookup from the worker."""
    return str(socket.getaddrinfo(name, 80))


def many(url: str, n: int) -> list:
    """n requests at once, from threads; each response's text."""
    import threading
    import requests
    from concurrent.futures import ThreadPoolExecutor

    threading.stack_size(512 * 1024)  # 50 threads inside the address-space limit

    def one(i):
        return requests.get(f"{url}?i={i}", timeout=30).text

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def environment() -> dict:
    """The worker's environment."""
    return dict(os.environ)
'''


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("egress-servers"))
    ca_file, tls = egress_servers.make_test_ca(directory)
    plain = egress_servers.start("http")
    secure = egress_servers.start("https", tls)
    other = egress_servers.start("http")
    yield {"http": plain, "https": secure, "other": other, "ca": ca_file}
    for server in (plain, secure, other):
        egress_servers.stop(server)


@pytest.fixture
def clean(servers):
    for key in ("http", "https", "other"):
        servers[key].seen.clear()
    return servers


def egress_limits(memory_mb: int = 512, **egress) -> Limits:
    return Limits(timeout=30.0, memory_mb=memory_mb, sandbox=Sandbox(network=Egress(**egress)))


def load(fh, write_set, name, limits, source=CLIENTS):
    fh.load_function_set(str(write_set(name, source)), limits=limits)
    assert fh.load_errors == {}, fh.load_errors


# -- the allow-list ----------------------------------------------------------


@both_start_methods
def test_listed_http_host_is_reached_by_every_client_without_code_changes(
    make_host, write_set, clean
):
    http = clean["http"]
    fh = make_host()
    load(fh, write_set, "web", egress_limits(allow=[http.target]))
    assert fh.call("web.with_requests", {"url": http.url("/a")}).startswith("200 OK | GET /a")
    assert fh.call("web.with_httpx", {"url": http.url("/b")}).startswith("200 OK | GET /b")
    assert fh.call("web.with_urllib", {"url": http.url("/c")}).startswith("200 | GET /c")
    assert [s.path for s in http.seen] == ["/a", "/b", "/c"]


def test_listed_https_host_is_tunnelled_and_verified_by_the_worker(make_host, write_set, clean):
    https = clean["https"]
    fh = make_host()
    load(fh, write_set, "web", egress_limits(allow=[https.target], upstream_cafile=clean["ca"]))
    for client in ("with_requests", "with_httpx", "with_urllib"):
        text = fh.call(f"web.{client}", {"url": https.url(f"/{client}")})
        assert text.startswith("200") and f"GET /{client}" in text
    assert len(https.seen) == 3


@pytest.mark.parametrize(
    "client", ["with_requests", "with_httpx", "with_urllib"], ids=lambda c: c[5:]
)
@pytest.mark.parametrize("where", ["unlisted-host", "unlisted-port", "unlisted-https"])
def test_unlisted_destinations_fail_with_the_fnhost_text_and_reach_nothing(
    make_host, write_set, clean, client, where
):
    http, other, https = clean["http"], clean["other"], clean["https"]
    fh = make_host()
    # Listed: the plain server's port on "localhost" only, so 127.0.0.1 is
    # an unlisted host; other's port is unlisted on every host.
    load(fh, write_set, "web", egress_limits(allow=[f"localhost:{http.port}", "127.0.0.2:1"]))
    url = {
        "unlisted-host": http.url("/x"),
        "unlisted-port": f"http://localhost:{other.port}/x",
        "unlisted-https": https.url("/x"),
    }[where]
    try:
        text = fh.call(f"web.{client}", {"url": url})
    except UserFunctionError as exc:
        text = str(exc)
    assert "fnhost egress policy blocked" in text
    assert "set 'web'" in text
    assert http.seen == [] and other.seen == [] and https.seen == []


def test_raw_connections_and_dns_lookups_have_no_route_and_say_why(make_host, write_set, clean):
    http = clean["http"]
    fh = make_host()
    load(fh, write_set, "web", egress_limits(allow=[http.target]))
    for name, args in (
        ("raw_connect", {"host": "127.0.0.1", "port": http.port}),
        ("raw_connect", {"host": "192.0.2.7", "port": 80}),
        ("lookup", {"name": "localhost.localdomain.example"}),
    ):
        with pytest.raises(UserFunctionError) as info:
            fh.call(f"web.{name}", args)
        assert "fnhost sandbox: set 'web' reaches the network only through" in str(info.value)
        assert http.target in str(info.value)
    assert http.seen == []


def test_method_and_path_rules_are_enforced_for_http_and_intercepted_https(
    make_host, write_set, clean
):
    http, https = clean["http"], clean["https"]
    fh = make_host()
    rules = {"methods": ("GET",), "paths": ("/v1/*",)}
    load(
        fh,
        write_set,
        "web",
        egress_limits(
            allow=[Allow(http.target, **rules), Allow(https.target, **rules)],
            upstream_cafile=clean["ca"],
        ),
    )
    for server in (http, https):
        ok = fh.call("web.with_requests", {"url": server.url("/v1/items")})
        assert ok.startswith("200") and "GET /v1/items" in ok
        for method, path in (("POST", "/v1/items"), ("GET", "/v2/items"), ("GET", "/v1/../admin")):
            text = fh.call("web.with_requests", {"url": server.url(path), "method": method})
            assert text.startswith("403 fnhost egress policy blocked"), text
        assert [(s.method, s.path) for s in server.seen] == [("GET", "/v1/items")]


# -- credentials ---------------------------------------------------------------

SEARCH = '''
import os


def find_in_memory(first: str, second: str) -> list:
    """Where first+second occurs in this process's memory (the two halves
    are searched for one after the other, so the whole never exists here
    unless it was already)."""
    import ctypes

    a, b = first.encode(), second.encode()
    found = []
    with open("/proc/self/maps") as maps:
        regions = [line.split() for line in maps]
    for fields in regions:
        name = fields[5] if len(fields) > 5 else ""
        if not fields[1].startswith("r") or name in ("[vvar]", "[vvar_vclock]", "[vsyscall]"):
            continue
        if name.startswith("/") and not name.startswith(("/usr", "/lib", "/memfd")):
            continue  # a mapped file of its own (cannot hold what never reached it)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        data = ctypes.string_at(start, end - start)  # its own memory, read directly
        i = data.find(a)
        while i >= 0:
            if data[i + len(a) : i + len(a) + len(b)] == b:
                found.append(name or fields[0])
            i = data.find(a, i + 1)
    return found


def ask_proxy(raw: str) -> str:
    """Raw bytes to the proxy itself; its answer."""
    import socket

    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(raw.encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data.decode("latin-1")


def find_in_files(needle_a: str, needle_b: str) -> list:
    """Files under its scratch dir (cwd, HOME, TMPDIR: where its CA bundle
    is), its set's directory, and its /proc/self files, that hold
    needle_a+needle_b."""
    needle = needle_a + needle_b  # only searched for if found by halves
    hits = []
    roots = {os.getcwd(), os.environ["HOME"], os.environ["TMPDIR"], os.path.dirname(__file__)}
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    with open(path, "rb") as f:
                        data = f.read(1 << 22)
                except OSError:
                    continue
                if needle_a.encode() in data and needle.encode() in data:
                    hits.append(path)
    for path in ("/proc/self/environ", "/proc/self/cmdline"):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except PermissionError:
            continue  # (not dumpable: closed even to itself)
        if needle_a.encode() in data and needle.encode() in data:
            hits.append(path)
    return hits
'''


def credential_limits(server, ca, **extra) -> Limits:
    return egress_limits(
        allow=[server.target],
        credentials={
            "127.0.0.1": Header("Authorization", "Bearer {}", Secret.env("FNHOST_TEST_KEY"))
        },
        upstream_cafile=ca,
        **extra,
    )


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("FNHOST_TEST_KEY", SECRET)
    return SECRET


def test_the_server_gets_the_credential_and_the_worker_cannot_find_it(
    make_host, write_set, clean, secret_env
):
    https = clean["https"]
    fh = make_host()
    load(fh, write_set, "tool", credential_limits(https, clean["ca"]), CLIENTS + SEARCH)
    # The worker's own header is replaced, not kept beside ours.
    text = fh.call("tool.with_header", {"url": https.url("/plain"), "value": "Bearer placeholder"})
    assert text.startswith("GET /plain")
    assert https.seen[-1].headers["Authorization"] == f"Bearer {SECRET}"
    half = len(SECRET) // 2
    env = fh.call("tool.environment")
    assert not any(SECRET in v for v in env.values())
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"]
    assert (
        fh.call("tool.find_in_files", {"needle_a": SECRET[:half], "needle_b": SECRET[half:]}) == []
    )
    assert fh.call("tool.find_in_memory", {"first": SECRET[:half], "second": SECRET[half:]}) == []
    # Upstream echoes the request's headers back, plain and gzip-encoded:
    # the proxy scrubs the secret out of what reaches the worker.
    for path in ("/echo", "/echo-gzip"):
        echoed = fh.call("tool.with_requests", {"url": https.url(path)})
        assert echoed.startswith("200")
        assert "Authorization: Bearer [fnhost:credential]" in echoed
        assert SECRET not in echoed
    assert https.seen[-1].headers["Authorization"] == f"Bearer {SECRET}"
    # The proxy itself echoes nothing back: it is not a server of its own.
    for raw in (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:3128\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        f"TRACE http://{https.target}/ HTTP/1.1\r\nHost: {https.target}\r\n\r\n",
    ):
        answer = fh.call("tool.ask_proxy", {"raw": raw})
        assert answer.startswith("HTTP/1.1 4") or answer.startswith("HTTP/1.1 5"), answer
        assert SECRET not in answer


def test_credentials_go_over_tls_only_and_other_hosts_get_only_what_the_worker_sent(
    make_host, write_set, clean, secret_env
):
    http, other = clean["http"], clean["other"]
    fh = make_host()
    limits = egress_limits(
        allow=[clean["https"].target, http.target, f"localhost:{other.port}"],
        credentials={
            "127.0.0.1": Header("Authorization", "Bearer {}", Secret.env("FNHOST_TEST_KEY"))
        },
        upstream_cafile=clean["ca"],
    )
    load(fh, write_set, "tool", limits)
    # The credential's host over plain HTTP: never in clear.
    fh.call("tool.with_header", {"url": http.url("/p"), "value": "Bearer placeholder"})
    # Another host: the worker's placeholder, nothing more.
    fh.call(
        "tool.with_header",
        {"url": f"http://localhost:{other.port}/q", "value": "Bearer placeholder"},
    )
    assert http.seen[-1].headers["Authorization"] == "Bearer placeholder"
    assert other.seen[-1].headers["Authorization"] == "Bearer placeholder"


def test_a_credential_whose_secret_is_missing_is_a_load_error_naming_it(
    make_host, write_set, clean, monkeypatch
):
    monkeypatch.delenv("FNHOST_TEST_KEY", raising=False)
    fh = make_host()
    with pytest.raises(LoadError) as info:
        fh.load_function_set(
            str(write_set("tool", CLIENTS)), limits=credential_limits(clean["https"], clean["ca"])
        )
    error = info.value
    assert error.set_name == "tool"
    assert "FNHOST_TEST_KEY" in str(error) and "127.0.0.1" in str(error)


# -- many sets, hostile workers, a dying proxy -----------------------------------


def test_200_concurrent_requests_from_4_sets_are_neither_lost_nor_mixed(
    make_host, write_set, clean, monkeypatch
):
    https = clean["https"]
    fh = make_host(on_conflict="prefix")
    for i in range(4):
        monkeypatch.setenv(f"FNHOST_KEY_{i}", f"key-of-set-{i}")
        limits = egress_limits(
            # 50 threads: glibc gives each its malloc arena of 64 MiB of address space.
            memory_mb=4096,
            allow=[https.target],
            credentials={"127.0.0.1": Header("X-Key", "{}", Secret.env(f"FNHOST_KEY_{i}"))},
            upstream_cafile=clean["ca"],
        )
        load(fh, write_set, f"s{i}", limits)
    results: dict[int, list[str]] = {}

    def run(i: int) -> None:
        results[i] = fh.call(f"s{i}.many", {"url": https.url(f"/set{i}"), "n": 50})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    for i in range(4):
        assert results[i] == [f"GET /set{i}?i={n} 0" for n in range(50)]
    assert len(https.seen) == 200
    for seen in https.seen:
        set_index = int(seen.path[4])
        assert seen.headers["X-Key"] == f"key-of-set-{set_index}"


HOSTILE = '''
import socket, time


def slowloris(n: int) -> int:
    """Open n connections to the proxy, send half a request head, keep them."""
    global kept
    kept = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", 3128))
        s.sendall(b"GET http://x/ HTTP/1.1\\r\\nHost: x\\r\\n")
        kept.append(s)
    return len(kept)


def garbage() -> bytes:
    """Bytes that are not HTTP."""
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(b"\\x16\\x03\\x01\\x00\\xff" + bytes(range(256)) * 4 + b"\\r\\n\\r\\n")
    s.settimeout(10)
    data = s.recv(4096)
    s.close()
    return data


def flood(n: int) -> int:
    """n connections at once; how many got a 503 from the proxy."""
    socks = [socket.create_connection(("127.0.0.1", 3128)) for _ in range(n)]
    refused = 0
    for s in socks[-10:]:
        s.settimeout(10)
        try:
            refused += s.recv(100).startswith(b"HTTP/1.1 503")
        except OSError:
            pass
    for s in socks:
        s.close()
    return refused
'''


def test_slowloris_garbage_and_floods_hurt_only_the_worker_that_sends_them(
    make_host, write_set, clean
):
    http = clean["http"]
    fh = make_host()
    limits = egress_limits(allow=[http.target], max_connections=8, head_timeout=1.0)
    load(fh, write_set, "bad", limits, HOSTILE + CLIENTS.replace("def ", "def bad_"))
    load(fh, write_set, "good", egress_limits(allow=[http.target]))
    assert b"400 fnhost egress proxy: malformed request" in fh.call("bad.garbage")
    assert fh.call("bad.slowloris", {"n": 8}) == 8  # every connection it may have
    # Whatever the slow ones hold, the last 10 of 20 more are past its limit.
    assert fh.call("bad.flood", {"n": 20}) == 10
    # The other set is served all along.
    assert fh.call("good.many", {"url": http.url("/g"), "n": 20}) == [
        f"GET /g?i={n} 0" for n in range(20)
    ]
    # Heads not sent within head_timeout: the proxy closes those, and the
    # bad set's own requests go through again.
    assert wait_for(
        lambda: fh.call("bad.bad_with_requests", {"url": http.url("/b")}).startswith("200"), 15
    )
    assert {s.path for s in http.seen} == {f"/g?i={n}" for n in range(20)} | {"/b"}


def _proxy_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"host.egress.proxy_main" in argv and int(entry) != os.getpid():
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == str(os.getpid()):
                        pids.append(int(entry))
    return pids


def test_killing_the_proxy_mid_call_fails_that_request_and_the_next_works(
    make_host, write_set, clean
):
    http = clean["http"]
    fh = make_host()
    load(fh, write_set, "web", egress_limits(allow=[http.target]))
    assert fh.call("web.with_requests", {"url": http.url("/before")}).startswith("200")
    [proxy] = _proxy_pids()
    outcome: dict[str, object] = {}

    def slow_call() -> None:
        try:
            outcome["value"] = fh.call("web.with_requests", {"url": http.url("/slow?s=3")})
        except UserFunctionError as exc:
            outcome["error"] = exc

    t = threading.Thread(target=slow_call)
    t.start()
    assert wait_for(lambda: any(s.path.startswith("/slow") for s in http.seen), 10)
    os.kill(proxy, signal.SIGKILL)
    t.join(30)
    assert "error" in outcome, outcome  # the relayed request failed, cleanly
    assert wait_for(lambda: _proxy_pids() not in ([], [proxy]), 10)
    assert fh.call("web.with_requests", {"url": http.url("/after")}).startswith("200 OK")


def test_the_proxy_process_ends_with_the_host(make_host, write_set, clean):
    fh = make_host()
    load(fh, write_set, "web", egress_limits(allow=[clean["http"].target]))
    assert len(_proxy_pids()) == 1
    fh.close()
    assert _proxy_pids() == []


# -- reports -------------------------------------------------------------------


def test_protections_report_the_allow_list_and_the_probed_door(make_host, write_set, clean):
    http = clean["http"]
    fh = make_host(on_conflict="prefix")
    load(
        fh,
        write_set,
        "web",
        egress_limits(allow=[http.target, Allow("api.example.com:443", methods=("GET",))]),
    )
    load(fh, write_set, "closed", Limits(timeout=10.0))
    report = fh.protections("web")
    assert report["egress"] == "allow-list"
    assert report["egress_allow"] == [http.target, "api.example.com:443"]
    assert report["egress_credentials"] == []
    assert report["egress_intercepted"] == ["api.example.com"]
    assert fh.function_sets["web"]["egress"] == "allow-list"
    assert report["egress_only"] is True
    assert report["network_namespace"] is True
    assert fh.protections("closed")["egress"] == "none"
    assert "egress_only" not in fh.protections("closed")


def test_call_detailed_lists_the_calls_egress_decisions(make_host, write_set, clean):
    http = clean["http"]
    fh = make_host()
    load(fh, write_set, "web", egress_limits(allow=[http.target]))
    result = fh.call_detailed("web.with_requests", {"url": http.url("/seen")})
    [record] = result.egress
    assert (record.allowed, record.kind, record.method, record.path) == (
        True,
        "http",
        "GET",
        "/seen",
    )
    assert record.port == http.port
    result = fh.call_detailed("web.with_requests", {"url": "http://example.invalid/x"})
    [record] = result.egress
    assert not record.allowed and "example.invalid is not in the allow-list" in record.reason
    assert fh.call_detailed("web.environment").egress == ()


def test_a_set_without_network_says_the_sandbox_refused_the_connection(make_host, write_set):
    fh = make_host()
    source = CLIENTS + (
        "\n\ndef become_root() -> None:\n"
        '    """Not the network\'s."""\n'
        "    os.setpriority(os.PRIO_PROCESS, 0, -20)\n"
    )
    load(fh, write_set, "offline", Limits(timeout=10.0), source)
    with pytest.raises(UserFunctionError) as info:
        fh.call("offline.lookup", {"name": "example.com"})
    assert "fnhost sandbox: set 'offline' has no network access" in str(info.value)
    # A permission error that is not the network's says nothing of it.
    with pytest.raises(UserFunctionError) as info:
        fh.call("offline.become_root")
    assert "PermissionError" in str(info.value) and "fnhost sandbox" not in str(info.value)


def test_egress_policies_are_checked_when_written():
    with pytest.raises(ValueError, match="expected 'host:port'"):
        Egress(allow=["example.com"])
    with pytest.raises(ValueError, match="every host"):
        Egress(allow=["*:443"])
    with pytest.raises(ValueError, match="not in the allow-list"):
        Egress(
            allow=["a.example:443"], credentials={"b.example": Header("X", "{}", Secret.env("K"))}
        )
    with pytest.raises(ValueError, match="once"):
        Header("Authorization", "Bearer", Secret.env("K"))
    with pytest.raises(TypeError, match="list of 'host:port'"):
        Egress(allow="example.com:443")
    assert repr(Secret.env("K")) == "Secret.env('K')"
    # Hashable and comparable: a set's policy is a key.
    assert hash(Egress(allow=["a.example:443"])) == hash(Egress(allow=["a.example:443"]))


# -- the command line ------------------------------------------------------------


def test_fnhost_call_allow_and_credential_flags(write_set, clean, secret_env):
    import json
    import subprocess
    import sys

    https = clean["https"]
    path = str(write_set("tool", CLIENTS))

    def fnhost(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "SSL_CERT_FILE": clean["ca"]}  # the proxy's trust, for the test CA
        return subprocess.run(
            [sys.executable, "-m", "host", "call", path, *args],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip

    ok = fnhost("with_header", json.dumps({"url": https.url("/cli"), "value": "x"}),
                "--allow", https.target, "--credential", "127.0.0.1=FNHOST_TEST_KEY")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout).startswith("GET /cli")
    assert https.seen[-1].headers["Authorization"] == f"Bearer {SECRET}"
    denied = fnhost("with_urllib", json.dumps({"url": clean["http"].url("/x")}),
                    "--allow", https.target)  # fmt: skip
    assert denied.returncode == 1
    assert "fnhost egress policy blocked" in denied.stderr
    bad = fnhost("with_urllib", "{}", "--credential", "nohost")
    assert bad.returncode != 0 and "expected HOST=ENVVAR" in bad.stderr


def test_a_call_queued_behind_another_gets_only_its_own_egress_decisions(
    make_host, write_set, clean
):
    http = clean["http"]
    fh = make_host()
    source = (
        CLIENTS
        + '''

def blocked_then_wait(url: str) -> str:
    """A refused request, then a while."""
    import time
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=10)
    except Exception:
        pass
    time.sleep(0.5)
    return "done"


def quiet() -> str:
    """No request at all (a moment, so the call ahead is read first)."""
    import time

    time.sleep(0.2)
    return "quiet"
'''
    )
    load(fh, write_set, "web", egress_limits(allow=[http.target]), source)
    first: dict[str, object] = {}
    t = threading.Thread(
        target=lambda: first.update(
            r=fh.call_detailed("web.blocked_then_wait", {"url": "http://blocked.example/"})
        )
    )
    t.start()
    time.sleep(0.1)  # the first call is running: the next waits in the pipe
    queued = fh.call_detailed("web.quiet")
    t.join(30)
    assert queued.egress == ()
    [record] = first["r"].egress  # type: ignore[attr-defined]
    assert record.host == "blocked.example" and not record.allowed


def test_a_missing_upstream_cafile_fails_the_load_and_leaves_no_door(
    make_host, write_set, clean, tmp_path, caplog
):
    fh = make_host()
    limits = egress_limits(allow=[clean["http"].target], upstream_cafile=str(tmp_path / "nope.pem"))
    for _ in range(2):
        with pytest.raises(LoadError, match="upstream_cafile"):
            fh.load_function_set(str(write_set("web", CLIENTS)), limits=limits)
    assert "brought no listening socket" not in caplog.text
