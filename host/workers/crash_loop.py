"""A set's crash loop: counting its worker's unintended deaths, and parking
the set when there are too many.

``Limits.crash_limit`` deaths within ``Limits.crash_window`` seconds park
the set for ``crash_window``: calls then fail at once (``WorkerCrashed``
with cause ``parked``) instead of restarting a worker that dies again.
"""

from __future__ import annotations

import collections
import threading
import time


class CrashLoop:
    """The deaths of one set's worker. Thread-safe."""

    def __init__(self, crash_limit: int, crash_window: float) -> None:
        self._limit = crash_limit
        self._window = crash_window
        self._deaths: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        #: Until when (``time.monotonic()``) the set is parked.
        self.parked_until = 0.0
        #: Why it is (or was last) parked.
        self.reason = ""

    def record_death(self) -> bool:
        """Count an unintended death; True if it parks the set now."""
        now = time.monotonic()
        with self._lock:
            self._deaths.append(now)
            while self._deaths and self._deaths[0] < now - self._window:
                self._deaths.popleft()
            if len(self._deaths) < self._limit:
                return False
            self._deaths.clear()
            self.reason = f"its worker died {self._limit} times within {self._window:g}s"
            self.parked_until = now + self._window
        return True

    def parked(self) -> bool:
        """True until the parking window has passed."""
        return time.monotonic() < self.parked_until

    def seconds_left(self) -> float:
        return max(0.0, self.parked_until - time.monotonic())
