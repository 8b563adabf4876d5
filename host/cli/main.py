"""The ``fnhost`` command line (also ``python -m host``).

Exit codes: 0 success; 1 a call failed (the error is printed); 2 bad usage,
or a function set failed to load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from host.api.function_host import FunctionHost
from host.api.reference_agent import MEMGPT_EXPOSE, Agent
from host.cli.environments_command import add_env_parser
from host.egress.policy import Egress, Header, Secret
from host.errors import CallError, HostError, LoadError, WorkerCrashed
from host.limits import Limits
from host.sandbox import Sandbox
from host.tools.formats import FORMATS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "function_sets"


def _host_for(
    paths: Sequence[str],
    limits: Limits | None = None,
    env: dict[str, str] | None = None,
    builtins: bool = True,
) -> FunctionHost:
    """A host loading built-ins (optionally) plus each DIR or FILE given."""
    dirs = [p for p in paths if Path(p).is_dir()]
    files = [p for p in paths if not Path(p).is_dir()]
    fh = FunctionHost(
        builtin_dir=None if builtins else "/nonexistent-fnhost-builtins",
        user_dirs=dirs,
        limits=limits,
        env=env,
        on_conflict="prefix",
    )
    try:
        fh.load_all_function_sets()
        for f in files:
            fh.load_function_set(f)
    except HostError:
        fh.close()
        raise
    return fh


def _report_load_errors(fh: FunctionHost) -> None:
    for err in fh.load_errors.values():
        print(f"load error: {err}", file=sys.stderr)


def cmd_schemas(args: argparse.Namespace) -> int:
    output: Any
    with _host_for(args.paths, builtins=not args.no_builtins) as fh:
        _report_load_errors(fh)
        if args.format:
            if args.nested:
                print("fnhost: --nested applies without --format only", file=sys.stderr)
                return 2
            try:
                output = fh.tools(format=args.format, strict=args.strict)
            except ValueError as exc:
                print(f"fnhost: {exc}", file=sys.stderr)
                return 2
        else:
            output = fh.schemas(merge=not args.nested)
        print(json.dumps(output, indent=2))
        return 2 if fh.load_errors else 0


def _sandbox_limits(args: argparse.Namespace) -> Limits:
    """``--timeout`` and the sandbox options as the sets' Limits."""
    network: bool | Egress = args.network
    if args.allow or args.credential:
        if args.network:
            raise SystemExit("fnhost: --network and --allow/--credential exclude each other")
        credentials = {}
        for item in args.credential:
            host, sep, variable = item.partition("=")
            if not sep or not host or not variable:
                raise SystemExit(f"fnhost: --credential {item!r}: expected HOST=ENVVAR")
            credentials[host] = Header("Authorization", "Bearer {}", Secret.env(variable))
        try:
            network = Egress(allow=args.allow, credentials=credentials)
        except (ValueError, TypeError) as exc:
            raise SystemExit(f"fnhost: {exc}") from None
    sandbox = Sandbox(
        network=network,
        writable_paths=tuple(args.writable),
        confine_reads=args.confine_reads or bool(args.readable),
        readable_paths=tuple(args.readable),
    )
    return Limits(timeout=args.timeout, sandbox=sandbox)


def _add_sandbox_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--network",
        action="store_true",
        help="let the functions use the network (default: every connection fails)",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="let the functions reach HOST:PORT through fnhost's egress proxy only "
        "(repeatable; '*.example.com:443' for subdomains; needs fnhost[egress])",
    )
    parser.add_argument(
        "--credential",
        action="append",
        default=[],
        metavar="HOST=ENVVAR",
        help="the proxy sends 'Authorization: Bearer $ENVVAR' to HOST over HTTPS; the "
        "functions never see the value (repeatable; HOST must be --allow'ed)",
    )
    parser.add_argument(
        "--writable",
        action="append",
        default=[],
        metavar="PATH",
        help="a directory or file the functions may write (repeatable; default: only "
        "their scratch directory)",
    )
    parser.add_argument(
        "--confine-reads",
        action="store_true",
        help="let the functions read only their own directory, the interpreter's files, "
        "system libraries and binaries, and --readable paths",
    )
    parser.add_argument(
        "--readable",
        action="append",
        default=[],
        metavar="PATH",
        help="a directory or file the functions may read (repeatable; implies --confine-reads)",
    )


