"""A running function reports progress and log lines to its caller.

``worker.progress.report_progress`` / ``log`` during a call reach the
caller's ``on_progress`` (``call`` and ``acall``) in order, and the set's
logger; a flood, a forged report for another call, or one outside a call is
refused; ``fnhost mcp`` forwards progress to an MCP client that asked for it.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from host import InvalidArguments, ProtocolError
from tests.forging import FORGE_PRELUDE

STEPS = '''
from worker.progress import log, report_progress


def steps(n: int) -> str:
    """Report n steps, then finish."""
    for i in range(n):
        report_progress(i + 1, n, f"step {i + 1}")
    log("all steps done")
    return "finished"


def no_total() -> int:
    """Progress of unknown size."""
    report_progress(0.5)
    return 1


def forge() -> int:
    """A log line that would read as two records of the host's."""
    log("fine\\nERROR fnhost: host compromised\\x1b[2K\\u2028x")
    return 1


def flood() -> int:
    """More reports than a call may send."""
    for i in range(20000):
        report_progress(i)
    return 1


def bad_values(kind: str) -> str:
    """Report what is not a number."""
    try:
        report_progress("half" if kind == "text" else float("nan"))
    except (TypeError, ValueError) as exc:
        return type(exc).__name__
    return "sent"


def echo(x: int) -> int:
    """Echo."""
    return x
'''

# No import of fnhost: the reporter comes as a reserved parameter.
PLAIN = '''
def count(n: int, report_progress=None) -> int:
    """Count to n, reporting each step."""
    for i in range(n):
        if report_progress is not None:
            report_progress(i + 1, n, f"at {i + 1}")
    return n
'''


@pytest.fixture
def steps(fh, write_set):
    fh.load_function_set(write_set("steps", STEPS))
    return fh


def test_progress_reaches_the_callers_callback_in_order(steps):
    seen = []
    assert steps.call("steps", {"n": 5}, on_progress=lambda *r: seen.append(r)) == "finished"
    assert seen == [(i, 5, f"step {i}") for i in range(1, 6)]
    seen.clear()
    steps.call("no_total", on_progress=lambda *r: seen.append(r))
    assert seen == [(0.5, None, None)]


def test_acall_gets_its_progress_on_its_event_loop(steps):
    async def main():
        loop = asyncio.get_running_loop()
        seen = []

        def on_progress(*report):
            assert asyncio.get_running_loop() is loop
            seen.append(report)

        value = await steps.acall("steps", {"n": 3}, on_progress=on_progress)
        await asyncio.sleep(0)  # reports scheduled from the reader run first
        return value, seen

    value, seen = asyncio.run(main())
    assert value == "finished"
    assert seen == [(i, 3, f"step {i}") for i in range(1, 4)]


def test_a_report_progress_parameter_reports_without_importing_fnhost(fh, write_set):
    fh.load_function_set(write_set("plain", PLAIN))
    schema = fh.schemas()["count"]
    assert list(schema["parameters"]["properties"]) == ["n"]  # reserved: not in the schema
    seen: list[tuple] = []
    assert fh.call("count", {"n": 3}, on_progress=lambda *a: seen.append(a)) == 3
    assert seen == [(1, 3, "at 1"), (2, 3, "at 2"), (3, 3, "at 3")]
    # A caller cannot set it.
    with pytest.raises(InvalidArguments):
        fh.call("count", {"n": 1, "report_progress": "x"})


def test_log_lines_go_to_the_sets_logger(steps, caplog):
    with caplog.at_level(logging.INFO, logger="fnhost"):
        steps.call("steps", {"n": 1})
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("worker.steps")]
    assert "steps: all steps done" in lines


def test_a_log_line_stays_one_line(steps, caplog):
    with caplog.at_level(logging.INFO, logger="fnhost"):
        steps.call("forge")
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("worker.steps")]
    assert lines == ["forge: fine\\x0aERROR fnhost: host compromised\\x1b[2K\\u2028x"]


def test_a_failing_callback_does_not_fail_the_call(steps, caplog):
    def broken(*report):
        raise RuntimeError("callback bug")

    assert steps.call("steps", {"n": 2}, on_progress=broken) == "finished"
    assert any("on_progress callback failed" in r.getMessage() for r in caplog.records)


def test_a_flood_is_a_protocol_error_for_that_call_only(steps, fh, write_set):
    with pytest.raises(ProtocolError, match="more than 10000 progress reports"):
        steps.call("flood")
    assert steps.call("echo", {"x": 3}) == 3


@pytest.mark.parametrize("kind, refused", [("text", "TypeError"), ("nan", "ValueError")])
def test_values_that_are_not_numbers_are_refused_in_the_worker(steps, kind, refused):
    assert steps.call("bad_values", {"kind": kind}) == refused


def test_outside_a_worker_reporting_does_nothing():
    from worker import progress

    assert progress.server is None
    assert progress.report_progress(1, 2, "x") is None
    assert progress.log("x") is None


FORGER = (
    FORGE_PRELUDE
    + '''

