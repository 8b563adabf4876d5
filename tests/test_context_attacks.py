"""The context door under attack: a hostile set, a careless embedder.

``tests/test_context.py`` covers the door's basics (the allow-list, forged
requests, timeouts). These tests are a hostile review's findings: each
asserts what the door promises (``docs/context.md``: the host object is
touched only by the requests a function makes; a refusal is an error
inside the worker; a worker that misbehaves costs only its own call, never
a hang for other sets) in a case where it did not hold.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pydantic
import pytest

from host import HostClosed, Limits, NameConflict, ProtocolError

PLAIN = '''
def plain() -> str:
    """Uses no context."""
    return "plain"


def read(self, path: str) -> str:
    """Read one exposed attribute (a dotted path), or say what was raised."""
    try:
        value = self
        for part in path.split("."):
            value = getattr(value, part)
        return repr(value)
    except Exception as exc:
        return f"caught {type(exc).__name__}"


def call(self, name: str) -> str:
    """Call one exposed method, or say what was raised."""
    try:
        return repr(getattr(self, name)())
    except Exception as exc:
        return f"caught {type(exc).__name__}"
'''


class Watched:
    """A context whose property counts its reads (a getter with a side
    effect: an agent's ``next_message`` that pops a queue, say)."""

    def __init__(self) -> None:
        self.reads = 0

    @property
    def pending_message(self) -> str:
        self.reads += 1
        return f"message {self.reads}"

    @property
    def not_ready(self) -> str:
        raise RuntimeError("the agent is not ready")


def test_a_call_that_asks_nothing_runs_no_getter_of_the_context(fh, write_set):
    """The door's description for the worker (which paths are methods) is
    computed per call by reading every exposed path: a property's getter
    runs on the host for each call, even one that never touches its context."""
    watched = Watched()
    fh.load_function_set(write_set("watched", PLAIN), context=watched, expose=["pending_message"])
    assert fh.call("plain") == "plain"
    assert watched.reads == 0
    assert fh.call("read", {"path": "pending_message"}) == "'message 1'"
    assert watched.reads == 1


def test_an_exposed_property_that_raises_fails_only_the_reads_of_it(fh, write_set):
    """A getter raising anything but ``AttributeError`` fails every call of
    the set before it is sent (here a bare ``RuntimeError`` out of
    ``fh.call``; a ``ValueError`` becomes ``InvalidArguments``)."""
    fh.load_function_set(write_set("watched", PLAIN), context=Watched(), expose=["not_ready"])
    assert fh.call("plain") == "plain"
    assert fh.call("read", {"path": "not_ready"}) == "caught RuntimeError"


class Big:
    def text(self) -> str:
        return "x" * (3 << 20)  # more than the worker reads with max_argument_mb=1


def test_an_answer_larger_than_the_worker_accepts_is_an_error_inside_the_function(
    make_host, write_set
):
    """The host sends any answer; the worker refuses a frame over its request
    limit (``max_argument_mb`` + headroom) as a protocol violation by the
    host and exits: the call is ``WorkerCrashed`` instead of an exception
    the function can catch, like the one ``ask`` raises for a request over
    ``max_result_mb``."""
    fh = make_host(limits=Limits(timeout=10.0, max_argument_mb=1))
    fh.load_function_set(write_set("big", PLAIN), context=Big(), expose=["text"])
    pid = fh.function_sets["big"]["pid"]
    assert fh.call("call", {"name": "text"}) == "caught ValueError"
    assert fh.function_sets["big"]["pid"] == pid


class Exiting:
    def exit(self) -> None:
        raise SystemExit(3)

    async def cancelled(self) -> None:
        raise asyncio.CancelledError


@pytest.mark.parametrize("method", ["exit", "cancelled"])
def test_a_host_method_raising_a_base_exception_is_answered(fh, write_set, method):
    """``answer`` catches ``Exception`` only: a ``SystemExit`` (or an async
    host method's ``CancelledError``, re-raised by ``asyncio.run`` in a sync
    call) ends the answering thread with no answer sent, and the call waits
    for its timeout (for ever with ``timeout=None``)."""
    fh.load_function_set(write_set("exiting", PLAIN), context=Exiting(), expose=[method])
    assert fh.call("call", {"name": method}, timeout=10) == "caught ContextError"


class Agent:
    def __init__(self, name: str) -> None:
        self.name = name
        self.secret = f"secret of {name}"


def test_a_refused_load_leaves_the_loaded_sets_door_as_it_was(fh, write_set, tmp_path):
    """``load_function_set`` records the door before loading: a load refused
    with ``NameConflict`` (the name is another source's) has already given
    the loaded set the refused load's context and allow-list."""
    first, second = Agent("first"), Agent("second")
    fh.load_function_set(write_set("tools", PLAIN), context=first, expose=["name"])
    other = tmp_path / "other.py"
    other.write_text("def other() -> str:\n    return 'other'\n")
    with pytest.raises(NameConflict):
        fh.load_function_set(other, name="tools", context=second, expose=["name", "secret"])
    assert fh.function_sets["tools"]["exposed"] == ["name"]
    assert fh.call("read", {"path": "name"}) == "'first'"
    assert fh.call("read", {"path": "secret"}) == "caught AttributeError"


MEMORY = '''
def send_message(self, message: str) -> str:
    """Send a message through the agent."""
    self.say(message)
    return "sent"
'''

ADD = '''
def add(a: int, b: int) -> int:
    """Add."""
    return a + b
'''


class Speaker:
    def __init__(self) -> None:
        self.said: list[str] = []

    def say(self, message: str) -> None:
        self.said.append(message)


def _tool_call(call_id: str, name: str, arguments: dict) -> dict:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


def test_dispatch_with_a_context_runs_the_tools_of_sets_without_a_door(fh, write_set):
    """An agent server dispatches the model's tool calls with its agent as
    the context; the calls to a set loaded without ``expose`` (plain user
    tools) each raise ``ValueError`` in ``_prepare``, reported to the model
    as "an internal error in the tool host" and logged as a host bug."""
    speaker = Speaker()
    fh.load_function_set(write_set("memory", MEMORY), expose=["say"])
    fh.load_function_set(write_set("maths", ADD))
    calls = [
        _tool_call("1", "send_message", {"message": "hi"}),
        _tool_call("2", "add", {"a": 1, "b": 2}),
    ]
    results = fh.dispatch(calls, context=speaker)
    assert [r["content"] for r in results] == ["sent", "3"]
    assert speaker.said == ["hi"]


@dataclasses.dataclass
class Profile:
    name: str
    _api_key: str


class WithProfile:
    def __init__(self) -> None:
        self.profile = Profile("sam", "sk-not-for-the-sandbox")


def test_reading_an_exposed_dataclass_does_not_reveal_its_private_fields(fh, write_set):
    """No path part may start with ``_``; but a ``get`` of an exposed
    dataclass answers ``dataclasses.asdict`` of it, ``_``-fields included
    (and deep-copies whatever its fields hold on the host, listed or not)."""
    fh.load_function_set(write_set("profiled", PLAIN), context=WithProfile(), expose=["profile"])
    assert "sk-not-for-the-sandbox" not in fh.call("read", {"path": "profile"})


class ProfileHolder(pydantic.BaseModel):
    """A pydantic model holding a dataclass: ``model_dump`` serializes the
    dataclass whole, ``_``-fields included."""

    profile: Profile
    label: str = "main"
    token: pydantic.SecretStr = pydantic.SecretStr("sk-also-not-for-the-sandbox")
    site: pydantic.HttpUrl = pydantic.HttpUrl("https://example.com/")


class WithModel:
    def __init__(self) -> None:
        self.settings = ProfileHolder(profile=Profile("sam", "sk-not-for-the-sandbox"))


def test_a_dataclass_inside_an_exposed_pydantic_model_keeps_its_private_fields(fh, write_set):
    fh.load_function_set(write_set("modelled", PLAIN), context=WithModel(), expose=["settings"])
    answer = fh.call("read", {"path": "settings"})
    assert "sk-not-for-the-sandbox" not in answer
    assert "sk-also-not-for-the-sandbox" not in answer  # masked, as the model dumps it
    assert "sam" in answer and "main" in answer  # the public fields still cross
    assert "https://example.com/" in answer and "**********" in answer


STALLING = '''
import json
import os
import struct
import sys
import time

import msgpack


def _running_call() -> int:
    frame = sys._getframe()
    while not hasattr(frame.f_locals.get("msg"), "msgid"):
        frame = frame.f_back
    return frame.f_locals["msg"].msgid


def stall(self) -> str:
    """Grow an exposed attribute, forge a read of it, never read the answer."""
    self.note = "x" * 1_000_000
    params = {"call": _running_call(), "op": "get", "path": "note", "args": [], "kwargs": {}}
    body = msgpack.packb([0, 9001, "ask", params])
    os.write(json.loads(sys.argv[1])["out_fd"], struct.pack(">I", len(body)) + body)
    time.sleep(3600)
    return "never"


def echo(x: int) -> int:
    """Echo."""
    return x
'''


class Noted:
    def __init__(self) -> None:
        self.note = ""


def _writing_an_answer() -> bool:
    """A thread of this process is inside ``Channel.answer`` (writing one)."""
    for frame in sys._current_frames().values():
        while frame is not None:
            code = frame.f_code
            if code.co_name == "answer" and code.co_filename.endswith("channel.py"):
                return True
            frame = frame.f_back
    return False


def test_a_worker_that_stops_reading_its_answer_does_not_block_the_event_loop(make_host, write_set):
    """The answer is written holding the channel's write lock until the
    call's run deadline. A worker that forges a request for an answer
    larger than its pipe and stops reading keeps that lock; the next
    ``acall`` to its set waits for the lock in ``Channel.send`` on the event
    loop's thread, so every set served by that loop stops: for the call's
    timeout, or for ever with ``timeout=None``. (The exposed attribute is
    the MemGPT list's ``pause_heartbeats_minutes`` kind: one the set may
    assign.)"""
    fh = make_host(limits=Limits(timeout=None))
    fh.load_function_set(write_set("stalling", STALLING), context=Noted(), expose=["note"])
    fh.load_function_set(write_set("bystander", "def b() -> int:\n    return 2\n"))
    served = threading.Event()

    async def on_the_loop() -> None:
        # Waits (off the loop) until the host is writing the forged answer.
        while not await asyncio.to_thread(_writing_an_answer):
            await asyncio.sleep(0.01)
        victim = asyncio.ensure_future(fh.acall("stalling.echo", {"x": 1}))
        await asyncio.sleep(0)  # the victim runs up to its send
        try:
            assert await fh.acall("bystander.b") == 2
        except HostClosed:  # closed by the test after the loop stayed blocked
            return
        served.set()
        try:
            await victim
        except HostClosed:
            pass

    with ThreadPoolExecutor(2) as pool:
        attacker = pool.submit(fh.call, "stalling.stall")
        loop_thread = pool.submit(asyncio.run, on_the_loop())
        try:
            assert served.wait(30), "the event loop was blocked by another set's answer"
        finally:
            fh.close()  # kills the stalling worker: its answer's write ends
            with pytest.raises(HostClosed):
                attacker.result(30)
            loop_thread.result(30)


def test_a_worker_that_does_not_read_its_answer_is_killed(make_host, write_set):
    """It asked and must read at once: after ``ANSWER_GRACE`` without
    reading, the worker is killed and its call is a ``ProtocolError`` that
    says so; the pipe's write lock is free again for the next call."""
    fh = make_host(limits=Limits(timeout=None))
    fh.load_function_set(write_set("stalling", STALLING), context=Noted(), expose=["note"])
    with pytest.raises(ProtocolError, match="did not read the answer to its request"):
        fh.call("stalling.stall")
    assert fh.call("stalling.echo", {"x": 7}) == 7
