"""fnhost: run untrusted Python tool functions in sandboxed worker processes.

The public API is what this module exports; everything else is private.
"""

from host.call_result import CallResult
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
from host.sandbox import Sandbox
from host.tool_calls import ToolCall, parse_tool_call
from host.tool_results import DEFAULT_MAX_RESULT_CHARS, ToolResult

__all__ = [
    "DEFAULT_MAX_RESULT_CHARS",
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
    "Sandbox",
    "SchemaFormatError",
    "ToolCall",
    "ToolResult",
    "UnknownFunction",
    "UserFunctionError",
    "WorkerCrashed",
    "parse_tool_call",
]
