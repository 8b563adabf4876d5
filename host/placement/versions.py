"""The versions a set's actor runs, and the driver's check of them.

The driver and a node each import their own installed fnhost: the driver
sends the set's spec (fnhost's own dataclasses, pickled by Ray) and reads
the actor's answers, the node runs the worker and speaks the worker's
protocol. Both sides must be the same fnhost and speak the same protocol;
a node with another version fails the set's load with a ``LoadError`` that
names both versions and the node, before anything else of its answer is
trusted.
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from host.errors import LoadError
from protocol import PROTOCOL_VERSION


def local_versions() -> dict[str, Any]:
    """This process's fnhost version (``host.__version__``: the installed
    distribution's, read the same way, since this layer may not import the
    package's root) and protocol version: what an actor reports."""
    return dict(_versions())


@functools.cache  # (the metadata lookup scans the installed distributions)
def _versions() -> dict[str, Any]:
    try:
        fnhost = version("fnhost")
    except PackageNotFoundError:  # a source tree that was never installed
        fnhost = "0+unknown"
    return {"fnhost": fnhost, "protocol": PROTOCOL_VERSION}


def check_versions(reported: Any, set_name: str, node: str, source: str | None = None) -> None:
    """Raise ``LoadError`` for set ``set_name`` unless ``reported`` (what its
    actor on ``node`` sent) is this process's ``local_versions()``. A missing
    or malformed report (an fnhost from before the check) is a mismatch too.
    """
    ours = local_versions()
    theirs = reported if isinstance(reported, dict) else {}
    differ = [
        f"{key} {theirs.get(key, 'unknown')!r} on the node, {ours[key]!r} here"
        for key in ("fnhost", "protocol")
        if theirs.get(key) != ours[key]
    ]
    if not differ:
        return
    raise LoadError(
        set_name,
        f"the Ray node {node} runs another fnhost ({'; '.join(differ)}): install "
        f"fnhost {ours['fnhost']} on every node of the cluster",
        source=source,
    )
