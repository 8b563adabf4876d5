"""Hot reload: a changed set is swapped in when ready; a broken edit keeps the
last good version serving."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

import pytest

from host import Limits, LoadError, NameConflict, Sandbox

from .conftest import wait_for

V1 = '''
def greet(name: str) -> str:
    """Greet someone."""
    return "hello " + name


def old() -> int:
    return 1
'''

V2 = '''
def greet(name: str, punctuation: str = "!") -> str:
    """Greet someone, loudly."""
    return "HELLO " + name + punctuation


def new() -> int:
    return 2
'''

SLOW = """
import os


def slow(fifo: str) -> str:
    # Opening the fifo for reading meets the host's open for writing (the
    # host then knows this call runs); reading waits until the host writes.
    fd = os.open(fifo, os.O_RDONLY)
    try:
        os.read(fd, 1)
    finally:
        os.close(fd)
    return "v1 finished"
"""

QUICK = """
def slow(fifo: str) -> str:
    return "v2 finished"
"""


@pytest.fixture
def fifo():
    """A fifo every uid can open (tmp_path is 0700: out of sight of a
    worker with its own uid)."""
    directory = tempfile.mkdtemp(prefix="fnhost-test-fifo-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "gate")
    os.mkfifo(path)
    os.chmod(path, 0o666)
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def test_reload_swaps_in_the_new_version_and_reports_changes(fh, write_set):
    path = write_set("tools", V1)
    fh.load_function_set(path)
    assert fh.call("greet", {"name": "ann"}) == "hello ann"
    path.write_text(V2)
    changes = fh.reload("tools")
    assert changes == {"added": ["new"], "removed": ["old"], "changed": ["greet"]}
    assert fh.call("greet", {"name": "ann"}) == "HELLO ann!"
    assert fh.call("new") == 2
    assert "old" not in fh.schemas()
    assert fh.schemas()["greet"]["description"] == "Greet someone, loudly."


def test_broken_edit_keeps_the_last_good_version(fh, write_set):
    path = write_set("tools", V1)
    fh.load_function_set(path)
    pid = fh.function_sets["tools"]["pid"]
    path.write_text("def greet(:\n")
    with pytest.raises(LoadError) as info:
        fh.reload("tools")
    assert "SyntaxError" in str(info.value)
    assert fh.load_errors["tools"] is info.value
    assert fh.call("greet", {"name": "bob"}) == "hello bob"
    assert fh.function_sets["tools"]["pid"] == pid
    path.write_text(V2)
    fh.reload("tools")
    assert "tools" not in fh.load_errors


def test_calls_in_flight_finish_on_the_old_worker(fh, write_set, fifo):
    path = write_set("tools", SLOW)
    fh.load_function_set(path)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(fh.call("slow", {"fifo": fifo})))
    thread.start()
    gate = os.open(fifo, os.O_WRONLY)  # returns once the call runs and opened it
    try:
        path.write_text(QUICK)
        fh.reload("tools")
        # Not queued behind the old call: this one finishes while that one
        # still waits for the gate.
        assert fh.call("slow", {"fifo": fifo}) == "v2 finished"
        assert thread.is_alive() and result == []
        os.write(gate, b"x")
    finally:
        os.close(gate)
    thread.join(10)
    assert result == ["v1 finished"]


def test_reload_refuses_a_new_name_conflict(fh, write_set, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    fh.load_function_set(write_set("first", "def taken() -> int:\n    return 1\n"))
    path = write_set("second", V1, directory=other)
    fh.load_function_set(path)
    path.write_text(V1 + "\n\ndef taken() -> int:\n    return 2\n")
    with pytest.raises(NameConflict):
        fh.reload("second")
    assert fh.call("taken") == 1
    assert fh.call("greet", {"name": "x"}) == "hello x"


def test_watch_reloads_a_changed_file(make_host, write_set):
    fh = make_host(watch=True, watch_interval=0.05)
    path = write_set("tools", V1)
    fh.load_function_set(path)
    path.write_text(V2)  # at once: the stamp was taken when the set was loaded
    assert wait_for(lambda: "new" in fh.schemas(), 5.0)
    assert fh.call("new") == 2


@pytest.mark.parametrize("kind", ["fifo", "endless"])
def test_a_set_file_that_is_no_longer_a_regular_file_cannot_hang_the_host(
    make_host, write_set, tmp_path, kind
):
    """A set that may write its own directory can swap its file for a FIFO
    (whose open blocks) or a link to /dev/zero (whose read never ends). The
    host reads the file itself (its script block, the schema cache's key)
    on a reload and in the watcher: it refuses such a file and keeps the
    last good version; the watcher goes on to reload other sets."""
    fh = make_host(watch=True, watch_interval=0.05, schema_cache=tmp_path / "cache")
    path = write_set("tools", V1)
    other = write_set("others", "def welcome() -> int:\n    return 1\n")
    fh.load_function_set(path)
    fh.load_function_set(other)
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    with pytest.raises(LoadError):
        fh.reload("tools")
    assert fh.call("greet", {"name": "bob"}) == "hello bob"
    other.write_text("def welcome() -> int:\n    return 1\n\n\ndef newer() -> int:\n    return 2\n")
    assert wait_for(lambda: "newer" in fh.schemas(), 10.0)  # the watcher is not stuck


SELF_EDITING = """
import os

# At every import: append to its own file (its directory is writable to it).
with open(__file__, "a") as f:
    f.write("# touched\\n")


def ping() -> int:
    return os.getpid()
"""


def test_a_set_that_edits_its_own_file_as_it_loads_is_not_reloaded_in_a_loop(make_host):
    """Under watch, a set that rewrites its file at import would see its own
    edit on the next poll, reload, edit again...: a worker started per poll,
    each stopping another set's at max_live_workers. Its own load's edit is
    not a change for watch."""
    directory = tempfile.mkdtemp(prefix="fnhost-test-selfedit-")
    try:
        os.chmod(directory, 0o777)
        path = os.path.join(directory, "selfedit.py")
        with open(path, "w") as f:
            f.write(SELF_EDITING)
        os.chmod(path, 0o666)
        fh = make_host(
            watch=True,
            watch_interval=0.05,
            limits=Limits(sandbox=Sandbox(writable_paths=(directory,))),
        )
        fh.load_function_set(path)
        first = fh.call("ping")
        with open(path) as f:
            assert "# touched" in f.read()  # it did edit itself
        time.sleep(1.0)  # 20 polls
        assert fh.call("ping") == first  # the same worker: never reloaded
    finally:
        shutil.rmtree(directory, ignore_errors=True)
