"""Environments for sets placed on Ray: prepared on the node, not here."""

from __future__ import annotations

from host.launch.launcher import WorkerSpec


class NodeEnvironments:
    """What the host's loader asks of environments when its sets run on a
    Ray cluster: nothing is built on the host. The set's actor builds (or
    finds in the node's cache) the set's environment, exactly as
    ``SetEnvironments`` does locally, before it starts the worker; a
    failure comes back as the set's ``LoadError``."""

    def prepare(self, spec: WorkerSpec) -> WorkerSpec:
        return spec
