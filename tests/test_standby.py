"""A set's standby (host/workers/standby.py): after a crash, a second
worker is kept confined and probed, without the set imported, and the next
restart takes it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from host import Limits, WorkerCrashed
from host.launch.launcher import Launcher, WorkerSpec
from host.workers.worker_handle import WorkerHandle
from protocol import Notification, ProtocolViolation, Request, Verb
from protocol.conversation import ConversationMisuse
from protocol.worker_conversation import WorkerConversation

from .conftest import both_start_methods, standby_pids, wait_for, worker_pids

SET = """
import ctypes
import os
import time

IMPORTED_AT = time.time()


def crash() -> None:
    ctypes.string_at(0)


def imported_at() -> float:
    return IMPORTED_AT


def pid() -> int:
    return os.getpid()


def version() -> int:
    return 1


def nap(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()
"""


def _crash(fh, name: str = "s") -> None:
    with pytest.raises(WorkerCrashed):
        fh.call(f"{name}.crash")


def _with_standby(make_host, write_set, **limits):
    fh = make_host(limits=Limits(crash_limit=100, **limits))
    path = write_set("s", SET)
    fh.load_function_set(path)
    _crash(fh)
    fh.call("s.version")
    assert wait_for(lambda: len(standby_pids()) == 1, 5.0), "no standby after a crash"
    return fh, path


@both_start_methods
@pytest.mark.timeout(60)
def test_a_crash_leaves_a_standby_that_the_next_restart_takes(make_host, write_set):
    fh = make_host(limits=Limits(crash_limit=100))
    fh.load_function_set(write_set("s", SET))
    fh.call("s.version")
    time.sleep(0.3)
    assert standby_pids() == set()  # none before a death
    _crash(fh)
    fh.call("s.version")
    assert wait_for(lambda: len(standby_pids()) == 1, 5.0)
    (standby,) = standby_pids()
    assert standby not in worker_pids()
    crashed_at = time.time()
    _crash(fh)
    # The restart took the standby: the same process serves now, and it
    # imported the set only then, not while it waited.
    assert fh.call("s.pid") == standby
    assert fh.call("s.imported_at") >= crashed_at
    # ... and a new standby is kept for the next one.
    assert wait_for(lambda: len(standby_pids()) == 1 and standby not in standby_pids(), 5.0)
    assert worker_pids() == {standby}


@pytest.mark.timeout(60)
def test_a_standby_imports_the_set_as_it_is_at_the_restart(make_host, write_set):
    fh, path = _with_standby(make_host, write_set)
    path.write_text(path.read_text().replace("return 1", "return 2"))
    _crash(fh)
    assert fh.call("s.version") == 2


@pytest.mark.timeout(60)
def test_a_standby_killed_from_outside_is_no_crash_of_the_set(make_host, write_set):
    # crash_limit=3: two crashes count two; the standby's death, were it
    # counted at the second restart (which finds it dead), would park the set.
    fh = make_host(limits=Limits(crash_limit=3, crash_window=60.0))
    fh.load_function_set(write_set("s", SET))
    _crash(fh)
    fh.call("s.version")
    assert wait_for(lambda: len(standby_pids()) == 1, 5.0)
    (standby,) = standby_pids()
    os.kill(standby, signal.SIGKILL)
    assert wait_for(lambda: standby not in standby_pids(), 5.0)
    _crash(fh)
    assert fh.call("s.version") == 1


@pytest.mark.timeout(60)
def test_a_restart_whose_standby_died_starts_a_fresh_worker(make_host, write_set):
    fh, _ = _with_standby(make_host, write_set)
    (standby,) = standby_pids()
    os.kill(standby, signal.SIGKILL)
    assert wait_for(lambda: standby not in standby_pids(), 5.0)
    _crash(fh)
    pid = fh.call("s.pid")
    assert pid != standby
    assert worker_pids() == {pid}


@pytest.mark.timeout(60)
def test_an_idle_stop_drops_the_standby(make_host, write_set):
    fh, _ = _with_standby(make_host, write_set, idle_timeout=0.5)
    assert wait_for(lambda: not worker_pids() and not standby_pids(), 10.0)
    assert fh.call("s.version") == 1  # started again on a call
    time.sleep(0.3)
    assert standby_pids() == set()  # an idle stop is no death: no standby


@pytest.mark.timeout(60)
def test_a_standby_is_started_only_where_max_live_workers_has_room(make_host, write_set):
    fh = make_host(limits=Limits(crash_limit=100), max_live_workers=2, on_conflict="prefix")
    fh.load_function_set(write_set("s", SET))
    fh.load_function_set(write_set("other", SET))
    other = fh.call("other.pid")
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(fh.call, "other.nap", {"seconds": 1.5})  # not idle: not stopped
        time.sleep(0.2)
        _crash(fh)
        fh.call("s.version")
        time.sleep(0.5)  # a standby would have started by now (STANDBY_DELAY 50 ms)
        assert standby_pids() == set()  # s's worker and other's fill the cap
        assert busy.result() == other  # and other's worker was never stopped for it


@pytest.mark.timeout(60)
def test_close_stops_the_standby(make_host, write_set):
    fh, _ = _with_standby(make_host, write_set)
    fh.close()
    # make_host's teardown checks every process is gone; here, at once.
    assert standby_pids() == set()


# -- the worker's end of the wait (sans-I/O) ------------------------------------


def test_a_standby_goes_on_only_on_load():
    conversation = WorkerConversation()
    with pytest.raises(ConversationMisuse):
        conversation.load_received(Notification(Verb.LOAD, {}))  # before probed
    conversation.probed_sent()
    assert conversation.load_received(Notification(Verb.LOAD, {})) is True
    assert conversation.load_received(Notification(Verb.SHUTDOWN, {})) is False
    assert conversation.load_received(None) is False
    with pytest.raises(ProtocolViolation):
        conversation.load_received(Request(1, Verb.CALL, {"function": "f", "arguments": {}}))


@pytest.mark.timeout(60)
def test_a_standby_does_not_serve_a_file_replaced_since_its_spawn(make_host, write_set, sets_dir):
    # A directory others may not search: the file alone is cloned into a
    # worker's view at its spawn. Renamed over (an editor's save, a deploy),
    # the standby's clone would still be the old file; the restart must
    # import the new one.
    sets_dir.chmod(0o700)
    fh, path = _with_standby(make_host, write_set)
    new = write_set("s_new", SET.replace("return 1", "return 2"))
    os.replace(new, path)
    _crash(fh)
    assert fh.call("s.version") == 2


@pytest.mark.timeout(60)
def test_a_standby_whose_import_fails_is_one_death_not_two(make_host, write_set):
    # crash_limit=4: one crash, a second one, then a restart whose import
    # fails: three deaths. Had the failed standby been followed by a fresh
    # worker importing the broken file again, a fourth would park the set.
    fh = make_host(limits=Limits(crash_limit=4, crash_window=60.0))
    path = write_set("s", SET)
    fh.load_function_set(path)
    _crash(fh)
    fh.call("s.version")
    assert wait_for(lambda: len(standby_pids()) == 1, 5.0)
    path.write_text("raise RuntimeError('broken')\n")
    _crash(fh)
    with pytest.raises(WorkerCrashed, match="broken"):
        fh.call("s.version")
    with pytest.raises(WorkerCrashed) as second:
        fh.call("s.version")
    assert (second.value.details or {}).get("cause") != "parked"


@contextlib.contextmanager
def _loaded_handle(spec: WorkerSpec, launcher: Launcher) -> Iterator[WorkerHandle]:
    """A set's handle on ``launcher`` (no host around it), loaded; closed,
    with its launcher, after."""
    handle = WorkerHandle(spec, launcher)
    try:
        handle.wait_loaded()
        yield handle
    finally:
        handle.begin_close()
        handle.finish_close(time.monotonic() + 2.0)
        launcher.close()


class _RespecDuringStandbySpawn(Launcher):
    """A real launcher that, once, runs the handle's ``respec`` right after a
    standby's process is spawned and before the handle publishes it: a
    reload's respec on its own thread (it takes no lock) at that moment."""

    handle: WorkerHandle | None = None
    respec_to: WorkerSpec | None = None

    def spawn(self, spec: WorkerSpec, standby: bool = False):
        proc = super().spawn(spec, standby)
        if standby and self.handle is not None and self.respec_to is not None:
            new, self.respec_to = self.respec_to, None
            self.handle.respec(new)
        return proc


@pytest.mark.timeout(60)
def test_a_respec_during_a_standby_spawn_leaves_no_standby_of_the_old_spec(write_set):
    path = write_set("s", SET + "\n\ndef mark() -> str:\n    return os.environ.get('MARK', '')\n")
    spec = WorkerSpec("s", str(path), None, Limits(crash_limit=100), env={"MARK": "old"})
    launcher = _RespecDuringStandbySpawn()
    with _loaded_handle(spec, launcher) as handle:
        launcher.handle = handle
        launcher.respec_to = dataclasses.replace(spec, env={"MARK": "new"})
        with pytest.raises(WorkerCrashed):
            handle.call("crash", {}, 10.0)
        handle.call("version", {}, 10.0)  # ready: the standby is spawned after
        assert wait_for(lambda: launcher.respec_to is None, 5.0)
        assert wait_for(lambda: not standby_pids(), 5.0)
        with pytest.raises(WorkerCrashed):
            handle.call("crash", {}, 10.0)
        assert handle.call("mark", {}, 10.0).value == "new"


@pytest.mark.timeout(60)
def test_making_room_drops_a_standby_before_an_idle_worker(make_host, write_set):
    # s's worker and its standby fill the cap of 2; other's start needs one
    # place: the standby's, not s's serving worker (which took its standby
    # with it when it was evicted).
    fh = make_host(limits=Limits(crash_limit=100), max_live_workers=2, on_conflict="prefix")
    fh.load_function_set(write_set("s", SET))
    fh.load_function_set(write_set("other", SET))
    _crash(fh)
    serving = fh.call("s.pid")
    assert wait_for(lambda: len(standby_pids()) == 1, 5.0)
    fh.call("other.version")
    assert standby_pids() == set()
    assert fh.call("s.pid") == serving


@pytest.mark.timeout(60)
def test_a_standby_killed_from_outside_no_longer_counts_as_live(write_set):
    spec = WorkerSpec("s", str(write_set("s", SET)), None, Limits(crash_limit=100))
    with _loaded_handle(spec, Launcher()) as handle:
        with pytest.raises(WorkerCrashed):
            handle.call("crash", {}, 10.0)
        handle.call("version", {}, 10.0)
        assert wait_for(lambda: len(standby_pids()) == 1, 5.0)
        assert wait_for(lambda: handle.live_processes == 2, 5.0)
        (standby,) = standby_pids()
        os.kill(standby, signal.SIGKILL)
        # Counted under max_live_workers, a dead standby would take a place.
        assert wait_for(lambda: handle.live_processes == 1, 5.0)


@pytest.mark.timeout(60)
def test_limits_standby_false_keeps_none(make_host, write_set):
    fh = make_host(limits=Limits(crash_limit=100, standby=False))
    fh.load_function_set(write_set("s", SET))
    for _ in range(2):
        _crash(fh)
        assert fh.call("s.version") == 1
        time.sleep(0.5)  # a standby would have started by now (STANDBY_DELAY 50 ms)
        assert standby_pids() == set()
