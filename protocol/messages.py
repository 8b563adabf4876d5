"""Message types (msgpack-RPC shape) and their validation.

- request       ``[0, msgid, method, params]``
- response      ``[1, msgid, error, result]``
- notification  ``[2, method, params]``

Protocol verbs live in the method slot; user function names only ever travel
inside ``params``, so a user function called ``shutdown`` is never a verb.

Everything a worker sends is untrusted: ``decode_message`` checks shape and
types and raises ``ProtocolViolation`` naming the first thing that is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

import msgpack

from protocol.errors import WORKER_ERROR_KINDS, ErrorKind, ProtocolViolation
from protocol.framing import PACK_OPTIONS, encode_frame, pack, unpack

PROTOCOL_VERSION = 3

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2

#: Bounds on the text fields of an error map (characters). The worker trims
#: to these; the host refuses anything longer.
MAX_ERROR_MESSAGE = 8192
MAX_ERROR_TYPE = 512
MAX_ERROR_TRACEBACK = 32768
MAX_OUTPUT_TAIL = 65536
#: Progress reports and log lines one call may send, and their text's length.
MAX_NOTES_PER_CALL = 10000
#: Items a stream may send before the host's first ``more``: the host holds
#: at most this many of a stream's items that its caller has not taken.
STREAM_WINDOW = 32
#: The most a single ``more`` may allow.
MAX_MORE = 1 << 20
MAX_NOTE_TEXT = 8192


class Verb(StrEnum):
    # host -> worker
    # request: {"function": str, "arguments": {str: any}} and, if the call has
    # a context, "context": {"paths": {dotted path: "method" | "attribute"}};
    # "stream": true to receive a generator's items as they come (``item``)
    CALL = "call"
    SHUTDOWN = "shutdown"  # notification: {}
    # notification: {"msgid": int}. Skip that call if it has not started; its
    # reply is then a "cancelled" error. For a running stream: stop it at its
    # next item (the reply is then an ordinary result). Otherwise ignored.
    CANCEL = "cancel"
    # notification: {"msgid": int, "n": int, "bytes": int}: the running
    # stream may send n more items of that many more bytes (see
    # STREAM_WINDOW). Ignored for a call that has ended.
    MORE = "more"
    # notification: {}. A standby worker (``WorkerConfig.standby``) imports
    # the set on it, and not before (it has sent ``probed`` and waits).
    LOAD = "load"
    # worker -> host
    # notification, first message: {"protections": {str: bool}}, the
    # sandbox report, sent before any user code runs.
    PROBED = "probed"
    READY = "ready"  # notification, after probed
    LOAD_FAILED = "load_failed"  # notification, after probed, last message
    # request, only from the running call, one at a time: {"call": msgid,
    # "op": "call" | "get" | "set", "path": str, "args": [...], "kwargs": {...},
    # "value": any}. The host answers with a response to its id: {"value": v},
    # or an error map (kind user_exception, the host exception's type).
    ASK = "ask"
    # notifications, only from the running call: {"call": msgid, "done":
    # number, "total": number | None, "message": str | None} and {"call":
    # msgid, "text": str}. At most MAX_NOTES_PER_CALL per call.
    PROGRESS = "progress"
    LOG = "log"
    # notification, only from a running call sent with "stream": true:
    # {"call": msgid, "value": any}. At most STREAM_WINDOW items and the
    # worker's result limit in bytes (message bodies), plus what the host's
    # "more" allowed.
    ITEM = "item"


class _Message:
    """Plain slotted records (not dataclasses: one is built per message on
    both sides, and a frozen dataclass's ``__init__`` and its class creation
    cost more). Treat them as immutable."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # params are usually dicts

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{n}={v!r}" for n, v in zip(self.__slots__, self._values(), strict=True)
        )
        return f"{type(self).__name__}({fields})"


class Request(_Message):
    """``[0, msgid, method, params]``: the host asks; the worker replies once."""

    __slots__ = ("msgid", "method", "params")

    def __init__(self, msgid: int, method: str, params: Any) -> None:
        self.msgid = msgid
        self.method = method
        self.params = params


class Response(_Message):
    """``[1, msgid, error, result]``: the reply to request ``msgid``."""

    __slots__ = ("msgid", "error", "result")

    def __init__(self, msgid: int, error: dict[str, Any] | None, result: Any) -> None:
        self.msgid = msgid
        self.error = error
        self.result = result


class Notification(_Message):
    """``[2, method, params]``: one-way, no reply."""

    __slots__ = ("method", "params")

    def __init__(self, method: str, params: Any = None) -> None:
        self.method = method
        self.params = {} if params is None else params


Message = Request | Response | Notification


