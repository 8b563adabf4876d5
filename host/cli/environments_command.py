"""``fnhost env list`` / ``fnhost env prune``: the cache of set environments."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from host.environments.env_cache import cache_root, list_environments, prune


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _ago(then: float) -> str:
    seconds = max(0.0, time.time() - then)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def cmd_env_list(args: argparse.Namespace) -> int:
    envs = list_environments(args.cache_dir)
    if args.json:
        out: dict[str, Any] = {
            "cache": str(cache_root(args.cache_dir)),
            "environments": [e.as_dict() for e in envs],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"cache: {cache_root(args.cache_dir)}")
    if not envs:
        print("no environments")
    for e in envs:
        reqs = ", ".join(e.requirements) or "-"
        print(
            f"{e.key}  {e.state:<10}  {_size(e.size_bytes):>9}  used {_ago(e.last_used):<13}  "
            f"{reqs}"
        )
    return 0


def cmd_env_prune(args: argparse.Namespace) -> int:
    removed = prune(
        args.cache_dir, older_than_days=None if args.all else args.older_than, dry_run=args.dry_run
    )
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}")
    return 0


def add_env_parser(sub: Any) -> None:
    """Add ``fnhost env`` (``list``, ``prune``) to the top-level subparsers."""
    env = sub.add_parser(
        "env",
        help="list or prune the cached environments of sets that declare dependencies",
        description="Sets that declare dependencies (a PEP 723 '# /// script' block) run in "
        "virtual environments built with uv and cached under $FNHOST_CACHE_DIR (default "
        "~/.cache/fnhost). See docs/environments.md.",
    )
    env_sub = env.add_subparsers(dest="env_command", required=True)
    for cmd in ("list", "prune"):
        p = env_sub.add_parser(
            cmd,
            help="show every cached environment"
            if cmd == "list"
            else "remove interrupted builds and environments not used for a while",
        )
        p.add_argument("--cache-dir", metavar="DIR", help="the cache (default: as above)")
        if cmd == "list":
            p.add_argument("--json", action="store_true", help="machine-readable output")
            p.set_defaults(func=cmd_env_list)
        else:
            p.add_argument(
                "--older-than",
                type=float,
                default=30.0,
                metavar="DAYS",
                help="remove environments not used for DAYS days (default: 30)",
            )
            p.add_argument(
                "--all",
                action="store_true",
                help="remove every environment (running hosts rebuild theirs on their next load)",
            )
            p.add_argument("--dry-run", action="store_true", help="only say what would go")
            p.set_defaults(func=cmd_env_prune)
