"""Shared fixtures: real worker processes, never mocks.

``write_set(name, source)`` writes a function-set module into a temporary
directory; ``fh`` is a ``FunctionHost`` without built-ins or user dirs,
closed after the test, which then checks that no worker process is left.

Hosts start their workers with the ``start_method`` fixture ("zygote", the
default); ``@both_start_methods`` runs a test under "spawn" too. The zygote
cleans up after its workers (it adopts and kills what they leave), which
would hide a host that does not: lifecycle tests run under both.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from host import FunctionHost, Limits, Sandbox
from worker.enclosure import INIT_NAME as _INIT_NAME
from worker.spare import AHEAD_NAME, SPARE_NAME
from worker.standby import STANDBY_NAME as _STANDBY_NAME

INIT_NAME = _INIT_NAME.decode()
STANDBY_NAME = _STANDBY_NAME.decode()


def _fnhost_processes() -> list[tuple[int, int, list[bytes], str]]:
    """(pid, ppid, argv, name) of live fnhost workers, zygotes and the
    zygotes' spares of this test process."""
    me = os.getpid()
    found = []
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
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        mine = f'"host_pid": {me}'.encode() in b"".join(argv)
        if b"-m" in argv and mine and (b"worker" in argv or b"worker.zygote" in argv):
            found.append((int(entry), int(fields[1]), argv, name))
    return found


def zygote_pids() -> set[int]:
    """The zygote template processes of this test process."""
    return {
        pid
        for pid, ppid, argv, _ in _fnhost_processes()
        if ppid == os.getpid() and b"worker.zygote" in argv
    }


def _spare_trees(found: list[tuple[int, int, list[bytes], str]]) -> set[int]:
    """Every process of the zygotes' spares: a tree whose top is a zygote's
    child and whose every process still has a spare's name (``fnhost-spare``
    for the warden-to-be, ``fnhost-init``, ``fnhost-ahead`` for the
    worker-to-be; a worker-to-be takes back its name as it takes a request,
    before the zygote reports its pid). A warden that served a request may
    keep the spare's name a moment longer: by its tree, it is a worker's."""
    children: dict[int, list[int]] = {}
    names = {pid: name for pid, _, _, name in found}
    zygotes = zygote_pids()
    for pid, ppid, _, _ in found:
        children.setdefault(ppid, []).append(pid)

    def tree(pid: int) -> list[int]:
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo += children.get(p, [])
        return out

    spare_names = {SPARE_NAME, INIT_NAME, AHEAD_NAME}
    spares: set[int] = set()
    for pid, ppid, _, name in found:
        if ppid in zygotes and name == SPARE_NAME:
            members = tree(pid)
            if all(names.get(p) in spare_names for p in members):
                spares |= set(members)
    return spares


def spare_pids() -> set[int]:
    """The children a zygote forked ahead of its next spawn request (each the
    top of its tree: warden-to-be, with an init and worker-to-be below)."""
    found = _fnhost_processes()
    zygotes = zygote_pids()
    return {pid for pid, ppid, _, _ in found if ppid in zygotes} & _spare_trees(found)


def _standby_tops(found: list[tuple[int, int, list[bytes], str]]) -> set[int]:
    """The pid the host knows (a warden, or the worker itself) of each set's
    standby (``host.workers.standby``): a worker named ``fnhost-standby``
    waits for its ``load``."""
    parent = {pid: ppid for pid, ppid, _, _ in found}
    zygotes = zygote_pids()
    tops = set()
    for pid, _, _, name in found:
        if name == STANDBY_NAME:
            while parent.get(pid) in parent and parent[pid] not in zygotes:
                pid = parent[pid]
            tops.add(pid)
    return tops


def standby_pids() -> set[int]:
    """The sets' standbys of this test process (see ``_standby_tops``)."""
    return _standby_tops(_fnhost_processes())


