"""The conversation's rules, both ends, without a process (``protocol.conversation``,
``protocol.worker_conversation``).

Every legal and illegal sequence of the host's end (``HostConversation``) and
of the worker's end (``WorkerConversation``): the event each message means
(its type and fields), the state after it, and for each broken rule the
``ProtocolViolation`` (the peer's fault) or ``ConversationMisuse`` (the
driver's) whose message names the cause. Times are passed in as ``now``; no
clock, no I/O. The last test drives the two ends against each other through
seeded random interleavings.
"""

from __future__ import annotations

import random
import re
from collections import deque
from typing import Any

import pytest

from protocol.conversation import (
    Answered,
    Asked,
    Call,
    ConversationMisuse,
    HostConversation,
    LoadFailed,
    Noted,
    Phase,
    Probed,
    Ready,
)
from protocol.errors import ErrorKind, ProtocolViolation
from protocol.messages import (
    MAX_MORE,
    MAX_NOTES_PER_CALL,
    STREAM_WINDOW,
    Notification,
    Request,
    Response,
    make_error_map,
)
from protocol.worker_conversation import IGNORED, Skip, Stop, WorkerConversation

# -- messages as the decoder hands them over (methods are plain strings) --------

PROBED_PARAMS = {"protections": {"landlock": True, "seccomp": False}}
READY_PARAMS = {"protocol": 2, "pid": 4242, "functions": [], "skipped": []}
LOAD_FAILED_PARAMS = {"error": make_error_map(ErrorKind.IMPORT_FAILED, "no module named x")}
NO_OUTPUT = {"stdout": "", "stderr": ""}


def probed() -> Notification:
    return Notification("probed", PROBED_PARAMS)


def ready() -> Notification:
    return Notification("ready", READY_PARAMS)


def load_failed() -> Notification:
    return Notification("load_failed", LOAD_FAILED_PARAMS)


def ok(msgid: int, value: Any = None) -> Response:
    """A successful reply (``value`` may be None: it is present)."""
    return Response(msgid, None, {"value": value, **NO_OUTPUT})


def failed(msgid: int, kind: ErrorKind = ErrorKind.USER_EXCEPTION, **details: Any) -> Response:
    return Response(msgid, make_error_map(kind, "boom", "ValueError", None, **details), NO_OUTPUT)


def cancelled(msgid: int) -> Response:
    """The worker's confirmation that ``msgid`` never started."""
    return Response(
        msgid, make_error_map(ErrorKind.CANCELLED, "cancelled before it started"), NO_OUTPUT
    )


def recycle(msgid: int) -> Response:
    """An out-of-memory reply asking the host to replace the worker."""
    return failed(msgid, ErrorKind.OUT_OF_MEMORY, recycle=True)


def call_request(msgid: int) -> Request:
    return Request(msgid, "call", {"function": "f", "arguments": {}})


def cancel_note(msgid: Any) -> Notification:
    return Notification("cancel", {"msgid": msgid})


def shutdown_note() -> Notification:
    return Notification("shutdown", {})


def violation(message: str) -> pytest.RaisesExc[ProtocolViolation]:
    """Expect a ``ProtocolViolation`` whose whole message is ``message``."""
    return pytest.raises(ProtocolViolation, match=f"^{re.escape(message)}$")


def misuse(message: str) -> pytest.RaisesExc[ConversationMisuse]:
    return pytest.raises(ConversationMisuse, match=f"^{re.escape(message)}$")


def serving_host() -> HostConversation:
    host = HostConversation()
    host.receive(probed(), 0.0)
    host.receive(ready(), 0.0)
    return host


def host_with_calls(*timeouts: float | None, now: float = 10.0) -> tuple[HostConversation, list]:
    """A serving host with calls 1, 2, ... sent at ``now`` (the first has started)."""
    host = serving_host()
    calls = [Call(i + 1, t) for i, t in enumerate(timeouts)]
    for call in calls:
        assert host.send_call(call, now) is True
    return host, calls


def assert_unchanged(host: HostConversation, calls: list[Call], head_deadline: Any) -> None:
    """``calls`` are in flight, oldest first; only the first has started."""
    assert host.phase is Phase.SERVING
    assert host.in_flight == len(calls)
    assert host.head is calls[0]
    assert calls[0].started is True
    assert calls[0].run_deadline == head_deadline
    for call in calls[1:]:
        assert call.started is False
        assert call.run_deadline is None


# == the host's end: the handshake ================================================


def test_host_starts_probing_and_not_accepting() -> None:
    host = HostConversation()
    assert host.phase is Phase.PROBING
    assert host.accepting is False
    assert host.head is None
    assert host.in_flight == 0
    assert host.probed is None
    assert host.recycling is False
    assert host.shutdown_sent is False


def test_host_probed_first_is_the_sandbox_report() -> None:
    host = HostConversation()
    event = host.receive(probed(), 1.0)
    assert type(event) is Probed
    assert event.params == PROBED_PARAMS
    assert host.probed == PROBED_PARAMS
    assert host.phase is Phase.STARTING
    assert host.accepting is False


def test_host_ready_after_probed_opens_the_calls() -> None:
    host = HostConversation()
    host.receive(probed(), 1.0)
    event = host.receive(ready(), 2.0)
    assert type(event) is Ready
    assert event.params == READY_PARAMS
    assert host.phase is Phase.SERVING
    assert host.accepting is True


def test_host_load_failed_after_probed_ends_the_calls() -> None:
    host = HostConversation()
    host.receive(probed(), 1.0)
    event = host.receive(load_failed(), 2.0)
    assert type(event) is LoadFailed
    assert event.params == LOAD_FAILED_PARAMS
    assert host.phase is Phase.LOAD_FAILED
    assert host.accepting is False
    call = Call(1, 5.0)
    assert host.send_call(call, 3.0) is False
    assert host.in_flight == 0
    assert call.started is False


@pytest.mark.parametrize(
    "first, message",
    [
        (Notification("ready", READY_PARAMS), "first message is 'ready', not probed"),
        (
            Notification("load_failed", LOAD_FAILED_PARAMS),
            "first message is 'load_failed', not probed",
        ),
        (Notification("hello", {}), "first message is 'hello', not probed"),
        (ok(1, 5), "reply received before the worker reported ready"),
        (cancelled(1), "reply received before the worker reported ready"),
        (Request(1, "call", {}), "a worker may not send requests ('call')"),
        (Request(7, "probed", PROBED_PARAMS), "a worker may not send requests ('probed')"),
    ],
    ids=["ready", "load_failed", "unknown", "reply", "cancelled", "request", "probed-request"],
)
def test_host_first_message_must_be_probed(first: Any, message: str) -> None:
    host = HostConversation()
    with violation(message):
        host.receive(first, 1.0)
    assert host.phase is Phase.PROBING
    assert host.probed is None
    # The rule broken left the state as it was: probed is still accepted.
    assert type(host.receive(probed(), 2.0)) is Probed


@pytest.mark.parametrize(
    "second, message",
    [
        (Notification("probed", PROBED_PARAMS), "expected ready or load_failed, got 'probed'"),
        (Notification("cancel", {"msgid": 1}), "expected ready or load_failed, got 'cancel'"),
        (ok(1, 5), "reply received before the worker reported ready"),
        (Request(1, "call", {}), "a worker may not send requests ('call')"),
    ],
    ids=["probed-twice", "other-notification", "reply", "request"],
)
def test_host_second_message_must_be_ready_or_load_failed(second: Any, message: str) -> None:
    host = HostConversation()
    host.receive(probed(), 1.0)
    with violation(message):
        host.receive(second, 2.0)
    assert host.phase is Phase.STARTING
    assert host.probed == PROBED_PARAMS
    assert type(host.receive(ready(), 3.0)) is Ready


