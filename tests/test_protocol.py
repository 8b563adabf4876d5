"""Unit tests of the sans-I/O ``protocol`` package: framing, messages, validation.

No processes here: bytes in, messages out.
"""

from __future__ import annotations

import re
import struct

import msgpack
import pytest

from protocol import (
    PROTOCOL_VERSION,
    ErrorKind,
    FrameDecoder,
    Notification,
    ProtocolViolation,
    Request,
    Response,
    decode_message,
    encode_frame,
    encode_message,
)
from protocol.errors import WORKER_ERROR_KINDS
from protocol.framing import FrameTooLarge
from protocol.handshake import validate_ready
from protocol.messages import (
    MAX_ERROR_MESSAGE,
    MAX_ERROR_TRACEBACK,
    MAX_ERROR_TYPE,
    MAX_OUTPUT_TAIL,
    make_error_map,
    truncate,
    truncate_head,
    validate_call_result,
    validate_error_map,
)


def packb(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def body_of(frame: bytes) -> bytes:
    """The payload of one complete frame, checked against its header."""
    (size,) = struct.unpack(">I", frame[:4])
    assert len(frame) == 4 + size
    return frame[4:]


def roundtrip(msg):
    return decode_message(body_of(encode_message(msg)))


# -- framing -----------------------------------------------------------------


def test_frame_split_byte_by_byte_is_reassembled():
    payloads = [b"hello", packb({"a": [1, 2, 3]})]
    stream = b"".join(encode_frame(p) for p in payloads)
    dec = FrameDecoder(1024)
    out = []
    for i in range(len(stream)):
        got = dec.feed(stream[i : i + 1])
        # A frame is only ever returned by the feed that completes it.
        if got:
            assert i + 1 in (4 + len(payloads[0]), len(stream))
        out += got
    assert out == payloads
    assert dec.buffered == 0


def test_several_frames_in_one_feed_and_a_partial_tail():
    a, b, c = b"one", b"", b"three" * 10
    stream = encode_frame(a) + encode_frame(b) + encode_frame(c)
    dec = FrameDecoder(1024)
    assert dec.feed(stream[:-3]) == [a, b]
    assert dec.buffered == 4 + len(c) - 3
    assert dec.feed(stream[-3:]) == [c]
    assert dec.buffered == 0


def test_feed_accepts_memoryview_and_bytearray():
    dec = FrameDecoder(64)
    frame = encode_frame(b"xyz")
    assert dec.feed(memoryview(frame)[:5]) == []
    assert dec.feed(bytearray(frame[5:])) == [b"xyz"]


def test_oversized_header_raises_before_the_body_arrives():
    dec = FrameDecoder(100)
    # Only the header is fed: the decoder must refuse without waiting for 101 bytes.
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(struct.pack(">I", 101))
    assert isinstance(info.value, ProtocolViolation)
    assert info.value.size == 101
    assert info.value.limit == 100


def test_oversized_header_split_across_feeds_raises_once_complete():
    dec = FrameDecoder(100)
    header = struct.pack(">I", 2**31)
    assert dec.feed(header[:2]) == []
    with pytest.raises(FrameTooLarge):
        dec.feed(header[2:])


def test_oversized_frame_after_a_good_one_in_the_same_feed_is_refused():
    dec = FrameDecoder(10)
    with pytest.raises(FrameTooLarge):
        dec.feed(encode_frame(b"ok") + struct.pack(">I", 11))


def test_frame_exactly_at_the_limit_is_accepted():
    dec = FrameDecoder(10)
    assert dec.feed(encode_frame(b"0123456789")) == [b"0123456789"]


@pytest.mark.parametrize("limit", [0, -1, 2**32])
def test_decoder_limit_must_be_in_range(limit):
    with pytest.raises(ValueError):
        FrameDecoder(limit)


def test_encode_frame_prefixes_big_endian_length():
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"


# -- round trips -------------------------------------------------------------


def test_request_roundtrip():
    msg = Request(
        7,
        "call",
        {
            "function": "f",
            "arguments": {"a": [1, 2.5, None, True, "x", b"\x00\xff"], "m": {"k": {}}},
        },
    )
    assert roundtrip(msg) == msg


def test_response_roundtrip_success_and_error():
    ok = Response(2**32 - 1, None, {"value": {"x": [1, "y"]}, "stdout": "out", "stderr": ""})
    assert roundtrip(ok) == ok
    err = make_error_map(ErrorKind.USER_EXCEPTION, "boom", "ValueError", "Traceback...", path="a.b")
    failed = Response(0, err, {"stdout": "", "stderr": "warn"})
    back = roundtrip(failed)
    assert back == failed
    assert back.error["details"] == {"path": "a.b"}


def test_notification_roundtrip_and_default_params():
    assert Notification("shutdown").params == {}
    msg = Notification("ready", {"protocol": PROTOCOL_VERSION, "functions": []})
    assert roundtrip(msg) == msg
    assert roundtrip(Notification("shutdown")) == Notification("shutdown", {})


def test_decoded_types_are_exact():
    back = roundtrip(Request(1, "call", {"b": b"raw", "s": "text", "t": (1, 2)}))
    assert type(back.params["b"]) is bytes
    assert type(back.params["s"]) is str
    assert back.params["t"] == [1, 2]  # arrays come back as lists


# -- malformed messages ------------------------------------------------------


def _reject(payload: bytes, match: str | None = None) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation, match=match) as info:
        decode_message(payload)
    return info.value


