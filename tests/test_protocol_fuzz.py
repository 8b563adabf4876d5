"""Fuzz the host's frame decoder and message validation.

Random and mutated frames end as ProtocolViolation (the host's
ProtocolError), never another exception and never a hang; what does decode
is what the bytes say (checked against an independent reading of them: the
frames split by hand, each body through msgpack itself); and every valid
message, in a stream cut anywhere, decodes to exactly what was encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    FrameDecoder,
    Notification,
    ProtocolViolation,
    Request,
    Response,
    decode_message,
    encode_message,
)
from protocol.errors import WORKER_ERROR_KINDS
from protocol.handshake import validate_ready
from protocol.messages import Message, validate_call_result

GOOD_MESSAGES = [
    Response(7, None, {"value": [1, "x", None], "stdout": "", "stderr": ""}),
    Response(
        8,
        {"kind": "user_exception", "message": "boom", "type": "E", "traceback": "tb"},
        {"stdout": "", "stderr": ""},
    ),
]
GOOD = [encode_message(msg) for msg in GOOD_MESSAGES]

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
msgids = st.integers(0, 2**32 - 1)
methods = st.text(min_size=1, max_size=20)
short_text = st.text(max_size=40)
error_maps = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(sorted(str(kind) for kind in WORKER_ERROR_KINDS)),
        "message": short_text,
        "type": st.none() | short_text,
        "traceback": st.none() | short_text,
    },
    optional={"details": st.dictionaries(st.text(max_size=10), json_values, max_size=3)},
)
call_results = st.fixed_dictionaries(
    {"stdout": short_text, "stderr": short_text}, optional={"value": json_values}
)
valid_messages = st.one_of(
    st.builds(Response, msgids, st.none() | error_maps, call_results),
    st.builds(Request, msgids, methods, json_values),
    st.builds(Notification, methods, json_values),
)


def feed_all(data: bytes, cuts: Sequence[int] = (), limit: int = 1 << 20) -> list[Message]:
    """What the host does with bytes from a worker: frame, decode, validate.
    ``data`` arrives in pieces, cut at ``cuts``. The messages, in order."""
    decoder = FrameDecoder(limit)
    messages = []
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        for body in decoder.feed(data[start:end]):
            msg = decode_message(body)
            if isinstance(msg, Response):
                validate_call_result(msg.result)
            elif getattr(msg, "method", None) == "ready":
                validate_ready(msg.params)
            messages.append(msg)
    return messages


def as_message(obj: Any) -> Message | None:
    """The message a decoded frame body spells by shape alone, unvalidated."""
    shapes = {0: (Request, 3), 1: (Response, 3), 2: (Notification, 2)}
    if isinstance(obj, list) and obj and type(obj[0]) is int and obj[0] in shapes:
        kind, size = shapes[obj[0]]
        if len(obj) == size + 1:
            return kind(*obj[1:])
    return None


def reference(data: bytes) -> list[Message | None]:
    """An independent reading of ``data``: each complete frame, split by
    hand, its body decoded by msgpack itself (None where it is not msgpack)."""
    found: list[Message | None] = []
    offset = 0
    while len(data) - offset >= 4:
        size = int.from_bytes(data[offset : offset + 4], "big")
        if len(data) - offset - 4 < size:
            break
        body = data[offset + 4 : offset + 4 + size]
        offset += 4 + size
        try:
            found.append(as_message(msgpack.unpackb(body, raw=False, strict_map_key=False)))
        except Exception:
            found.append(None)
    return found


def decodes_as_the_bytes_say(data: bytes) -> list[Message]:
    """Decode ``data`` as the host would. A ProtocolViolation may stop it;
    any other exception fails the test; every message decoded before the
    stop (or all of them) must be the one its frame spells."""
    decoder = FrameDecoder(1 << 20)
    decoded: list[Message] = []
    try:
        for body in decoder.feed(data):
            msg = decode_message(body)
            if isinstance(msg, Response):
                validate_call_result(msg.result)
            elif getattr(msg, "method", None) == "ready":
                validate_ready(msg.params)
            decoded.append(msg)
    except ProtocolViolation:
        assert decoded == reference(data)[: len(decoded)]
        return decoded
    assert decoded == reference(data)  # every complete frame, none invented
    return decoded


settings.register_profile(
    "fnhost", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("fnhost")


@given(st.lists(valid_messages, min_size=1, max_size=5), st.data())
def test_valid_messages_decode_to_what_was_encoded(messages, data):
    stream = b"".join(encode_message(msg) for msg in messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
    assert feed_all(stream, cuts) == messages


@given(st.binary(max_size=512))
def test_random_bytes(data):
    decodes_as_the_bytes_say(data)


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
    decodes_as_the_bytes_say(bytes(mutated))


@given(json_values)
def test_arbitrary_msgpack_objects_as_messages(obj):
    body = msgpack.packb(obj, use_bin_type=True)
    decoded = decodes_as_the_bytes_say(len(body).to_bytes(4, "big") + body)
    assert decoded in ([], [as_message(obj)])


@given(
    st.integers(0, 5),
    st.integers(-3, 2**40),
    st.one_of(
        st.tuples(st.just(True), st.none() | error_maps), st.tuples(st.just(False), json_values)
    ),
    st.one_of(st.tuples(st.just(True), call_results), st.tuples(st.just(False), json_values)),
)
def test_message_shaped_arrays(mtype, msgid, error, result):
    (error_valid, error), (result_valid, result) = error, result
    body = msgpack.packb([mtype, msgid, error, result], use_bin_type=True)
    frame = len(body).to_bytes(4, "big") + body
    if mtype == 1 and 0 <= msgid < 2**32 and error_valid and result_valid:
        assert feed_all(frame) == [Response(msgid, error, result)]
    else:
        decoded = decodes_as_the_bytes_say(frame)
        assert decoded in ([], [as_message([mtype, msgid, error, result])])


def test_a_valid_reply_still_decodes():
    assert feed_all(GOOD[0] + GOOD[1]) == GOOD_MESSAGES  # the harness rejects not everything
    with pytest.raises(ProtocolViolation):
        feed_all(b"\x00\x00\x00\x01\xc1")
