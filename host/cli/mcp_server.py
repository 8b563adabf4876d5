"""Serve loaded function sets as an MCP server over stdio (``fnhost mcp``).

Built on the official ``mcp`` SDK (its low-level ``Server``), an optional
extra: ``pip install 'fnhost[mcp]'``. Only the ``mcp`` CLI subcommand imports
this module, so the rest of fnhost never needs the SDK; importing it without
the SDK (or with an SDK older than 2.0, whose server API differs) raises
``MCPUnavailable``, a ``HostError`` that says what to install.

- ``tools/list`` returns ``fh.tools(format="mcp")``: every exported function
  with its ``inputSchema`` and, where it has a return annotation, its
  ``outputSchema`` (MCP takes JSON Schema as is, so no function is left out).
- ``tools/call`` runs the function through the host (``acall_detailed``) and
  returns its value as text plus ``structuredContent`` shaped like the output
  schema (a non-object value is wrapped as ``{"result": value}``, exactly as
  ``host.tools.mcp_schema.mcp_wraps_result`` says; ``bytes`` become base64 strings).
- Every ``CallError`` (invalid arguments, an exception in the function, a
  crash, a timeout, an unknown tool ...) becomes a result with ``isError``
  set and one short sentence a model can act on; crash details (stderr,
  tracebacks) go to the server's stderr log, never to the client. A value
  that does not match the function's own return annotation is an error
  result too, because MCP clients reject structured content that breaks the
  output schema. The server keeps serving after any of these.

- What a tool printed (its captured stdout and stderr, the last
  ``LOG_CHARS`` characters of each) reaches the client as MCP log messages
  (``notifications/message``, logger ``fnhost.<tool>``; stderr as
  ``warning``), at or above the level the client set (``info`` until then).
- With ``watch``, the server polls the host's catalog (the host itself
  reloads edited sets) and sends ``notifications/tools/list_changed`` to
  every session when a tool appears, goes or changes.
- Transports: stdio (``serve``) or streamable HTTP (``serve_http``; bound
  to loopback unless told otherwise, with the SDK's DNS-rebinding checks).

stdout is the protocol: nothing else is written to it (the SDK points fd 1
at stderr while serving; load errors and logs go to stderr).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from host.api.function_host import FunctionHost
from host.errors import CallError, HostError, ProtocolError, WorkerCrashed
from host.tools import tool_results
from host.tools.formats import tool_definition
from host.tools.mcp_schema import mcp_wraps_result

INSTALL_HINT = "pip install 'fnhost[mcp]'"

#: The SDK generation this module is written against (constructor-registered
#: handlers on ``mcp.server.lowlevel.Server``, snake_case ``mcp.types``).
MIN_SDK_MAJOR = 2

log = logging.getLogger("fnhost.mcp")

#: What a tool printed, forwarded per stream and call (the last characters).
LOG_CHARS = 8000
#: How often ``watch`` compares the catalog (the host polls files each second).
WATCH_INTERVAL = 0.5
_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


class MCPUnavailable(HostError):
    """The ``mcp`` SDK is missing or too old; the message says what to install."""


def _sdk_version() -> str:
    try:
        return importlib.metadata.version("mcp")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


try:
    import anyio
    import mcp.types as types
    from jsonschema import Validator
    from jsonschema.validators import validator_for
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import NotificationOptions, Server
except ImportError as exc:
    raise MCPUnavailable(
        f"the MCP server needs the official MCP Python SDK, which is not installed "
        f"({exc}); install it with: {INSTALL_HINT}"
    ) from exc

_major = _sdk_version().split(".")[0]
if not _major.isdigit() or int(_major) < MIN_SDK_MAJOR:
    raise MCPUnavailable(
        f"the MCP server needs mcp>={MIN_SDK_MAJOR}.0, but mcp {_sdk_version()} is installed; "
        f"upgrade it with: {INSTALL_HINT} --upgrade"
    )


@dataclass(frozen=True)
class _ToolEntry:
    """One listed tool and what a call needs to shape its result."""

    tool: types.Tool
    wraps: bool  # structuredContent is {"result": value} rather than the value
    validator: Validator | None  # None: no outputSchema, so no structuredContent


class FunctionHostMCPServer:
    """An MCP server (``mcp.server.lowlevel.Server``) in front of a ``FunctionHost``.

    ``server`` is the SDK server; ``serve_stdio()`` runs it on this process's
    stdin/stdout. The host is borrowed: the caller loads the sets before and
    closes the host after.
    """

    def __init__(self, fh: FunctionHost, name: str = "fnhost", watch: bool = False) -> None:
        self.fh = fh
        self.watch = watch
        self._catalog: dict[str, _ToolEntry] = {}
        self._signature = ""
        #: The sessions that asked for anything: where list_changed goes
        #: (one that fails a send is dropped).
        self._sessions: set[Any] = set()
        self._log_level = "info"
        self.server: Server[Any] = _Server(
            watch,
            name,
            version=_fnhost_version(),
            instructions=(
                "Tools run in sandboxed worker processes. A failed call returns an error "
                "result explaining what went wrong; invalid arguments name the offending "
                "parameter, so fix it and call again."
            ),
            on_list_tools=self._on_list_tools,
            on_call_tool=self._on_call_tool,
            on_set_logging_level=self._on_set_logging_level,
        )

    # -- tools/list ------------------------------------------------------------

    def refresh(self) -> dict[str, _ToolEntry]:
        """Rebuild the tool catalog from the host's current schemas.

        Raises whatever ``fh.tools`` raises (the SDK turns that into a
        JSON-RPC error for the one request; the server keeps running).
        """
        catalog: dict[str, _ToolEntry] = {}
        # A tool reaches beyond the machine only if its set has a way to the
        # network (MCP's openWorldHint); by policy, as the host reports it.
        open_world = {
            exported: summary.get("egress", "none") != "none"
            for summary in self.fh.function_sets.values()
            for exported in summary["functions"].values()
        }
        # One pass over the canonical schemas: the MCP shape is derived from
        # each, and ``returns`` says whether results are wrapped.
        for raw in self.fh.tools(format="raw"):
            name = raw["name"]
            ret = raw.get("returns")
            definition = tool_definition(raw, name, "mcp")
            output_schema = definition.get("outputSchema")
            fields: dict[str, Any] = {
                "name": name,
                "description": definition.get("description"),
                "input_schema": definition["inputSchema"],
                "annotations": types.ToolAnnotations(open_world_hint=open_world.get(name, True)),
            }
            validator = None
            if output_schema is not None:
                fields["output_schema"] = output_schema
                validator = validator_for(output_schema)(output_schema)
            catalog[name] = _ToolEntry(
                tool=types.Tool(**fields),
                wraps=ret is not None and mcp_wraps_result(ret),
                validator=validator,
            )
        self._catalog = catalog
        self._signature = self._catalog_signature()
        return catalog

    def _catalog_signature(self) -> str:
        """What the client's tool list depends on, as one string."""
        return json.dumps(
            [
                self.fh.tools(format="raw"),
                {n: s.get("egress") for n, s in self.fh.function_sets.items()},
            ],
            sort_keys=True,
            default=str,
        )

    async def _on_list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._sessions.add(ctx.session)
        return types.ListToolsResult(tools=[e.tool for e in self.refresh().values()])

    async def _on_set_logging_level(
        self, ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        self._log_level = params.level
        return types.EmptyResult()

    async def watch_tools(self) -> None:
        """Until cancelled: tell every session when the catalog changed."""
        while True:
            await anyio.sleep(WATCH_INTERVAL)
            try:
                changed = self._catalog_signature() != self._signature
            except Exception:  # a host mid-reload; next turn
                log.exception("could not read the catalog")
                continue
            if not changed:
                continue
            self.refresh()
            log.info("the tools changed; telling %d session(s)", len(self._sessions))
            for session in list(self._sessions):
                try:
                    await session.send_tool_list_changed()
                except Exception:  # a session that went away
                    self._sessions.discard(session)

    # -- tools/call ------------------------------------------------------------

    async def _on_call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        # The function's progress reports (worker.progress) become MCP
        # progress notifications; the session drops them if the client sent
        # no progress token. All are sent before the result.
        sent: list[asyncio.Future[Any]] = []
        self._sessions.add(ctx.session)

        def on_progress(done: float, total: float | None, message: str | None) -> None:
            if not math.isfinite(done) or (total is not None and not math.isfinite(total)):
                return  # JSON has no infinity: the client would reject the notification
            sent.append(asyncio.ensure_future(ctx.session.report_progress(done, total, message)))

        def on_output(stream: str, text: str) -> None:
            level: types.LoggingLevel = "warning" if stream == "stderr" else "info"
            if _LEVELS.index(level) < _LEVELS.index(self._log_level):
                return
            data = text[-LOG_CHARS:]
            sent.append(
                asyncio.ensure_future(
                    ctx.session.send_log_message(level, data, logger=f"fnhost.{params.name}")
                )
            )

        try:
            return await self.call_tool(params.name, params.arguments, on_progress, on_output)
        finally:
            if sent:
                await asyncio.gather(*sent, return_exceptions=True)

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None,
        on_progress: Callable[[float, float | None, str | None], object] | None = None,
        on_output: Callable[[str, str], object] | None = None,
    ) -> types.CallToolResult:
        """Run one tool through the host; never raises (bar cancellation).

        Success: text content (a string value as it is, anything else as
        JSON) plus ``structuredContent`` when the tool has an output schema.
        Any failure: ``isError`` with a one-sentence explanation.
        ``on_output(stream, text)``: what the call printed, per stream
        (``"stdout"``, ``"stderr"``), success or not.
        """
        try:
            entry = self._catalog.get(name)
            if entry is None:
                entry = self.refresh().get(name)  # a name that appeared since the last list
            # A client's cancel stops the call: the set is not held busy
            # until its timeout by a result nobody will read.
            result = await self.fh.acall_detailed(
                name, dict(arguments or {}), on_progress=on_progress, stop_on_cancel=True
            )
        except CallError as exc:
            _printed(on_output, getattr(exc, "stdout", None), getattr(exc, "stderr", None))
            if isinstance(exc, WorkerCrashed | ProtocolError):
                # The full story for the operator: the sentence, then the
                # crash's traceback (or its stderr).
                detail = exc.traceback or exc.stderr_tail
                log.warning("%s%s", exc, f"\n{detail}" if detail else "")
            return _error(tool_results.tool_error_text(name, exc, list(self._catalog)))
        except Exception:
            log.exception("internal error while calling %r", name)
            return _error(
                f"{name} failed because of an internal error in the function host; "
                "the details are in the server's log."
            )
        if result.stdout:
            log.debug("%s printed: %s", name, result.stdout.rstrip())
        _printed(on_output, result.stdout, result.stderr)
        try:
            value = tool_results.jsonable(result.value)
            text = tool_results.result_text(result.value)
        except tool_results.TooDeep:
            return _error(tool_results.too_deep_text(name))
        if entry is None or entry.validator is None:
            return types.CallToolResult(content=[_text(text)])
        structured = {"result": value} if entry.wraps else value
        try:
            problem = next(iter(entry.validator.iter_errors(structured)), None)
        except Exception:  # a schema the validator cannot follow (an unresolvable $ref)
            log.exception("could not check %r's result against its output schema", name)
            return _error(
                f"{name} returned a value its declared return type cannot be checked "
                "against; the details are in the server's log."
            )
        if problem is not None:
            log.warning("%s returned a value outside its output schema: %s", name, problem.message)
            return _error(
                f"{name} returned a value that does not match its declared return type "
                f"({tool_results.clip(problem.message, 300)}); "
                f"the value was: {tool_results.clip(text, 300)}"
            )
        return types.CallToolResult(content=[_text(text)], structured_content=structured)


class _Server(Server[Any]):
    """The SDK's server, announcing ``tools.listChanged`` when watching
    (over either transport: the HTTP one asks for the options itself)."""

    def __init__(self, watch: bool, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch

    def create_initialization_options(self, *args: Any, **kwargs: Any) -> Any:
        if self._watch and not args and "notification_options" not in kwargs:
            kwargs["notification_options"] = NotificationOptions(tools_changed=True)
        return super().create_initialization_options(*args, **kwargs)


def _printed(on_output: Callable[[str, str], object] | None, out: Any, err: Any) -> None:
    if on_output is None:
        return
    for stream, text in (("stdout", out), ("stderr", err)):
        if isinstance(text, str) and text.strip():
            on_output(stream, text)


# -- results --------------------------------------------------------------------


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[_text(text)], is_error=True)


def _fnhost_version() -> str:
    try:
        return importlib.metadata.version("fnhost")
    except importlib.metadata.PackageNotFoundError:
        return "0"
