"""Generator functions: ``call`` returns their items as a list,
``call_stream`` / ``acall_stream`` yield them as the worker produces them.

Flow control (the worker runs at most ``STREAM_WINDOW`` items ahead of the
reader), the call's errors and timeout, a reader that stops early (the
generator is closed in the worker), and a worker that sends items it may
not send (``ProtocolError``): each with real workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import pytest

from host import CallTimeout, Limits, ProtocolError, ResultError, Sandbox, UserFunctionError
from protocol.messages import STREAM_WINDOW
from tests.forging import FORGE_PRELUDE

GEN = '''
import os
import time


def numbers(n: int):
    """Yield n numbers."""
    for i in range(n):
        yield i


async def records(n: int):
    """Yield n records, from an async generator."""
    for i in range(n):
        yield {"i": i}


def double(x: int) -> int:
    """Not a generator."""
    return 2 * x


def counted(path: str):
    """Yield forever, writing how many items it has produced, and how it
    was closed."""
    i = 0
    try:
        while True:
            with open(path, "w") as f:
                f.write(str(i))
            yield i
            i += 1
    finally:
        with open(path + ".closed", "w") as f:
            f.write(str(i))


def blobs(path: str, kb: int):
    """Yield items of ``kb`` KiB forever, writing how many it has made."""
    i = 0
    while True:
        with open(path, "w") as f:
            f.write(str(i))
        yield b"x" * (kb << 10)
        i += 1


def handshake(path: str):
    """Yield one item, then wait until the reader has seen it (it creates
    ``path``) before the second: only a real stream gets past."""
    yield "first"
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("the reader never saw the first item")
        time.sleep(0.01)
    yield "second"


def fails_after(n: int):
    """Yield n numbers, then raise."""
    for i in range(n):
        yield i
    raise ValueError(f"broke after {n}")


def not_data():
    """Yield what cannot cross."""
    yield 1
    yield object()


def big(mb: int):
    """Yield one item of ``mb`` MiB."""
    yield b"x" * (mb << 20)


def returns_value():
    """A generator's return value is the call's value, not an item."""
    yield 1
    return "done"


def echo(x: int) -> int:
    return x


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"
'''


@pytest.fixture
def gen(make_host, write_set, tmp_path):
    fh = make_host(limits=Limits(timeout=20.0, sandbox=Sandbox(writable_paths=(tmp_path,))))
    fh.load_function_set(write_set("gen", GEN))
    return fh


def test_call_returns_a_generators_items_as_a_list(gen):
    assert gen.call("numbers", {"n": 4}) == [0, 1, 2, 3]
    assert gen.call("records", {"n": 2}) == [{"i": 0}, {"i": 1}]


def test_call_stream_yields_items_in_order(gen):
    assert list(gen.call_stream("numbers", {"n": 500})) == list(range(500))
    assert list(gen.call_stream("records", {"n": 3})) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert list(gen.call_stream("double", {"x": 21})) == [42]  # a plain value: one item


def test_items_arrive_while_the_generator_still_runs(gen, tmp_path):
    seen = tmp_path / "seen"
    stream = gen.call_stream("handshake", {"path": str(seen)})
    assert next(stream) == "first"
    seen.touch()  # the generator waits for this before its second item
    assert list(stream) == ["second"]


def test_the_worker_runs_at_most_a_window_ahead_of_the_reader(gen, tmp_path):
    count = tmp_path / "count"
    stream = gen.call_stream("counted", {"path": str(count)})
    assert next(stream) == 0
    time.sleep(0.5)  # an unbounded producer would be thousands of items on by now
    produced = int(count.read_text())
    assert produced <= STREAM_WINDOW + 1
    # Taking items makes room: the worker goes on.
    taken = [next(stream) for _ in range(3 * STREAM_WINDOW)]
    assert taken == list(range(1, 3 * STREAM_WINDOW + 1))
    stream.close()


def test_large_items_are_bounded_in_bytes_too(make_host, write_set, tmp_path):
    """The room is counted in bytes as well as items: with a 1 MiB result
    limit, a reader that takes nothing holds about 1 MiB of 300 KiB items,
    not a window of 32 of them (9.4 MiB)."""
    limits = Limits(timeout=20.0, max_result_mb=1, sandbox=Sandbox(writable_paths=(tmp_path,)))
    fh = make_host(limits=limits)
    fh.load_function_set(write_set("gen", GEN))
    count = tmp_path / "count"
    stream = fh.call_stream("blobs", {"path": str(count), "kb": 300})
    assert len(next(stream)) == 300 << 10
    time.sleep(0.5)  # the worker sends what it has room for, then waits
    assert int(count.read_text()) <= 1 + 4  # the first, and 1 MiB's worth more
    assert all(len(next(stream)) == 300 << 10 for _ in range(20))  # room comes back
    stream.close()


def test_closing_early_stops_the_generator_in_the_worker(gen, tmp_path):
    count = tmp_path / "count"
    stream = gen.call_stream("counted", {"path": str(count)})
    assert [next(stream) for _ in range(10)] == list(range(10))
    stream.close()
    # The set is free again (the stream ended at its next item) and the
    # generator's finally ran.
    assert gen.call("echo", {"x": 7}, timeout=10) == 7
    closed = int((tmp_path / "count.closed").read_text())
    assert 10 <= closed <= 10 + STREAM_WINDOW + 1


def test_an_error_comes_after_the_items_before_it(gen):
    items = []
    with pytest.raises(UserFunctionError) as info:
        for item in gen.call_stream("fails_after", {"n": 3}):
            items.append(item)
    assert items == [0, 1, 2]
    assert info.value.remote_type == "ValueError" and "broke after 3" in str(info.value)
    assert gen.call("echo", {"x": 1}) == 1  # the worker lives on


def test_an_item_that_cannot_cross_ends_the_stream_with_result_error(gen):
    items = []
    with pytest.raises(ResultError) as info:
        for item in gen.call_stream("not_data"):
            items.append(item)
    assert items == [1]
    assert "object" in str(info.value)


def test_an_item_over_the_result_limit_is_result_error(make_host, write_set):
    fh = make_host(limits=Limits(timeout=20.0, max_result_mb=1))
    fh.load_function_set(write_set("gen", GEN))
    with pytest.raises(ResultError) as info:
        list(fh.call_stream("big", {"mb": 2}))
    assert info.value.kind == "result_too_large"


def test_the_generators_return_value_is_not_an_item(gen):
    assert list(gen.call_stream("returns_value")) == [1]


def test_the_timeout_bounds_the_whole_stream(make_host, write_set, tmp_path):
    fh = make_host(limits=Limits(timeout=1.0, sandbox=Sandbox(writable_paths=(tmp_path,))))
    fh.load_function_set(write_set("gen", GEN))
    stream = fh.call_stream("counted", {"path": str(tmp_path / "count")})
    assert next(stream) == 0
    time.sleep(1.5)  # the worker waits for room past its timeout: it is killed
    with pytest.raises(CallTimeout):
        for _ in stream:
            pass
    assert fh.call("echo", {"x": 3}) == 3


def test_acall_stream_yields_items_and_stops_early(gen, tmp_path):
    async def main() -> tuple[list, list]:
        whole = [item async for item in gen.acall_stream("records", {"n": 40})]
        first = []
        async for item in gen.acall_stream("counted", {"path": str(tmp_path / "count")}):
            first.append(item)
            if len(first) == 5:
                break
        return whole, first

    whole, first = asyncio.run(main())
    assert whole == [{"i": i} for i in range(40)]
    assert first == [0, 1, 2, 3, 4]
    assert gen.call("echo", {"x": 5}, timeout=10) == 5
    assert os.path.exists(tmp_path / "count.closed")


def test_a_stream_closed_before_it_started_is_stopped_at_its_first_item(
    make_host, write_set, tmp_path
):
    """Its reader gave up while it waited behind another call: when it
    starts, its first item stops it (no call timeout here: without the stop
    the worker would wait for room forever and hold the set)."""
    fh = make_host(limits=Limits(timeout=None, sandbox=Sandbox(writable_paths=(tmp_path,))))
    fh.load_function_set(write_set("gen", GEN))
    count = tmp_path / "count"

    async def main() -> int:
        napping = asyncio.create_task(fh.acall("nap", {"seconds": 1.0}))
        await asyncio.sleep(0.1)  # the nap runs; the stream will wait behind it
        stream = fh.acall_stream("counted", {"path": str(count)})
        first = asyncio.create_task(stream.__anext__())
        await asyncio.sleep(0.2)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await stream.aclose()
        assert await napping == "rested"
        return await fh.acall("echo", {"x": 9}, timeout=10)

    assert asyncio.run(main()) == 9
    # Stopped soon after its first item, not after a window of them.
    assert int((tmp_path / "count.closed").read_text()) < STREAM_WINDOW


def test_closing_the_host_ends_a_stream_waiting_for_room(make_host, write_set, tmp_path):
    """The host's shutdown reaches a stream that waits for its reader: it
    ends at its next item (its finally runs) instead of being killed when
    the grace runs out."""
    fh = make_host(limits=Limits(timeout=None, sandbox=Sandbox(writable_paths=(tmp_path,))))
    fh.load_function_set(write_set("gen", GEN))
    count = tmp_path / "count"
    stream = fh.call_stream("counted", {"path": str(count)})
    assert next(stream) == 0
    time.sleep(0.3)  # the worker fills the window and waits for room
    fh.close()
    assert (tmp_path / "count.closed").exists()


def test_unknown_names_fail_at_once(gen):
    from host import UnknownFunction

    with pytest.raises(UnknownFunction):
        gen.call_stream("nope")


FORGER = (
    FORGE_PRELUDE
    + """

def item_for_a_plain_call() -> str:
    _send([2, "item", {"call": _running_call(), "value": 1}])
    time.sleep(5)
    return "genuine"


def flood():
    # More items than the host made room for, bypassing the worker's wait.
    call = _running_call()
    for i in range(200):
        _send([2, "item", {"call": call, "value": i}])
    yield "genuine"
    time.sleep(5)
"""
)


def test_items_a_call_may_not_send_are_a_protocol_error(fh, write_set):
    fh.load_function_set(write_set("forger", FORGER))
    with pytest.raises(ProtocolError, match="not a stream"):
        fh.call("item_for_a_plain_call", timeout=30)
    # A reader that takes nothing makes no room: the flood passes the window.
    stream = fh.call_stream("flood", timeout=30)
    assert next(stream) == 0
    time.sleep(0.5)  # (the host reads the flood meanwhile; this reader takes nothing)
    with pytest.raises(ProtocolError, match="more items than the host made room for"):
        list(stream)