@pytest.mark.parametrize("method", ["ready", "probed", "load_failed", "cancel", "stream"])
# (progress and log are a running call's notes: test_host_a_bad_report_is_a_violation.)
def test_host_no_notification_after_ready(method: str) -> None:
    host, (first,) = host_with_calls(5.0)
    with violation(f"unexpected notification {method!r} after start"):
        host.receive(Notification(method, {}), 11.0)
    assert_unchanged(host, [first], 15.0)
    assert host.close() == [first]


@pytest.mark.parametrize("method", ["ready", "probed", "load_failed"])
def test_host_no_notification_after_load_failed(method: str) -> None:
    host = HostConversation()
    host.receive(probed(), 1.0)
    host.receive(load_failed(), 2.0)
    with violation(f"unexpected notification {method!r} after start"):
        host.receive(Notification(method, {}), 3.0)
    assert host.phase is Phase.LOAD_FAILED


def test_host_reply_after_load_failed_is_a_violation() -> None:
    host = HostConversation()
    host.receive(probed(), 1.0)
    host.receive(load_failed(), 2.0)
    with violation("a reply after the worker reported load_failed"):
        host.receive(ok(1, 5), 3.0)
    assert host.phase is Phase.LOAD_FAILED


def test_host_request_from_the_worker_while_serving_is_a_violation() -> None:
    host, (first,) = host_with_calls(None)
    with violation("a worker may not send requests ('call')"):
        host.receive(Request(99, "call", {"function": "f", "arguments": {}}), 11.0)
    assert_unchanged(host, [first], None)


@pytest.mark.parametrize("phase_after", ["probing", "starting"])
def test_host_call_before_ready_is_misuse(phase_after: str) -> None:
    host = HostConversation()
    if phase_after == "starting":
        host.receive(probed(), 1.0)
    call = Call(1, 5.0)
    with misuse("a call was sent before the worker was ready"):
        host.send_call(call, 2.0)
    assert host.phase.value == phase_after
    assert host.in_flight == 0
    assert host.head is None
    assert call.started is False
    assert call.run_deadline is None


def test_host_duplicate_msgid_is_misuse() -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    for msgid in (1, 2):
        twin = Call(msgid, 1.0)
        with misuse(f"request id {msgid} is already in flight"):
            host.send_call(twin, 11.0)
        assert twin.started is False
    assert_unchanged(host, [first, second], 15.0)


def test_host_msgid_may_be_reused_once_answered() -> None:
    host, (first,) = host_with_calls(None)
    host.receive(ok(1), 11.0)
    again = Call(1, 2.0)
    assert host.send_call(again, 12.0) is True
    assert host.head is again
    assert again.run_deadline == 14.0


def _closed() -> HostConversation:
    host, _ = host_with_calls(5.0)
    host.close()
    return host


def _load_failed() -> HostConversation:
    host = HostConversation()
    host.receive(probed(), 1.0)
    host.receive(load_failed(), 2.0)
    return host


def _closed_while_probing() -> HostConversation:
    host = HostConversation()
    host.close()
    return host


def _recycling() -> HostConversation:
    host, _ = host_with_calls(5.0, 5.0)
    host.receive(recycle(1), 11.0)
    return host


def _shut_down() -> HostConversation:
    host, _ = host_with_calls(5.0)
    assert host.send_shutdown() is True
    return host


@pytest.mark.parametrize(
    "make",
    [_closed, _closed_while_probing, _load_failed, _recycling, _shut_down],
    ids=["closed", "closed-while-probing", "load-failed", "recycling", "shut-down"],
)
def test_host_send_call_refused_changes_nothing(make: Any) -> None:
    host = make()
    before = (host.phase, host.in_flight, host.head, host.recycling, host.shutdown_sent)
    assert host.accepting is False
    call = Call(50, 5.0)
    assert host.send_call(call, 20.0) is False
    assert (host.phase, host.in_flight, host.head, host.recycling, host.shutdown_sent) == before
    assert call.started is False
    assert call.run_deadline is None
    assert call.cancel_sent is False


# == the host's end: calls are answered in the order they were sent ==================


def test_host_first_call_starts_at_once_with_its_run_deadline() -> None:
    host = serving_host()
    call = Call(1, 2.5)
    assert host.send_call(call, 10.0) is True
    assert call.started is True
    assert call.run_deadline == 12.5
    assert host.head is call
    assert host.in_flight == 1
    assert host.accepting is True


def test_host_first_call_without_timeout_starts_without_deadline() -> None:
    host = serving_host()
    call = Call(1)
    assert host.send_call(call, 10.0) is True
    assert call.started is True
    assert call.run_deadline is None


def test_host_second_call_waits_then_starts_when_the_first_is_answered() -> None:
    host, (first, second) = host_with_calls(2.0, 3.0, now=10.0)
    assert second.started is False
    assert second.run_deadline is None
    assert host.head is first

    reply = ok(1, "one")
    event = host.receive(reply, 17.0)
    assert type(event) is Answered
    assert event.call is first
    assert event.response is reply
    assert event.result == {"value": "one", "stdout": "", "stderr": ""}
    assert event.cancelled is False
    assert event.recycle is False
    assert event.started is second
    # Its run time counts from the moment the first was answered, not sent.
    assert second.started is True
    assert second.run_deadline == 20.0
    assert host.head is second
    assert host.in_flight == 1

    event = host.receive(ok(2, None), 18.0)
    assert event.call is second
    assert event.result == {"value": None, "stdout": "", "stderr": ""}
    assert event.started is None
    assert host.head is None
    assert host.in_flight == 0


def test_host_error_reply_answers_the_call_and_starts_the_next() -> None:
    host, (first, second) = host_with_calls(None, None)
    reply = failed(1)
    event = host.receive(reply, 11.0)
    assert event.call is first
    assert event.response is reply
    assert event.result == NO_OUTPUT
    assert event.cancelled is False
    assert event.recycle is False
    assert event.started is second
    assert second.started is True
    assert second.run_deadline is None


def test_host_third_call_starts_only_after_the_second() -> None:
    host, (first, second, third) = host_with_calls(1.0, 1.0, 1.0, now=0.0)
    assert host.receive(ok(1), 5.0).started is second
    assert third.started is False
    assert host.receive(ok(2), 7.0).started is third
    assert third.run_deadline == 8.0


def test_host_reply_to_the_second_while_the_first_runs_is_a_violation() -> None:
    host, calls = host_with_calls(5.0, 5.0, 5.0)
    for reply in (ok(2), failed(2), ok(3)):
        with violation(f"reply to request id {reply.msgid}, but the oldest unanswered is 1"):
            host.receive(reply, 11.0)
        assert_unchanged(host, calls, 15.0)
    assert host.close() == calls


def test_host_forged_reply_to_an_unknown_msgid_is_a_violation() -> None:
    host, calls = host_with_calls(5.0, 5.0)
    for reply in (ok(99), cancelled(99), recycle(99)):
        with violation("reply to request id 99, but the oldest unanswered is 1"):
            host.receive(reply, 11.0)
        assert_unchanged(host, calls, 15.0)
    assert host.recycling is False


