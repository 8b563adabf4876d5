"""What a successful call returns: the function's value and what it printed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CallResult:
    """A call's value plus what the function printed (each the last 65,536 characters)."""

    value: Any
    stdout: str
    stderr: str
    set_name: str
    function: str
