"""The largest frame each end accepts from the other, from a set's limits.

A reader refuses a frame whose header announces more than its limit before
reading the body (``framing.FrameDecoder``), and the peer is then broken.
So each limit must hold every frame the other end may legitimately send;
the headroom below is what those frames carry beyond the limit the user set.
"""

from __future__ import annotations

from protocol.messages import (
    MAX_ERROR_MESSAGE,
    MAX_ERROR_TRACEBACK,
    MAX_ERROR_TYPE,
    MAX_OUTPUT_TAIL,
)

#: Beyond ``max_argument_bytes`` in a request frame. The host refuses a call
#: whose whole frame (header, envelope, function name, arguments) exceeds
#: ``max_argument_bytes`` before sending it, so a call needs none; this is
#: slack for the host's other messages (``cancel``, ``shutdown``: tens of
#: bytes) and keeps the worker from ever refusing a frame the host's own
#: check let through.
REQUEST_HEADROOM = 65536

#: Beyond ``max_result_bytes`` in a reply frame. A reply with a value is at
#: most ``max_result_bytes`` whole (the worker answers ``result_too_large``
#: instead), but an error reply (an exception, ``result_too_large`` itself)
#: or a ``load_failed`` is not bounded by it: it carries the stdout and
#: stderr tails (``MAX_OUTPUT_TAIL`` characters each) and an error map
#: (message, type and traceback at their ``MAX_ERROR_*`` lengths). At 4
#: bytes a character (the widest UTF-8), plus 4,096 for the envelope and
#: the error's short fields, the largest legal error reply fits this
#: headroom alone (about 690 KB), so ``max_result_mb=0`` still reads it.
REPLY_HEADROOM = (
    4 * (MAX_ERROR_MESSAGE + MAX_ERROR_TYPE + MAX_ERROR_TRACEBACK + 2 * MAX_OUTPUT_TAIL) + 4096
)


def request_frame_limit(max_argument_bytes: int) -> int:
    """The largest request frame body the worker accepts (its config's
    ``max_frame_size``). Pure arithmetic: a limit outside the format's range
    is refused where the decoder is built (``FrameDecoder``: ``ValueError``)."""
    return max_argument_bytes + REQUEST_HEADROOM


def reply_frame_limit(max_result_bytes: int) -> int:
    """The largest reply frame body the host accepts from the worker (its
    ``Channel``'s ``max_frame_size``). Pure arithmetic, as above."""
    return max_result_bytes + REPLY_HEADROOM
