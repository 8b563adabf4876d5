"""Built-in function set: dates and times."""

from datetime import datetime, timedelta, timezone


def current_time(utc_offset_hours: float = 0.0) -> str:
    """Return the current date and time as an ISO 8601 string.

    Args:
        utc_offset_hours: Offset from UTC in hours, e.g. 2 or -5.5.
    """
    tz = timezone(timedelta(hours=utc_offset_hours))
    return datetime.now(tz).isoformat(timespec="seconds")


def days_between(start: str, end: str) -> int:
    """Count the days from one date to another.

    Args:
        start: First date, YYYY-MM-DD.
        end: Second date, YYYY-MM-DD.
    """
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).days