def cmd_call(args: argparse.Namespace) -> int:
    limits = _sandbox_limits(args)
    # No built-ins: MemGPT's memory tools act on an agent, and there is none here.
    with _host_for(args.paths, limits=limits, builtins=False) as fh:
        _report_load_errors(fh)
        try:
            result = fh.call_detailed(args.name, args.arguments)
        except CallError as exc:
            print(f"error ({exc.kind}): {exc}", file=sys.stderr)
            if isinstance(exc, WorkerCrashed) and (exc.traceback or exc.stderr_tail):
                print(exc.traceback or exc.stderr_tail, file=sys.stderr)
            return 1
        if result.stdout:
            print(result.stdout, end="", file=sys.stderr)
        print(json.dumps(result.value, indent=2, default=repr))
        return 0


def _seconds(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve the sets over stdio until the client leaves; 2 if nothing loaded or no SDK."""
    # Imported here: the MCP SDK is an optional extra, and the import raises
    # MCPUnavailable (a HostError: "fnhost: ...", exit 2) saying what to install.
    from host.cli import mcp_server

    limits = _sandbox_limits(args)
    env = _worker_env(args.env)
    # No built-ins: MemGPT's memory tools act on an agent, and the server has none.
    with _host_for(args.paths, limits=limits, env=env, builtins=False) as fh:
        _report_load_errors(fh)  # stderr: stdout carries the protocol
        if not fh.function_sets:
            print("fnhost: no function set loaded; nothing to serve", file=sys.stderr)
            return 2
        mcp_server.serve(fh)
    return 0


def _worker_env(items: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` or ``NAME`` (the value from our own environment)."""
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not name:
            raise SystemExit(f"fnhost: --env needs NAME or NAME=VALUE, got {item!r}")
        if not sep:
            if name not in os.environ:
                raise SystemExit(f"fnhost: --env {name}: not set in this environment")
            value = os.environ[name]
        env[name] = value
    return env


def _step(title: str) -> None:
    print(f"\n== {title}")


def _demo_call(
    fh: FunctionHost, name: str, arguments: object, timeout: float | None = None
) -> None:
    shown = arguments if isinstance(arguments, str) else json.dumps(arguments)
    start = time.perf_counter()
    try:
        result = fh.call_detailed(name, arguments, timeout=timeout)
    except CallError as exc:
        ms = (time.perf_counter() - start) * 1000
        print(f"  {name}({shown}) -> {type(exc).__name__} [{exc.kind}] in {ms:.1f} ms")
        print(f"      {exc}")
        return
    ms = (time.perf_counter() - start) * 1000
    print(f"  {name}({shown}) -> {json.dumps(result.value)}  ({ms:.1f} ms)")
    if result.stdout:
        print(f"      captured stdout: {result.stdout.strip()!r}")


def cmd_check(args: argparse.Namespace) -> int:
    from host.cli.checks import check

    findings = check(args.paths)
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    if args.json:
        print(
            json.dumps(
                {
                    "findings": [f.as_dict() for f in findings],
                    "errors": errors,
                    "warnings": warnings,
                },
                indent=2,
            )
        )
    else:
        for finding in findings:
            print(finding.line())
        print(f"{errors} errors, {warnings} warnings")
    if errors or (warnings and args.warnings_as_errors):
        return 1
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from host.cli.doctor import diagnose

    layers = diagnose()
    if args.json:
        print(json.dumps([vars(layer) for layer in layers], indent=2))
    else:
        for layer in layers:
            print(f"{layer.status:<12} {layer.name:<20} {layer.detail}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else EXAMPLES
    if not directory.is_dir():
        print(f"no example function sets at {directory}; pass a directory", file=sys.stderr)
        return 2
    _step(f"Loading the built-in sets and {directory} (one worker process per set)")
    start = time.perf_counter()
    # The built-in memory tools act on an agent that lives here, in the host;
    # only they get the door to it. The example sets load without one.
    agent = Agent(persona="I am the fnhost demo agent.")
    fh = FunctionHost(
        user_dirs=[],
        limits=Limits(timeout=5.0),
        env={"WEATHER_API_KEY": "demo-key"},
    )
    with fh:
        fh.load_all_function_sets(context=agent, expose=MEMGPT_EXPOSE)
        for path in sorted(directory.glob("*.py")):
            if not path.name.startswith("_"):
                with contextlib.suppress(LoadError):  # kept in fh.load_errors, shown below
                    fh.load_function_set(path)
        ms = (time.perf_counter() - start) * 1000
        for name, info in fh.function_sets.items():
            print(f"  {name:<12} pid {info['pid']:<7} {', '.join(info['functions'])}")
        for name, err in fh.load_errors.items():
            print(f"  {name:<12} FAILED: {err}")
        print(f"  ready in {ms:.0f} ms")

        _step("A schema, as an LLM sees it")
        print(json.dumps(fh.schemas()["get_weather"], indent=2))

        _step("Calls (arguments as dicts, or JSON strings as models send them)")
        _demo_call(fh, "add", {"a": 2, "b": 40})
        _demo_call(fh, "get_weather", '{"city": "Paris", "units": "imperial"}')
        _demo_call(fh, "calculator.mean", {"values": [1, 2, 3], "weights": [3, 2, 1]})
        _demo_call(fh, "api_key_configured", {})
        _demo_call(fh, "shout", {"text": "hello"})

        _step("Built-in memory tools, in the sandbox, change the agent in this process")
        _demo_call(fh, "core_memory_append", {"name": "human", "content": "Name: Ada."})
        _demo_call(fh, "archival_memory_insert", {"content": "Ada's cat is called Turing."})
        _demo_call(fh, "archival_memory_search", {"query": "cat"})
        print(f"  agent.memory.human == {agent.memory.human!r}")

        _step("Bad input becomes a clear error")
        _demo_call(fh, "get_weather", {"city": "Paris", "units": "kelvin"})
        _demo_call(fh, "get_weather", {"city": "Atlantis"})
        _demo_call(fh, "add", {"a": 1})
        _demo_call(fh, "no_such_tool", {})

        _step("Hostile code: a segfault and a hang, and the host carries on")
        _demo_call(fh, "crash", {})
        _demo_call(fh, "shout", {"text": "still here"})
        _demo_call(fh, "hang", {}, timeout=1.0)
        _demo_call(fh, "shout", {"text": "and again"})
        _demo_call(fh, "forecast", {"city": "Tokyo", "days": 2})
    print("\nClosed: every worker stopped and its scratch directory removed.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fnhost",
        description="Run Python tool functions in sandboxed worker processes.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="load the bundled examples and show the host at work")
    demo.add_argument("dir", nargs="?", help="a directory of function sets (default: examples)")
    demo.set_defaults(func=cmd_demo)

    schemas = sub.add_parser("schemas", help="print the JSON schemas of function sets")
    schemas.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    schemas.add_argument("--nested", action="store_true", help="group by function set")
    schemas.add_argument(
        "--format",
        choices=FORMATS,
        help="tool definitions in a provider's shape (default: MemGPT schemas)",
    )
    schemas.add_argument("--strict", action="store_true", help="OpenAI strict mode")
    schemas.add_argument("--no-builtins", action="store_true", help="skip the built-in sets")
    schemas.set_defaults(func=cmd_schemas)

    call = sub.add_parser("call", help="call one function and print its result as JSON")
    call.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    call.add_argument("name", help='"function" or "set.function"')
    call.add_argument("arguments", help="a JSON object of arguments")
    call.add_argument("--timeout", type=float, default=30.0)
    call.add_argument(
        "--no-builtins",
        action="store_true",
        help="accepted for compatibility: the built-in memory tools need an agent, "
        "which the command line has not, so they are never loaded here",
    )
    _add_sandbox_options(call)
    call.set_defaults(func=cmd_call)

    mcp = sub.add_parser(
        "mcp",
        help="serve function sets to MCP clients over stdio",
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
            'client config: {"mcpServers": {"tools": {"command": "fnhost", '
            '"args": ["mcp", "/path/to/functions", "--timeout", "30"]}}}'
        ),
    )
    mcp.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    mcp.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="seconds a call may run before its worker is killed (default: 30)",
    )
    mcp.add_argument(
        "--no-builtins",
        action="store_true",
        help="accepted for compatibility: the built-in memory tools need an agent, "
        "which the server has not, so they are never served",
    )
    mcp.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="a variable the workers get (repeatable); NAME alone passes the server's own "
        "value. Nothing else of the server's environment reaches them.",
    )
    _add_sandbox_options(mcp)
    mcp.set_defaults(func=cmd_mcp)

    check = sub.add_parser(
        "check",
        help="lint function sets before deploying them",
        description="Load each set in a real worker and report load errors, skipped "
        "functions and why, missing descriptions, and functions that OpenAI strict mode "
        "or Gemini cannot express. Exit status 1 if there is an error (or a warning, "
        "with --warnings-as-errors).",
    )
    check.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--warnings-as-errors", action="store_true")
    check.set_defaults(func=cmd_check)

    doctor = sub.add_parser(
        "doctor",
        help="show which isolation layers are in force here (probed, not assumed)",
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(func=cmd_doctor)

    add_env_parser(sub)  # fnhost env list|prune (host/cli/environments_command.py)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="  [log] %(name)s: %(message)s")
    # A set environment's build shows its progress (uv's lines) on stderr.
    logging.getLogger("fnhost.environments").setLevel(logging.INFO)
    try:
        return args.func(args)
    except HostError as exc:
        print(f"fnhost: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
