"""A client's configuration for ``fnhost mcp``: printed (``fnhost mcp ...
--print-config [--client C]``) or written into the client's file
(``fnhost install C ...``, the old file kept beside it as ``.bak``).

The command is this interpreter's absolute path with ``-P -m host mcp``
(``-P``: a ``host``, ``worker`` or ``protocol`` in the client's working
directory cannot shadow fnhost's), and the sets and paths absolute, so the
server starts from an app launched with another PATH and working directory
(a desktop client does not see a virtual environment's ``bin``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

CLIENTS = ("claude-desktop", "cursor", "vscode")


def config_path(client: str) -> Path:
    """Where ``client`` reads its MCP servers (VS Code: this workspace's)."""
    home = Path.home()
    if client == "claude-desktop":
        if sys.platform == "darwin":
            return home / "Library/Application Support/Claude/claude_desktop_config.json"
        return home / ".config/Claude/claude_desktop_config.json"
    if client == "cursor":
        return home / ".cursor/mcp.json"
    return Path.cwd() / ".vscode/mcp.json"


def server_args(args: argparse.Namespace) -> list[str]:
    """The ``fnhost mcp`` arguments ``args`` stand for, paths made absolute."""
    out = ["-P", "-m", "host", "mcp", *(os.path.abspath(p) for p in args.paths)]
    out += ["--timeout", f"{args.timeout:g}"]
    if args.watch:
        out.append("--watch")
    if args.idle_timeout is not None:
        out += ["--idle-timeout", f"{args.idle_timeout:g}"]
    if args.schema_cache:
        out.append("--schema-cache")
    if args.network:
        out.append("--network")
    for flag, values, absolute in (
        ("--env", args.env, False),
        ("--allow", args.allow, False),
        ("--credential", args.credential, False),
        ("--writable", args.writable, True),
        ("--readable", args.readable, True),
    ):
        for value in values:
            out += [flag, os.path.abspath(value) if absolute else value]
    if args.confine_reads:
        out.append("--confine-reads")
    return out


def client_entry(client: str, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(the key servers live under, this server's entry) for ``client``."""
    entry: dict[str, Any] = {"command": sys.executable, "args": server_args(args)}
    if client == "vscode":
        return "servers", {"type": "stdio", **entry}
    return "mcpServers", entry


def print_config(args: argparse.Namespace) -> int:
    key, entry = client_entry(args.client, args)
    print(json.dumps({key: {args.name: entry}}, indent=2))
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    """Add (or replace) this server in the client's file; the old file is
    kept as ``<file>.bak``, both with the old file's mode (0600 for a new
    one: the file may hold other servers' keys). A file that is not a JSON
    object is left alone (exit 2)."""
    path = Path(args.config) if args.config else config_path(args.client)
    key, entry = client_entry(args.client, args)
    # A workspace's file may come from a cloned repository: a link there
    # (the file or its directory) would have us write, or copy with its
    # keys, a file of the user's elsewhere.
    for link in (path, path.parent):
        if link.is_symlink():
            print(
                f"fnhost: {link} is a symbolic link; left as it is "
                "(pass --config with the file it points to, if that is meant)",
                file=sys.stderr,
            )
            return 2
    config: dict[str, Any] = {}
    # A client's file may hold other servers' API keys: never wider than it was.
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o600
    if path.exists():
        try:
            config = json.loads(path.read_text() or "{}")
        except (OSError, ValueError) as exc:
            print(f"fnhost: {path} is not readable JSON ({exc}); left as it is", file=sys.stderr)
            return 2
        if not isinstance(config, dict) or not isinstance(config.get(key, {}), dict):
            print(f"fnhost: {path} does not hold a JSON object; left as it is", file=sys.stderr)
            return 2
        backup = path.with_name(path.name + ".bak")
        _write_private(backup, path.read_bytes(), mode)
        print(f"kept the old configuration as {backup}", file=sys.stderr)
    config.setdefault(key, {})[args.name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.time_ns()}")
    _write_private(tmp, (json.dumps(config, indent=2) + "\n").encode(), mode)
    os.replace(tmp, path)
    print(f"wrote the '{args.name}' server into {path}", file=sys.stderr)
    return 0


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """``data`` into a new file with ``mode`` (not the umask's default).
    Whatever was at ``path`` (an old backup, or a link planted there) is
    removed first, and the new file is created, never opened through a link."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def add_config_options(parser: argparse.ArgumentParser, default_client: str | None) -> None:
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default=default_client,
        help="the client whose configuration shape to use (default: claude-desktop)",
    )
    parser.add_argument(
        "--name", default="fnhost", help="the server's name in the configuration (default: fnhost)"
    )
