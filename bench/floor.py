"""The floor: a length-prefixed msgpack echo to a child process over a pipe.

The child is the smallest server that speaks our framing; the parent is the
smallest client (sync, or asyncio). Nothing can be faster than this with the
same framing, so every host figure is reported as a ratio to it.
"""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys

import msgpack

ECHO_CHILD = r"""
import os, struct, sys
import msgpack
r, w = int(sys.argv[1]), int(sys.argv[2])
buf = bytearray()
while True:
    data = os.read(r, 1 << 20)
    if not data:
        break
    buf += data
    out = []  # the replies to every whole frame of this read, in one write
    while len(buf) >= 4:
        (n,) = struct.unpack_from(">I", buf)
        if len(buf) < 4 + n:
            # Read the rest of a large body directly.
            body = bytearray(n)
            view = memoryview(body)
            have = len(buf) - 4
            view[:have] = buf[4:]
            while have < n:
                have += os.readv(r, [view[have:]])
            buf = bytearray()
        else:
            body = buf[4:4 + n]
            del buf[:4 + n]
        msg = msgpack.unpackb(body)
        reply = msgpack.packb([1, msg[1], None, msg[3]], use_bin_type=True)
        out.append(struct.pack(">I", len(reply)) + reply)
    view = memoryview(b"".join(out))
    while view:
        view = view[os.write(w, view):]
"""

HEADER = struct.Struct(">I")


class RawEcho:
    """A child echo process; ``call`` is one sync round trip."""

    def __init__(self) -> None:
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ECHO_CHILD, str(req_r), str(resp_w)],
            pass_fds=(req_r, resp_w),
        )
        os.close(req_r)
        os.close(resp_w)
        self._id = 0
        self._spill = bytearray()  # bytes read past the last whole reply

    def _read_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            data = os.read(self.resp_r, min(n, 1 << 24))
            if not data:
                raise EOFError
            chunks.append(data)
            n -= len(data)
        return b"".join(chunks)

    def send(self, params: object) -> None:
        self._id += 1
        body = msgpack.packb([0, self._id, "call", params], use_bin_type=True)
        os.write(self.req_w, HEADER.pack(len(body)) + body)

    def send_many(self, params: list[object]) -> None:
        """Several calls in one write (as a pipelining client batches)."""
        frames = []
        for p in params:
            self._id += 1
            body = msgpack.packb([0, self._id, "call", p], use_bin_type=True)
            frames.append(HEADER.pack(len(body)) + body)
        self.write_all(b"".join(frames))

    def receive_many(self, count: int) -> list[object]:
        """``count`` replies, read in as few reads as they arrive in."""
        out: list[object] = []
        buf = self._spill
        while len(out) < count:
            while len(buf) >= 4:
                (n,) = HEADER.unpack_from(buf)
                if len(buf) < 4 + n:
                    break
                out.append(msgpack.unpackb(bytes(buf[4 : 4 + n]))[3])
                del buf[: 4 + n]
            if len(out) < count:
                data = os.read(self.resp_r, 1 << 20)
                if not data:
                    raise EOFError
                buf += data
        return out

    def receive(self) -> object:
        assert not self._spill, "receive after a receive_many that read ahead"
        (n,) = HEADER.unpack(self._read_exact(4))
        return msgpack.unpackb(self._read_exact(n))[3]

    def call(self, params: object) -> object:
        self.send(params)
        return self.receive()

    def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.req_w, view) :]

    def call_large(self, payload: bytes) -> object:
        """Round trip of a large bytes value; a writer thread avoids pipe deadlock."""
        import threading

        self._id += 1
        body = msgpack.packb([0, self._id, "call", payload], use_bin_type=True)
        writer = threading.Thread(target=self.write_all, args=(HEADER.pack(len(body)) + body,))
        writer.start()
        result = self.receive()
        writer.join()
        return result

    async def acall(self, loop: asyncio.AbstractEventLoop, params: object) -> object:
        """asyncio round trip: write, then wait for readability with add_reader."""
        self.send(params)
        fut = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(self.resp_r, ready)
        try:
            await fut
        finally:
            loop.remove_reader(self.resp_r)
        return self.receive()

    def close(self) -> None:
        # Forked peers (the pools) may hold our pipe ends, so EOF is not enough.
        os.close(self.req_w)
        self.proc.kill()
        self.proc.wait(5)
        os.close(self.resp_r)


def pipelined(raw: RawEcho, calls: int, in_flight: int = 64) -> float:
    """Calls per second with ``in_flight`` calls written in one write and
    their replies read as they come (what a batching client does)."""
    import time

    batches = max(1, calls // in_flight)
    args = [{"function": "add", "arguments": {"a": i, "b": 1}} for i in range(in_flight)]
    start = time.perf_counter()
    for _ in range(batches):
        raw.send_many(list(args))
        raw.receive_many(in_flight)
    return batches * in_flight / (time.perf_counter() - start)


def clean_floor(calls: int, one_cpu: bool = False) -> dict[str, float]:
    """The floor measured in a fresh interpreter that loads nothing but
    the echo client (no fnhost, no threads, no other child processes).
    ``one_cpu``: client and echo child pinned to one CPU, where this machine
    kind (a VM) does its best for one call at a time: a wake-up on the other
    CPU costs it ~60 µs more per round trip, and the scheduler places the
    pair either way. Returns ``median_us`` and ``p99_us`` of ``calls`` sync
    round trips, and ``pipelined_per_s`` (64 in flight, ``pipelined``)."""
    import json

    out = subprocess.run(
        [sys.executable, "-m", "bench.floor", str(calls), *(["--one-cpu"] if one_cpu else [])],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return json.loads(out.stdout)


def _measure_here(calls: int, one_cpu: bool) -> dict[str, float]:
    import json
    import time

    if one_cpu:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the child inherits it
    raw = RawEcho()
    try:
        for i in range(200):  # warm-up
            raw.call({"function": "add", "arguments": {"a": i, "b": 1}})
        times = []
        clock = time.perf_counter
        for i in range(calls):
            start = clock()
            raw.call({"function": "add", "arguments": {"a": i, "b": 1}})
            times.append(clock() - start)
        pipelined(raw, 640)  # warm-up
        rate = pipelined(raw, calls * 4)
    finally:
        raw.close()
    times.sort()
    result = {
        "median_us": times[len(times) // 2] * 1e6,
        "p99_us": times[min(len(times) - 1, int(0.99 * len(times)))] * 1e6,
        "pipelined_per_s": rate,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    _measure_here(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, "--one-cpu" in sys.argv)
