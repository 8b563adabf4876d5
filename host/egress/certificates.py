"""The certificates behind credential injection, made with ``cryptography``
(the ``egress`` extra); nothing here parses bytes a worker sent.

- ``make_ca``: one CA per set that has credentials, made by the host when
  the set's first worker starts and kept for the host's life (a restarted
  proxy gets the same one: the set's workers already trust it). Its name
  constraints permit only the set's credential hosts, so even its key could
  sign for nothing else that a client honouring them would accept.
- ``LeafContexts``: in the proxy, an ``ssl.SSLContext`` per host, serving a
  certificate for that host signed by the set's CA (made on first use).
"""

from __future__ import annotations

import collections
import datetime
import ipaddress
import os
import ssl
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _general_name(host: str, network: bool = False) -> x509.GeneralName:
    if host.startswith("*."):
        return x509.DNSName(host[2:])  # a name constraint: the name and its subdomains
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return x509.DNSName(host)
    if network:
        prefix = 32 if address.version == 4 else 128
        return x509.IPAddress(ipaddress.ip_network(f"{address}/{prefix}"))
    return x509.IPAddress(address)


def make_ca(set_name: str, hosts: list[str]) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a new CA for ``set_name`` that
    may sign for ``hosts`` only (``*.name``: that name's subdomains)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fnhost egress proxy"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"fnhost egress CA for set {set_name}"[:64]),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(
                permitted_subtrees=[_general_name(h, network=True) for h in hosts],
                excluded_subtrees=None,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class LeafContexts:
    """Server-side TLS contexts for the hosts a set's CA may sign for, the
    ``KEPT`` most recently used kept (a pattern's names are unbounded).
    Thread-safe: the proxy makes them on its executor's threads."""

    KEPT = 256

    def __init__(self, ca_pem: bytes, ca_key_pem: bytes) -> None:
        self._ca = x509.load_pem_x509_certificate(ca_pem)
        key = serialization.load_pem_private_key(ca_key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._ca_key = key
        self._contexts: collections.OrderedDict[str, ssl.SSLContext] = collections.OrderedDict()
        self._lock = threading.Lock()

    def context(self, host: str) -> ssl.SSLContext:
        """The context serving ``host``'s certificate."""
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is not None:
                self._contexts.move_to_end(host)
                return ctx
        ctx = self._make(host)
        with self._lock:
            self._contexts[host] = ctx
            while len(self._contexts) > self.KEPT:
                self._contexts.popitem(last=False)
        return ctx

    def _make(self, host: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            # No common name: a CN that is an address breaks verification
            # under the CA's DNS name constraints; the SAN names the host.
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fnhost egress proxy")])
            )
            .issuer_name(self._ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([_general_name(host)]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        # load_cert_chain reads files only: an anonymous memory file, never disk.
        fd = os.memfd_create("fnhost-leaf", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return ctx
