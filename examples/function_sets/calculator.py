"""Example function set: arithmetic, in NumPy docstring style."""

from typing import Optional


def add(a: float, b: float) -> float:
    """Add two numbers.

    Parameters
    ----------
    a : float
        The first addend.
    b : float
        The second addend.
    """
    return a + b


def mean(values: list[float], weights: Optional[list[float]] = None) -> float:
    """Arithmetic mean, optionally weighted.

    Parameters
    ----------
    values : list of float
        The numbers to average.
    weights : list of float, optional
        One weight per value.
    """
    if not values:
        raise ValueError("values must not be empty")
    if weights is None:
        return sum(values) / len(values)
    if len(weights) != len(values):
        raise ValueError("weights and values differ in length")
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)
