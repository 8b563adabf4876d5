"""Hot reload: a changed set is swapped in when ready; a broken edit keeps the
last good version serving."""

from __future__ import annotations

import threading
import time

import pytest

from host import LoadError, NameConflict

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
import time


def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "v1 finished"
"""


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


def test_calls_in_flight_finish_on_the_old_worker(fh, write_set):
    path = write_set("tools", SLOW)
    fh.load_function_set(path)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(fh.call("slow", {"seconds": 0.5})))
    thread.start()
    time.sleep(0.1)
    path.write_text(SLOW.replace("v1 finished", "v2 finished"))
    fh.reload("tools")
    assert fh.call("slow", {"seconds": 0}) == "v2 finished"  # not queued behind the old call
    thread.join(5)
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