def encode_message(msg: Message, default: Any = None, strict: bool = False) -> bytes:
    """Pack a message into one frame (header included).

    ``strict``: subclasses of list/dict/str/int... go through ``default``
    too instead of being packed as their base type.
    """
    if isinstance(msg, Request):
        obj = [REQUEST, msg.msgid, msg.method, msg.params]
    elif isinstance(msg, Response):
        obj = [RESPONSE, msg.msgid, msg.error, msg.result]
    else:
        obj = [NOTIFICATION, msg.method, msg.params]
    return encode_frame(pack(obj, default=default, strict=strict))


def encode_call(
    msgid: int,
    function: str,
    arguments: Any,
    context: dict[str, Any] | None = None,
    stream: bool = False,
    pack: Callable[[Any], bytes] | None = None,
) -> bytes:
    """``encode_message(Request(msgid, "call", {...}))`` without building the
    Request: every call's path. ``context``: what the call's context exposes
    (``{"paths": {path: kind}}``), if it has one; ``stream``: the worker
    sends a generator's items as ``item`` notifications as they come.
    ``pack``: a ``new_packer()`` of the calling thread's own, if it keeps
    one (``msgpack.packb`` makes a packer per call)."""
    params: dict[str, Any] = {"function": function, "arguments": arguments}
    if context is not None:
        params["context"] = context
    if stream:
        params["stream"] = True
    obj = [REQUEST, msgid, _CALL, params]
    body = msgpack.packb(obj, **PACK_OPTIONS) if pack is None else pack(obj)
    return encode_frame(body)


def new_packer(strict: bool = False) -> Callable[[Any], bytes]:
    """A packer's ``pack``, packing as every frame body is packed (``strict``:
    only exact native types), reusable: cheaper than ``msgpack.packb``,
    which makes one per call. One per thread: a packer is not thread-safe
    when a packed object's methods run Python code."""
    packer = msgpack.Packer(strict_types=strict, **PACK_OPTIONS)
    pack: Callable[[Any], bytes] = packer.pack
    return pack


_CALL = Verb.CALL.value


def encode_cancel(msgid: int) -> bytes:
    """The ``cancel`` notification for request ``msgid``, framed."""
    return encode_frame(msgpack.packb([NOTIFICATION, Verb.CANCEL.value, {"msgid": msgid}]))


def decode_message(payload: bytes | memoryview) -> Message:
    """Unpack and shape-check one frame body (``ProtocolViolation`` if malformed).

    Its memory is bounded only by the frame's size: the host decodes what a
    worker sends with ``decode_budget.decode_reply`` instead.
    """
    return message_from(unpack(payload))


def message_from(obj: Any) -> Message:
    """Shape-check one decoded frame body; the message it holds, or ``ProtocolViolation``."""
    if not isinstance(obj, list) or not obj:
        raise ProtocolViolation(f"message must be a non-empty array, got {_describe(obj)}")
    mtype = obj[0]
    if mtype == REQUEST and type(mtype) is int:
        if len(obj) != 4:
            raise ProtocolViolation(f"request must have 4 elements, got {len(obj)}")
        _, msgid, method, params = obj
        _check_msgid(msgid)
        _check_method(method)
        return Request(msgid, method, params)
    if mtype == RESPONSE and type(mtype) is int:
        if len(obj) != 4:
            raise ProtocolViolation(f"response must have 4 elements, got {len(obj)}")
        _, msgid, error, result = obj
        if type(msgid) is not int or not 0 <= msgid < 2**32:  # _check_msgid, inlined
            _check_msgid(msgid)
        if error is not None:
            error = validate_error_map(error, allowed=WORKER_ERROR_KINDS)
        return Response(msgid, error, result)
    if mtype == NOTIFICATION and type(mtype) is int:
        if len(obj) != 3:
            raise ProtocolViolation(f"notification must have 3 elements, got {len(obj)}")
        _, method, params = obj
        _check_method(method)
        return Notification(method, params)
    raise ProtocolViolation(f"unknown message type {mtype!r}")


def make_error_map(
    kind: ErrorKind | str,
    message: str,
    type_name: str | None = None,
    traceback: str | None = None,
    **details: Any,
) -> dict[str, Any]:
    """Build a bounded error map. Extra ``details`` must be msgpack-able."""
    err: dict[str, Any] = {
        "kind": str(kind),
        "message": truncate(message, MAX_ERROR_MESSAGE),
        "type": None if type_name is None else truncate(type_name, MAX_ERROR_TYPE),
        "traceback": None if traceback is None else truncate_head(traceback, MAX_ERROR_TRACEBACK),
    }
    if details:
        err["details"] = details
    return err