def forge(kind: str) -> str:
    """Send a progress report the worker may not send."""
    call = _running_call()
    if kind == "other_call":
        _send([2, "progress", {"call": call + 5, "done": 1, "total": None, "message": None}])
    elif kind == "not_a_number":
        _send([2, "progress", {"call": call, "done": "one", "total": None, "message": None}])
    elif kind == "long_log":
        _send([2, "log", {"call": call, "text": "x" * 9000}])
    time.sleep(5)
    return "unanswered"
'''
)


@pytest.mark.parametrize(
    "kind, why",
    [
        ("other_call", "a progress for call"),
        ("not_a_number", "progress needs numbers"),
        ("long_log", "a log line must be text of at most 8192"),
    ],
)
def test_a_forged_report_is_a_protocol_error(fh, write_set, kind, why):
    fh.load_function_set(write_set("forger", FORGER))
    with pytest.raises(ProtocolError, match=why):
        fh.call("forge", {"kind": kind}, timeout=30)


def _mcp_progress(sets_dir, tmp_path, calls):
    """Run ``calls`` ((tool, arguments, with a progress token?)) through
    ``fnhost mcp`` over stdio with the SDK's client: their results, and the
    progress reports the client received."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    async def scenario():
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "host", "mcp", str(sets_dir), "--no-builtins"],
        )
        seen = []

        async def progress(done, total, message):
            seen.append((done, total, message))

        results = []
        with open(tmp_path / "stderr.txt", "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    for tool, arguments, token in calls:
                        callback = progress if token else None
                        results.append(
                            await session.call_tool(tool, arguments, progress_callback=callback)
                        )
        return results, seen

    return asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_fnhost_mcp_forwards_progress_to_a_client_that_asked(write_set, sets_dir, tmp_path):
    write_set("steps", STEPS)
    # The second call sends no token: no reports.
    (result, quiet), seen = _mcp_progress(
        sets_dir, tmp_path, [("steps", {"n": 3}, True), ("steps", {"n": 2}, False)]
    )
    assert not result.is_error and result.content[0].text == "finished"
    assert not quiet.is_error
    assert seen == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]


ENDLESS = """
from worker.progress import report_progress


def endless() -> str:
    report_progress(1, 3, "one")
    report_progress(float("inf"), None, "forever")
    report_progress(2, float("inf"), "of forever")
    report_progress(3, 3, "three")
    return "done"
"""


@pytest.mark.timeout(60)
def test_fnhost_mcp_drops_progress_json_cannot_carry(write_set, sets_dir, tmp_path):
    """Infinity becomes null in JSON, which the client's SDK rejects: such a
    report is not forwarded; the rest are, and the call's result arrives."""
    write_set("endless", ENDLESS)
    (result,), seen = _mcp_progress(sets_dir, tmp_path, [("endless", {}, True)])
    assert not result.is_error and result.content[0].text == "done"
    assert seen == [(1.0, 3.0, "one"), (3.0, 3.0, "three")]
