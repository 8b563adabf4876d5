"""Pause Python's cyclic garbage collector while a large reply is decoded.

Decoding a frame builds up to millions of lists and maps; each few hundred
of them start a collection that walks every object of the host, with the
GIL held (msgpack itself recommends disabling the collector while
unpacking large data). Measured on a 3 MB reply of a million pairs: 600 ms
with the longest pause 86 ms for other threads, 260 ms and 13 ms paused.

The collector is global: pauses from several threads nest, and the last one
to end re-enables it if it was enabled when the first began. A
``gc.enable()``/``gc.disable()`` by someone else in the meantime may be
undone at that moment.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pausing = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the ``with`` block with the cyclic collector disabled (never raises)."""
    global _pausing, _was_enabled
    with _lock:
        if _pausing == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pausing += 1
    try:
        yield
    finally:
        with _lock:
            _pausing -= 1
            if _pausing == 0 and _was_enabled:
                gc.enable()
