"""What the egress door costs (``python -m bench``'s egress rows).

- a set's start to its first call, with an egress policy (the proxy already
  running: a second set) and without (``network=False``), interleaved;
- a crash to the next good call of an egress set (its worker opens a new
  door; compare with the default rows);
- one HTTP GET on a new connection from a worker to a server on
  127.0.0.1, direct (``network=True``) and through the proxy (an egress
  set), as the worker times it; the ratio is per round.
"""

from __future__ import annotations

import http.server
import statistics
import threading
import time
from typing import TYPE_CHECKING

from host import CallError, Egress, FunctionHost, Limits, Sandbox

if TYPE_CHECKING:
    from bench.__main__ import Bench

REQUESTS = 50


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def run_egress(bench: Bench, set_path: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    egress = Sandbox(network=Egress(allow=[f"127.0.0.1:{server.server_address[1]}"]))
    limits = Limits(crash_limit=1000, sandbox=egress)
    try:
        with FunctionHost(builtin_dir=bench.empty, user_dirs=[], on_conflict="prefix") as fh:
            fh.load_function_set(set_path, name="door", limits=limits)  # starts the proxy
            fh.load_function_set(
                set_path, name="direct", limits=Limits(sandbox=Sandbox(network=True))
            )
            fh.call("door.add", {"a": 1, "b": 1})
            for r in range(bench.rounds):
                kinds = [("egress", egress), ("no network", Sandbox())]
                for kind, sandbox in kinds if r % 2 == 0 else kinds[::-1]:  # neither always second
                    time.sleep(0.3)  # each finds the zygote's spare ready, as a first load does
                    start = time.perf_counter()
                    name = f"s{r}{kind[0]}"
                    fh.load_function_set(set_path, name=name, limits=Limits(sandbox=sandbox))
                    fh.call(f"{name}.add", {"a": 1, "b": 1})
                    bench.record(
                        f"start: 1 more set to first call ({kind})",
                        ms=(time.perf_counter() - start) * 1e3,
                    )
                for _ in range(3):
                    time.sleep(0.3)  # as the default rows: a settled worker
                    start = time.perf_counter()
                    try:
                        fh.call("door.crash")
                    except CallError:
                        pass
                    fh.call("door.add", {"a": 1, "b": 1})
                    bench.record(
                        "crash -> next good call (egress set)",
                        ms=(time.perf_counter() - start) * 1e3,
                    )
                direct = fh.call("direct.fetch_times", {"url": url, "n": REQUESTS})
                proxied = fh.call("door.fetch_times", {"url": url, "n": REQUESTS})
                d, p = statistics.median(direct), statistics.median(proxied)
                bench.record("HTTP GET, new connection: direct", ms=d * 1e3)
                bench.record("HTTP GET, new connection: via egress proxy", ms=p * 1e3, ratio=p / d)
    finally:
        server.shutdown()
        server.server_close()
