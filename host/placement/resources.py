"""What one function set asks of a Ray cluster's node: CPUs, memory, custom resources."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class RayResources:
    """A set's resource request on a Ray cluster (``Limits(placement=...)``).

    Ray places the set's actor (and so its worker) on a node that has them
    free, and holds them while the set is loaded.

    - ``num_cpus``: CPUs reserved for the set. ``0`` by default: a tool
      set's worker mostly waits for calls, and one node holds many; give a
      CPU-bound set (``Limits(workers=4)``) as many as it runs.
    - ``memory_mb``: memory Ray reserves for the set (scheduling only;
      ``Limits.memory_mb`` is what bounds the worker itself).
    - ``resources``: custom resources (``{"gpu_box": 1}``, a node label
      such as ``{"tenant_a": 0.01}``), as ``ray start --resources`` declares
      them.

    Raises ``ValueError`` for a negative or non-finite amount, or a custom
    resource with an empty name; ``TypeError`` for ``resources`` that is not
    a mapping of names to numbers.
    """

    num_cpus: float = 0.0
    memory_mb: int | None = None
    resources: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _amount(self.num_cpus):
            raise ValueError(f"num_cpus must be a finite number >= 0, not {self.num_cpus!r}")
        if self.memory_mb is not None and (
            isinstance(self.memory_mb, bool)
            or not isinstance(self.memory_mb, int)
            or self.memory_mb < 1
        ):
            raise ValueError(f"memory_mb must be a positive int or None, not {self.memory_mb!r}")
        if not isinstance(self.resources, dict):
            raise TypeError("resources must be a dict of {name: amount}")
        for name, amount in self.resources.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"a custom resource needs a non-empty name, not {name!r}")
            if not _amount(amount):
                raise ValueError(
                    f"custom resource {name!r} must be a finite number >= 0, not {amount!r}"
                )

    def __hash__(self) -> int:  # Limits is hashable; the dict field is not
        return hash((self.num_cpus, self.memory_mb, tuple(sorted(self.resources.items()))))

    def actor_options(self) -> dict[str, Any]:
        """The Ray actor options that ask for these resources."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.memory_mb is not None:
            options["memory"] = self.memory_mb * MIB
        if self.resources:
            options["resources"] = dict(self.resources)
        return options


def _amount(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
