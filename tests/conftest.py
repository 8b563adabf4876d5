"""Shared fixtures: real worker processes, never mocks.

``write_set(name, source)`` writes a function-set module into a temporary
directory; ``fh`` is a ``FunctionHost`` without built-ins or user dirs,
closed after the test, which then checks that no worker process is left.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from host import FunctionHost, Limits


def worker_pids() -> set[int]:
    """Pids of live fnhost workers started by this test process (any depth)."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[1].split()[0]
        if state == "Z":
            continue
        if b"-m" in argv and b"worker" in argv and f'"host_pid": {me}'.encode() in b"".join(argv):
            found.add(int(entry))
    return found


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def sets_dir(tmp_path: Path) -> Path:
    d = tmp_path / "sets"
    d.mkdir()
    return d


@pytest.fixture
def write_set(sets_dir: Path) -> Callable[[str, str], Path]:
    def write(name: str, source: str, directory: Path | None = None) -> Path:
        path = (directory or sets_dir) / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


@pytest.fixture
def make_host(empty_dir: Path) -> Iterator[Callable[..., FunctionHost]]:
    hosts: list[FunctionHost] = []

    def make(**kwargs) -> FunctionHost:
        kwargs.setdefault("builtin_dir", empty_dir)
        kwargs.setdefault("user_dirs", [])
        kwargs.setdefault("limits", Limits(timeout=10.0))
        fh = FunctionHost(**kwargs)
        hosts.append(fh)
        return fh

    yield make
    for fh in hosts:
        fh.close()
    assert wait_for(lambda: not worker_pids(), 3.0), f"workers left behind: {worker_pids()}"


@pytest.fixture
def fh(make_host: Callable[..., FunctionHost]) -> FunctionHost:
    return make_host()
