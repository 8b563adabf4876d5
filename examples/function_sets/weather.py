"""Example function set: a fake weather service (no network needed)."""

import os
from enum import Enum
from typing import Literal


class Units(Enum):
    METRIC = "metric"
    IMPERIAL = "imperial"


_FAKE = {"paris": 14.0, "london": 11.5, "tokyo": 18.2, "new york": 9.8}


def get_weather(city: str, units: Units = Units.METRIC) -> dict:
    """Get the current temperature in a city.

    Args:
        city: City name, e.g. "Paris".
        units: Unit system for the temperature.
    """
    celsius = _FAKE.get(city.lower())
    if celsius is None:
        raise ValueError(f"unknown city {city!r}; try one of {sorted(_FAKE)}")
    value = celsius if units is Units.METRIC else celsius * 9 / 5 + 32
    return {"city": city, "temperature": round(value, 1), "units": units.value}


def forecast(city: str, days: int = 3, detail: Literal["short", "long"] = "short") -> list[str]:
    """Forecast the next days.

    Args:
        city: City name.
        days: How many days, 1 to 7.
        detail: How much to say per day.
    """
    if not 1 <= days <= 7:
        raise ValueError("days must be between 1 and 7")
    word = "sunny" if detail == "short" else "sunny with a light breeze from the west"
    return [f"{city} day {i + 1}: {word}" for i in range(days)]


def api_key_configured() -> bool:
    """Tell whether the WEATHER_API_KEY variable reached this function's worker."""
    return bool(os.environ.get("WEATHER_API_KEY"))