def test_host_reply_with_nothing_in_flight_is_a_violation() -> None:
    host = serving_host()
    with violation("reply to request id 1, but the oldest unanswered is None"):
        host.receive(ok(1), 1.0)
    host, _ = host_with_calls(None)
    host.receive(ok(1), 11.0)
    with violation("reply to request id 1, but the oldest unanswered is None"):
        host.receive(ok(1), 12.0)  # a second reply to an answered call
    assert host.in_flight == 0


def test_host_reply_after_close_is_a_violation() -> None:
    host, calls = host_with_calls(5.0, 5.0)
    assert host.close() == calls
    for reply in (ok(1), cancelled(2), ok(3)):
        with violation("a reply after the worker was closed"):
            host.receive(reply, 11.0)
    assert host.phase is Phase.CLOSED
    assert host.in_flight == 0


def test_host_notification_after_close_is_a_violation() -> None:
    host = _closed()
    with violation("unexpected notification 'ready' after start"):
        host.receive(ready(), 11.0)
    assert host.phase is Phase.CLOSED


def test_host_state_after_a_violation_is_unchanged() -> None:
    host, calls = host_with_calls(5.0, 4.0, now=10.0)
    assert host.send_cancel(calls[1]) is True
    bad = [
        ok(2),  # out of order
        cancelled(1),  # no cancel was sent for it
        Response(1, None, NO_OUTPUT),  # no value
        Response(1, None, "not a map"),
        Notification("ready", READY_PARAMS),
        Request(3, "call", {}),
    ]
    for msg in bad:
        with pytest.raises(ProtocolViolation):
            host.receive(msg, 12.0)
        assert_unchanged(host, calls, 15.0)
        assert calls[1].cancel_sent is True
        assert host.recycling is False
    closed = host.close()
    assert closed == calls
    assert [c.started for c in closed] == [True, False]


# == the host's end: cancels ====================================================


def test_host_cancel_refused_for_the_started_call() -> None:
    host, (first,) = host_with_calls(5.0)
    assert host.send_cancel(first) is False
    assert first.cancel_sent is False


def test_host_cancel_refused_for_a_call_not_in_flight() -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    never_sent = Call(3, 5.0)
    assert host.send_cancel(never_sent) is False
    assert never_sent.cancel_sent is False
    # Another object with the msgid of a call in flight is not that call.
    impostor = Call(2, 5.0)
    assert host.send_cancel(impostor) is False
    assert impostor.cancel_sent is False
    assert second.cancel_sent is False
    # An answered call is no longer in flight.
    host.receive(ok(1), 11.0)
    assert host.send_cancel(first) is False
    assert first.cancel_sent is False


def test_host_cancel_allowed_once_for_a_waiting_call() -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    assert host.send_cancel(second) is True
    assert second.cancel_sent is True
    assert host.send_cancel(second) is False
    assert second.cancel_sent is True
    assert_unchanged(host, [first, second], 15.0)


def test_host_cancel_refused_after_close() -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    host.close()
    assert host.send_cancel(second) is False
    assert second.cancel_sent is False


def test_host_cancel_refused_before_ready_and_after_load_failed() -> None:
    host = HostConversation()
    call = Call(1)
    assert host.send_cancel(call) is False
    host = _load_failed()
    assert host.send_cancel(call) is False
    assert call.cancel_sent is False


def test_host_cancel_unsent_rolls_back() -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    assert host.send_cancel(second) is True
    host.cancel_unsent(second)
    assert second.cancel_sent is False
    # The worker never saw a cancel: a confirmation is forged.
    with violation("request 2 reported cancelled, but no cancel was sent"):
        host.receive(cancelled(2), 11.0)
    assert_unchanged(host, [first, second], 15.0)
    # And the cancel may be tried again.
    assert host.send_cancel(second) is True


def test_host_cancelled_confirmation_of_a_waiting_call_comes_out_of_order() -> None:
    host, (first, second, third) = host_with_calls(5.0, 5.0, 5.0)
    assert host.send_cancel(second) is True
    reply = cancelled(2)
    event = host.receive(reply, 11.0)
    assert type(event) is Answered
    assert event.call is second
    assert event.response is reply
    assert event.result == NO_OUTPUT
    assert event.cancelled is True
    assert event.recycle is False
    assert event.started is None  # the first still runs
    assert second.started is False
    assert second.run_deadline is None
    assert_unchanged(host, [first, third], 15.0)
    # The order is kept for the rest: the third starts after the first.
    assert host.receive(ok(1), 12.0).started is third
    assert third.run_deadline == 17.0


def test_host_cancelled_confirmation_of_the_head_starts_the_next() -> None:
    # The cancel for the second went out while it waited; the first's reply
    # made it the head, but the worker read the cancel before starting it.
    host, (first, second, third) = host_with_calls(5.0, 5.0, 5.0)
    assert host.send_cancel(second) is True
    assert host.receive(ok(1), 11.0).started is second
    event = host.receive(cancelled(2), 12.0)
    assert event.call is second
    assert event.cancelled is True
    assert event.recycle is False
    assert event.started is third
    assert third.started is True
    assert third.run_deadline == 17.0
    assert host.head is third


def test_host_non_cancelled_reply_to_a_waiting_call_that_got_a_cancel_is_a_violation() -> None:
    host, calls = host_with_calls(5.0, 5.0)
    assert host.send_cancel(calls[1]) is True
    with violation("reply to request id 2, but the oldest unanswered is 1"):
        host.receive(ok(2), 11.0)
    assert_unchanged(host, calls, 15.0)


def test_host_cancelled_reply_for_the_started_call_without_cancel_is_a_violation() -> None:
    host, calls = host_with_calls(5.0, 5.0)
    with violation("request 1 reported cancelled, but no cancel was sent"):
        host.receive(cancelled(1), 11.0)
    assert_unchanged(host, calls, 15.0)


def test_host_cancelled_reply_for_a_waiting_call_without_cancel_is_a_violation() -> None:
    host, calls = host_with_calls(5.0, 5.0, 5.0)
    assert host.send_cancel(calls[2]) is True  # a cancel for another call
    with violation("request 2 reported cancelled, but no cancel was sent"):
        host.receive(cancelled(2), 11.0)
    assert_unchanged(host, calls, 15.0)


def test_host_after_shutdown_every_waiting_call_may_be_confirmed_cancelled() -> None:
    host, (first, second, third) = host_with_calls(5.0, 5.0, 5.0)
    assert host.send_shutdown() is True
    assert host.shutdown_sent is True
    assert host.accepting is False
    event = host.receive(cancelled(3), 11.0)
    assert (event.call, event.cancelled, event.started) == (third, True, None)
    assert_unchanged(host, [first, second], 15.0)
    # The head too: the shutdown may have reached the worker before it
    # started it.
    event = host.receive(cancelled(1), 12.0)
    assert (event.call, event.cancelled, event.recycle) == (first, True, False)
    event = host.receive(cancelled(2), 13.0)
    assert (event.call, event.cancelled, event.started) == (second, True, None)
    assert host.in_flight == 0
    assert host.close() == []


