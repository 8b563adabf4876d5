"""fnhost: run untrusted Python tool functions in sandboxed worker processes.

The public API is what this module exports; everything else is private.
"""

from importlib.metadata import PackageNotFoundError as _NotInstalled
from importlib.metadata import version as _version

from host.api.function_host import FunctionHost
from host.api.reference_agent import MEMGPT_EXPOSE, Agent, CoreMemory
from host.egress.policy import Allow, Egress, Header, Secret
from host.egress.record import EgressRecord
from host.environments.options import EnvironmentOptions
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
from host.limits import Limits
from host.placement.ray_placement import RayPlacement
from host.placement.resources import RayResources
from host.sandbox import Sandbox
from host.tools.tool_calls import ToolCall, parse_tool_call
from host.tools.tool_results import DEFAULT_MAX_RESULT_CHARS, ToolResult, tool_error_text
from host.workers.call_result import CallResult

try:
    __version__ = _version("fnhost")
except _NotInstalled:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_MAX_RESULT_CHARS",
    "MEMGPT_EXPOSE",
    "Agent",
    "Allow",
    "CallError",
    "CallResult",
    "CallTimeout",
    "CoreMemory",
    "Egress",
    "EgressRecord",
    "EnvironmentOptions",
    "FunctionHost",
    "Header",
    "HostClosed",
    "HostError",
    "InvalidArguments",
    "Limits",
    "LoadError",
    "NameConflict",
    "OutOfMemory",
    "ProtocolError",
    "RayPlacement",
    "RayResources",
    "ResultError",
    "Sandbox",
    "SchemaFormatError",
    "Secret",
    "ToolCall",
    "ToolResult",
    "UnknownFunction",
    "UserFunctionError",
    "WorkerCrashed",
    "parse_tool_call",
    "tool_error_text",
]
