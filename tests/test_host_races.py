"""Races and edge cases of the host's worker lifecycle, with real workers.

Each test was first written as a reproduction of a bug found in review and
failed then; it states the designed behaviour.
"""

from __future__ import annotations

import asyncio
import glob
import os
import resource
import shutil
import tempfile
import threading
import time

import pytest

import host.workers.call_path as call_path_mod
from host import (
    CallError,
    CallTimeout,
    FunctionHost,
    HostClosed,
    InvalidArguments,
    Limits,
    Sandbox,
    WorkerCrashed,
)

from .conftest import wait_for, worker_pids

CRASHY = """
import ctypes
import time


def echo(x: int) -> int:
    return x


def slow_echo(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


def segfault() -> None:
    ctypes.string_at(0)
"""

# Imports normally the first time; every later import (a restart) is slow or crashes.
RESTART = """
import ctypes
import os
import time

MARK = {mark!r}
if os.path.exists(MARK):
    {on_restart}
else:
    open(MARK, "w").close()


def echo(x: int) -> int:
    return x


def segfault() -> None:
    ctypes.string_at(0)
"""


def _handle(fh: FunctionHost, set_name: str):
    return fh._registry.sets[set_name].handle


# -- 1. stale start deadline of a background restart ---------------------------


def test_first_call_after_an_idle_background_restart_succeeds(make_host, write_set):
    """uses ``inc.started + start_timeout`` as the handshake
    deadline; a worker restarted in the background that sat idle longer than
    ``start_timeout`` is judged "did not finish importing" without the pipe
    being read (``wait`` returns at once for a past deadline) and SIGKILLed;
    the call then fails with WorkerCrashed ("had already exited when the call
    was sent"), although its ``ready`` message was waiting in the pipe."""
    fh = make_host(limits=Limits(timeout=10, start_timeout=1.0))
    fh.load_function_set(write_set("crashy", CRASHY))
    with pytest.raises(WorkerCrashed):
        fh.call("crashy.segfault")
    time.sleep(1.5)  # the background restart imported long ago and is idle
    assert fh.call("crashy.echo", {"x": 1}) == 1


# -- 2. a call that races the worker's death spins until its deadline ----------


def test_call_sent_while_the_worker_dies_fails_fast(make_host, write_set, monkeypatch):
    """The worker dies while a request is being encoded, unnoticed (nobody
    is reading): the call must fail with WorkerCrashed at once, never spin
    until its deadline. (Once the broken check and the registration were
    separate critical sections, and such a call hung.)

    The encoding is slowed down to hold the window open; a large argument
    being encoded while the worker is killed from outside hits the same one.
    The call has no timeout: one that hung would never return, and one that
    found the death late through a timeout would be a CallTimeout."""
    fh = make_host(limits=Limits(timeout=10))
    fh.load_function_set(write_set("crashy", CRASHY))
    crashed = threading.Event()
    real_encode = call_path_mod.encode_call

    def slow_encode(msgid, function, arguments, *rest):
        if function == "echo":
            crashed.wait(5)  # the worker dies while this request is being encoded
        return real_encode(msgid, function, arguments, *rest)

    monkeypatch.setattr(call_path_mod, "encode_call", slow_encode)
    outcome: list[object] = []

    def racer() -> None:
        try:
            outcome.append(fh.call("crashy.echo", {"x": 1}, timeout=None))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=racer)
    thread.start()
    time.sleep(0.1)  # the racer passed the broken check and is encoding
    os.kill(fh.function_sets["crashy"]["pid"], 9)  # as the OOM killer would
    time.sleep(0.1)
    crashed.set()
    thread.join(30)  # a guard against hanging the suite, not a measure
    assert not thread.is_alive(), "the call hung after its worker died"
    (result,) = outcome
    assert isinstance(result, WorkerCrashed), result
    assert result.signal == "SIGKILL"


# -- 3. close() blocked behind a large queued write ----------------------------


def test_close_is_not_blocked_by_a_large_argument_queued_behind_a_long_call(write_set, empty_dir):
    """begin_close -> Channel.notify -> _write takes ``_write_lock`` without a
    deadline (). A caller writing an argument larger than the pipe
    to a worker busy with another call holds that lock until the worker reads,
    so close() waits for the running call (forever with ``timeout=None``)
    instead of ``shutdown_grace``."""
    fh = FunctionHost(
        builtin_dir=empty_dir,
        user_dirs=[],
        limits=Limits(timeout=None, shutdown_grace=0.3),
    )
    try:
        fh.load_function_set(write_set("crashy", CRASHY))

        def swallow(fn, *a, **kw):
            try:
                fn(*a, **kw)
            except Exception:
                pass

        # Outlives pytest-timeout: a close() that waited for it would hang.
        busy = threading.Thread(
            target=swallow, args=(fh.call, "crashy.slow_echo", {"x": 1, "seconds": 600})
        )
        busy.start()
        time.sleep(0.2)
        big = threading.Thread(
            target=swallow, args=(fh.call, "crashy.echo", {"x": "a" * 4_000_000})
        )
        big.start()
        time.sleep(0.3)  # `big` is now blocked writing, holding the write lock
        fh.close()
        busy.join()
        big.join()
    finally:
        fh.close()
        assert wait_for(lambda: not worker_pids(), 5.0)