def test_host_after_shutdown_the_running_call_is_answered_and_the_rest_cancelled() -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    assert host.send_shutdown() is True
    event = host.receive(ok(1, 1), 11.0)
    assert (event.call, event.cancelled) == (first, False)
    # The worker may have started the second before it read the shutdown.
    assert event.started is second
    assert second.run_deadline == 16.0
    event = host.receive(cancelled(2), 12.0)
    assert (event.call, event.cancelled, event.started) == (second, True, None)


def test_host_shutdown_confirmed_head_starts_nothing_behind() -> None:
    # The head, which got no cancel, is confirmed cancelled: only the
    # shutdown does that, and the worker then starts nothing: it answers
    # the other waiting calls "cancelled" and exits. So the call behind the
    # head never started there, and must not be taken as started (close()
    # would report it as having run, and its run deadline would tick).
    host, (first, second, third) = host_with_calls(5.0, 5.0, 5.0)
    assert host.send_shutdown() is True
    event = host.receive(cancelled(1), 12.0)
    assert (event.call, event.cancelled) == (first, True)
    assert event.started is None
    assert second.started is False
    assert second.run_deadline is None
    closed = host.close()
    assert closed == [second, third]
    assert [c.started for c in closed] == [False, False]


def test_host_shutdown_unsent_rolls_back() -> None:
    host, calls = host_with_calls(5.0, 5.0)
    assert host.send_shutdown() is True
    host.shutdown_unsent()
    assert host.shutdown_sent is False
    assert host.accepting is True
    with violation("request 2 reported cancelled, but no cancel was sent"):
        host.receive(cancelled(2), 11.0)
    assert_unchanged(host, calls, 15.0)
    assert host.send_shutdown() is True


def test_host_send_shutdown_twice() -> None:
    host, _ = host_with_calls(5.0)
    assert host.send_shutdown() is True
    assert host.send_shutdown() is False
    assert host.shutdown_sent is True


# == the host's end: recycle ======================================================


def test_host_recycle_reply_is_the_last() -> None:
    host, (first, second, third) = host_with_calls(5.0, 5.0, 5.0)
    assert host.send_cancel(third) is True
    reply = recycle(1)
    event = host.receive(reply, 11.0)
    assert type(event) is Answered
    assert event.call is first
    assert event.response is reply
    assert event.result == NO_OUTPUT
    assert event.recycle is True
    assert event.cancelled is False
    assert event.started is None
    assert host.recycling is True
    assert host.accepting is False
    assert host.phase is Phase.SERVING
    assert host.head is second
    assert second.started is False
    assert second.run_deadline is None
    for later in (ok(2), failed(2), cancelled(3), ok(99)):
        with violation("a reply after the worker asked to be recycled"):
            host.receive(later, 12.0)
    assert host.send_call(Call(4, 1.0), 13.0) is False
    closed = host.close()
    assert closed == [second, third]
    assert [c.started for c in closed] == [False, False]


@pytest.mark.parametrize(
    "details",
    [{"recycle": False}, {"recycle": "true"}, {"recycle": 1}, {"other": True}],
    ids=["false", "string", "int", "absent"],
)
def test_host_only_recycle_true_recycles(details: dict) -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    event = host.receive(failed(1, ErrorKind.OUT_OF_MEMORY, **details), 11.0)
    assert event.recycle is False
    assert host.recycling is False
    assert event.started is second


def test_host_cancelled_reply_never_recycles() -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    assert host.send_cancel(second) is True
    reply = Response(2, make_error_map(ErrorKind.CANCELLED, "cancelled", recycle=True), NO_OUTPUT)
    event = host.receive(reply, 11.0)
    assert (event.cancelled, event.recycle) == (True, False)
    assert host.recycling is False


# == the host's end: the reply's shape ============================================


@pytest.mark.parametrize(
    "result, message",
    [
        (NO_OUTPUT, "successful reply without a value"),
        ({}, "successful reply without a value"),
        (None, "call result must be a map, got NoneType None"),
        ([1, 2], "call result must be a map, got list [1, 2]"),
        ({"value": 1, "stdout": 5, "stderr": ""}, "stdout must be a string, got int 5"),
        ({"value": 1, "stdout": "", "stderr": b"x"}, "stderr must be a string, got bytes b'x'"),
    ],
    ids=["no-value", "empty", "none", "list", "stdout", "stderr"],
)
def test_host_malformed_reply_is_a_violation_and_starts_nothing(result: Any, message: str) -> None:
    host, calls = host_with_calls(5.0, 5.0)
    with violation(message):
        host.receive(Response(1, None, result), 11.0)
    assert_unchanged(host, calls, 15.0)


def test_host_malformed_error_and_cancelled_replies_are_violations() -> None:
    host, calls = host_with_calls(5.0, 5.0)
    assert host.send_cancel(calls[1]) is True
    bad_recycle = Response(1, make_error_map(ErrorKind.OUT_OF_MEMORY, "m", recycle=True), "x")
    with violation("call result must be a map, got str 'x'"):
        host.receive(bad_recycle, 11.0)
    assert host.recycling is False
    bad_cancel = Response(2, make_error_map(ErrorKind.CANCELLED, "c"), None)
    with violation("call result must be a map, got NoneType None"):
        host.receive(bad_cancel, 11.0)
    assert_unchanged(host, calls, 15.0)
    assert calls[1].cancel_sent is True


def test_host_error_reply_needs_no_value() -> None:
    host, (first,) = host_with_calls(5.0)
    event = host.receive(failed(1), 11.0)
    assert event.result == NO_OUTPUT


# == the host's end: close =======================================================


def test_host_close_returns_the_calls_oldest_first_only_the_first_started() -> None:
    host, calls = host_with_calls(5.0, 5.0, None)
    host.receive(ok(1), 11.0)
    fourth = Call(4, 1.0)
    assert host.send_call(fourth, 12.0) is True
    closed = host.close()
    assert closed == [calls[1], calls[2], fourth]
    assert [c.started for c in closed] == [True, False, False]
    assert host.phase is Phase.CLOSED
    assert host.in_flight == 0
    assert host.head is None
    assert host.accepting is False
    assert host.close() == []
    assert host.phase is Phase.CLOSED


def test_host_close_with_nothing_in_flight_and_during_the_handshake() -> None:
    host = serving_host()
    assert host.close() == []
    host = HostConversation()
    host.receive(probed(), 1.0)
    assert host.close() == []
    assert host.phase is Phase.CLOSED
    assert host.send_call(Call(1), 2.0) is False


# == the worker's end ============================================================


def serving_worker() -> WorkerConversation:
    worker = WorkerConversation()
    worker.probed_sent()
    worker.ready_sent()
    return worker


# == streams: items, room and stop (both ends) ====================================


def item(call: int, value: Any = 1) -> Notification:
    return Notification("item", {"call": call, "value": value})


def stream_request(msgid: int) -> Request:
    return Request(msgid, "call", {"function": "f", "arguments": {}, "stream": True})


def test_host_an_item_for_a_call_that_is_no_stream_is_a_violation() -> None:
    host, calls = host_with_calls(None)
    with violation("an item for call 1, which is not a stream"):
        host.receive(item(1), 11.0)


