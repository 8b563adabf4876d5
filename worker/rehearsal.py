"""Warming a worker's start before it has one: in the zygote, and in a spare.

A worker is a fork of the zygote. Every page it writes that it shares with
the zygote is copied first, and Python writes a page whenever it touches an
object on it (its reference count). On this project's machines such a
copy-on-write fault costs about 6 µs, and a worker's start takes about 600
of them: more than half of a restart's start sequence.

- ``warm_up`` runs in the zygote once: it builds a few schemas, so the
  caches every worker uses (docstring-parser's regexes, typing's) are
  filled before any fork.
- ``rehearse`` runs in a spare's worker-to-be while it waits for a request
  (``worker.zygote``): it runs what its start will run on the request
  (decode it, hand the config over, set the environment, build schemas,
  encode the messages) on a made-up request, so that its faults are taken
  now, off the restart's path. It takes no memory the start would not take:
  the pages it copies are the ones the start writes. Nothing of it is kept;
  the made-up request names no set and no path of the host.
- ``rehearse_hand_over`` runs in the zygote each time it has forked a
  spare, for the same reason the other way round: the zygote now shares
  its pages with the spare, and the hand-over of the next request (decode
  it, check the spare's processes, answer the host) would take ~50 faults
  of the zygote's own (0.3 ms of a restart) on the pages it writes.

Both are optimisations only: a failure is ignored.
"""

from __future__ import annotations

import json
import os

from protocol import Notification, Verb, encode_message
from protocol.memory_cgroup import limit_bytes
from protocol.worker_config import LIMIT_FIELDS, POLICY_FIELDS, WorkerConfig
from protocol.zygote_control import (
    Exited,
    Spawned,
    SpawnRequest,
    decode_spawn_request,
    encode_reply,
    encode_spawn_request,
)
from worker import process_table
from worker.ahead import fits_ahead
from worker.signature import describe_function


def _sample(a: int, b: list[str] | None = None, *, c: dict[str, float] | None = None) -> int:
    """Summary.

    Args:
        a: First.
        b: Second.
        c: Third.
    """
    return a


def _numpy_style(x: float) -> float:
    """Summary.

    Parameters
    ----------
    x : float
        A value.
    """
    return x


def _rest_style(x: str) -> str:
    """Summary.

    :param x: A value.
    """
    return x


def warm_up() -> None:
    """Build a schema of each docstring style (in the zygote, before forks)."""
    for fn in (_sample, _numpy_style, _rest_style):
        try:
            describe_function(fn.__name__.lstrip("_"), fn)
        except Exception:  # an optimisation only
            pass


def made_up_request() -> SpawnRequest:
    """A request as the host sends one, for no set: it must pass the
    contract's checks, or the rehearsal stops at its first step."""
    policy: dict = {
        key: (False if kind is bool else 0 if kind is int else [])
        for key, kind in POLICY_FIELDS.items()
    }
    config = WorkerConfig(
        in_fd=3,
        out_fd=4,
        host_pid=1,
        host_uid=0,
        set_name="rehearsal",
        path="/nonexistent/rehearsal.py",
        module=None,
        extra_sys_path=(),
        limits={key: 1 for key in LIMIT_FIELDS},
        max_frame_size=1 << 20,
        max_result_bytes=1 << 20,
        sandbox=policy,
        memory_cgroup=None,
    )
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    return SpawnRequest(0, config, env, "/")


def rehearse() -> None:
    """In a worker-to-be, before its request: the start's steps on a made-up
    request (see the module). Leaves the process as it found it."""
    try:
        request = decode_spawn_request(encode_spawn_request(made_up_request()))
        config = request.config.handed_over(in_fd=5, out_fd=6, parent_pid=1)
        json.dumps(config.to_wire())
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(request.env)
        os.environ.clear()
        os.environ.update(saved)
        functions = [describe_function("sample", _sample).schema]
        encode_message(Notification(Verb.PROBED, {"protections": {"landlock": True}}))
        encode_message(Notification(Verb.READY, {"functions": functions, "skipped": []}))
    except Exception:  # an optimisation only
        pass


def rehearse_hand_over(spare: int) -> None:
    """In the zygote, just after it forked ``spare``: the steps of handing a
    request to a spare (see the module) on a made-up request. Reads
    ``/proc`` only; sends nothing."""
    try:
        request = decode_spawn_request(encode_spawn_request(made_up_request()))
        fits_ahead(request.config.sandbox)
        limit_bytes(request.config.limits)
        process_table.tree(spare)
        encode_reply(Spawned(request.id, spare))
        encode_reply(Exited(spare, 0))
    except Exception:  # an optimisation only
        pass