# -- 4. a resumed acall attaches fds of a closed (and reused) channel -----------


def test_acall_resumed_after_close_raises_host_closed(make_host, write_set):
    """+ acall gets an incarnation
    from ``to_thread``; by the time the task resumes, close() has closed that
    channel's fds. ``_attach`` registers the stale fd numbers with the loop
    (it does not check ``_fds_closed``): ``add_reader`` fails with EBADF and an
    OSError escapes instead of a CallError."""
    fh = make_host()
    fh.load_function_set(write_set("crashy", CRASHY))
    with pytest.raises(WorkerCrashed):
        fh.call("crashy.segfault")
    handle = _handle(fh, "crashy")

    async def main() -> object:
        task = asyncio.create_task(fh.acall("crashy.echo", {"x": 1}))
        await asyncio.sleep(0)  # the task is in to_thread(ready_incarnation)
        # The loop is busy (a blocking step) while that thread finishes.
        assert wait_for(lambda: handle.current.ready is not None, 5)
        time.sleep(0.2)
        fh.close()
        return await task

    with pytest.raises(CallError):
        asyncio.run(main())


def test_stale_acall_does_not_unregister_the_new_workers_readers(make_host, write_set):
    """Same root cause: the stale channel's fd numbers now belong to the
    restarted worker's channel. The stale task's ``_attach`` replaces that
    channel's reader callbacks on the loop and its ``_detach`` removes them,
    so another task's reply is never read: it times out and its healthy
    worker is killed."""
    fh = make_host()
    fh.load_function_set(write_set("crashy", CRASHY))
    with pytest.raises(WorkerCrashed):
        fh.call("crashy.segfault")
    handle = _handle(fh, "crashy")

    async def main() -> list[object]:
        stale = asyncio.create_task(fh.acall("crashy.echo", {"x": 1}))
        await asyncio.sleep(0)  # in to_thread(ready_incarnation)
        # While the loop is busy: that thread returns incarnation I1; I1 dies
        # and is replaced by I2 (restarted and handshaken by a sync caller).
        assert wait_for(lambda: handle.current.ready is not None, 5)
        time.sleep(0.2)
        # (A call cannot crash it now: the stale task holds the set's turn.
        # The worker dies from outside instead, and is replaced.)
        first = handle.current
        os.kill(first.proc.pid, 9)
        first.channel.wait(first.channel.exit, time.monotonic() + 5)
        assert wait_for(lambda: handle.current is not first, 5)
        handle.ready_incarnation("echo", None)  # the replacement is ready
        fresh = asyncio.create_task(
            fh.acall("crashy.slow_echo", {"x": 3, "seconds": 0.3}, timeout=3)
        )
        return await asyncio.gather(stale, fresh, return_exceptions=True)

    stale_outcome, fresh_outcome = asyncio.run(main())
    # The stale call never reached the dead worker: it went to the new one.
    assert stale_outcome == 1, repr(stale_outcome)
    assert fresh_outcome == 3, repr(fresh_outcome)


# -- 5. spawn failure: LoadError escapes call(), temp dir leaks ---------------


def test_spawn_failure_raises_call_error_and_leaves_no_tempdir(make_host, write_set):
    """creates the work dir and the pipes before the
    ``try`` that cleans up, so EMFILE from ``os.pipe()`` leaks the directory;
    calls ``_replace`` outside the ``try`` that turns
    ``LoadError`` into ``WorkerCrashed``, so ``call()`` raises ``LoadError``
    (not a CallError)."""
    fh = make_host()
    fh.load_function_set(write_set("crashy", CRASHY))
    pattern = os.path.join(tempfile.gettempdir(), "fnhost-crashy-*")
    before = set(glob.glob(pattern))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    outcome: object = None
    leaked: set[str] = set()
    try:
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 32, hard))
        try:
            while True:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        with pytest.raises(WorkerCrashed):
            fh.call("crashy.segfault")
        time.sleep(0.3)  # the background restart fails too
        try:
            outcome = fh.call("crashy.echo", {"x": 1})
        except BaseException as exc:  # noqa: BLE001
            outcome = exc
        leaked = set(glob.glob(pattern)) - before
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    for d in leaked:
        shutil.rmtree(d, ignore_errors=True)
    problems = []
    if not isinstance(outcome, CallError):
        problems.append(f"call() raised {outcome!r}")
    if leaked:
        problems.append(f"work dirs left behind: {sorted(leaked)}")
    assert not problems, problems


# -- 6. timeouts overshot by a restart's import ------------------------------


