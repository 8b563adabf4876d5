"""The ``fnhost`` command line (also ``python -m host``).

Exit codes: 0 success; 1 a call failed (the error is printed); 2 bad usage,
or a function set failed to load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from host import __version__
from host.api.function_host import FunctionHost
from host.api.reference_agent import MEMGPT_EXPOSE, Agent
from host.cli.environments_command import add_env_parser
from host.cli.mcp_command import add_mcp_parsers
from host.cli.options import (
    add_sandbox_options,
    host_for,
    report_load_errors,
    sandbox_limits,
    seconds,
    worker_env,
)
from host.errors import CallError, HostError, LoadError, WorkerCrashed
from host.limits import Limits
from host.terminal_text import shown
from host.tools.formats import FORMATS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "function_sets"


def cmd_schemas(args: argparse.Namespace) -> int:
    output: Any
    with host_for(args.paths, builtins=not args.no_builtins) as fh:
        report_load_errors(fh)
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


def cmd_call(args: argparse.Namespace) -> int:
    limits = sandbox_limits(args)
    env = worker_env(args.env)
    # No built-ins: MemGPT's memory tools act on an agent, and there is none here.
    with host_for(args.paths, limits=limits, env=env, builtins=False) as fh:
        report_load_errors(fh)
        try:
            result = fh.call_detailed(args.name, args.arguments)
        except CallError as exc:
            # The set's text (message, traceback, stderr) with its control
            # characters escaped: it writes to the operator's terminal.
            print(f"error ({exc.kind}): {shown(str(exc), lines=True)}", file=sys.stderr)
            if isinstance(exc, WorkerCrashed) and (exc.traceback or exc.stderr_tail):
                print(shown(exc.traceback or exc.stderr_tail or "", lines=True), file=sys.stderr)
            return 1
        if result.stdout:
            print(shown(result.stdout, lines=True), end="", file=sys.stderr)
        print(json.dumps(result.value, indent=2, default=repr))
        return 0


def _step(title: str) -> None:
    print(f"\n== {title}")


def _demo_call(
    fh: FunctionHost, name: str, arguments: object, timeout: float | None = None
) -> None:
    given = arguments if isinstance(arguments, str) else json.dumps(arguments)
    start = time.perf_counter()
    try:
        result = fh.call_detailed(name, arguments, timeout=timeout)
    except CallError as exc:
        ms = (time.perf_counter() - start) * 1000
        print(f"  {name}({given}) -> {type(exc).__name__} [{exc.kind}] in {ms:.1f} ms")
        print(f"      {shown(str(exc), lines=True)}")
        return
    ms = (time.perf_counter() - start) * 1000
    print(f"  {name}({given}) -> {json.dumps(result.value)}  ({ms:.1f} ms)")
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
    parser.add_argument("--version", action="version", version=f"fnhost {__version__}")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="what fnhost logs on stderr (loggers: fnhost, fnhost.worker.<set>, fnhost.egress, "
        "fnhost.mcp, fnhost.environments; default: warning)",
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
    call.add_argument(
        "--timeout", type=seconds, default=30.0, metavar="S", help="seconds (default: 30)"
    )
    call.add_argument(
        "--memory",
        type=int,
        metavar="MB",
        help="the worker's memory limit in MiB (default: 512; Limits.memory_mb)",
    )
    call.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="a variable the worker gets (repeatable); NAME alone passes this shell's value",
    )
    call.add_argument(
        "--no-builtins",
        action="store_true",
        help="accepted for compatibility: the built-in memory tools need an agent, "
        "which the command line has not, so they are never loaded here",
    )
    add_sandbox_options(call)
    call.set_defaults(func=cmd_call)

    add_mcp_parsers(sub)  # fnhost mcp, fnhost install (host/cli/mcp_command.py)

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
    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(level=level, format="  [log] %(name)s: %(message)s")
    # A set environment's build shows its progress (uv's lines) on stderr.
    logging.getLogger("fnhost.environments").setLevel(min(level, logging.INFO))
    try:
        return args.func(args)
    except HostError as exc:
        print(f"fnhost: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
