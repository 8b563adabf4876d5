"""Where one ``FunctionHost``'s sets run, as the host holds it: on this
machine, or on a Ray cluster. Everything the host does differently for
Ray is decided here, so ``FunctionHost`` only asks."""

from __future__ import annotations

from collections.abc import Callable

from host.environments.options import EnvironmentOptions
from host.environments.set_environments import SetEnvironments
from host.launch.launcher import WorkerSpec
from host.placement.node_environments import NodeEnvironments
from host.placement.ray_cluster import RayCluster
from host.placement.ray_placement import RayPlacement
from host.placement.ray_set_workers import RaySetWorkers
from host.workers.set_workers import SetWorkers


class HostPlacement:
    """A host's placement: ``None`` (this machine), ``"ray"`` or a
    ``RayPlacement``; ``ValueError`` for anything else.

    ``cluster`` is the host's ``RayCluster`` (``None`` on this machine);
    nothing connects to Ray before the first set is placed.
    """

    def __init__(
        self, placement: str | RayPlacement | None, environments: EnvironmentOptions | None
    ) -> None:
        if placement == "ray":
            placement = RayPlacement()
        if placement is not None and not isinstance(placement, RayPlacement):
            raise ValueError('placement must be None, "ray" or a RayPlacement')
        self.cluster = None if placement is None else RayCluster(placement)
        self._environment_options = environments

    def start_method(self, start_method: str) -> str:
        """The host's own launcher's start method: sets placed on Ray start
        their workers on the nodes, so no zygote is kept here for them."""
        return start_method if self.cluster is None else "spawn"

    def environments(self) -> SetEnvironments | NodeEnvironments:
        """How the loader prepares a set's environment: here, or on its node."""
        if self.cluster is None:
            return SetEnvironments(self._environment_options)
        return NodeEnvironments()

    def make_workers(self) -> Callable[[WorkerSpec], SetWorkers] | None:
        """The loader's factory of a set's workers (``None``: local ones)."""
        cluster = self.cluster
        if cluster is None:
            return None
        options = self._environment_options
        return lambda spec: RaySetWorkers(spec, cluster, options)

    def check_expose(self, exposed: tuple[str, ...] | None) -> None:
        """``ValueError`` for ``expose=`` on Ray: a context door would have to
        carry the worker's requests back to this process during the call."""
        if exposed and self.cluster is not None:
            raise ValueError("expose= is not available for sets placed on Ray yet")

    def close(self) -> None:
        """Leave the cluster if the host joined it (after its sets closed)."""
        if self.cluster is not None:
            self.cluster.close()
