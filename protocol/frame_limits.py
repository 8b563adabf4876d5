"""The largest frame each end accepts from the other, from a set's limits.

A reader refuses a frame whose header announces more than its limit before
reading the body (``framing.FrameDecoder``), and the peer is then broken.
So each limit must hold every frame the other end may legitimately send;
the headroom below is what those frames carry beyond the limit the user set.
"""

from __future__ import annotations

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
#: stderr tails (``messages.MAX_OUTPUT_TAIL`` characters each: the two
#: 65,536s), an error map and the envelope (the 4,096). That sum counts a
#: character as a byte and a short error map: a full one (message, type and
#: traceback at their ``messages.MAX_ERROR_*`` lengths) and non-ASCII text
#: make an error frame larger, about 560 KB at worst (4-byte characters in
#: the map, 3-byte replacement characters for undecodable output), which
#: ``max_result_bytes`` covers as long as it is at least 1 MiB.
REPLY_HEADROOM = 2 * 65536 + 4096


def request_frame_limit(max_argument_bytes: int) -> int:
    """The largest request frame body the worker accepts (its config's
    ``max_frame_size``). Pure arithmetic: a limit outside the format's range
    is refused where the decoder is built (``FrameDecoder``: ``ValueError``)."""
    return max_argument_bytes + REQUEST_HEADROOM


def reply_frame_limit(max_result_bytes: int) -> int:
    """The largest reply frame body the host accepts from the worker (its
    ``Channel``'s ``max_frame_size``). Pure arithmetic, as above."""
    return max_result_bytes + REPLY_HEADROOM
