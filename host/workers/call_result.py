"""What a successful call returns: the function's value and what it printed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from host.egress.record import EgressRecord


@dataclass(frozen=True)
class CallResult:
    """A call's value plus what the function printed (each the last 65,536
    characters) and, for a set with an egress policy, the proxy's decisions
    for its worker while the call ran (``EgressRecord``: allowed or not,
    host, port, method, path, why; bytes once the exchange ended)."""

    value: Any
    stdout: str
    stderr: str
    set_name: str
    function: str
    egress: tuple[EgressRecord, ...] = ()

    def __init__(
        self,
        value: Any,
        stdout: str,
        stderr: str,
        set_name: str,
        function: str,
        egress: tuple[EgressRecord, ...] = (),
    ) -> None:
        # (Every call makes one: the generated frozen __init__ sets each
        # field through object.__setattr__, twice the cost of this.)
        self.__dict__.update(
            value=value,
            stdout=stdout,
            stderr=stderr,
            set_name=set_name,
            function=function,
            egress=egress,
        )
