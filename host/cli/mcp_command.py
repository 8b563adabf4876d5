"""``fnhost mcp`` (serve sets to MCP clients over stdio or streamable HTTP,
optionally reloading edited sets) and ``fnhost install CLIENT`` (write a
client's configuration for it; ``--print-config`` prints it instead)."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import sys

from host.cli.mcp_config import CLIENTS, add_config_options, cmd_install, print_config
from host.cli.options import (
    add_sandbox_options,
    host_for,
    report_load_errors,
    sandbox_limits,
    seconds,
    worker_env,
)


def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve the sets until the client leaves (stdio) or a signal (HTTP);
    2 if nothing loaded or no SDK. ``--print-config`` prints a client's
    configuration for these arguments instead."""
    if args.print_config:
        return print_config(args)
    # Imported here: the MCP SDK is an optional extra, and importing the
    # server raises MCPUnavailable (a HostError: "fnhost: ...", exit 2) saying
    # what to install, before the transports import the SDK themselves.
    from host.cli import (
        mcp_server,  # noqa: F401
        mcp_transports,
    )

    limits = dataclasses.replace(sandbox_limits(args), idle_timeout=args.idle_timeout)
    env = worker_env(args.env)
    address = _address(args.http) if args.http else None
    # No built-ins: MemGPT's memory tools act on an agent, and the server has none.
    with host_for(
        args.paths,
        limits=limits,
        env=env,
        builtins=False,
        watch=args.watch,
        schema_cache=args.schema_cache,
    ) as fh:
        report_load_errors(fh)  # stderr: stdout carries the protocol
        if not fh.function_sets:
            print("fnhost: no function set loaded; nothing to serve", file=sys.stderr)
            return 2
        if address is None:
            mcp_transports.serve(fh, watch=args.watch)
        else:
            if address[0] != "localhost" and not _is_loopback(address[0]):
                print(
                    f"fnhost: serving on {address[0]}, beyond loopback, with no authentication",
                    file=sys.stderr,
                )
            mcp_transports.serve_http(fh, address[0], address[1], watch=args.watch)
    return 0


def _address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise SystemExit(f"fnhost: --http {text!r}: expected HOST:PORT (port 0: any free one)")
    return host, int(port)


def add_mcp_parsers(sub: argparse._SubParsersAction) -> None:
    mcp = sub.add_parser(
        "mcp",
        help="serve function sets to MCP clients over stdio or HTTP",
        description=(
            "Serve the functions of each DIR (every *.py in it) and FILE as tools of a "
            "Model Context Protocol server on stdin/stdout, for desktop assistants, IDEs "
            "and agents. Every call runs in the set's sandboxed worker; a crash, hang or "
            "exception becomes an error result and the server keeps serving. Load errors "
            "and logs go to stderr (stdout is the protocol): a set in a DIR that fails to "
            "load is left out, a FILE that fails to load stops the start (exit 2). Needs "
            "the MCP SDK: pip install 'fnhost[mcp]'."
        ),
        epilog=(
            "A client's configuration for these arguments: add --print-config "
            "[--client claude-desktop|cursor|vscode], or run fnhost install CLIENT with them."
        ),
    )
    mcp.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    _add_server_options(mcp)
    mcp.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the streamable HTTP transport at http://HOST:PORT/mcp instead of stdio "
        "(HOST defaults to 127.0.0.1; port 0 picks a free one, printed on stderr)",
    )
    mcp.add_argument(
        "--print-config",
        action="store_true",
        help="print a client configuration that starts this server, and exit",
    )
    add_config_options(mcp, "claude-desktop")
    mcp.set_defaults(func=cmd_mcp)

    install = sub.add_parser(
        "install",
        help="write an MCP client's configuration to start fnhost mcp with these sets",
        description="Add (or replace) a server in CLIENT's MCP configuration file, with "
        "absolute paths to this interpreter and the sets; the old file is kept as .bak.",
    )
    install.add_argument("client", choices=CLIENTS)
    install.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    install.add_argument(
        "--config", metavar="FILE", help="the file to write (default: the client's)"
    )
    _add_server_options(install)
    install.add_argument(
        "--name", default="fnhost", help="the server's name in the configuration (default: fnhost)"
    )
    install.set_defaults(func=cmd_install)


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    """What ``fnhost mcp`` serves with (also written by ``install``)."""
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="seconds a call may run before its worker is killed (default: 30)",
    )
    parser.add_argument(
        "--no-builtins",
        action="store_true",
        help="accepted for compatibility: the built-in memory tools need an agent, "
        "which the server has not, so they are never served",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="a variable the workers get (repeatable); NAME alone passes the server's own "
        "value. Nothing else of the server's environment reaches them.",
    )
    parser.add_argument(
        "--watch",
        action="store_true",
        help="reload a set when its file changes, and tell clients (tools/list_changed)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=seconds,
        default=None,
        metavar="S",
        help="stop a set's worker after S seconds without a call; its next call starts "
        "one again (default: workers live until the server exits)",
    )
    parser.add_argument(
        "--schema-cache",
        action="store_true",
        help="load unchanged sets from the schemas cached by an earlier run, without "
        "importing them until their first call ($FNHOST_CACHE_DIR/schemas)",
    )
    add_sandbox_options(parser)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: said to be beyond loopback unless it is localhost
        return False
