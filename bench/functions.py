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
