"""A function reaches its agent through the context door, and nothing else.

A MemGPT-style set (functions taking ``self: "Agent"``, written exactly as
MemGPT's base set) runs unmodified against a host-side agent, through the
``expose`` allow-list; every escape we could think of fails inside the
worker and leaves the host object untouched; forged requests are a
protocol error for their own call only; a slow host method delays only its
own call and the call's timeout still bounds it.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from host import CallTimeout, ProtocolError, UserFunctionError
from tests.forging import FORGE_PRELUDE

MEMGPT = '''
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from memgpt.agent import Agent


def send_message(self: "Agent", message: str) -> Optional[str]:
    """Sends a message to the human user.

    Args:
        message (str): Message contents. All unicode (including emojis) are supported.
    """
    self.interface.assistant_message(message)
    return None


def pause_heartbeats(self: "Agent", minutes: int) -> Optional[str]:
    """Temporarily ignore timed heartbeats.

    Args:
        minutes (int): Number of minutes to ignore heartbeats for.
    """
    self.pause_heartbeats_minutes = minutes
    return f"Pausing timed heartbeats for {minutes} min"


def core_memory_append(self: "Agent", name: str, content: str) -> Optional[str]:
    """Append to the contents of core memory.

    Args:
        name (str): Section of the memory to be edited (persona or human).
        content (str): Content to write to the memory.
    """
    self.memory.edit_append(name, content)
    self.rebuild_memory()
    return None


def archival_memory_search(self: "Agent", query: str, page: Optional[int] = 0) -> Optional[str]:
    """Search archival memory using semantic (embedding-based) search.

    Args:
        query (str): String to search for.
        page (Optional[int]): Allows you to page through results.
    """
    count = 2
    results, total = self.persistence_manager.archival_memory.search(
        query, count=count, start=page * count
    )
    if len(results) == 0:
        return "No results found."
    shown = [f"timestamp: {r['timestamp']}, memory: {r['content']}" for r in results]
    return f"Showing {len(results)} of {total} results (page {page}): {shown}"


def pause_heartbeats_minutes_of(self: "Agent") -> int:
    """Read the exposed attribute."""
    return self.pause_heartbeats_minutes
'''

EXPOSE = [
    "memory.edit_append",
    "memory.edit_replace",
    "rebuild_memory",
    "interface.assistant_message",
    "persistence_manager.archival_memory.search",
    "persistence_manager.archival_memory.insert",
    "pause_heartbeats_minutes",
]


class Memory:
    def __init__(self) -> None:
        self.sections = {"persona": "I am Sam.", "human": ""}
        self.secret = "the host's secret"

    def edit_append(self, name: str, content: str) -> None:
        self.sections[name] += "\n" + content

    def edit_replace(self, name: str, old: str, new: str) -> None:
        if old not in self.sections[name]:
            raise KeyError(old)
        self.sections[name] = self.sections[name].replace(old, new)


class Archival:
    def __init__(self) -> None:
        self.rows = [
            {"timestamp": "2026-01-0%d" % i, "content": f"fact {i} about cats"} for i in range(1, 6)
        ]

    def search(self, query: str, count: int = 5, start: int = 0) -> tuple[list[dict], int]:
        hits = [r for r in self.rows if query in r["content"]]
        return hits[start : start + count], len(hits)

    def insert(self, content: str) -> None:
        self.rows.append({"timestamp": "now", "content": content})


class Interface:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def assistant_message(self, message: str) -> None:
        self.messages.append(message)


class PersistenceManager:
    def __init__(self) -> None:
        self.archival_memory = Archival()


class Agent:
    def __init__(self) -> None:
        self.memory = Memory()
        self.interface = Interface()
        self.persistence_manager = PersistenceManager()
        self.pause_heartbeats_minutes = 0
        self.rebuilt = 0
        self.deleted = False

    def rebuild_memory(self) -> None:
        self.rebuilt += 1

    def delete_everything(self) -> None:
        self.deleted = True


@pytest.fixture
def agent():
    return Agent()


@pytest.fixture
def memgpt(fh, write_set, agent):
    fh.load_function_set(write_set("memgpt", MEMGPT), context=agent, expose=EXPOSE)
    return fh


def test_a_memgpt_set_runs_unmodified_against_the_host_agent(memgpt, agent):
    assert memgpt.call("core_memory_append", {"name": "human", "content": "Likes cats."}) is None
    assert agent.memory.sections["human"] == "\nLikes cats."
    assert agent.rebuilt == 1
    assert memgpt.call("send_message", {"message": "Hello 👋"}) is None
    assert agent.interface.messages == ["Hello 👋"]
    assert memgpt.call("pause_heartbeats", {"minutes": 15}) == "Pausing timed heartbeats for 15 min"
    assert agent.pause_heartbeats_minutes == 15
    assert memgpt.call("pause_heartbeats_minutes_of") == 15
    found = memgpt.call("archival_memory_search", {"query": "cats", "page": 1})
    assert found.startswith("Showing 2 of 5 results (page 1): ")
    assert "fact 3 about cats" in found and "fact 1 about" not in found


def test_the_context_parameter_is_in_no_schema(memgpt):
    params = memgpt.functions()["core_memory_append"]["json_schema"]["parameters"]
    assert sorted(params["properties"]) == ["content", "name"]
    assert "self" not in params.get("required", [])


def test_a_call_may_bring_its_own_context(memgpt, agent):
    other = Agent()
    memgpt.call("send_message", {"message": "to the other"}, context=other)
    assert other.interface.messages == ["to the other"]
    assert agent.interface.messages == []


def test_acall_reaches_the_context_and_an_async_host_method(fh, write_set):
    class AsyncAgent:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def remember(self, text: str) -> str:
            await asyncio.sleep(0)
            self.seen.append(text)
            return text.upper()

    source = '''
def remember(self, text: str) -> str:
    """Remember."""
    return self.remember(text)
'''
    agent = AsyncAgent()
    fh.load_function_set(write_set("remembering", source), context=agent, expose=["remember"])
    assert asyncio.run(fh.acall("remember", {"text": "async"})) == "ASYNC"
    assert fh.call("remember", {"text": "sync"}) == "SYNC"
    assert agent.seen == ["async", "sync"]


def test_what_is_exposed_is_reported(memgpt, fh, write_set):
    assert memgpt.function_sets["memgpt"]["exposed"] == EXPOSE
    assert memgpt.protections("memgpt")["context_door_closed"] is False
    assert memgpt.function_sets["memgpt"]["protections"]["context_door_closed"] is False
    fh.load_function_set(write_set("closed", "def f() -> int:\n    return 1\n"))
    assert fh.function_sets["closed"]["exposed"] == []
    assert fh.protections("closed")["context_door_closed"] is True


def test_without_a_door_the_context_parameter_is_none(fh, write_set, agent):
    source = '''
def who(self) -> str:
    """Who am I."""
    return repr(self)
'''
    fh.load_function_set(write_set("doorless", source))
    assert fh.call("who") == "None"
    with pytest.raises(ValueError, match="without expose"):
        fh.call("who", context=agent)


def test_a_context_needs_an_allow_list(fh, write_set, agent):
    path = write_set("nolist", "def f(self) -> int:\n    return 1\n")
    with pytest.raises(ValueError, match="needs expose"):
        fh.load_function_set(path, context=agent)
    bad_lists = (
        ["__class__"],
        ["memory.__dict__"],
        ["memory._private"],
        ["a..b"],
        "memory",
        ["memory", "memory.edit_append"],  # a path that leads to another
    )
    for bad in bad_lists:
        with pytest.raises(ValueError, match="expose"):
            fh.load_function_set(path, context=agent, expose=bad)
    assert "nolist" not in fh.function_sets


ESCAPES = '''
def _try(action):
    try:
        value = action()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"got {value!r}"


def _ask(proxy, op, path, value=None):
    # Bypass the proxy's own checks: send any request the worker can forge.
    ask = object.__getattribute__(proxy, "_fnhost_ask")
    return ask(op, path, [], {}, value)


def escape(self, attempt: str) -> str:
    """Try one way out."""
    attempts = {
        "class": lambda: self.__class__.__mro__,
        "dict": lambda: self.__dict__,
        "dunder_via_getattr": lambda: getattr(self, "__dict__"),
        "unlisted_attribute": lambda: self.memory.secret,
        "unlisted_method": lambda: self.delete_everything(),
        "getattr_chain": lambda: getattr(getattr(self, "memory"), "sections"),
        "intermediate_is_no_value": lambda: self.memory == 1 or self.memory.sections,
        "method_internals": lambda: self.memory.edit_append.__self__,
        "method_globals_are_ours": lambda: "Agent" in self.memory.edit_append.__globals__,
        "assign_unlisted": lambda: setattr(self, "deleted", True),
        "assign_method": lambda: setattr(self, "rebuild_memory", 5),
        "delete_attribute": lambda: delattr(self, "pause_heartbeats_minutes"),
        "proxy_as_argument": lambda: self.memory.edit_append("human", self),
        "object_as_argument": lambda: self.memory.edit_append("human", object()),
        "forged_call_unlisted": lambda: _ask(self, "call", "delete_everything"),
        "forged_get_unlisted": lambda: _ask(self, "get", "memory.secret"),
        "forged_get_dunder": lambda: _ask(self, "get", "__class__"),
        "forged_get_prefix": lambda: _ask(self, "get", "memory"),
        "forged_set_method": lambda: _ask(self, "set", "rebuild_memory", 1),
        "forged_set_unlisted": lambda: _ask(self, "set", "deleted", True),
        "forged_get_method": lambda: _ask(self, "get", "rebuild_memory"),
        "forged_call_attribute": lambda: _ask(self, "call", "pause_heartbeats_minutes"),
        "forged_bad_op": lambda: _ask(self, "exec", "rebuild_memory"),
    }
    return _try(attempts[attempt])
'''

#: attempt -> what the function sees (an exception inside the worker).
ESCAPE_OUTCOMES = {
    "class": "got (<class 'worker.context_proxy.ContextProxy'>",  # the stand-in's, not the host's
    "dict": "AttributeError",
    "dunder_via_getattr": "AttributeError",
    "unlisted_attribute": "AttributeError",
    "unlisted_method": "AttributeError",
    "getattr_chain": "AttributeError",
    "intermediate_is_no_value": "AttributeError",
    "method_internals": "AttributeError",
    "method_globals_are_ours": "got False",
    "assign_unlisted": "AttributeError",
    "assign_method": "AttributeError",
    "delete_attribute": "AttributeError",
    "proxy_as_argument": "TypeError",
    "object_as_argument": "TypeError",
    "forged_call_unlisted": "AttributeError",
    "forged_get_unlisted": "AttributeError",
    "forged_get_dunder": "AttributeError",
    "forged_get_prefix": "AttributeError",
    "forged_set_method": "PermissionError",
    "forged_set_unlisted": "AttributeError",
    "forged_get_method": "PermissionError",
    "forged_call_attribute": "PermissionError",
    "forged_bad_op": "PermissionError",
}


@pytest.mark.parametrize("attempt", sorted(ESCAPE_OUTCOMES))
def test_every_path_off_the_list_fails_inside_the_worker(fh, write_set, agent, attempt):
    fh.load_function_set(write_set("escapes", ESCAPES), context=agent, expose=EXPOSE)
    before = (dict(agent.memory.sections), agent.rebuilt, agent.deleted, vars(agent).keys())
    outcome = fh.call("escape", {"attempt": attempt})
    assert outcome.startswith(ESCAPE_OUTCOMES[attempt]), outcome
    # The host object is untouched.
    assert (dict(agent.memory.sections), agent.rebuilt, agent.deleted, vars(agent).keys()) == before
    assert agent.rebuild_memory.__func__ is Agent.rebuild_memory
    assert agent.pause_heartbeats_minutes == 0


RAISING = '''
def replace(self, old: str) -> str:
    """Replace in memory; a missing text raises KeyError on the host."""
    try:
        self.memory.edit_replace("persona", old, "new")
    except KeyError as exc:
        return f"caught KeyError {exc}"
    return "replaced"


def custom(self) -> str:
    """The host method raises an exception of its own class."""
    from worker.context_proxy import ContextError

    try:
        self.fail()
    except ContextError as exc:
        return f"{exc.remote_type}|{exc.message}"
    return "no error"


def stale() -> str:
    """Use a context kept from an earlier call."""
    try:
        KEPT[0].memory.edit_append("human", "late")
    except RuntimeError as exc:
        return f"RuntimeError: {exc}"
    return "reached the host"


KEPT = []


def keep(self) -> None:
    """Keep the context past the call."""
    KEPT.append(self)
'''


class Failing(Agent):
    def fail(self) -> None:
        raise Failing.Oops("it broke")

    class Oops(Exception):
        pass


def test_a_host_exception_comes_back_as_one_the_function_can_catch(fh, write_set):
    agent = Failing()
    expose = ["memory.edit_replace", "memory.edit_append", "fail"]
    fh.load_function_set(write_set("raising", RAISING), context=agent, expose=expose)
    assert fh.call("replace", {"old": "absent"}) == "caught KeyError 'absent'"
    assert fh.call("replace", {"old": "Sam"}) == "replaced"
    assert agent.memory.sections["persona"] == "I am new."
    assert fh.call("custom") == f"{__name__}.Failing.Oops|it broke"


def test_a_context_works_only_during_its_call(fh, write_set, agent):
    fh.load_function_set(write_set("raising", RAISING), context=agent, expose=EXPOSE)
    assert fh.call("keep") is None
    assert fh.call("stale").startswith("RuntimeError: the context can only be used during its call")
    assert agent.memory.sections["human"] == ""


BLOCKING = '''
def wait_for_host(self) -> str:
    """Call a host method that blocks until the test lets it go."""
    return self.block()


def quick() -> str:
    """No context."""
    return "quick"
'''


class Blocking:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def block(self) -> str:
        self.entered.set()
        self.release.wait(60)
        return "released"


def test_a_slow_host_method_delays_only_its_own_call(fh, write_set):
    blocking = Blocking()
    fh.load_function_set(write_set("slow", BLOCKING), context=blocking, expose=["block"])
    fh.load_function_set(write_set("other", "def other() -> str:\n    return 'other'\n"))
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(fh.call, "slow.wait_for_host", None, 30)
        assert blocking.entered.wait(30)
        # The host method is running on the host: other sets are served.
        assert fh.call("other.other") == "other"
        assert not waiting.done()
        blocking.release.set()
        assert waiting.result(30) == "released"


def test_a_blocked_host_method_does_not_hold_up_another_calls_request(fh, write_set, agent):
    """Requests are answered by threads that are reused when idle and added
    when all are busy: while one host method blocks, another set's context
    requests are answered, again and again."""
    blocking = Blocking()
    fh.load_function_set(write_set("slow", BLOCKING), context=blocking, expose=["block"])
    fh.load_function_set(write_set("memgpt", MEMGPT), context=agent, expose=EXPOSE)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(fh.call, "slow.wait_for_host", None, 30)
        assert blocking.entered.wait(30)
        for i in range(5):
            fh.call("memgpt.send_message", {"message": f"m{i}"})
        assert agent.interface.messages == [f"m{i}" for i in range(5)]
        assert not waiting.done()
        blocking.release.set()
        assert waiting.result(30) == "released"


def test_the_calls_timeout_bounds_a_host_method(fh, write_set):
    blocking = Blocking()
    fh.load_function_set(write_set("slow", BLOCKING), context=blocking, expose=["block"])
    pid = fh.function_sets["slow"]["pid"]
    try:
        with pytest.raises(CallTimeout):
            fh.call("slow.wait_for_host", timeout=1)
        assert fh.call("slow.quick") == "quick"  # a restarted worker
        assert fh.function_sets["slow"]["pid"] != pid
    finally:
        blocking.release.set()


FORGING = (
    FORGE_PRELUDE
    + '''

def forge(kind: str) -> str:
    """Send a request the worker may not send."""
    call = _running_call()
    params = {"call": call, "op": "call", "path": "block", "args": [], "kwargs": {}}
    if kind == "other_call":
        params["call"] = call + 1000
    elif kind == "no_call":
        del params["call"]
    elif kind == "two_at_once":
        _send([0, 7001, "ask", params])
    elif kind == "unknown_method":
        _send([0, 7002, "exec", params])
        time.sleep(5)
        return "unanswered"
    _send([0, 7003, "ask", params])
    time.sleep(5)
    return "unanswered"


def echo(x: int) -> int:
    """Echo."""
    return x
'''
)


@pytest.mark.parametrize("kind", ["other_call", "no_call", "two_at_once", "unknown_method"])
def test_a_forged_request_is_a_protocol_error_for_its_own_call(fh, write_set, kind):
    """(For two requests at once, the first one's host method blocks, so the
    second surely comes while it is unanswered.)"""
    blocking = Blocking()
    fh.load_function_set(write_set("forging", FORGING), context=blocking, expose=["block"])
    fh.load_function_set(write_set("bystander", "def b() -> int:\n    return 2\n"))
    pid = fh.function_sets["forging"]["pid"]
    try:
        with pytest.raises(ProtocolError) as info:
            fh.call("forging.forge", {"kind": kind}, timeout=30)
    finally:
        blocking.release.set()
    assert info.value.set_name == "forging" and info.value.function == "forge"
    assert fh.call("bystander.b") == 2
    assert fh.call("forging.echo", {"x": 5}) == 5
    assert fh.function_sets["forging"]["pid"] != pid


def test_an_unanswerable_value_is_an_error_inside_the_worker(fh, write_set):
    class Leaky(Agent):
        def handle(self) -> object:
            return threading.Lock()  # not data: it cannot cross

    source = '''
def leak(self) -> str:
    """Ask for something that is not data."""
    try:
        return repr(self.handle())
    except TypeError as exc:
        return f"TypeError: {exc}"
'''
    fh.load_function_set(write_set("leaky", source), context=Leaky(), expose=["handle"])
    assert fh.call("leak").startswith("TypeError: the host's answer is not data")


def test_a_user_error_after_a_context_call_is_still_the_users(memgpt, agent, fh, write_set):
    source = '''
def then_fail(self) -> None:
    """Reach the host, then raise."""
    self.rebuild_memory()
    raise ValueError("after the host")
'''
    fh.load_function_set(write_set("failing", source), context=agent, expose=["rebuild_memory"])
    with pytest.raises(UserFunctionError, match="after the host"):
        fh.call("then_fail")
    assert agent.rebuilt == 1


def test_dispatch_passes_each_call_its_context(memgpt, agent):
    other = Agent()
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "send_message", "arguments": '{"message": "via dispatch"}'},
    }
    result = memgpt.dispatch(call, context=other)
    assert not result.is_error, result
    assert other.interface.messages == ["via dispatch"]
    result = asyncio.run(memgpt.adispatch([call, {**call, "id": "call_2"}], context=other))
    assert [r.is_error for r in result] == [False, False]
    assert other.interface.messages == ["via dispatch"] * 3
    assert agent.interface.messages == []
