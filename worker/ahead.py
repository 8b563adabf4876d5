"""A worker entered ahead of its request: the zygote's spare runs
``enclosure.enter`` with ``AHEAD_POLICY`` while it waits (``worker.spare``),
and the zygote hands it only requests whose policy that fits
(``fits_ahead``); the worker then starts from ``enclosure.finish``
(``worker.start`` finds it with ``entered_ahead``).
"""

from __future__ import annotations

import os

from worker.enclosure import DEFAULT_UID_BASE, Entered

#: The policy a worker entered ahead (by the zygote's spare) serves: the
#: defaults. ``fits_ahead`` says whether a request's policy is served by it.
AHEAD_POLICY: dict = {}

#: A worker entered ahead, set by the zygote's spare before the start sequence.
_ahead: list[Entered] = []


def fits_ahead(policy: dict) -> bool:
    """Whether a worker that ran ``enter(AHEAD_POLICY)`` can serve ``policy``
    (the rest of the policy is applied by ``finish`` and later steps): the
    same namespaces, identity and read-only view; network access only where
    the worker can go back to the host's network namespace (root)."""
    if not policy.get("private_namespaces", True) or not policy.get("confine_writes", True):
        return False
    if os.geteuid() != 0:
        return bool(policy.get("user_namespace", True)) and not policy.get("network", False)
    return bool(policy.get("own_uid", True)) and (
        int(policy.get("uid_base", DEFAULT_UID_BASE)) == DEFAULT_UID_BASE
    )


def use_ahead(entered: Entered) -> None:
    """In a worker that ``enter`` returned in ahead of its request, once the
    zygote has taken it: the start sequence's ``enclose`` goes straight to
    ``finish``, and the warden hears that it serves a request now (it
    takes back its name). Before any user code: the pipe to the warden is
    closed here, so no module sees it. Never raises."""
    _ahead[:] = [entered]
    if entered.taken >= 0:
        try:
            os.write(entered.taken, b"t")
        except OSError:
            pass
        try:
            os.close(entered.taken)
        except OSError:
            pass
        entered.taken = -1


def entered_ahead() -> Entered | None:
    """The worker entered ahead of its request, if this process is one."""
    return _ahead[0] if _ahead else None