def validate_error_map(err: Any, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    """Check an error map from the peer; return it (raises ``ProtocolViolation``)."""
    if not isinstance(err, dict):
        raise ProtocolViolation(f"error must be a map, got {_describe(err)}")
    kind = err.get("kind")
    if not isinstance(kind, str) or kind not in ErrorKind._value2member_map_:
        raise ProtocolViolation(f"error has unknown kind {kind!r}")
    if allowed is not None and kind not in allowed:
        raise ProtocolViolation(f"a worker may not report error kind {kind!r}")
    _check_text(err, "message", MAX_ERROR_MESSAGE, required=True)
    _check_text(err, "type", MAX_ERROR_TYPE)
    _check_text(err, "traceback", MAX_ERROR_TRACEBACK)
    details = err.get("details")
    if details is not None and not isinstance(details, dict):
        raise ProtocolViolation("error details must be a map")
    return err


def validate_call_result(result: Any) -> dict[str, Any]:
    """Check the result slot of a ``call`` response: ``{"value"?, "stdout", "stderr"}``."""
    if not isinstance(result, dict):
        raise ProtocolViolation(f"call result must be a map, got {_describe(result)}")
    # Usually both empty strings: check those without a call each.
    if result.get("stdout") != "" or result.get("stderr") != "":
        for key in ("stdout", "stderr"):
            _check_text(result, key, MAX_OUTPUT_TAIL)
    return result


def truncate(text: str, limit: int) -> str:
    """Keep the head of ``text`` (messages: the start says what happened).

    The result is at most ``limit`` characters, ending with a marker that
    counts the characters left out (the marker is dropped if it cannot fit).
    """
    if len(text) <= limit:
        return text
    keep = _fit(len(text), limit, lambda n: f"... [{n} more characters]")
    if keep is None:
        return text[:limit]
    return text[:keep] + f"... [{len(text) - keep} more characters]"


def truncate_head(text: str, limit: int) -> str:
    """Keep the tail of ``text`` (tracebacks and output: the end matters)."""
    if len(text) <= limit:
        return text
    keep = _fit(len(text), limit, lambda n: f"[{n} earlier characters] ...")
    if keep is None:
        return text[len(text) - limit :]
    return f"[{len(text) - keep} earlier characters] ..." + text[len(text) - keep :]


def _fit(length: int, limit: int, marker: Callable[[int], str]) -> int | None:
    """How many characters to keep so that kept + marker(omitted) fits ``limit``."""
    keep = limit - len(marker(length - limit))
    while keep >= 0:
        # Fewer kept characters can lengthen the count in the marker; settle it.
        needed = limit - len(marker(length - keep))
        if needed >= keep:
            return keep
        keep = needed
    return None


def _check_msgid(msgid: Any) -> None:
    if type(msgid) is not int or not 0 <= msgid < 2**32:
        raise ProtocolViolation(f"msgid must be a uint32, got {_describe(msgid)}")


def _check_method(method: Any) -> None:
    if not isinstance(method, str) or not method:
        raise ProtocolViolation(f"method must be a non-empty string, got {_describe(method)}")


def _check_text(obj: dict[str, Any], key: str, limit: int, required: bool = False) -> None:
    value = obj.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise ProtocolViolation(f"{key} must be a string, got {_describe(value)}")
    if len(value) > limit:
        raise ProtocolViolation(f"{key} is {len(value)} characters, limit {limit}")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"


__all__ = [
    "MAX_ERROR_MESSAGE",
    "MAX_ERROR_TRACEBACK",
    "MAX_OUTPUT_TAIL",
    "PROTOCOL_VERSION",
    "Message",
    "Notification",
    "Request",
    "Response",
    "Verb",
    "decode_message",
    "encode_message",
    "make_error_map",
    "message_from",
    "truncate",
    "truncate_head",
    "validate_call_result",
    "validate_error_map",
]


def validate_note(method: str, params: Any) -> dict[str, Any]:
    """Check a ``progress``, ``log`` or ``item`` notification's params (not its call)."""
    if not isinstance(params, dict):
        raise ProtocolViolation(f"{method} params must be a map, got {_describe(params)}")
    if method == Verb.ITEM:
        if "value" not in params:
            raise ProtocolViolation("an item needs a value")
    elif method == Verb.PROGRESS:
        done, total, message = params.get("done"), params.get("total"), params.get("message")
        if not _is_number(done) or not (total is None or _is_number(total)):
            raise ProtocolViolation(f"progress needs numbers done and total, got {params!r:.100}")
        if message is not None and (not isinstance(message, str) or len(message) > MAX_NOTE_TEXT):
            raise ProtocolViolation("progress message must be text of at most 8192 characters")
    else:
        text = params.get("text")
        if not isinstance(text, str) or len(text) > MAX_NOTE_TEXT:
            raise ProtocolViolation("a log line must be text of at most 8192 characters")
    return params


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and value == value  # not NaN
