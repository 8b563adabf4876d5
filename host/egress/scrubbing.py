"""Keeping a set's secrets out of what the proxy relays back to its worker:
an upstream that echoes the credential (``/headers`` of an echo service, an
error page or a 401's reason that quotes the request) must not hand it to
the worker.

``Scrubber`` replaces each secret, and the common ways a server re-encodes
it (percent-encoding, a JSON string with or without escaped slashes,
base64 at any alignment), in a byte stream cut at arbitrary places: it
holds back the last ``longest needle - 1`` bytes until the next chunk.
``Decoder`` undoes one ``gzip``/``deflate`` coding in bounded pieces, so an
encoded body can be scrubbed without a compression bomb costing more than
``CHUNK`` bytes at a time.

What it cannot see: a secret split across two responses (the proxy strips
``Range`` from credentialed requests so one echo cannot be fetched in
pieces), or re-encoded in ways not listed (hashed, encrypted, reversed).
An upstream that reflects credentials that way is outside this door.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

#: What a secret becomes in anything relayed back to the worker.
PLACEHOLDER = b"[fnhost:credential]"
#: The largest piece of a decoded body the decoder makes at once.
CHUNK = 64 * 1024
_HEX = re.compile(rb"%[0-9A-F]{2}")


def _variants(secret: bytes) -> list[tuple[bytes, bytes]]:
    """(needle, replacement) for the secret and its common encodings."""
    text = secret.decode("utf-8", "replace")
    pairs = [(secret, PLACEHOLDER)]
    for quoted in (quote(text, safe=""), quote(text), quote_plus(text)):
        needle = quoted.encode()
        pairs.append((needle, PLACEHOLDER))
        pairs.append((_HEX.sub(lambda m: m.group(0).lower(), needle), PLACEHOLDER))
    as_json = json.dumps(text)[1:-1].encode()
    pairs += [(as_json, PLACEHOLDER), (as_json.replace(b"/", b"\\/"), PLACEHOLDER)]
    # Base64 at each of the three alignments: the characters that depend on
    # the secret alone, replaced by as many "A"s (the rest still decodes).
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            b64 = encode(b"\0" * shift + secret).rstrip(b"=")
            start = 4 if shift else 0
            end = len(b64) - (0 if (shift + len(secret)) % 3 == 0 else 4)
            core = b64[start:end]
            if len(core) >= 8:
                pairs.append((core, b"A" * len(core)))
    unique: dict[bytes, bytes] = {}
    for needle, replacement in pairs:
        if needle:
            unique.setdefault(needle, replacement)
    return sorted(unique.items(), key=lambda p: len(p[0]), reverse=True)


class Scrubber:
    def __init__(self, secrets: list[bytes]) -> None:
        self._pairs = [p for s in {s for s in secrets if s} for p in _variants(s)]
        self._pairs.sort(key=lambda p: len(p[0]), reverse=True)
        self._keep = max((len(n) for n, _ in self._pairs), default=1) - 1
        self._tail = b""

    @property
    def active(self) -> bool:
        return bool(self._pairs)

    def scrub(self, data: bytes) -> bytes:
        """``data`` with every secret (and its encodings) replaced."""
        for needle, replacement in self._pairs:
            data = data.replace(needle, replacement)
        return data

    def feed(self, data: bytes) -> bytes:
        """What can be sent of the stream so far."""
        if not self._pairs:
            return data
        buf = self.scrub(self._tail + data)
        if self._keep and len(buf) > self._keep:
            self._tail, buf = buf[-self._keep :], buf[: -self._keep]
        elif self._keep:
            self._tail, buf = buf, b""
        return buf

    def flush(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail


class Decoder:
    """A body's ``Content-Encoding`` (one coding) undone, chunk by chunk.
    ``ValueError`` for an encoding it does not know."""

    #: Encodings it can undo (anything else cannot be scrubbed).
    KNOWN = ("gzip", "x-gzip", "deflate", "identity")

    def __init__(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        if encoding not in self.KNOWN:
            raise ValueError(encoding)
        # 47: a zlib or gzip header, detected; raw deflate is tried on failure.
        self._inflate = None if encoding == "identity" else zlib.decompressobj(47)
        self._raw = encoding == "deflate"
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``data``, at most ``CHUNK`` at a time.
        ``zlib.error`` for a body that is not what its coding says."""
        if self._inflate is None:
            yield data
            return
        try:
            out = self._inflate.decompress(data, CHUNK)
        except zlib.error:
            if not (self._raw and not self._started):
                raise
            # Some servers send raw deflate (no zlib header) for "deflate".
            self._inflate = zlib.decompressobj(-15)
            out = self._inflate.decompress(data, CHUNK)
        self._started = True
        yield out
        while self._inflate.unconsumed_tail:
            yield self._inflate.decompress(self._inflate.unconsumed_tail, CHUNK)

    def flush(self) -> bytes:
        return b"" if self._inflate is None else self._inflate.flush()
