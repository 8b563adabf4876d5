"""What the driver knows of a placed set's workers: their pids and
protections as the set's actor last reported them.

Every answer of the actor (load, reload, re-placement, each call) carries
the workers' pids, and the protections whenever they changed on the node,
so ``function_sets`` and ``protections`` read them here without a round
trip. An answer whose pids changed without protections (two answers
overtook each other after a restart) makes the protections stale: they are
asked of the actor once, then kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ActorView:
    """The last reported view of one placed set (see the module)."""

    def __init__(self) -> None:
        self._pids: list[int | None] = [None]
        #: ``None`` once a worker restart made it stale: asked for once, then kept.
        self._protections: dict[str, bool] | None = {}

    def see(self, view: Any) -> None:
        """Keep the ``pids`` and ``protections`` of a view the actor sent."""
        if not isinstance(view, dict):
            return
        pids, protections = view.get("pids"), view.get("protections")
        if isinstance(pids, list):
            self._pids = pids
        if isinstance(protections, dict):
            self._protections = {str(k): bool(v) for k, v in protections.items()}

    def see_answer(self, data: dict[str, Any]) -> None:
        """A call's answer: its pids, and its protections if it has them."""
        pids = data.get("pids")
        if "protections" in data:
            self.see(data)  # the view changed on the node: a worker (re)started
        elif isinstance(pids, list) and pids != self._pids:
            # Answers overtook each other: the protections are asked for once.
            self._pids, self._protections = pids, None

    def lost(self) -> None:
        """The actor was lost: as locally while a worker is down."""
        self._pids, self._protections = [None], {}

    def protections(self, ask: Callable[[], Any]) -> dict[str, bool]:
        """The protections, asking the actor (``ask()``) only when stale;
        ``{}`` if it cannot answer."""
        if self._protections is None:
            report = ask()
            if not isinstance(report, dict):
                return {}
            self._protections = {str(k): bool(v) for k, v in report.items()}
        return dict(self._protections)

    @property
    def pids(self) -> list[int | None]:
        return list(self._pids)
