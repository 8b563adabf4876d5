"""Unit tests of ``protocol.decode_budget``: large frames decode in chunks to
what ``decode_message`` gives, malformed ones are violations, and a reply over
its budget becomes an error response for its own request id.

No processes here (``test_bounded_decode`` runs real workers): bytes in,
messages out.
"""

from __future__ import annotations

import msgpack
import pytest

from protocol import Notification, ProtocolViolation, Response, decode_message
from protocol.decode_budget import CHUNK, MIN_DECODE_BUDGET, PLAIN_DECODE_MAX, decode_reply

BUDGET = MIN_DECODE_BUDGET


def reply(value, msgid: int = 5, stdout: str = "") -> bytes:
    return msgpack.packb(
        [1, msgid, None, {"value": value, "stdout": stdout, "stderr": ""}], use_bin_type=True
    )


LARGE_VALUES = {
    "records": [{"id": i, "name": f"item{i}", "tags": ["a", "b"]} for i in range(30_000)],
    "nested lists": [[[i, [i + 1, [i + 2]]]] for i in range(50_000)],
    # Multi-byte characters and long strings across chunk boundaries.
    "strings": ["é€𝄞" * (i % 50) for i in range(20_000)] + ["z" * (3 * CHUNK + 7)],
    "bytes": b"\x00\xff" * (2 * PLAIN_DECODE_MAX),
    "text": "x" * (2 * PLAIN_DECODE_MAX),
    "floats and ints": [i * 0.5 if i % 2 else -(2**40) - i for i in range(60_000)],
    "timestamp": [msgpack.Timestamp(1, 2)] * 50_000,
}


@pytest.mark.parametrize("name", list(LARGE_VALUES))
def test_large_frames_decode_as_decode_message_does(name):
    payload = reply(LARGE_VALUES[name])
    assert len(payload) > PLAIN_DECODE_MAX
    assert decode_reply(payload, BUDGET) == decode_message(payload)


def test_large_frame_with_its_value_first_and_long_output_is_decoded_whole():
    payload = reply(b"v" * (2 * PLAIN_DECODE_MAX), stdout="o" * (PLAIN_DECODE_MAX + 1))
    assert decode_reply(payload, BUDGET) == decode_message(payload)


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda p: p[:-1], "ends inside"),
        (lambda p: p + b"\xc0", "more than one msgpack object"),
        (lambda p: p.replace(b"item1", b"it\xffm1", 1), "not valid msgpack"),
        (lambda p: p.replace(b"\xa4name", b"\x90", 1), "not valid msgpack"),  # a list as a key
    ],
)
def test_malformed_large_frames_are_violations(damage, words):
    payload = damage(reply(LARGE_VALUES["records"]))
    with pytest.raises(ProtocolViolation, match=words):
        decode_reply(payload, BUDGET)


def test_extension_types_are_refused_in_large_frames():
    payload = reply([msgpack.ExtType(3, b"x")] * 100_000)
    with pytest.raises(ProtocolViolation, match="extension type 3"):
        decode_reply(payload, BUDGET)


def test_nesting_past_msgpacks_limit_is_a_violation():
    # [[[...]]] 2000 deep as the value, and a long stdout so that the frame
    # is decoded in chunks.
    body = (
        b"\x94\x01\x05\xc0\x83\xa5value"
        + b"\x91" * 2000
        + b"\xc0\xa6stdout\xdb"
        + PLAIN_DECODE_MAX.to_bytes(4, "big")
        + b"s" * PLAIN_DECODE_MAX
        + b"\xa6stderr\xa0"
    )
    with pytest.raises(ProtocolViolation, match="not valid msgpack"):
        decode_reply(body, BUDGET)


def test_response_over_budget_is_an_error_for_its_request():
    n = BUDGET // 64 + 1  # one byte each on the wire, 64 bytes each decoded
    payload = reply([{}] * n, msgid=2**32 - 1, stdout="printed")
    msg = decode_reply(payload, BUDGET)
    assert isinstance(msg, Response)
    assert msg.msgid == 2**32 - 1
    assert msg.error["kind"] == "result_too_large"
    assert msg.error["details"] == {"encoded_bytes": len(payload), "decode_budget": BUDGET}
    assert f"more than {BUDGET} bytes of host memory" in msg.error["message"]
    assert msg.result == {"stdout": "", "stderr": ""}
    # The same value within a larger budget is just a value.
    assert decode_reply(payload, 2 * BUDGET).result["value"] == [{}] * n


def test_other_messages_over_budget_are_violations():
    n = BUDGET // 64 + 1
    ready = msgpack.packb([2, "ready", {"functions": [{}] * n}])
    with pytest.raises(ProtocolViolation, match="not a response"):
        decode_reply(ready, BUDGET)
    request = msgpack.packb([0, 1, "call", {"arguments": [{}] * n}])
    with pytest.raises(ProtocolViolation, match="not a response"):
        decode_reply(request, BUDGET)
    bad_id = msgpack.packb([1, -1, None, {"value": [{}] * n}])
    with pytest.raises(ProtocolViolation, match="valid request id"):
        decode_reply(bad_id, BUDGET)


def test_small_frames_and_small_budgets():
    assert decode_reply(msgpack.packb([2, "ready", {}]), BUDGET) == Notification("ready", {})
    with pytest.raises(ValueError, match="at least"):
        decode_reply(reply(1), BUDGET - 1)
