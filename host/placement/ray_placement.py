"""``RayPlacement``: run each function set on a Ray cluster (what users write)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RayPlacement:
    """Place every function set of a host on a Ray cluster (``docs/ray.md``).

    ``FunctionHost(placement=RayPlacement(...))``, or ``placement="ray"``
    for the defaults. Each set becomes one Ray actor, named
    ``<host id>.<set>.<n>`` in ``namespace``, that runs the set's worker (the
    same worker, sandbox and limits as on this machine) on the node Ray
    picked by the set's ``Limits.placement`` (``RayResources``).

    - ``address``: the cluster to join when this process has not called
      ``ray.init`` itself: ``None`` (``$RAY_ADDRESS``, or a new local
      cluster), ``"auto"`` (a ``ray start`` cluster on this machine) or
      ``"ray://host:10001"`` (Ray Client, e.g. KubeRay's head service).
      When Ray is already initialised, that connection is used as it is.
    - ``namespace``: the Ray namespace of the host's actors.
    - ``max_concurrency``: calls one set's actor holds at once (they wait
      in the worker's pipe, as locally; one actor hop per call).
    - ``start_method``: how the actor starts its worker on the node
      (``"zygote"`` or ``"spawn"``, as ``FunctionHost(start_method=)``).

    Raises ``ValueError`` for an empty namespace, a ``max_concurrency``
    below 1 or an unknown ``start_method``.
    """

    address: str | None = None
    namespace: str = "fnhost"
    max_concurrency: int = 256
    start_method: str = "zygote"

    def __post_init__(self) -> None:
        if not self.namespace:
            raise ValueError("namespace must not be empty")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.start_method not in ("zygote", "spawn"):
            raise ValueError('start_method must be "zygote" or "spawn"')
