"""Every write right Landlock claims, attacked from a worker against a
directory outside its scratch dir.

With ``Sandbox(own_uid=False, private_namespaces=False)`` the worker runs as
the host's uid without a read-only view, so the directory's own permissions
(0777, its files 0666) let every attack through: Landlock alone stands, and
each attack must meet its ``EACCES``. Dropping any one right from
``worker/landlock.py`` changes an outcome: the attack on it succeeds (a
device node fails later, with ``EPERM``, for want of ``CAP_MKNOD``), and
without the "refer" right even moves within scratch fail. With the default
policy the read-only view comes first (``EROFS``).

Every attack leaves the host's side as it was, checked from the host.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from host import Limits, Sandbox
from worker.landlock import abi_version

LANDLOCK_ALONE = Sandbox(own_uid=False, private_namespaces=False)

ATTACKS = r"""
import errno
import os
import shutil
import socket
import stat


def _outcome(fn) -> str:
    try:
        fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "done"


def _in_scratch(name: str) -> str:
    path = os.path.join(os.getcwd(), name)
    with open(path, "w") as f:
        f.write("from scratch")
    return path


def _bind(path: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)


def _lay_out(target: str) -> None:
    shutil.rmtree(target, ignore_errors=True)
    os.mkdir(target)
    with open(os.path.join(target, "file"), "w") as f:
        f.write("original")
    os.mkdir(os.path.join(target, "subdir"))