def test_host_a_stream_takes_a_window_of_items_then_only_what_more_allowed() -> None:
    host = serving_host()
    call = Call(1, None, stream=True, stream_bytes=1000)
    assert host.send_call(call, 10.0)
    for i in range(STREAM_WINDOW):
        event = host.receive(item(1, i), 11.0, 10)
        assert type(event) is Noted and event.call is call and event.note.params["value"] == i
        assert event.size == 10
    with violation("call 1 sent more items than the host made room for"):
        host.receive(item(1), 11.0, 10)
    assert host.send_more(call, 2, 20) is True
    host.receive(item(1), 11.0, 10)
    host.more_unsent(call, 1, 10)  # one of the two was not written after all
    with violation("call 1 sent more items than the host made room for"):
        host.receive(item(1), 11.0, 10)


def test_host_a_streams_items_may_take_only_the_bytes_it_has_room_for() -> None:
    host = serving_host()
    call = Call(1, None, stream=True, stream_bytes=100)
    host.send_call(call, 10.0)
    host.receive(item(1), 11.0, 60)
    with violation("call 1 sent an item of 60 bytes with room for 40"):
        host.receive(item(1), 11.0, 60)
    assert host.send_more(call, 1, 60) is True
    host.receive(item(1), 11.0, 60)
    assert call.byte_credit == 40


def test_host_items_for_a_stream_that_has_not_started_are_a_violation() -> None:
    host = serving_host()
    first, second = Call(1, None), Call(2, None, stream=True)
    host.send_call(first, 10.0)
    host.send_call(second, 10.0)
    with violation("a item for call 2, but the running call is 1"):
        host.receive(item(2), 11.0)


def test_host_more_and_stop_only_for_a_running_stream() -> None:
    host = serving_host()
    plain, stream, waiting = Call(1, None), Call(2, None, stream=True), Call(3, None, stream=True)
    host.send_call(plain, 10.0)
    host.send_call(stream, 10.0)
    host.send_call(waiting, 10.0)
    assert host.send_more(plain, 1, 0) is False
    assert host.send_stop(plain) is False
    host.receive(ok(1), 11.0)  # the stream starts
    assert host.send_more(stream, 0, 0) is False
    assert host.send_more(stream, MAX_MORE + 1, 0) is False
    assert host.send_more(stream, 1, -1) is False
    assert host.send_stop(waiting) is False  # not started: a plain cancel skips it
    assert host.send_stop(stream) is True
    assert host.send_stop(stream) is False  # once
    answered = host.receive(ok(2), 12.0)  # a stopped stream ends with an ordinary reply
    assert type(answered) is Answered and answered.call is stream and not answered.cancelled
    assert host.send_more(stream, 1, 0) is False  # it has left the conversation


def test_worker_a_stream_has_a_window_of_room_and_more_adds_to_it() -> None:
    worker = serving_worker()
    worker.stream_bytes = 10 * STREAM_WINDOW
    worker.receive(stream_request(1))
    assert worker.next_call() is not None and worker.credit == STREAM_WINDOW
    for _ in range(STREAM_WINDOW):
        assert worker.item_sent(10) == 1
    with misuse("an item with no room: wait for the host's more"):
        worker.item_sent(0)
    assert worker.receive(Notification("more", {"msgid": 1, "n": 3, "bytes": 5})) is IGNORED
    assert worker.credit == 3 and worker.byte_credit == 5
    assert worker.has_room(5) and not worker.has_room(6)  # bytes bound it too
    more = Notification("more", {"msgid": 9, "n": 3, "bytes": 5})
    assert worker.receive(more) is IGNORED  # not running
    assert worker.credit == 3
    worker.reply_sent(1)
    assert worker.credit is None
    with misuse("an item with no stream running"):
        worker.item_sent(1)


def test_worker_a_call_that_is_no_stream_sends_no_items() -> None:
    worker = serving_worker()
    worker.receive(call_request(1))
    worker.next_call()
    assert worker.credit is None
    with misuse("an item with no stream running"):
        worker.item_sent(1)


def test_worker_a_cancel_of_the_running_stream_halts_it() -> None:
    worker = serving_worker()
    worker.receive(stream_request(1))
    worker.next_call()
    assert worker.receive(cancel_note(1)) is IGNORED
    assert worker.halted is True
    worker.reply_sent(1)
    assert worker.halted is False
    worker.receive(call_request(2))
    worker.next_call()
    worker.receive(cancel_note(2))  # a running plain call is not halted
    assert worker.halted is False


@pytest.mark.parametrize(
    "params",
    [
        {"msgid": 1, "n": 1},
        {"msgid": 1, "n": 0, "bytes": 1},
        {"msgid": "1", "n": 2, "bytes": 1},
        {"msgid": 1, "n": 2, "bytes": -1},
    ],
)
def test_worker_a_malformed_more_is_a_violation(params: Any) -> None:
    worker = serving_worker()
    with pytest.raises(ProtocolViolation, match="more needs a msgid, a count and bytes"):
        worker.receive(Notification("more", params))


def test_worker_handshake_probed_then_ready() -> None:
    worker = WorkerConversation()
    assert worker.phase is Phase.PROBING
    worker.probed_sent()
    assert worker.phase is Phase.STARTING
    worker.ready_sent()
    assert worker.phase is Phase.SERVING
    assert worker.running is None
    assert worker.recycling is False
    assert worker.waiting is False


def test_worker_handshake_probed_then_load_failed() -> None:
    worker = WorkerConversation()
    worker.probed_sent()
    worker.load_failed_sent()
    assert worker.phase is Phase.LOAD_FAILED
    with violation("a message from the host in phase load_failed"):
        worker.receive(call_request(1))
    assert worker.waiting is False


@pytest.mark.parametrize(
    "steps, message, phase",
    [
        (["ready_sent"], "ready sent in phase probing", Phase.PROBING),
        (["load_failed_sent"], "load_failed sent in phase probing", Phase.PROBING),
        (["probed_sent", "probed_sent"], "probed sent in phase starting", Phase.STARTING),
        (
            ["probed_sent", "ready_sent", "ready_sent"],
            "ready sent in phase serving",
            Phase.SERVING,
        ),
        (
            ["probed_sent", "ready_sent", "load_failed_sent"],
            "load_failed sent in phase serving",
            Phase.SERVING,
        ),
        (
            ["probed_sent", "ready_sent", "probed_sent"],
            "probed sent in phase serving",
            Phase.SERVING,
        ),
        (
            ["probed_sent", "load_failed_sent", "ready_sent"],
            "ready sent in phase load_failed",
            Phase.LOAD_FAILED,
        ),
    ],
    ids=[
        "ready-first",
        "load-failed-first",
        "probed-twice",
        "ready-twice",
        "load-failed-after-ready",
        "probed-after-ready",
        "ready-after-load-failed",
    ],
)
def test_worker_handshake_out_of_order_is_misuse(
    steps: list[str], message: str, phase: Phase
) -> None:
    worker = WorkerConversation()
    *before, wrong = steps
    for step in before:
        getattr(worker, step)()
    with misuse(message):
        getattr(worker, wrong)()
    assert worker.phase is phase


@pytest.mark.parametrize("steps", [[], ["probed_sent"]], ids=["probing", "starting"])
@pytest.mark.parametrize(
    "msg",
    [call_request(1), cancel_note(1), shutdown_note()],
    ids=["call", "cancel", "shutdown"],
)
def test_worker_message_before_ready_is_a_violation(steps: list[str], msg: Any) -> None:
    worker = WorkerConversation()
    for step in steps:
        getattr(worker, step)()
    phase = worker.phase
    with violation(f"a message from the host in phase {phase.value}"):
        worker.receive(msg)
    assert worker.phase is phase
    assert worker.waiting is False


