"""The host decodes what a worker sends within bounds, and inlines schemas within bounds.

A reply's lists and maps may take at most ``Limits.max_decoded_bytes`` of
the host's memory (an empty map is 1 byte on the wire, 64 in memory): over
it, that one call fails with ``ResultError`` (``result_too_large``) and the
worker and the host carry on. A large reply is decoded in chunks, so other
sets' calls go on meanwhile. Inlining ``$defs`` for Gemini is bounded too.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from host import Limits, ResultError, SchemaFormatError

TOOLS = """
import os
import struct
import sys

import msgpack


def pid() -> int:
    return os.getpid()


def empty_maps(n: int) -> list:
    # n bytes on the wire, 64 n bytes of dicts once decoded.
    return [{}] * n


def records(n: int) -> list:
    return [{"id": i, "name": f"item{i}"} for i in range(n)]


def text(n: int) -> str:
    return "x" * n


def sevens(n: int) -> list:
    return [7] * n


def forged_chain(levels: int, count: int) -> str:
    # A worker gone hostile: its result encoder is replaced, so no check of
    # the worker's own applies. The reply is well formed and answers this
    # very call: `count` chains of `levels` one-entry maps ({0: {0: ...}}),
    # 224 bytes of memory per 2 bytes on the wire.
    serve = sys.modules["worker.serve"]
    original = serve.encode_result

    def forged(msgid, value, output, max_bytes):
        serve.encode_result = original
        chain = b"\\x81\\x00" * levels + b"\\xc0"
        value = b"\\xdd" + struct.pack(">I", count) + chain * count
        body = (
            b"\\x94\\x01" + msgpack.packb(msgid) + b"\\xc0"
            + b"\\x83\\xa5value" + value + b"\\xa6stdout\\xa0\\xa6stderr\\xa0"
        )
        return struct.pack(">I", len(body)) + body

    serve.encode_result = forged
    return "genuine"
"""

OTHER = """
def ping(i: int) -> int:
    return i
