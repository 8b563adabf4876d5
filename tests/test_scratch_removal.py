"""A worker's directory is removed whatever its functions made in it, and a
directory that cannot be removed never breaks a host (close, later starts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from host import WorkerCrashed
from host.launch.tree_removal import remove_tree

BUILDER = """
import ctypes
import os
import socket

_kept = []


def home() -> str:
    return os.environ["HOME"]


def deep(levels: int) -> None:
    # Relative steps: the full path soon exceeds PATH_MAX.
    top = os.open(".", os.O_RDONLY)
    for _ in range(levels):
        os.mkdir("d")
        os.chdir("d")
    with open("leaf", "w") as f:
        f.write("x")
    os.fchdir(top)
    os.close(top)


def hostile(outside: str) -> None:
    os.makedirs("locked/inner/deeper")
    with open("locked/inner/deeper/file", "w") as f:
        f.write("x")
    for path in ("locked/inner/deeper", "locked/inner", "locked"):
        os.chmod(path, 0)
    os.mkdir("write_only")
    open("write_only/file", "w").close()
    os.chmod("write_only", 0o300)
    os.mkdir("read_only")
    open("read_only/file", "w").close()
    os.chmod("read_only", 0o500)
    os.mkfifo("fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("socket")
    _kept.append(sock)
    os.mkdir(b"\\xff\\xfe-not-utf8")
    open(b"\\xff\\xfe-not-utf8/\\xc3(", "w").close()
    f = open("still_open", "w")
    f.write("x")
    _kept.append(f)
    os.symlink(outside, "link_out")  # removal must not follow it
    os.symlink(outside, "locked_link")


def segfault() -> None:
    ctypes.string_at(0)
"""


def _workdir(fh) -> Path:
    return Path(fh.call("home")).parent


@pytest.mark.parametrize("levels", [1200, 5000])
def test_a_deep_tree_is_removed_on_close(make_host, write_set, levels):
    fh = make_host()
    fh.load_function_set(write_set("builder", BUILDER))
    workdir = _workdir(fh)
    fh.call("deep", {"levels": levels})
    fh.close()  # shutil.rmtree raised RecursionError here
    assert not os.path.lexists(workdir)


def test_a_deep_tree_left_by_a_crashed_worker_is_removed(make_host, write_set):
    fh = make_host()
    fh.load_function_set(write_set("builder", BUILDER))
    workdir = _workdir(fh)
    fh.call("deep", {"levels": 1200})
    with pytest.raises(WorkerCrashed):
        fh.call("segfault")
    assert _workdir(fh) != workdir  # restarted, with a new directory
    assert not os.path.lexists(workdir)


def test_locked_dirs_fifos_sockets_odd_names_and_links_are_removed(make_host, write_set, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")
    fh = make_host()
    fh.load_function_set(write_set("builder", BUILDER))
    workdir = _workdir(fh)
    fh.call("hostile", {"outside": str(outside)})
    fh.close()
    assert not os.path.lexists(workdir)
    assert (outside / "keep").read_text() == "precious"  # links were not followed


def test_directories_without_permissions_are_removed_by_their_unprivileged_owner():
    """As an ordinary user (root reads anything anyway): directories without
    read, write or search bits, deep inside a deep tree."""
    base = tempfile.mkdtemp(prefix="fnhost-test-owner-")
    uid = 65534 if os.geteuid() == 0 else os.geteuid()
    os.chown(base, uid, uid)
    tree = os.path.join(base, "tree")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its status
        code = 1
        try:
            if os.geteuid() == 0:
                os.setgid(uid)
                os.setuid(uid)
            os.mkdir(tree)
            os.chdir(tree)
            for _ in range(1500):
                os.mkdir("d")
                os.chdir("d")
            os.makedirs("a/b")
            open("a/b/f", "w").close()
            os.chmod("a/b", 0)
            os.chmod("a", 0o100)
            os.chdir(tree)
            os.mkdir("no_read")
            open("no_read/f", "w").close()
            os.chmod("no_read", 0o300)
            os.chmod(tree, 0o500)
            os.chdir("/")
            code = 0 if remove_tree(tree) and not os.path.lexists(tree) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        remove_tree(base)


def _stale_dir(tmpdir: Path) -> Path:
    """A worker directory of a host that no longer exists (a pid above pid_max)."""
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    stale = tmpdir / f"fnhost-stale-{dead}-abc123"
    (stale / "scratch").mkdir(parents=True)
    return stale


def _start_a_host(tmpdir: Path, sets: Path) -> subprocess.CompletedProcess:
    """A new process starting a FunctionHost (which sweeps stale directories)."""
    program = textwrap.dedent(
        f"""
        import logging
        logging.basicConfig(level=logging.WARNING)
        from host import FunctionHost
        with FunctionHost(builtin_dir={str(sets)!r}, user_dirs=[]) as fh:
            fh.load_function_set({str(sets / "echo.py")!r})
            print(fh.call("echo", {{"x": 41}}) + 1)
        """
    )
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    return subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=50
    )


@pytest.fixture
def private_tmp(tmp_path: Path) -> tuple[Path, Path]:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    sets = tmp_path / "hostsets"
    sets.mkdir()
    (sets / "echo.py").write_text("def echo(x: int) -> int:\n    return x\n")
    return tmpdir, sets


def test_a_deep_stale_dir_is_swept_by_the_next_host(private_tmp):
    tmpdir, sets = private_tmp
    stale = _stale_dir(tmpdir)
    here = os.open(stale / "scratch", os.O_RDONLY)
    try:
        for _ in range(1200):
            os.mkdir("d", dir_fd=here)
            below = os.open("d", os.O_RDONLY, dir_fd=here)
            os.close(here)
            here = below
    finally:
        os.close(here)
    run = _start_a_host(tmpdir, sets)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "42"
    assert not stale.exists()


def test_a_stale_dir_that_cannot_be_removed_does_not_stop_a_host(private_tmp):
    tmpdir, sets = private_tmp
    stale = _stale_dir(tmpdir)
    pinned = stale / "scratch" / "pinned"
    pinned.write_text("x")
    if shutil.which("chattr") is None:
        pytest.skip("no chattr here")
    if subprocess.run(["chattr", "+i", str(pinned)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a file immutable here (needs CAP_LINUX_IMMUTABLE)")
    try:
        for _ in range(2):  # every later start too, not only the first
            run = _start_a_host(tmpdir, sets)
            assert run.returncode == 0, run.stderr
            assert run.stdout.strip() == "42"
            assert "could not remove" in run.stderr and stale.name in run.stderr
            assert pinned.exists()
    finally:
        subprocess.run(["chattr", "-i", str(pinned)], check=True)


def test_a_workdirs_usual_shape_goes_without_the_walk_and_anything_else_with_it(tmp_path):
    """``remove_workdir``: the capture files and an empty scratch are
    removed through the directory's fd; a scratch with contents, a link
    where a capture file was, or a link in place of the directory itself
    fall to ``remove_tree``, which never follows a link."""
    from host.launch.workdirs import remove_workdir

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")

    def workdir(name: str) -> Path:
        d = tmp_path / name
        (d / "scratch").mkdir(parents=True)
        (d / "stdout").write_text("out")
        (d / "stderr").write_text("err")
        return d

    usual = workdir("usual")
    assert remove_workdir(str(usual)) and not os.path.lexists(usual)
    full = workdir("full")
    (full / "scratch" / "made").mkdir()
    (full / "scratch" / "made" / "file").write_text("x")
    assert remove_workdir(str(full)) and not os.path.lexists(full)
    linked = workdir("linked")
    (linked / "stdout").unlink()
    (linked / "stdout").symlink_to(outside / "keep")
    (linked / "scratch").rmdir()
    (linked / "scratch").symlink_to(outside)
    assert remove_workdir(str(linked)) and not os.path.lexists(linked)
    swapped = tmp_path / "swapped"
    swapped.symlink_to(outside)
    assert remove_workdir(str(swapped)) and not os.path.lexists(swapped)
    assert remove_workdir(str(tmp_path / "never-made"))
    assert (outside / "keep").read_text() == "precious"