@pytest.mark.parametrize("payload", [b"\xc1", b"", b"\x94\x00\x01", b"\xda\x00\x10ab"])
def test_not_msgpack_is_rejected(payload):
    _reject(payload)


def test_trailing_extra_data_is_rejected():
    _reject(packb([0, 1, "call", {}]) + b"\xc0", "more than one")


@pytest.mark.parametrize("obj", [{"a": 1}, 5, "call", None, [], b"\x00"])
def test_not_a_non_empty_array_is_rejected(obj):
    _reject(packb(obj), "array")


@pytest.mark.parametrize(
    "obj",
    [
        [0, 1, "call"],
        [0, 1, "call", {}, None],
        [1, 1, None],
        [1, 1, None, None, None],
        [2, "ready"],
        [2, "ready", {}, None],
    ],
)
def test_wrong_element_count_is_rejected(obj):
    _reject(packb(obj), "elements")


@pytest.mark.parametrize(
    "obj",
    [
        [3, 1, "call", {}],
        [-1, 1, "call", {}],
        ["0", 1, "call", {}],
        [0.0, 1, "call", {}],
        [None, "x", {}],
    ],
)
def test_unknown_or_non_int_message_type_is_rejected(obj):
    _reject(packb(obj), "unknown message type")


@pytest.mark.parametrize(
    "obj", [[True, 1, None, None], [False, 1, "call", {}], [True, "ready", {}]]
)
def test_bool_is_not_a_message_type(obj):
    # True == 1 and False == 0 in Python; the wire type must still be an int.
    _reject(packb(obj), "unknown message type")


@pytest.mark.parametrize("msgid", ["1", 1.0, -1, 2**32, 2**64 - 1, True, None, [1]])
def test_bad_msgid_is_rejected(msgid):
    _reject(packb([0, msgid, "call", {}]), "msgid")
    _reject(packb([1, msgid, None, {}]), "msgid")


def test_msgid_bounds_accepted():
    assert decode_message(packb([0, 0, "call", {}])).msgid == 0
    assert decode_message(packb([1, 2**32 - 1, None, 1])).msgid == 2**32 - 1


@pytest.mark.parametrize("method", ["", 5, None, b"call", ["call"]])
def test_empty_or_non_str_method_is_rejected(method):
    _reject(packb([0, 1, method, {}]), "method")
    _reject(packb([2, method, {}]), "method")


def _response_with_error(err) -> bytes:
    return packb([1, 5, err, {"stdout": "", "stderr": ""}])


@pytest.mark.parametrize(
    "err",
    [
        "boom",
        [],
        {"message": "no kind"},
        {"kind": "explode", "message": "x"},
        {"kind": 3, "message": "x"},
        {"kind": None, "message": "x"},
    ],
)
def test_error_map_malformed_or_unknown_kind_is_rejected(err):
    _reject(_response_with_error(err))


@pytest.mark.parametrize("kind", sorted(set(ErrorKind) - WORKER_ERROR_KINDS))
def test_worker_may_not_claim_host_only_error_kinds(kind):
    assert kind in {"timeout", "worker_crashed", "protocol_error", "cancelled", "host_closed"}
    _reject(_response_with_error({"kind": kind, "message": "x"}), "may not report")


def test_host_only_kinds_include_timeout_and_worker_crashed():
    assert ErrorKind.TIMEOUT not in WORKER_ERROR_KINDS
    assert ErrorKind.WORKER_CRASHED not in WORKER_ERROR_KINDS


@pytest.mark.parametrize("kind", sorted(WORKER_ERROR_KINDS))
def test_worker_error_kinds_are_accepted(kind):
    msg = decode_message(_response_with_error({"kind": kind, "message": "m"}))
    assert msg.error == {"kind": kind, "message": "m"}


