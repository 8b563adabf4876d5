"""Example function set: code that misbehaves, to show the host surviving it."""

import ctypes
import time


def crash() -> None:
    """Dereference a null pointer: the worker dies with SIGSEGV."""
    ctypes.string_at(0)


def hang(seconds: float = 3600) -> None:
    """Sleep for a long time (the host's timeout kills the worker).

    :param seconds: How long to sleep.
    """
    time.sleep(seconds)


def shout(text: str) -> str:
    """Upper-case a text, printing a line on the way.

    :param text: The text to shout.
    """
    print(f"shouting {len(text)} characters")
    return text.upper() + "!"