def _gated(tmp_path) -> tuple[str, str]:
    """``on_restart`` code that marks the restart's import as begun, then
    waits until the test creates the gate; the gate's path."""
    begun, gate = str(tmp_path / "begun"), str(tmp_path / "gate")
    code = (
        f"open({begun!r}, 'w').close()\n"
        f"    while not os.path.exists({gate!r}):\n"
        "        time.sleep(0.01)"
    )
    return code, gate


def test_call_timeout_covers_a_slow_restart(make_host, write_set, tmp_path):
    """a call's handshake with a restarted worker waits
    ``start_timeout`` (under the handle lock), not the call's deadline: a call
    with timeout=0.5 returns after the restart's import. The import waits
    for a gate opened only after the call: a call that waited for it would
    hang (pytest-timeout; start_timeout is longer)."""
    mark = str(tmp_path / "mark")
    on_restart, gate = _gated(tmp_path)
    limits = Limits(timeout=10, start_timeout=120, sandbox=Sandbox(writable_paths=(tmp_path,)))
    fh = make_host(limits=limits)
    fh.load_function_set(write_set("slow", RESTART.format(mark=mark, on_restart=on_restart)))
    with pytest.raises(WorkerCrashed):
        fh.call("slow.segfault")
    try:
        with pytest.raises(CallTimeout):
            fh.call("slow.echo", {"x": 1}, timeout=0.5)
        assert not os.path.exists(gate)
    finally:
        open(gate, "w").close()
    assert fh.call("slow.echo", {"x": 2}) == 2  # the restart completes and serves


def test_close_is_not_delayed_by_a_restart_handshake(make_host, write_set, tmp_path):
    """begin_close takes the handle lock, which a caller holds while it waits for
    a restarted worker's handshake (up to start_timeout): close() overshoots
    shutdown_grace by the restart's import time. Here the import waits for a
    gate opened only after close(): a close() that waited for it would hang."""
    mark = str(tmp_path / "mark")
    on_restart, gate = _gated(tmp_path)
    limits = Limits(
        timeout=10,
        start_timeout=120,
        shutdown_grace=0.3,
        sandbox=Sandbox(writable_paths=(tmp_path,)),
    )
    fh = make_host(limits=limits)
    fh.load_function_set(write_set("slow", RESTART.format(mark=mark, on_restart=on_restart)))
    with pytest.raises(WorkerCrashed):
        fh.call("slow.segfault")
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            fh.call("slow.echo", {"x": 1})
        except CallError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        assert wait_for(lambda: os.path.exists(str(tmp_path / "begun")))
        time.sleep(0.3)  # the caller holds the handle lock, waiting for `ready`
        fh.close()
        assert not os.path.exists(gate)  # closed while the restart still imported
        caller.join()
    finally:
        open(gate, "w").close()
    assert [type(exc) for exc in outcome] == [HostClosed]


# -- 7. crash-loop deaths counted twice --------------------------------------


def test_failed_restart_counts_as_one_death(make_host, write_set, tmp_path):
    """A restart that crashes while importing is recorded twice: by
    ``_on_broken`` () and again by ``ready_incarnation``
    (). With crash_limit=3, two deaths already park."""
    mark = str(tmp_path / "mark")
    fh = make_host(
        limits=Limits(
            timeout=10, crash_limit=3, crash_window=30, sandbox=Sandbox(writable_paths=(tmp_path,))
        )
    )
    fh.load_function_set(
        write_set("dies", RESTART.format(mark=mark, on_restart="ctypes.string_at(0)"))
    )
    with pytest.raises(WorkerCrashed):
        fh.call("dies.segfault")  # death 1
    with pytest.raises(WorkerCrashed) as first:
        fh.call("dies.echo", {"x": 1})  # the restart dies at import: death 2
    assert "could not be restarted" in str(first.value)
    with pytest.raises(WorkerCrashed) as second:
        fh.call("dies.echo", {"x": 1})  # should try again: only 2 of 3 deaths
    assert "parked" not in str(second.value), str(second.value)


# -- 8. non-CallError exceptions from argument/timeout handling ---------------


def test_deeply_nested_json_arguments_are_invalid_arguments(make_host, write_set):
    """catches ValueError only; json.loads raises
    RecursionError on deep nesting (model-supplied text)."""
    fh = make_host()
    fh.load_function_set(write_set("crashy", CRASHY))
    with pytest.raises(InvalidArguments):
        fh.call("crashy.echo", "[" * 100_000)


def test_infinite_and_huge_timeouts_mean_no_deadline(make_host, write_set):
    """timeout=inf means no deadline; a timeout beyond poll()'s range (about
    24.8 days) is capped instead of overflowing."""
    fh = make_host()
    fh.load_function_set(write_set("crashy", CRASHY))
    assert fh.call("crashy.echo", {"x": 1}, timeout=float("inf")) == 1
    assert fh.call("crashy.echo", {"x": 2}, timeout=1e12) == 2