@pytest.mark.parametrize(
    "field, limit",
    [("message", MAX_ERROR_MESSAGE), ("traceback", MAX_ERROR_TRACEBACK), ("type", MAX_ERROR_TYPE)],
)
def test_error_text_bounds(field, limit):
    base = {"kind": "user_exception", "message": "m"}
    at_limit = decode_message(_response_with_error({**base, field: "x" * limit}))
    assert len(at_limit.error[field]) == limit
    _reject(_response_with_error({**base, field: "x" * (limit + 1)}), f"{field} is")


@pytest.mark.parametrize(
    "err",
    [
        {"kind": "user_exception", "message": None},
        {"kind": "user_exception", "message": 5},
        {"kind": "user_exception", "message": "m", "type": 5},
        {"kind": "user_exception", "message": "m", "type": b"ValueError"},
        {"kind": "user_exception", "message": "m", "traceback": ["line"]},
        {"kind": "user_exception", "message": "m", "details": "path"},
    ],
)
def test_error_map_non_str_fields_are_rejected(err):
    _reject(_response_with_error(err))


def test_ext_type_is_rejected_anywhere():
    ext = msgpack.ExtType(5, b"payload")
    _reject(packb([2, "ready", ext]), "extension type")
    _reject(packb([0, 1, "call", {"arguments": {"a": [1, ext]}}]), "extension type")
    _reject(packb([1, 1, None, {"value": ext}]), "extension type")


def test_timestamp_ext_type_decodes_to_inert_timestamp():
    # msgpack decodes its built-in extension type -1 itself (no hook can refuse
    # it); the documented outcome is an inert msgpack.Timestamp value, never
    # an arbitrary object. Every other extension type is refused.
    for payload in (
        packb([2, "ready", msgpack.Timestamp(1, 0)]),
        b"\x93\x02\xa5ready\xd6\xff" + struct.pack(">I", 1),  # fixext4, type -1
    ):
        msg = decode_message(payload)
        assert type(msg.params) is msgpack.Timestamp
        assert msg.params == msgpack.Timestamp(1, 0)
    _reject(b"\x93\x02\xa5ready\xd4\xfex", "extension type")  # fixext1, type -2


def test_invalid_utf8_strings_are_rejected():
    bad = b"\xa2\xff\xfe"  # fixstr of 2 bytes that are not UTF-8
    _reject(b"\x93\x02" + bad + b"\x80")  # as the method of a notification
    _reject(b"\x93\x02\xa5ready\x81" + bad + b"\x01")  # as a map key
    _reject(b"\x93\x02\xa5ready\x91" + bad)  # nested in params


def test_unhashable_map_key_is_rejected():
    _reject(b"\x93\x02\xa1x\x81\x91\x01\x01")  # {[1]: 1}


# -- ready / call result -----------------------------------------------------


def _ready(**overrides):
    params = {
        "protocol": PROTOCOL_VERSION,
        "pid": 1234,
        "functions": [
            {"name": "f", "description": "", "parameters": {"type": "object"}},
            {"name": "g", "description": "", "parameters": {"type": "object"}},
        ],
        "skipped": [{"name": "h", "reason": "bad annotation"}],
    }
    params.update(overrides)
    return params


def test_valid_ready_is_returned_unchanged():
    params = _ready()
    assert validate_ready(params) is params


@pytest.mark.parametrize("version", [PROTOCOL_VERSION + 1, 0, "1", None, True, 1.0])
def test_ready_with_wrong_protocol_version_is_rejected(version):
    with pytest.raises(ProtocolViolation, match="protocol"):
        validate_ready(_ready(protocol=version))


def test_ready_without_protocol_is_rejected():
    params = _ready()
    del params["protocol"]
    with pytest.raises(ProtocolViolation, match="protocol"):
        validate_ready(params)


@pytest.mark.parametrize("pid", [None, "1234", 12.0, True])
def test_ready_without_int_pid_is_rejected(pid):
    with pytest.raises(ProtocolViolation, match="pid"):
        validate_ready(_ready(pid=pid))
    params = _ready()
    del params["pid"]
    with pytest.raises(ProtocolViolation, match="pid"):
        validate_ready(params)


def test_ready_with_duplicate_function_names_is_rejected():
    fn = {"name": "f", "description": "", "parameters": {"type": "object"}}
    with pytest.raises(ProtocolViolation, match="twice"):
        validate_ready(_ready(functions=[fn, dict(fn)]))