def attack(target: str, fresh: bool = False) -> dict:
    # Each write right against ``target`` (holding ``file`` and an empty
    # ``subdir``, laid out anew before each attack if ``fresh``); what each
    # ended with.
    f = os.path.join(target, "file")
    sub = os.path.join(target, "subdir")

    def there(name):
        return os.path.join(target, name)

    def here(name):
        return os.path.join(os.getcwd(), name)

    def open_close(path, flags):
        return lambda: os.close(os.open(path, flags, 0o644))

    attacks = {
        # Read-only: Landlock checks only the creation, not a write right.
        "create": open_close(there("new"), os.O_CREAT | os.O_RDONLY),
        "write": open_close(f, os.O_WRONLY | os.O_APPEND),
        # Read-only too: only the truncate right stands in the way.
        "truncate_on_open_read_only": open_close(f, os.O_RDONLY | os.O_TRUNC),
        "truncate_on_open_for_writing": open_close(f, os.O_WRONLY | os.O_TRUNC),
        "truncate_path": lambda: os.truncate(f, 0),
        "rename_within": lambda: os.rename(f, there("renamed")),
        "rename_into_subdir": lambda: os.rename(f, os.path.join(sub, "moved")),
        "rename_out_to_scratch": lambda: os.rename(f, here("taken")),
        "rename_dir_out_to_scratch": lambda: os.rename(sub, here("taken_dir")),
        "rename_in_from_scratch": lambda: os.rename(_in_scratch("planted"), there("planted")),
        "unlink": lambda: os.unlink(f),
        "rmdir": lambda: os.rmdir(sub),
        "mkdir": lambda: os.mkdir(there("newdir")),
        "mkfifo": lambda: os.mkfifo(there("fifo")),
        "bind_unix_socket": lambda: _bind(there("sock")),
        "mknod_char": lambda: os.mknod(there("null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3)),
        "mknod_block": lambda: os.mknod(there("loop"), 0o600 | stat.S_IFBLK, os.makedev(7, 0)),
        "symlink": lambda: os.symlink("/etc/passwd", there("link")),
        "hardlink_within": lambda: os.link(f, there("hard")),
        "hardlink_in_from_scratch": lambda: os.link(_in_scratch("linked"), there("linked")),
        "hardlink_out_to_scratch": lambda: os.link(f, here("hard_out")),
    }
    outcomes = {}
    for name, fn in attacks.items():
        if fresh:
            _lay_out(target)
        outcomes[name] = _outcome(fn)
    return outcomes
"""

ALL_ATTACKS = (
    "create",
    "write",
    "truncate_on_open_read_only",
    "truncate_on_open_for_writing",
    "truncate_path",
    "rename_within",
    "rename_into_subdir",
    "rename_out_to_scratch",
    "rename_dir_out_to_scratch",
    "rename_in_from_scratch",
    "unlink",
    "rmdir",
    "mkdir",
    "mkfifo",
    "bind_unix_socket",
    "mknod_char",
    "mknod_block",
    "symlink",
    "hardlink_within",
    "hardlink_in_from_scratch",
    "hardlink_out_to_scratch",
)
CROSSING_INTO_SCRATCH = (
    "rename_out_to_scratch",
    "rename_dir_out_to_scratch",
    "rename_in_from_scratch",
    "hardlink_in_from_scratch",
    "hardlink_out_to_scratch",
)
# The same attacks on a directory inside scratch all go through (which
# shows the refusals come from where the target is), except device nodes:
# making one needs CAP_MKNOD in the host's user namespace.
IN_SCRATCH = dict.fromkeys(ALL_ATTACKS, "done") | {"mknod_char": "EPERM", "mknod_block": "EPERM"}


@pytest.fixture
def target():
    """A directory outside every worker's scratch dir that any uid could
    write to by its mode alone (tmp_path is 0700: out of sight of a worker
    with its own uid), holding a file and an empty subdirectory."""
    path = tempfile.mkdtemp(prefix="fnhost-test-target-")
    os.chmod(path, 0o777)
    with open(os.path.join(path, "file"), "w") as f:
        f.write("original")
    os.chmod(os.path.join(path, "file"), 0o666)
    os.mkdir(os.path.join(path, "subdir"))
    os.chmod(os.path.join(path, "subdir"), 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _snapshot(root: str) -> dict[str, tuple]:
    """Every entry beneath ``root``: mode, size, inode, content."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            content = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
            seen[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_ino, content)
    return seen


def _attack(make_host, write_set, target: str, sandbox: Sandbox) -> tuple[dict, dict, dict]:
    """The attacks on ``target``, the same in scratch, and the report."""
    fh = make_host(limits=Limits(timeout=10.0, sandbox=sandbox))
    fh.load_function_set(write_set("attacks", ATTACKS))
    outside = fh.call("attack", {"target": target})
    inside = fh.call("attack", {"target": "copy-in-scratch", "fresh": True})
    return outside, inside, fh.protections("attacks")


@pytest.mark.skipif(abi_version() < 3, reason="Landlock confines truncation from ABI 3")
def test_landlock_alone_refuses_every_write_right_outside_scratch(make_host, write_set, target):
    before = _snapshot(target)
    outside, inside, report = _attack(make_host, write_set, target, LANDLOCK_ALONE)
    # Landlock is what stands: no own uid, no read-only view.
    assert report["landlock"] is True
    assert report["writes_confined"] is True
    assert report["own_uid"] is False
    assert report["read_only_view"] is False
    expected = dict.fromkeys(ALL_ATTACKS, "EACCES")
    # Linking the protected file into scratch, where it would be writable,
    # is refused as a reparenting (Landlock's "refer" right): EXDEV.
    expected["hardlink_out_to_scratch"] = "EXDEV"
    assert outside == expected
    assert _snapshot(target) == before
    assert inside == IN_SCRATCH


def test_the_default_sandbox_refuses_every_write_right_outside_scratch(
    make_host, write_set, target
):
    before = _snapshot(target)
    outside, inside, report = _attack(make_host, write_set, target, Sandbox())
    if not (report["read_only_view"] or report["writes_confined"]):
        pytest.skip("neither a read-only view nor Landlock ABI 3 here")
    assert set(outside) == set(ALL_ATTACKS)
    refused = dict.fromkeys(ALL_ATTACKS, {"EROFS", "EACCES"})
    if report["scratch_tmpfs"]:
        # Scratch is a mount of its own: moving or linking between it and
        # the target is EXDEV before any permission is looked at.
        for name in CROSSING_INTO_SCRATCH:
            refused[name] = {"EROFS", "EACCES", "EXDEV"}
    assert {name: got for name, got in outside.items() if got not in refused[name]} == {}
    assert _snapshot(target) == before
    assert inside == IN_SCRATCH