def worker_pids() -> set[int]:
    """Pids of live fnhost workers of this test process, spawned or forked
    from a zygote (a zygote's children share its command line). A worker in
    its own PID namespace is three processes (warden, init, worker; see
    worker/enclosure.py): counted once, by the warden, the pid the host knows.
    A set's standby waiting for its load is no worker here (``standby_pids``)."""
    found = _fnhost_processes()
    zygotes = zygote_pids()
    spares = _spare_trees(found) | _standby_tops(found)
    every = {pid for pid, _, _, _ in found}
    return {
        pid
        for pid, ppid, _, _ in found
        if pid not in zygotes and pid not in spares and (ppid not in every or ppid in zygotes)
    }


def worker_processes() -> set[int]:
    """Every live process of this test process's workers (wardens, inits,
    workers and what they forked that kept the command line)."""
    found = _fnhost_processes()
    zygotes = zygote_pids()
    spares = _spare_trees(found)
    return {pid for pid, _, _, _ in found if pid not in zygotes and pid not in spares}


def outside_pid(set_pid: int, inner: int) -> int:
    """The host's pid of the process a worker knows as ``inner``. A worker
    in its own PID namespace (``set_pid``, the pid the host shows for the
    set, is then its warden) numbers its processes apart; otherwise the
    numbers are the host's."""
    try:
        ns = os.readlink(f"/proc/{set_pid}/ns/pid_for_children")
    except OSError:
        return inner
    if ns == os.readlink("/proc/self/ns/pid"):
        return inner
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            with open(f"/proc/{entry}/status") as f:
                line = next(x for x in f if x.startswith("NSpid:"))
        except (OSError, StopIteration):
            continue
        if int(line.split()[-1]) == inner:
            return int(entry)
    raise LookupError(f"no process {inner} in the namespace of {set_pid}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, as the host sees them (a worker's
    warden, then its init, its worker and what the worker started)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def host_view(pid: int) -> tuple[int, int]:
    """(parent pid, session id) of ``pid`` as the host sees them. A worker in
    its own PID namespace sees its parent as 1 and its session as 0 (both
    are outside); ``os.getpid()`` there is its warden's pid, whose parent and
    session are these."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[3])


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
def rendezvous(tmp_path):
    """A directory where concurrent calls mark their arrival."""
    directory = tmp_path / "rendezvous"
    directory.mkdir()
    directory.chmod(0o777)
    return directory


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


#: A worker without a PID namespace (nor, so that it can read a set's file
#: without the private view, its own uid): nothing but the host's group kill
#: and, under the zygote, the zygote reaches what it leaves behind.
NO_PID_NAMESPACE = Sandbox(own_uid=False, private_namespaces=False)

#: Run a test under both start methods (the ``start_method`` fixture, which
#: ``make_host`` and ``fh`` use, takes each value in turn).
both_start_methods = pytest.mark.parametrize("start_method", ["zygote", "spawn"])


@pytest.fixture
def start_method() -> str:
    """How ``make_host``'s hosts start workers, unless a test parametrizes it."""
    return "zygote"


@pytest.fixture
def make_host(empty_dir: Path, start_method: str) -> Iterator[Callable[..., FunctionHost]]:
    hosts: list[FunctionHost] = []

    def make(**kwargs) -> FunctionHost:
        kwargs.setdefault("start_method", start_method)
        kwargs.setdefault("builtin_dir", empty_dir)
        kwargs.setdefault("user_dirs", [])
        kwargs.setdefault("limits", Limits(timeout=10.0))
        fh = FunctionHost(**kwargs)
        hosts.append(fh)
        return fh

    yield make
    for fh in hosts:
        fh.close()
    assert wait_for(lambda: not worker_processes(), 3.0), f"left behind: {worker_processes()}"
    assert wait_for(lambda: not zygote_pids(), 3.0), f"zygotes left behind: {zygote_pids()}"
    assert wait_for(lambda: not spare_pids(), 3.0), f"spares left behind: {spare_pids()}"


@pytest.fixture
def fh(make_host: Callable[..., FunctionHost]) -> FunctionHost:
    return make_host()
