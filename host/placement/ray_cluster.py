"""The host's connection to a Ray cluster: joined (or started) once per
``FunctionHost``, the actor class every set of it is placed with.

``ray`` is imported here, inside ``RayCluster``'s methods only, so fnhost
without the ``ray`` extra never imports it.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from typing import Any

from host.placement.ray_placement import RayPlacement


class RayCluster:
    """A host's view of its cluster (see the module docstring).

    ``connect`` joins on first use: the connection this process already has
    (``ray.init`` called by the application), else ``placement.address``.
    Raises ``ImportError`` naming the ``fnhost[ray]`` extra when Ray is not
    installed, and whatever ``ray.init`` raises for an unreachable address.
    """

    def __init__(self, placement: RayPlacement) -> None:
        self.placement = placement
        #: Names this host's actors (``actor_name``): two hosts never share one.
        self.host_id = f"fnhost-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()
        self._actor_class: Any = None
        self._started_ray = False
        self._serial = itertools.count(1)

    def actor_class(self) -> Any:
        """The Ray actor class of ``SetEndpoint`` (connects first if needed)."""
        with self._lock:
            if self._actor_class is None:
                ray = _import_ray()
                if not ray.is_initialized():
                    ray.init(
                        address=self.placement.address,
                        namespace=self.placement.namespace,
                        include_dashboard=False,
                        logging_level="WARNING",
                    )
                    self._started_ray = True
                from host.placement.set_endpoint import SetEndpoint

                self._actor_class = ray.remote(SetEndpoint)
            return self._actor_class

    def actor_name(self, set_name: str) -> str:
        """``<host id>.<set>.<n>``: per host and set, and per load (a set
        loaded again never waits for its old actor's name to be released)."""
        return f"{self.host_id}.{set_name}.{next(self._serial)}"

    def close(self) -> None:
        """Leave the cluster if this host joined it (the application's own
        ``ray.init`` stays as it is)."""
        with self._lock:
            if self._started_ray:
                self._started_ray = False
                _import_ray().shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"placement='ray' needs Ray: pip install 'fnhost[ray]' (importing ray failed: {exc})"
        ) from exc
    return ray
