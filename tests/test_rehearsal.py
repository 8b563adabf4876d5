"""The spare's rehearsal (``worker.rehearsal``): it must run the start's
steps for real, and leave nothing of its made-up request behind."""

from __future__ import annotations

import os

from protocol.zygote_control import decode_spawn_request, encode_spawn_request
from worker import rehearsal


def test_the_made_up_request_passes_the_contracts_checks():
    # A request the contract refuses would make the rehearsal stop at its
    # first step, silently: the restart would lose its head start.
    request = decode_spawn_request(encode_spawn_request(rehearsal.made_up_request()))
    assert request.config.set_name == "rehearsal"
    assert request.config.memory_cgroup is None
    assert not os.path.exists(request.config.path)


def test_rehearsing_leaves_the_environment_as_it_was(monkeypatch):
    monkeypatch.setenv("FNHOST_REHEARSAL_PROBE", "kept")
    before = dict(os.environ)
    rehearsal.rehearse()
    assert dict(os.environ) == before
