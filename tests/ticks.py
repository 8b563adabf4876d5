"""A clock for the reference agent's tests: one hour per reading, from ``T0``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


class Ticks:
    """A clock that moves one hour per reading, from T0."""

    def __init__(self) -> None:
        self.now = T0 - timedelta(hours=1)

    def __call__(self) -> datetime:
        self.now += timedelta(hours=1)
        return self.now
