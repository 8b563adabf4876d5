"""Real HTTP and HTTPS servers on 127.0.0.1 for the egress tests (nothing
leaves the machine): they record every request they get, so a test can
assert that a refused request never reached them.

- ``/echo``: answers with the request's headers as text (an upstream that
  reflects credentials); ``/echo-gzip``: the same, gzip-encoded.
- ``/slow``: waits ``?s=`` seconds before answering.
- anything else: ``method path`` as text.

The HTTPS server's certificate (for ``127.0.0.1`` and ``localhost``) is
signed by a test CA written to ``ca_file``; the proxy is told to trust it
with ``Egress(upstream_cafile=...)``.
"""

from __future__ import annotations

import datetime
import gzip
import http.server
import ipaddress
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    port: int
    scheme: str
    seen: list[Seen] = field(default_factory=list)
    httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"


def _handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            parts = urlsplit(self.path)
            extra: list[tuple[str, str]] = []
            if parts.path == "/echo":
                payload = "".join(f"{k}: {v}\n" for k, v in self.headers.items()).encode()
            elif parts.path == "/echo-gzip":
                payload = gzip.compress(
                    "".join(f"{k}: {v}\n" for k, v in self.headers.items()).encode()
                )
                extra.append(("Content-Encoding", "gzip"))
            elif parts.path == "/slow":
                time.sleep(float(parse_qs(parts.query).get("s", ["1"])[0]))
                payload = b"slow done"
            else:
                payload = f"{self.command} {self.path} {len(body)}".encode()
            self.send_response(200)
            for name, value in extra:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

    return Handler


def make_test_ca(directory: str) -> tuple[str, ssl.SSLContext]:
    """A CA (its PEM at the returned path) and a server context for
    127.0.0.1/localhost signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fnhost tests CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = os.path.join(directory, "test-ca.pem")
    with open(ca_file, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    chain = os.path.join(directory, "server.pem")
    with open(chain, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain)
    return ca_file, ctx


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # hundreds of connections at once


def start(scheme: str, tls: ssl.SSLContext | None = None) -> Server:
    server = Server(0, scheme)
    httpd = _HTTPServer(("127.0.0.1", 0), _handler(server))
    if tls is not None:
        # The handshake in each request's thread, not in the accepting one.
        httpd.socket = tls.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
    server.port = httpd.server_address[1]
    server.httpd = httpd
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return server


def stop(server: Server) -> None:
    if server.httpd is not None:
        server.httpd.shutdown()
        server.httpd.server_close()