def test_worker_call_is_queued() -> None:
    worker = serving_worker()
    request = call_request(1)
    event = worker.receive(request)
    assert event is request  # the call itself is the event
    assert worker.waiting is True
    assert worker.running is None


def test_worker_duplicate_msgid_of_a_queued_call_is_a_violation() -> None:
    worker = serving_worker()
    original = call_request(1)
    worker.receive(original)
    with violation("request id 1 is already in flight"):
        worker.receive(Request(1, "call", {"function": "g", "arguments": {}}))
    assert worker.next_call() is original
    worker.reply_sent(1)
    assert worker.next_call() is None


def test_worker_duplicate_msgid_of_the_running_call_is_a_violation() -> None:
    worker = serving_worker()
    worker.receive(call_request(1))
    assert worker.next_call().msgid == 1
    with violation("request id 1 is already in flight"):
        worker.receive(call_request(1))
    assert worker.waiting is False
    assert worker.running == 1
    # Once answered, the id is free again.
    worker.reply_sent(1)
    assert type(worker.receive(call_request(1))) is Request


def test_worker_next_call_pops_in_order_one_at_a_time() -> None:
    worker = serving_worker()
    assert worker.next_call() is None  # none waits
    requests = [call_request(i) for i in (5, 3, 9)]
    for request in requests:
        worker.receive(request)
    for request in requests:
        assert worker.next_call() is request
        assert worker.running == request.msgid
        assert worker.next_call() is None  # one is running
        assert worker.running == request.msgid
        worker.reply_sent(request.msgid)
        assert worker.running is None
    assert worker.waiting is False
    assert worker.next_call() is None


def test_worker_after_a_recycle_reply_nothing_starts() -> None:
    worker = serving_worker()
    worker.receive(call_request(1))
    worker.receive(call_request(2))
    worker.next_call()
    worker.reply_sent(1, recycle=True)
    assert worker.recycling is True
    assert worker.running is None
    assert worker.next_call() is None
    assert worker.waiting is True


def test_worker_reply_for_a_call_not_running_is_misuse() -> None:
    worker = serving_worker()
    with misuse("reply to 1, but the running call is None"):
        worker.reply_sent(1)
    worker.receive(call_request(1))
    worker.receive(call_request(2))
    with misuse("reply to 1, but the running call is None"):
        worker.reply_sent(1)  # queued, not started
    worker.next_call()
    with misuse("reply to 2, but the running call is 1"):
        worker.reply_sent(2, recycle=True)
    assert worker.running == 1
    assert worker.recycling is False


def test_worker_cancel_of_a_queued_call_skips_it() -> None:
    worker = serving_worker()
    for i in (1, 2, 3):
        worker.receive(call_request(i))
    event = worker.receive(cancel_note(2))
    assert type(event) is Skip
    assert event.msgid == 2
    assert [worker.next_call().msgid] == [1]
    worker.reply_sent(1)
    assert worker.next_call().msgid == 3
    worker.reply_sent(3)
    assert worker.waiting is False
    # It has left: a second cancel for it is ignored.
    assert worker.receive(cancel_note(2)) is IGNORED


def test_worker_cancel_of_the_only_queued_call_empties_the_queue() -> None:
    worker = serving_worker()
    worker.receive(call_request(1))
    assert type(worker.receive(cancel_note(1))) is Skip
    assert worker.waiting is False
    assert worker.next_call() is None


def test_worker_cancel_of_the_running_or_an_unknown_call_is_ignored() -> None:
    worker = serving_worker()
    worker.receive(call_request(1))
    worker.receive(call_request(2))
    worker.next_call()
    assert IGNORED is None
    assert worker.receive(cancel_note(1)) is IGNORED  # running
    assert worker.running == 1
    assert worker.receive(cancel_note(77)) is IGNORED  # unknown
    worker.reply_sent(1)
    assert worker.receive(cancel_note(1)) is IGNORED  # finished
    assert worker.next_call().msgid == 2


@pytest.mark.parametrize(
    "params, shown",
    [
        ({"msgid": "1"}, "{'msgid': '1'}"),
        ({"msgid": True}, "{'msgid': True}"),
        ({"msgid": 1.0}, "{'msgid': 1.0}"),
        ({}, "{}"),
        ([1], "[1]"),
        (None, "{}"),  # Notification turns None params into {}
    ],
    ids=["str", "bool", "float", "missing", "list", "none"],
)
def test_worker_cancel_needs_an_integer_msgid(params: Any, shown: str) -> None:
    worker = serving_worker()
    worker.receive(call_request(1))
    with violation(f"cancel needs an integer msgid, got {shown}"):
        worker.receive(Notification("cancel", params))
    assert worker.waiting is True
    assert worker.next_call().msgid == 1


def test_worker_shutdown_stops_with_the_waiting_ids_in_order() -> None:
    worker = serving_worker()
    for i in (4, 1, 7, 2):
        worker.receive(call_request(i))
    assert worker.next_call().msgid == 4
    event = worker.receive(shutdown_note())
    assert type(event) is Stop
    assert event.never_started == [1, 7, 2]
    assert worker.phase is Phase.CLOSED
    assert worker.waiting is False
    assert worker.next_call() is None
    # The running call may still be answered; nothing starts after it.
    assert worker.running == 4
    worker.reply_sent(4)
    assert worker.next_call() is None
    for later in (call_request(9), cancel_note(1), shutdown_note()):
        with violation("a message from the host in phase closed"):
            worker.receive(later)


def test_worker_shutdown_with_nothing_waiting() -> None:
    worker = serving_worker()
    event = worker.receive(shutdown_note())
    assert type(event) is Stop
    assert event.never_started == []
    assert worker.phase is Phase.CLOSED


@pytest.mark.parametrize(
    "msg, shown",
    [
        (Request(1, "shutdown", {}), "Request(msgid=1, method='shutdown', params={})"),
        (
            Request(1, "cancel", {"msgid": 1}),
            "Request(msgid=1, method='cancel', params={'msgid': 1})",
        ),
        (Notification("ready", {}), "Notification(method='ready', params={})"),
        (Notification("call", {}), "Notification(method='call', params={})"),
    ],
    # (A response is an answer: test_worker_an_answer_nobody_asked_for_is_a_violation.)
    ids=["request-shutdown", "request-cancel", "unknown-notification", "call-note"],
)
def test_worker_unexpected_messages_are_violations(msg: Any, shown: str) -> None:
    worker = serving_worker()
    worker.receive(call_request(1))
    with violation(f"unexpected message from host: {shown}"):
        worker.receive(msg)
    assert worker.phase is Phase.SERVING
    assert worker.next_call().msgid == 1


# == both ends against each other ================================================


