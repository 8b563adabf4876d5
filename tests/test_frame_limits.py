"""The frame limits (``protocol.frame_limits``): the largest frames each end
may legitimately send fit the limit the other end reads them with."""

from __future__ import annotations

import pytest

from host import Limits, UserFunctionError
from protocol import ErrorKind, Response, encode_message
from protocol.frame_limits import (
    REPLY_HEADROOM,
    REQUEST_HEADROOM,
    reply_frame_limit,
    request_frame_limit,
)
from protocol.framing import HEADER_SIZE
from protocol.messages import (
    MAX_ERROR_MESSAGE,
    MAX_ERROR_TRACEBACK,
    MAX_ERROR_TYPE,
    MAX_OUTPUT_TAIL,
    encode_call,
    make_error_map,
)

MIB = 1024 * 1024


def test_the_limits_add_their_headroom():
    assert request_frame_limit(1000) == 1000 + REQUEST_HEADROOM == 1000 + 65536
    assert reply_frame_limit(1000) == 1000 + REPLY_HEADROOM


def test_a_call_the_host_lets_through_fits_the_workers_limit():
    # The host sends a call whose whole frame is at most max_argument_bytes.
    limit = 64 * 1024
    frame = encode_call(2**32 - 1, "f" * 64, {"data": "x" * (limit - 200)})
    assert len(frame) <= limit
    assert len(frame) - HEADER_SIZE <= request_frame_limit(limit)


def _largest_error_frame() -> bytes:
    # Every text field at its character limit, in the widest characters each
    # can hold: 4-byte ones in the error map, U+FFFD (3 bytes, what an
    # undecodable byte of output becomes) in the output tails.
    wide, replaced = "\U0001f600", "\ufffd"
    err = make_error_map(
        ErrorKind.USER_EXCEPTION,
        wide * MAX_ERROR_MESSAGE,
        wide * MAX_ERROR_TYPE,
        wide * MAX_ERROR_TRACEBACK,
    )
    output = {"stdout": replaced * MAX_OUTPUT_TAIL, "stderr": replaced * MAX_OUTPUT_TAIL}
    return encode_message(Response(2**32 - 1, err, output))


def test_full_ascii_tails_and_a_short_error_fit_the_headroom_alone():
    err = make_error_map(ErrorKind.USER_EXCEPTION, "m" * 2000, "T" * 100, "t" * 1500)
    output = {"stdout": "o" * MAX_OUTPUT_TAIL, "stderr": "e" * MAX_OUTPUT_TAIL}
    frame = encode_message(Response(2**32 - 1, err, output))
    assert len(frame) - HEADER_SIZE <= reply_frame_limit(0)


def test_the_largest_error_reply_fits_the_headroom_alone():
    # So even Limits(max_result_mb=0) reads every error reply a worker may send.
    frame = _largest_error_frame()
    assert len(frame) - HEADER_SIZE <= reply_frame_limit(0)


UNDECODABLE = """
import os


def noisy() -> int:
    \"\"\"Write 70 KB of bytes that are not UTF-8, then fail.\"\"\"
    os.write(1, b"\\xff" * 70000)
    raise ValueError("after the noise")
"""


def test_an_error_reply_with_full_tails_is_an_error_not_a_protocol_break(make_host, write_set):
    """With max_result_mb=0, an exception after 70 KB of undecodable output
    (each byte a 3-byte replacement character in the tail) still comes back
    as the function's error; it used to overflow the reply frame limit and
    be taken as a protocol violation (the worker killed)."""
    fh = make_host(limits=Limits(max_result_mb=0))
    fh.load_function_set(write_set("noisy", UNDECODABLE))
    pid = fh.function_sets["noisy"]["pid"]
    with pytest.raises(UserFunctionError) as info:
        fh.call("noisy.noisy")
    assert "after the noise" in str(info.value)
    assert len(info.value.stdout) == MAX_OUTPUT_TAIL
    assert fh.function_sets["noisy"]["pid"] == pid  # the worker was not killed
