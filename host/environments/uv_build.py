"""Building one environment with uv: ``uv venv``, then ``uv pip install``.

uv comes from the ``uv`` package (``pip install 'fnhost[envs]'``), which
ships the binary. Its progress lines go to the ``fnhost.environments``
logger as they come; a failure is read from its message and becomes an
``EnvBuildError`` whose ``cause`` says which kind it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque

from host.environments.env_spec import EnvSpec, project_name

logger = logging.getLogger("fnhost.environments")

#: ``EnvBuildError.cause`` values.
UV_MISSING = "uv_missing"
INVALID_REQUIREMENT = "invalid_requirement"
UNRESOLVABLE = "unresolvable"
INDEX_UNREACHABLE = "index_unreachable"
REQUIRES_PYTHON = "requires_python"
SDIST_ONLY = "sdist_only"
TIMEOUT = "timeout"
BUILD_FAILED = "build_failed"

#: Lines of uv's output kept for the error message.
TAIL_LINES = 40


class UvFailed(Exception):
    """uv could not build the environment: ``cause`` (one of the constants
    above), ``requirements`` (those uv's message names, or all), ``detail``
    (uv's own words, on one line)."""

    def __init__(self, cause: str, requirements: tuple[str, ...], detail: str) -> None:
        super().__init__(detail)
        self.cause = cause
        self.requirements = requirements
        self.detail = detail


def find_uv() -> str:
    """The uv binary: the ``uv`` package's, else one on PATH.

    Raises ``UvFailed`` (``uv_missing``) when there is none.
    """
    try:
        import uv  # the PyPI package: a binary and a function that finds it

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found:
        return found
    raise UvFailed(
        UV_MISSING,
        (),
        "uv is not installed; install it with pip install 'fnhost[envs]' (the uv package)",
    )


def _run(argv: list[str], label: str, deadline: float) -> tuple[int, list[str]]:
    """Run uv, logging each line it writes; (return code, its last lines)."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a timeout kills uv and anything it started
        text=True,
        errors="replace",
        env={**os.environ, "NO_COLOR": "1"},
    )
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), _kill_group, (proc,))
    timer.daemon = True
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                logger.info("%s: %s", label, line)
        code = proc.wait()
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        timer.cancel()
    if time.monotonic() >= deadline and code != 0:
        raise UvFailed(TIMEOUT, (), f"uv did not finish within the build timeout: {' '.join(tail)}")
    return code, list(tail)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _named(requirements: tuple[str, ...], text: str) -> tuple[str, ...]:
    """The requirements whose project uv's message names (all if none is named)."""
    folded = re.sub(r"[-_.]+", "-", text.lower())
    named = tuple(
        r
        for r in requirements
        if re.search(rf"(?<![a-z0-9-]){re.escape(project_name(r))}(?![a-z0-9])", folded)
    )
    return named or requirements


def _message(lines: list[str]) -> str:
    """uv's error and its causes and hint, on one line (progress lines, the
    generic "No solution found" and a parse error's caret line dropped)."""
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    picked = lines[start:] if start is not None else lines[-5:]
    parts = []
    for line in picked:
        text = re.sub(r"^(error|cause):\s*", "", line.strip())
        if text and not re.fullmatch(r"[\s^~]+", text):
            parts.append(text)
    if len(parts) > 1 and parts[0].startswith("No solution found"):
        parts = parts[1:]
    return "; ".join(parts)


def classify(code: int, lines: list[str], requirements: tuple[str, ...]) -> UvFailed:
    """The ``UvFailed`` for a uv run that ended with ``code`` and wrote ``lines``."""
    detail = _message(lines)
    text = " ".join(lines)
    if code < 0:
        cause = BUILD_FAILED
        detail = f"uv was killed by signal {-code} ({detail or 'no output'})"
    elif "Failed to parse" in text:
        cause = INVALID_REQUIREMENT
    elif re.search(
        r"Failed to fetch|error sending request|dns error|Connection refused|tcp connect"
        r"|Could not connect|timed out|Network is unreachable",
        text,
    ):
        cause = INDEX_UNREACHABLE
    elif "building from source is disabled" in text or "has no usable wheels" in text:
        cause = SDIST_ONLY
    elif re.search(r"requires Python|current Python version", text):
        cause = REQUIRES_PYTHON
    elif "No solution found" in text or "unsatisfiable" in text:
        cause = UNRESOLVABLE
    else:
        cause = BUILD_FAILED
    return UvFailed(cause, _named(requirements, text), detail or f"uv exited with status {code}")


def build_with_uv(target: str, spec: EnvSpec, label: str, deadline: float) -> None:
    """Make a virtual environment at ``target`` (an empty directory) on this
    Python and install ``spec``'s requirements into it, with bytecode
    compiled (a worker's own uid may not write ``__pycache__`` there) by
    ``python -I -S -m compileall``: nothing of the packages runs here.

    Raises ``UvFailed``; ``target`` is then left as uv left it.
    """
    uv = find_uv()
    code, lines = _run(
        [
            uv,
            "venv",
            "--quiet",
            "--allow-existing",
            "--relocatable",
            "--python",
            sys.executable,
            target,
        ],
        label,
        deadline,
    )
    if code != 0:
        raise classify(code, lines, ())
    if not spec.normalized:
        return
    python = os.path.join(target, "bin", "python")
    argv = [uv, "pip", "install", "--python", python]
    argv += [*spec.options.uv_arguments(), "--", *spec.normalized]
    code, lines = _run(argv, label, deadline)
    if code != 0:
        raise classify(code, lines, spec.normalized)
    # Bytecode compiled here, not by uv's --compile-bytecode: that starts
    # the environment's interpreter with ``site``, which runs the import
    # lines of the packages' ``.pth`` files on the host, outside every
    # sandbox. ``-I -S``: no site, nothing of the packages runs.
    site_packages = os.path.join(
        target, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages"
    )
    compile_argv = [python, "-I", "-S", "-m", "compileall", "-q", "-j", "0", site_packages]
    code, lines = _run(compile_argv, label, deadline)
    if code != 0:
        detail = " ".join(" ".join(lines[-3:]).split())
        raise UvFailed(BUILD_FAILED, spec.normalized, f"compiling its bytecode failed: {detail}")
