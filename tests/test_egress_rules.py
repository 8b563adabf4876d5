"""The egress proxy's decisions and its secret scrubbing, as functions (the
end-to-end behaviour through real workers is in test_egress.py)."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host import Allow, Egress
from host.egress import rules
from host.egress.exchange import open_upstream
from host.egress.peer import Refused
from host.egress.scrubbing import PLACEHOLDER, Decoder, Scrubber
from host.egress.set_rules import SetRules


def policy(*allow: str | Allow) -> dict:
    return Egress(allow=list(allow)).to_proxy()


def test_targets_match_by_host_and_port_and_patterns_match_subdomains_only():
    p = policy("api.example.com:443", "*.cdn.example:443", "10.0.0.1:*", "[::1]:8443")
    assert rules.check_target(p, "s", "API.Example.com.", 443).allowed
    assert not rules.check_target(p, "s", "api.example.com", 80).allowed
    assert rules.check_target(p, "s", "a.b.cdn.example", 443).allowed
    assert not rules.check_target(p, "s", "cdn.example", 443).allowed
    assert not rules.check_target(p, "s", "evilcdn.example", 443).allowed
    assert rules.check_target(p, "s", "10.0.0.1", 1).allowed
    assert rules.check_target(p, "s", "[::1]", 8443).allowed
    denied = rules.check_target(p, "s", "api.example.com", 80)
    assert denied.reason == (
        "fnhost egress policy blocked api.example.com:80 for set 's': "
        "port 80 is not allowed for api.example.com"
    )


@pytest.mark.parametrize(
    "target,allowed",
    [
        ("/v1/items", True),
        ("/v1/items?x=/v2/", True),
        ("http://h/v1/a", True),
        ("/v2/items", False),
        ("/v1/../v2/items", False),
        ("/v1/%2e%2e/v2", False),
        ("/v1%2fitems", False),
        ("/v1/a\\b", False),
        ("*", False),
    ],
)
def test_paths_are_decoded_and_dot_segments_refused(target, allowed):
    entry = policy(Allow("h:80", methods=("GET",), paths=("/v1/*",)))["allow"]
    decision = rules.check_request("s", "h", 80, tuple(entry), "GET", target)
    assert decision.allowed is allowed
    assert rules.check_request("s", "h", 80, tuple(entry), "POST", "/v1/x").allowed is False


def test_only_hosts_listed_by_exact_name_may_resolve_to_internal_addresses():
    p = policy("*.example.com:443", "localhost:80")
    assert rules.listed_exactly(p, "localhost")
    assert not rules.listed_exactly(p, "a.example.com")
    for address in (
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "100.100.100.200",  # shared space (RFC 6598): a cloud's metadata service
        "100.64.0.1",
        "192.0.0.170",
        "198.18.0.1",  # benchmarking
        "fd00::1",
        "fe80::1",
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215)
        "64:ff9b:1::5db8:d822",  # local-use NAT64, even of a public address
        "::7f00:1",  # IPv4-compatible (deprecated) 127.0.0.1
        "::5db8:d822",  # IPv4-compatible, reserved space
    ):
        assert rules.internal(address), address
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "64:ff9b::5db8:d822"):
        assert not rules.internal(address), address


def test_a_pattern_whose_name_resolves_to_loopback_is_refused_before_connecting():
    rules_ = SetRules("s", policy("*.example.com:80"))

    async def go():
        await open_upstream("localhost", 9, None, rules_)

    with pytest.raises(Refused) as info:
        asyncio.run(go())
    assert info.value.status == 403
    assert "resolves to 127.0.0.1, an internal address" in info.value.reason


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_the_scrubber_finds_a_secret_however_the_stream_is_cut(noise, cuts):
    secret = b"sk-SECRET-123"
    data = noise[:100] + secret + noise[100:200] + secret + noise[200:]
    scrubber = Scrubber([secret])
    out = b""
    positions = sorted({min(c, len(data)) for c in cuts})
    start = 0
    for pos in [*positions, len(data)]:
        out += scrubber.feed(data[start:pos])
        start = pos
    out += scrubber.flush()
    assert secret not in out
    assert out == data.replace(secret, PLACEHOLDER)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_encoded_bodies_are_decoded_for_scrubbing(encoding):
    body = b"Authorization: Bearer sk-SECRET\n" * 50
    if encoding == "gzip":
        encoded = gzip.compress(body)
    elif encoding == "deflate":
        encoded = zlib.compress(body)
    else:
        c = zlib.compressobj(wbits=-15)
        encoded = c.compress(body) + c.flush()
    decoder = Decoder("gzip" if encoding == "gzip" else "deflate")
    out = b"".join(b"".join(decoder.feed(encoded[i : i + 7])) for i in range(0, len(encoded), 7))
    assert out + decoder.flush() == body
    with pytest.raises(ValueError):
        Decoder("br")
