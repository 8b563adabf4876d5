"""Per-call capture of what user code writes to stdout and stderr.

The host starts the worker with fd 1 and fd 2 on two append-only files in
the worker's private directory (never on the protocol pipes). After each
call the worker flushes Python's streams, reads the tail of each file
(bounded) and truncates it, so each reply carries only that call's output.
A crash leaves the file in place for the host to read the stderr tail.
"""

from __future__ import annotations

import os
import sys

from protocol.messages import MAX_OUTPUT_TAIL


class OutputCapture:
    def __init__(self) -> None:
        # Private duplicates: user code that closes or dup2()s over fd 1/2
        # does not take our view of the files away.
        self._fds = {"stdout": os.dup(1), "stderr": os.dup(2)}
        for fd in self._fds.values():
            os.set_inheritable(fd, False)

    @property
    def fds(self) -> list[int]:
        return list(self._fds.values())

    def collect(self) -> dict[str, str]:
        """Return ``{"stdout": tail, "stderr": tail}`` and empty both files."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # user code may have replaced or closed them
                pass
        out: dict[str, str] = {}
        for name, fd in self._fds.items():
            try:
                size = os.fstat(fd).st_size
                if not size:
                    out[name] = ""
                    continue
                start = max(0, size - MAX_OUTPUT_TAIL)
                data = os.pread(fd, size - start, start)
                os.ftruncate(fd, 0)
            except OSError:
                out[name] = ""
                continue
            # Decoding may split a multi-byte character at the cut; replace it.
            text = data.decode("utf-8", "replace")
            out[name] = text[-MAX_OUTPUT_TAIL:]
        return out
