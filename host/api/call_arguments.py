"""What a caller may pass as a call's arguments and timeout, normalised for the worker."""

from __future__ import annotations

import json
import math
from typing import Any

from host.errors import InvalidArguments


def call_arguments(set_name: str, function: str, arguments: Any) -> dict[str, Any]:
    """The named arguments of a call to ``set_name.function``.

    ``arguments`` is a dict, a JSON object as text (what models send; blank
    text means none) or ``None`` (none). Raises ``InvalidArguments`` (path
    ``$``) for text that is not valid JSON and for anything that is not an
    object of named arguments; the call is then not sent.
    """
    if arguments is None:
        arguments = {}
    elif isinstance(arguments, str | bytes):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError) as exc:
            raise InvalidArguments(
                set_name,
                function,
                f"the arguments are not valid JSON ({exc})",
                details={"path": "$", "expected": "a JSON object", "got": "invalid JSON"},
            )
    if not isinstance(arguments, dict):
        got = type(arguments).__name__
        raise InvalidArguments(
            set_name,
            function,
            f"$: expected an object of named arguments, got {got}",
            details={"path": "$", "expected": "an object of named arguments", "got": got},
        )
    return arguments


def call_timeout(timeout: float | None, default: float | None) -> float | None:
    """The call's deadline in seconds: ``timeout``, or ``default`` (the set's
    ``Limits.timeout``) when it is ``None``; infinity means none (``None``).
    Raises ``ValueError`` for a ``timeout`` that is not positive."""
    if timeout is None:
        timeout = default
    elif not timeout > 0:
        raise ValueError("timeout must be positive")
    if timeout is not None and math.isinf(timeout):
        timeout = None  # no deadline
    return timeout
