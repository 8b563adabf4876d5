"""A call's outcome, from what its wait left in its ``Pending``: the
``CallResult`` of a reply, or the ``CallError`` it raises (the worker's
error, or how the worker was lost)."""

from __future__ import annotations

import logging

from host.errors import WorkerCrashed, error_from_map
from host.wire.pending import Pending, WorkerGone, WorkerLost, WriteInterrupted
from host.workers.call_result import CallResult
from host.workers.incarnation import Incarnation, log_stderr
from protocol import Response


def outcome(
    set_name: str, inc: Incarnation, pending: Pending, mark: int | None, log: logging.Logger
) -> CallResult:
    """The result of ``pending``, a call of set ``set_name`` that ran on
    ``inc`` (``mark``: its egress door's mark when the call was sent), its
    worker's stderr logged on ``log``. Raises the call's ``CallError``."""
    if pending.error is not None:
        if isinstance(pending.error, WorkerGone):
            raise WorkerCrashed(
                set_name, pending.function, "had already exited when the call was sent"
            )
        if isinstance(pending.error, WorkerLost):
            raise WorkerCrashed(set_name, pending.function, "its worker was lost")
        if isinstance(pending.error, WriteInterrupted):
            raise WorkerCrashed(
                set_name,
                pending.function,
                "its worker was replaced while the call ran: the host was interrupted "
                f"while writing to it ({pending.error.cause}), which may have cut "
                "a request part-way",
                details={"cause": "interrupted"},
            )
        raise pending.error
    msg = pending.result
    assert isinstance(msg, Response)
    output = msg.result  # checked by the channel (validate_call_result)
    if output.get("stderr"):
        log_stderr(log, output)
    if msg.error is not None:
        # (A "recycle" error has had its worker replaced by then: the
        # channel told the handle first, through on_recycle.)
        raise error_from_map(set_name, pending.function, msg.error, output)
    egress = inc.proc.egress_door
    return CallResult(
        output["value"],
        output.get("stdout") or "",
        output.get("stderr") or "",
        set_name,
        pending.function,
        () if egress is None or mark is None else egress[0].since(egress[1], mark),
    )
