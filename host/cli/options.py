"""What several ``fnhost`` subcommands share: loading the sets they are
given, the sandbox options, the workers' variables, the load report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from host.api.function_host import FunctionHost
from host.egress.policy import Egress, Header, Secret
from host.errors import HostError
from host.limits import Limits
from host.sandbox import Sandbox


def host_for(
    paths: Sequence[str],
    limits: Limits | None = None,
    env: dict[str, str] | None = None,
    builtins: bool = True,
    watch: bool = False,
    schema_cache: bool = False,
) -> FunctionHost:
    """A host loading built-ins (optionally) plus each DIR or FILE given
    (from the schema cache where ``schema_cache``)."""
    dirs = [p for p in paths if Path(p).is_dir()]
    files = [p for p in paths if not Path(p).is_dir()]
    fh = FunctionHost(
        builtin_dir=None if builtins else "/nonexistent-fnhost-builtins",
        user_dirs=dirs,
        limits=limits,
        env=env,
        on_conflict="prefix",
        watch=watch,
        watch_interval=0.5,
        schema_cache=schema_cache,
    )
    try:
        fh.load_all_function_sets()
        for f in files:
            fh.load_function_set(f)
    except HostError:
        fh.close()
        raise
    return fh


def report_load_errors(fh: FunctionHost) -> None:
    for err in fh.load_errors.values():
        print(f"load error: {err}", file=sys.stderr)


def sandbox_limits(args: argparse.Namespace) -> Limits:
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
    memory = getattr(args, "memory", None)
    if memory is not None:
        return Limits(timeout=args.timeout, memory_mb=memory, sandbox=sandbox)
    return Limits(timeout=args.timeout, sandbox=sandbox)


def add_sandbox_options(parser: argparse.ArgumentParser) -> None:
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


def seconds(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def worker_env(items: Sequence[str]) -> dict[str, str]:
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
