"""Keeping a set's secrets out of what the proxy relays back to its worker:
an upstream that echoes the credential (``/headers`` of an echo service, an
error page that quotes the request) must not hand it to the worker.

``Scrubber`` replaces each secret in a byte stream cut at arbitrary places
(it holds back the last ``len(longest) - 1`` bytes until the next chunk);
``Decoder`` undoes ``gzip``/``deflate`` so an encoded body can be scrubbed.
"""

from __future__ import annotations

import zlib

#: What a secret becomes in anything relayed back to the worker.
PLACEHOLDER = b"[fnhost:credential]"


class Scrubber:
    def __init__(self, secrets: list[bytes]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._keep = max((len(s) for s in self._secrets), default=1) - 1
        self._tail = b""

    @property
    def active(self) -> bool:
        return bool(self._secrets)

    def scrub(self, data: bytes) -> bytes:
        """``data`` with every secret replaced (no stream state)."""
        for secret in self._secrets:
            data = data.replace(secret, PLACEHOLDER)
        return data

    def feed(self, data: bytes) -> bytes:
        """What can be sent of the stream so far."""
        if not self._secrets:
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
    """A body's ``Content-Encoding`` undone, chunk by chunk."""

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

    def feed(self, data: bytes) -> bytes:
        if self._inflate is None:
            return data
        try:
            out = self._inflate.decompress(data)
        except zlib.error:
            if not (self._raw and not self._started):
                raise
            # Some servers send raw deflate (no zlib header) for "deflate".
            self._inflate = zlib.decompressobj(-15)
            out = self._inflate.decompress(data)
        self._started = True
        return out

    def flush(self) -> bytes:
        return b"" if self._inflate is None else self._inflate.flush()
