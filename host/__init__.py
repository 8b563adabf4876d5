"""fnhost: run untrusted Python tool functions in sandboxed worker processes.

The public API is what this module exports; everything else is private.
"""

from host.errors import (
    CallError,
    CallTimeout,
    HostClosed,
    HostError,
    InvalidArguments,
    LoadError,
    NameConflict,
    OutOfMemory,
    ProtocolError,
    ResultError,
    SchemaFormatError,
    UnknownFunction,
    UserFunctionError,
    WorkerCrashed,
)
from host.function_host import FunctionHost
from host.limits import Limits
from host.worker_handle import CallResult

__all__ = [
    "CallError",
    "CallResult",
    "CallTimeout",
    "FunctionHost",
    "HostClosed",
    "HostError",
    "InvalidArguments",
    "Limits",
    "LoadError",
    "NameConflict",
    "OutOfMemory",
    "ProtocolError",
    "ResultError",
    "SchemaFormatError",
    "UnknownFunction",
    "UserFunctionError",
    "WorkerCrashed",
]