@pytest.mark.parametrize(
    "fn",
    [
        {"name": "f", "description": ""},
        {"name": "f", "description": "", "parameters": None},
        {"name": "f", "description": "", "parameters": ["x"]},
    ],
)
def test_ready_function_without_parameters_schema_is_rejected(fn):
    with pytest.raises(ProtocolViolation, match="parameters"):
        validate_ready(_ready(functions=[fn]))


@pytest.mark.parametrize("description", [None, 5, ["text"]])
def test_ready_function_without_str_description_is_rejected(description):
    # The host builds {"name", "description", "parameters"} from each entry
    # (host/api/registry.py json_schema reads info["description"]).
    fn = {"name": "f", "parameters": {"type": "object"}}
    if description is not None:
        fn["description"] = description
    with pytest.raises(ProtocolViolation, match="description"):
        validate_ready(_ready(functions=[fn]))


@pytest.mark.parametrize(
    "functions",
    [None, {"f": {}}, [{"description": "", "parameters": {}}], [{"name": 5, "parameters": {}}]],
)
def test_ready_functions_shape_is_checked(functions):
    with pytest.raises(ProtocolViolation):
        validate_ready(_ready(functions=functions))


@pytest.mark.parametrize(
    "skipped", [None, {"h": "why"}, [{"name": "h"}], [{"name": "h", "reason": 5}], ["h"]]
)
def test_ready_skipped_shape_is_checked(skipped):
    with pytest.raises(ProtocolViolation, match="skipped"):
        validate_ready(_ready(skipped=skipped))


@pytest.mark.parametrize("params", [None, [], "ready"])
def test_ready_params_must_be_a_map(params):
    with pytest.raises(ProtocolViolation):
        validate_ready(params)


def test_valid_call_result_is_returned_unchanged():
    result = {"value": [1, 2], "stdout": "x" * MAX_OUTPUT_TAIL, "stderr": ""}
    assert validate_call_result(result) is result


@pytest.mark.parametrize(
    "result",
    [
        None,
        [1],
        "value",
        {"value": 1, "stdout": 5, "stderr": ""},
        {"value": 1, "stdout": "", "stderr": b"bytes"},
        {"value": 1, "stdout": "x" * (MAX_OUTPUT_TAIL + 1), "stderr": ""},
        {"value": 1, "stdout": "", "stderr": "x" * (MAX_OUTPUT_TAIL + 1)},
    ],
)
def test_malformed_call_result_is_rejected(result):
    with pytest.raises(ProtocolViolation):
        validate_call_result(result)


# -- error maps and truncation -----------------------------------------------


def test_make_error_map_output_passes_the_host_validator():
    err = make_error_map(
        ErrorKind.USER_EXCEPTION,
        "m" * (MAX_ERROR_MESSAGE * 3),
        "T" * (MAX_ERROR_TYPE * 3),
        "line\n" * MAX_ERROR_TRACEBACK,
    )
    assert len(err["message"]) <= MAX_ERROR_MESSAGE
    assert len(err["type"]) <= MAX_ERROR_TYPE
    assert len(err["traceback"]) <= MAX_ERROR_TRACEBACK
    assert validate_error_map(err, allowed=WORKER_ERROR_KINDS) is err
    assert err["message"].startswith("mmm")
    assert err["traceback"].endswith("line\n")


def test_truncate_leaves_short_text_alone():
    assert truncate("abc", 3) == "abc"
    assert truncate_head("abc", 3) == "abc"
    assert truncate("", 0) == ""


def test_truncate_keeps_the_head_within_the_limit():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    out = truncate(text, 100)
    assert 90 <= len(out) <= 100
    kept = out.split("...")[0]
    assert text.startswith(kept) and len(kept) > 50


def test_truncate_head_keeps_the_tail_within_the_limit():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    out = truncate_head(text, 100)
    assert 90 <= len(out) <= 100
    kept = out.split("...")[-1]
    assert text.endswith(kept) and len(kept) > 50


@pytest.mark.parametrize("func", [truncate, truncate_head])
def test_truncation_marker_counts_the_omitted_characters(func):
    text = "x" * 1000
    out = func(text, 100)
    marker = re.search(r"\[(\d+) (?:more|earlier) characters\]", out)
    assert marker is not None
    shown = len(out) - len(re.search(r"(\.\.\. )?\[\d+ \w+ characters\]( \.\.\.)?", out)[0])
    assert int(marker.group(1)) == len(text) - shown


@pytest.mark.parametrize("limit", [10, 40])
@pytest.mark.parametrize("func", [truncate, truncate_head])
def test_truncation_never_exceeds_the_limit(func, limit):
    assert len(func("y" * 500, limit)) <= limit