"""


def test_amplified_reply_fails_only_its_call(make_host, write_set):
    # 8 MB allowed on the wire, so the budget is the 32 MiB floor.
    fh = make_host(limits=Limits(timeout=30.0, max_result_mb=8))
    fh.load_function_set(write_set("tools", TOOLS))
    before = fh.call("pid")
    # A real large result passes: 100k small dicts (2.3 MB, ~20 MB decoded).
    assert len(fh.call("records", {"n": 100_000})) == 100_000
    with pytest.raises(ResultError) as info:
        fh.call("empty_maps", {"n": 600_000})  # 0.6 MB encoded, ~43 MB decoded
    err = info.value
    assert err.kind == "result_too_large"
    assert (err.set_name, err.function) == ("tools", "empty_maps")
    assert str(32 * 1024 * 1024) in err.message
    assert err.details["decode_budget"] == 32 * 1024 * 1024
    # The stream stayed in step: the same worker answers the next call.
    assert fh.call("pid") == before
    assert fh.call("records", {"n": 3}) == [
        {"id": 0, "name": "item0"},
        {"id": 1, "name": "item1"},
        {"id": 2, "name": "item2"},
    ]


def test_call_queued_behind_an_amplified_reply_runs(make_host, write_set):
    fh = make_host(limits=Limits(timeout=30.0, max_result_mb=8))
    fh.load_function_set(write_set("tools", TOOLS))
    before = fh.call("pid")
    with ThreadPoolExecutor(2) as pool:
        bomb = pool.submit(fh.call, "empty_maps", {"n": 600_000})
        queued = [pool.submit(fh.call, "records", {"n": i}) for i in range(1, 6)]
        with pytest.raises(ResultError, match="lists and maps"):
            bomb.result()
        assert [len(q.result()) for q in queued] == [1, 2, 3, 4, 5]
    assert fh.call("pid") == before


def test_forged_amplification_is_refused_by_the_host(make_host, write_set):
    """The host does not rely on the worker: a reply forged past the worker's
    own checks, at the worst ratio (one-entry maps), is refused just the same."""
    fh = make_host(limits=Limits(timeout=30.0, max_result_mb=1))
    fh.load_function_set(write_set("tools", TOOLS))
    before = fh.call("pid")
    with pytest.raises(ResultError) as info:
        # 600 KB on the wire, 67 MB of dicts once decoded; budget 32 MiB.
        fh.call("forged_chain", {"levels": 500, "count": 600})
    assert info.value.kind == "result_too_large"
    assert fh.call("pid") == before
    # Under the budget, the same forged shape is just a result.
    value = fh.call("forged_chain", {"levels": 3, "count": 2})
    assert value == [{0: {0: {0: None}}}] * 2
    assert fh.call("pid") == before


def test_default_budget_passes_a_large_string_and_refuses_a_smaller_bomb(make_host, write_set):
    fh = make_host(limits=Limits(timeout=30.0))  # 64 MB on the wire, 256 MiB decoded
    fh.load_function_set(write_set("tools", TOOLS))
    assert len(fh.call("text", {"n": 50_000_000})) == 50_000_000
    with pytest.raises(ResultError) as info:
        fh.call("empty_maps", {"n": 5_000_000})  # 5 MB encoded, 10 times fewer bytes
    assert info.value.kind == "result_too_large"
    assert fh.call("records", {"n": 1}) == [{"id": 0, "name": "item0"}]


def test_other_sets_calls_go_on_while_a_large_reply_is_decoded(make_host, write_set):
    """While the reply of one set is decoded (from the moment its frame is
    complete until it is delivered), calls to another set complete: the
    decoder hands the GIL over between chunks. An undivided decode holds it
    throughout, so at most a call or two slip in at its edges."""
    fh = make_host(limits=Limits(timeout=30.0))
    fh.load_function_set(write_set("tools", TOOLS))
    fh.load_function_set(write_set("other", OTHER))
    n = 16 * 1024 * 1024  # 16 MB of small ints
    fh.call("sevens", {"n": 10})
    done = 0
    stop = threading.Event()

    def ping_loop() -> None:
        nonlocal done
        i = 0
        while not stop.is_set():
            assert fh.call("ping", {"i": i}) == i
            i += 1
            done += 1

    window: dict[str, int] = {}

    def watch(frame, event, arg):  # profiles the caller of set "tools" only
        code = frame.f_code
        if event == "return" and code.co_name == "feed" and code.co_filename.endswith("framing.py"):
            if arg and max(len(body) for body in arg) > n and "start" not in window:
                window["start"] = done  # the large frame is complete
        elif (
            event == "call"
            and code.co_name in ("deliver", "deliver_all")
            and code.co_filename.endswith("delivery.py")
            and "start" in window
        ):
            window.setdefault("end", done)  # it is decoded

    def big_call() -> int:
        sys.setprofile(watch)
        try:
            return len(fh.call("sevens", {"n": n}))
        finally:
            sys.setprofile(None)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # hand the GIL over at the first chance
    pinger = threading.Thread(target=ping_loop)
    pinger.start()
    try:
        while done < 5:  # the other set is warm and being called
            threading.Event().wait(0.01)
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(big_call).result() == n
    finally:
        stop.set()
        pinger.join()
        sys.setswitchinterval(interval)
    assert window["end"] - window["start"] >= 20, window


# -- schemas -------------------------------------------------------------------------


def _defs_bomb(levels: int) -> str:
    """A TypedDict per level, each using the next one twice: a few KB of
    schema whose inlined form has 2**levels copies of the last type."""
    lines = ["from typing import TypedDict", "", f"class T{levels}(TypedDict):", "    v: int", ""]
    for i in range(levels - 1, -1, -1):
        lines += [f"class T{i}(TypedDict):", f"    x: 'T{i + 1}'", f"    y: 'T{i + 1}'", ""]
    lines += ["def f(a: T0, b: int = 0) -> int:", "    return b", ""]
    return "\n".join(lines)


@pytest.mark.timeout(20)
def test_gemini_refuses_a_schema_that_inlines_exponentially(fh, write_set):
    # Four levels inline as they always did: each use is a copy.
    fh.load_function_set(write_set("small", _defs_bomb(4)))
    leaf = fh.tools(format="gemini")[0]["parameters"]["properties"]["a"]
    for _ in range(4):
        assert leaf["properties"]["x"] == leaf["properties"]["y"]
        leaf = leaf["properties"]["x"]
    assert leaf["properties"] == {"v": {"type": "integer"}}
    # Twenty levels: 2**20 copies; refused before they are made.
    fh.load_function_set(write_set("bomb", _defs_bomb(20).replace("def f(", "def g(")))
    raw = fh.tools(format="raw")[1]["parameters"]
    assert len(raw["$defs"]) == 21
    with pytest.raises(SchemaFormatError) as info:
        fh.tools(format="gemini")
    err = info.value
    assert (err.format, err.function, err.parameter) == ("gemini", "g", "a")
    assert "1048576 bytes of inlined definitions" in err.reason
    # The formats that keep $ref are unaffected.
    for fmt in ("openai", "anthropic", "mcp"):
        assert len(fh.tools(format=fmt)) == 2
