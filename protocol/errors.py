"""Error kinds shared by the worker and the host, and the protocol's own error."""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """What went wrong with a call or a load. The value travels on the wire."""

    IMPORT_FAILED = "import_failed"
    UNKNOWN_FUNCTION = "unknown_function"
    INVALID_ARGUMENTS = "invalid_arguments"
    USER_EXCEPTION = "user_exception"
    WORKER_CRASHED = "worker_crashed"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    RESULT_NOT_SERIALIZABLE = "result_not_serializable"
    RESULT_TOO_LARGE = "result_too_large"
    PROTOCOL_ERROR = "protocol_error"
    CANCELLED = "cancelled"
    HOST_CLOSED = "host_closed"


#: Kinds a worker may put in an error map. The others are decided by the host
#: alone (a worker cannot claim it timed out or crashed).
WORKER_ERROR_KINDS = frozenset(
    {
        ErrorKind.IMPORT_FAILED,
        ErrorKind.UNKNOWN_FUNCTION,
        ErrorKind.INVALID_ARGUMENTS,
        ErrorKind.USER_EXCEPTION,
        ErrorKind.OUT_OF_MEMORY,
        ErrorKind.RESULT_NOT_SERIALIZABLE,
        ErrorKind.RESULT_TOO_LARGE,
        # Only in reply to a call the host sent ``cancel`` for (checked by
        # the host): the worker confirms that the call never started.
        ErrorKind.CANCELLED,
    }
)


class ProtocolViolation(Exception):
    """The peer sent bytes or a message that break the protocol.

    Raised by the decoder and the validators; the message says exactly what
    was wrong. After one, the connection is unusable: the host kills that
    worker and starts a new one.
    """
