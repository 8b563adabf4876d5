"""Fuzz the host's frame decoder and message validation: random and mutated
frames end as ProtocolViolation (the host's ProtocolError), never another
exception and never a hang."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import FrameDecoder, ProtocolViolation, Response, decode_message, encode_message
from protocol.messages import validate_call_result, validate_ready

GOOD = [
    encode_message(Response(7, None, {"value": [1, "x", None], "stdout": "", "stderr": ""})),
    encode_message(
        Response(
            8,
            {"kind": "user_exception", "message": "boom", "type": "E", "traceback": "tb"},
            {"stdout": "", "stderr": ""},
        )
    ),
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def decode_all(data: bytes, limit: int = 1 << 20) -> None:
    """What the host does with bytes from a worker: frame, decode, validate."""
    decoder = FrameDecoder(limit)
    for body in decoder.feed(data):
        msg = decode_message(body)
        if isinstance(msg, Response):
            validate_call_result(msg.result)
        elif getattr(msg, "method", None) == "ready":
            validate_ready(msg.params)


def only_protocol_errors(data: bytes) -> None:
    try:
        decode_all(data)
    except ProtocolViolation:
        pass


settings.register_profile(
    "fnhost", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("fnhost")


@given(st.binary(max_size=512))
def test_random_bytes(data):
    only_protocol_errors(data)


@given(st.sampled_from(GOOD), st.data())
def test_mutated_good_frames(frame, data):
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        if op == "flip" and mutated:
            mutated[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del mutated[pos : pos + data.draw(st.integers(1, 8))]
        else:
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    only_protocol_errors(bytes(mutated))


@given(json_values)
def test_arbitrary_msgpack_objects_as_messages(obj):
    body = msgpack.packb(obj, use_bin_type=True)
    only_protocol_errors(len(body).to_bytes(4, "big") + body)


@given(st.integers(0, 5), st.integers(-3, 2**40), st.one_of(json_values, st.none()), json_values)
def test_message_shaped_arrays(mtype, msgid, error, result):
    body = msgpack.packb([mtype, msgid, error, result], use_bin_type=True)
    only_protocol_errors(len(body).to_bytes(4, "big") + body)


def test_a_valid_reply_still_decodes():
    decode_all(GOOD[0] + GOOD[1])  # the fuzz harness is not rejecting everything
    with pytest.raises(ProtocolViolation):
        decode_all(b"\x00\x00\x00\x01\xc1")