class _Wire:
    """A host end and a worker end joined by two in-order pipes, each step
    chosen by a seeded random. The worker end is driven the way
    ``worker.serve`` drives it (answer a skipped call at once; on shutdown
    answer the waiting calls and exit after the running one; exit after a
    recycle reply); in some runs it also reads while a call runs, which the
    rules allow too."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.reads_while_running = self.rng.random() < 0.5
        self.host = HostConversation()
        self.worker = WorkerConversation()
        self.to_worker: deque[Any] = deque()
        self.to_host: deque[Any] = deque()
        self.now = 0.0
        self.next_msgid = 1
        self.sent: dict[int, Call] = {}
        self.answered: dict[int, Answered] = {}
        self.answer_order: list[int] = []
        self.ran: list[int] = []
        self.running: Request | None = None
        self.alive = True  # the worker process runs
        self.reading = True  # ... and reads its pipe
        self.exiting = False  # ... and exits after the running call
        self.events: dict[str, int] = {}

    def count(self, what: str) -> None:
        self.events[what] = self.events.get(what, 0) + 1

    # -- the worker's side --------------------------------------------------

    def handshake(self) -> None:
        self.worker.probed_sent()
        self.to_host.append(probed())
        if self.rng.random() < 0.05:
            self.worker.load_failed_sent()
            self.to_host.append(load_failed())
            self.alive = self.reading = False
            self.count("load_failed")
        else:
            self.worker.ready_sent()
            self.to_host.append(ready())

    def worker_read(self) -> None:
        event = self.worker.receive(self.to_worker.popleft())
        if type(event) is Skip:
            self.to_host.append(cancelled(event.msgid))
        elif type(event) is Stop:
            for msgid in event.never_started:
                self.to_host.append(cancelled(msgid))
            self.reading = False
            if self.running is None:
                self.alive = False
            else:
                self.exiting = True

    def worker_start(self) -> None:
        request = self.worker.next_call()
        if request is not None:
            self.running = request
            self.ran.append(request.msgid)

    def worker_finish(self) -> None:
        assert self.running is not None
        msgid = self.running.msgid
        roll = self.rng.random()
        if roll < 0.05:
            reply, again = recycle(msgid), True
        elif roll < 0.2:
            reply, again = failed(msgid), False
        else:
            reply, again = ok(msgid, msgid * 10), False
        self.worker.reply_sent(msgid, recycle=again)
        self.to_host.append(reply)
        self.running = None
        if again or self.exiting:
            self.alive = self.reading = False

    # -- the host's side -----------------------------------------------------

    def unanswered(self) -> list[Call]:
        return [c for m, c in self.sent.items() if m not in self.answered]

    def host_send_call(self) -> None:
        call = Call(self.next_msgid, self.rng.choice([None, 1.0, 2.5]))
        if self.host.accepting:
            assert self.host.send_call(call, self.now) is True
            self.sent[call.msgid] = call
            self.next_msgid += 1
            self.to_worker.append(call_request(call.msgid))
        elif self.host.phase not in (Phase.PROBING, Phase.STARTING):
            before = self.host.in_flight
            assert self.host.send_call(call, self.now) is False
            assert self.host.in_flight == before

    def host_cancel(self) -> None:
        calls = self.unanswered()
        if not calls:
            return
        call = self.rng.choice(calls)
        allowed = not call.started and not call.cancel_sent and self.host.phase is Phase.SERVING
        assert self.host.send_cancel(call) is allowed
        if allowed:
            if self.rng.random() < 0.1:
                self.host.cancel_unsent(call)  # the write failed
            else:
                self.to_worker.append(cancel_note(call.msgid))

    def host_shutdown(self, may_fail: bool = True) -> None:
        if self.host.send_shutdown():
            if may_fail and self.rng.random() < 0.2:
                self.host.shutdown_unsent()
            else:
                self.to_worker.append(shutdown_note())

    def host_read(self) -> None:
        event = self.host.receive(self.to_host.popleft(), self.now)
        if type(event) is not Answered:
            return
        call = event.call
        msgid = call.msgid
        assert msgid not in self.answered, f"request {msgid} answered twice"
        assert self.sent[msgid] is call
        self.answered[msgid] = event
        self.answer_order.append(msgid)
        if event.cancelled:
            assert msgid not in self.ran
            assert call.cancel_sent or self.host.shutdown_sent
            self.count("cancelled head" if call.started else "cancelled out of order")
        else:
            assert msgid in self.ran
            assert call.started  # it was the head
        if event.recycle:
            self.count("recycle")
        if event.started is not None:
            assert event.started is self.host.head
            assert event.started.started
            timeout = event.started.timeout
            assert event.started.run_deadline == (None if timeout is None else self.now + timeout)
        rest = self.unanswered()
        assert self.host.head is (rest[0] if rest else None)
        assert not any(c.started for c in rest[1:])

    # -- the run --------------------------------------------------------------

    def choices(self, sending: bool) -> list[tuple[float, Any]]:
        options: list[tuple[float, Any]] = []
        if sending:
            options += [(3, self.host_send_call), (2, self.host_cancel), (0.15, self.host_shutdown)]
        if self.to_host:
            options.append((3, self.host_read))
        if (
            self.alive
            and self.reading
            and self.to_worker
            and (self.running is None or self.reads_while_running)
        ):
            options.append((3, self.worker_read))
        if self.alive and self.running is None and not self.exiting and self.worker.waiting:
            options.append((3, self.worker_start))
        if self.running is not None:
            options.append((2, self.worker_finish))
        return options

    def step(self, sending: bool) -> bool:
        options = self.choices(sending)
        if not options:
            return False
        weights, actions = zip(*options, strict=True)
        self.rng.choices(actions, weights)[0]()
        self.now += self.rng.choice([0.0, 0.5, 1.0])
        return True

    def run(self, steps: int) -> list[Call]:
        self.handshake()
        for _ in range(steps):
            self.step(sending=True)
        if self.host.phase is Phase.SERVING:
            self.host_shutdown(may_fail=False)
        while self.step(sending=False):
            pass
        assert not self.alive  # it read the shutdown (or recycled, or failed to load)
        return self.host.close()  # end of input: the worker has exited


def test_both_ends_in_random_interleavings_agree() -> None:
    totals: dict[str, int] = {}
    for seed in range(300):
        wire = _Wire(seed)
        try:
            handed_back = wire.run(steps=60)
            answered = set(wire.answered)
            back = {c.msgid for c in handed_back}
            # Every call answered exactly once, or handed back at the end.
            assert answered | back == set(wire.sent)
            assert not answered & back
            recycled = any(a.recycle for a in wire.answered.values())
            if recycled:
                # The calls behind a recycle never started: not on the
                # worker, and the host does not take them as started.
                assert not any(c.started for c in handed_back)
                assert not back & set(wire.ran)
            else:
                assert handed_back == []
            # Replies come in the order the calls were sent, except the
            # confirmed cancels; the worker ran exactly the others.
            in_order = [m for m in wire.answer_order if not wire.answered[m].cancelled]
            assert in_order == sorted(in_order)
            assert sorted(in_order) == sorted(wire.ran)
            assert wire.host.phase is Phase.CLOSED
        except Exception as exc:
            exc.add_note(f"seed {seed}")
            raise
        for what, n in wire.events.items():
            totals[what] = totals.get(what, 0) + n
        totals["calls"] = totals.get("calls", 0) + len(wire.sent)
    # The runs went through every kind of ending and confirmation.
    for what in ("load_failed", "recycle", "cancelled head", "cancelled out of order", "calls"):
        assert totals.get(what, 0) > 0, (what, totals)


# -- requests during a call (ask) ---------------------------------------------------


def ask(request_id: int, call: Any) -> Request:
    return Request(request_id, "ask", {"call": call, "op": "get", "path": "x"})


def test_host_the_running_call_may_ask_one_thing_at_a_time() -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    event = host.receive(ask(70, 1), 11.0)
    assert type(event) is Asked
    assert event.call is first and event.request.msgid == 70
    assert first.asking == 70
    with violation("request 71 while request 70 of call 1 is unanswered"):
        host.receive(ask(71, 1), 11.0)
    assert host.send_answer(first, 70) is True
    assert first.asking is None
    assert host.send_answer(first, 70) is False  # answered already
    # Asking changed nothing about the order of calls.
    assert_unchanged(host, [first, second], 15.0)
    event = host.receive(ask(71, 1), 12.0)  # the next request, once answered
    assert type(event) is Asked and first.asking == 71


@pytest.mark.parametrize(
    "forged, message",
    [
        (ask(70, 2), "a request for call 2, but the running call is 1"),
        (ask(70, 99), "a request for call 99, but the running call is 1"),
        (
            Request(70, "ask", {"op": "get"}),
            "an 'ask' request must name its call, got {'op': 'get'}",
        ),
        (Request(70, "ask", ["call", 1]), "an 'ask' request must name its call, got ['call', 1]"),
        (Request(70, "exec", {"call": 1}), "a worker may not send requests ('exec')"),
    ],
    ids=["waiting-call", "unknown-call", "no-call", "not-a-map", "unknown-verb"],
)
def test_host_only_the_running_call_may_ask(forged: Request, message: str) -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    with violation(message):
        host.receive(forged, 11.0)
    assert first.asking is None and second.asking is None
    assert_unchanged(host, [first, second], 15.0)


def test_host_no_request_without_a_running_call() -> None:
    host = serving_host()
    with violation("a request for call 1, but the running call is None"):
        host.receive(ask(70, 1), 1.0)
    recycled, (first,) = host_with_calls(None)
    recycled.receive(recycle(1), 11.0)
    with violation("a request ('ask') while no call can run"):
        recycled.receive(ask(70, 1), 12.0)
    starting = HostConversation()
    starting.receive(probed(), 0.0)
    with violation("a request ('ask') while no call can run"):
        starting.receive(ask(70, 1), 1.0)


def test_host_no_reply_while_the_calls_request_is_unanswered() -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    host.receive(ask(70, 1), 11.0)
    with violation("reply to request id 1 while its request 70 is unanswered"):
        host.receive(ok(1), 12.0)
    assert_unchanged(host, [first, second], 15.0)
    host.send_answer(first, 70)
    event = host.receive(ok(1), 13.0)
    assert type(event) is Answered and event.started is second


def test_host_an_answer_for_a_call_that_ended_is_dropped() -> None:
    host, (first,) = host_with_calls(5.0)
    host.receive(ask(70, 1), 11.0)
    assert host.close() == [first]
    assert host.send_answer(first, 70) is False
    assert host.send_answer(first, 71) is False  # a request it never made


def test_worker_a_call_asks_and_gets_its_answer_meanwhile_calls_queue() -> None:
    worker = serving_worker()
    worker.receive(call_request(1))
    assert worker.next_call().msgid == 1
    worker.asked(70)
    assert worker.asking == 70
    # While the call waits for its answer, the host may send more calls and cancels.
    assert type(worker.receive(call_request(2))) is Request
    answer = Response(70, None, {"value": 5})
    assert worker.receive(answer) is answer
    assert worker.asking is None
    assert worker.next_call() is None  # call 1 still runs
    worker.reply_sent(1)
    assert worker.next_call().msgid == 2


def test_worker_asking_rules() -> None:
    worker = serving_worker()
    with misuse("a request with no call running"):
        worker.asked(70)
    worker.receive(call_request(1))
    worker.next_call()
    worker.asked(70)
    with misuse("request 71 while 70 is unanswered"):
        worker.asked(71)
    with misuse("reply to 1 while request 70 is unanswered"):
        worker.reply_sent(1)
    with violation("an answer to request 71, but the request waiting is 70"):
        worker.receive(Response(71, None, {"value": 1}))
    assert worker.asking == 70


def test_worker_an_answer_nobody_asked_for_is_a_violation() -> None:
    worker = serving_worker()
    with violation("an answer to request 70, but the request waiting is None"):
        worker.receive(Response(70, None, {"value": 1}))


def test_worker_shutdown_while_a_call_waits_for_its_answer() -> None:
    worker = serving_worker()
    worker.receive(call_request(1))
    worker.next_call()
    worker.asked(70)
    worker.receive(call_request(2))
    event = worker.receive(shutdown_note())
    assert type(event) is Stop and event.never_started == [2]
    # The answer the running call waits for still comes; nothing else may.
    answer = Response(70, None, {"value": 1})
    assert worker.receive(answer) is answer
    with violation("a message from the host in phase closed"):
        worker.receive(call_request(3))
    worker.reply_sent(1)
    assert worker.next_call() is None


# -- progress reports and log lines during a call -----------------------------------


def progress_note(call: Any, done: Any = 1, **extra: Any) -> Notification:
    return Notification("progress", {"call": call, "done": done, "total": None, **extra})


def test_host_the_running_call_may_report_progress_and_log() -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    event = host.receive(progress_note(1, 0.5, message="half"), 11.0)
    assert type(event) is Noted and event.call is first
    event = host.receive(Notification("log", {"call": 1, "text": "a line"}), 11.0)
    assert type(event) is Noted and event.note.params["text"] == "a line"
    assert first.notes == 2
    assert_unchanged(host, [first, second], 15.0)
    first.notes = MAX_NOTES_PER_CALL - 1
    host.receive(progress_note(1), 12.0)
    with violation(f"call 1 sent more than {MAX_NOTES_PER_CALL} progress reports and log lines"):
        host.receive(progress_note(1), 12.0)


@pytest.mark.parametrize(
    "note, message",
    [
        (progress_note(2), "a progress for call 2, but the running call is 1"),
        (progress_note(None), "a progress for call None, but the running call is 1"),
        (progress_note(1, "x"), "progress needs numbers done and total, got "),
        (progress_note(1, float("nan")), "progress needs numbers done and total, got "),
        (progress_note(1, message=7), "progress message must be text of at most 8192 characters"),
        (Notification("log", {"call": 1}), "a log line must be text of at most 8192 characters"),
        (Notification("log", [1]), "log params must be a map, got "),
    ],
    ids=["waiting-call", "no-call", "text-done", "nan", "bad-message", "no-text", "not-a-map"],
)
def test_host_a_bad_report_is_a_violation(note: Notification, message: str) -> None:
    host, (first, second) = host_with_calls(5.0, 5.0)
    with pytest.raises(ProtocolViolation, match=f"^{re.escape(message)}"):
        host.receive(note, 11.0)
    assert first.notes == 0
    assert_unchanged(host, [first, second], 15.0)


def test_host_no_report_before_ready_or_with_no_call() -> None:
    host = serving_host()
    with violation("a progress for call 1, but the running call is None"):
        host.receive(progress_note(1), 1.0)
    starting = HostConversation()
    starting.receive(probed(), 0.0)
    with violation("expected ready or load_failed, got 'progress'"):
        starting.receive(progress_note(1), 1.0)


def test_worker_notes_name_the_running_call() -> None:
    worker = serving_worker()
    with misuse("a progress report with no call running"):
        worker.noted()
    worker.receive(call_request(4))
    worker.next_call()
    assert worker.noted() == 4
