"""The function set every contender runs (also imported by the peer pools)."""

import ctypes
import time


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def echo_bytes(data: bytes) -> bytes:
    """Return the bytes unchanged."""
    return data


def crash() -> None:
    """Die with SIGSEGV."""
    ctypes.string_at(0)


def sleep(seconds: float) -> None:
    """Sleep."""
    time.sleep(seconds)


def fetch_times(url: str, n: int) -> list:
    """Seconds for each of n GETs of url, a new connection each (as
    ``urllib`` makes them; through the egress proxy where HTTP_PROXY says)."""
    import urllib.request

    times = []
    for _ in range(n):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as r:
            r.read()
        times.append(time.perf_counter() - start)
    return times
