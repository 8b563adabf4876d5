"""Close an object when the interpreter exits, without keeping it alive."""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable
from typing import Protocol


class Closable(Protocol):
    def close(self) -> None: ...


def close_at_exit(obj: Closable) -> Callable[[], None]:
    """Register an ``atexit`` hook that closes ``obj`` if it is still alive.

    Only a weak reference is held, so an unused object can still be
    collected. Returns the hook: pass it to ``atexit.unregister`` once
    ``obj`` is closed.
    """
    ref = weakref.ref(obj)

    def close() -> None:
        target = ref()
        if target is not None:
            target.close()

    atexit.register(close)
    return close
