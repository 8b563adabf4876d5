"""Progress reports and log lines from a running function to its caller.

    from worker.progress import report_progress, log

    def crunch(items: list[str]) -> int:
        for i, item in enumerate(items):
            report_progress(i, len(items), f"crunching {item}")
            ...
        log("done")

Each report is a ``progress`` notification of the running call: the
caller's ``on_progress`` callback receives it (``fh.call(...,
on_progress=...)``), and ``fnhost mcp`` forwards it to a client that asked
for progress. Log lines go to the set's logger on the host
(``fnhost.worker.<set>``). A call may send at most 10,000 of them together;
more is a ``ProtocolError`` for that call.

Outside a worker (the module run as plain Python, in its own tests) both
do nothing. In a worker, they work only during a call, from the thread that
runs it (``RuntimeError`` otherwise).
"""

from __future__ import annotations

from typing import Any, Protocol


class _Noter(Protocol):
    def note(self, method: str, params: dict[str, Any]) -> None: ...


#: The worker's request loop, once it serves (``worker.serve.Server``).
server: _Noter | None = None


def report_progress(done: float, total: float | None = None, message: str | None = None) -> None:
    """Report that ``done`` of ``total`` (if known) is done, with an optional
    ``message`` (at most 8,192 characters; longer is cut)."""
    if server is None:
        return
    if message is not None:
        message = str(message)[:8192]
    server.note("progress", {"done": done, "total": total, "message": message})


def log(text: str) -> None:
    """Send one log line (at most 8,192 characters; longer is cut)."""
    if server is not None:
        server.note("log", {"text": str(text)[:8192]})
