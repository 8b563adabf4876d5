"""How a worker process's death becomes each call's error.

When an incarnation ends (it exited, crashed, was killed by the host, or
broke the protocol), ``Death.reap`` collects what is known of the end: the
exit status, the tail of stderr, a faulthandler dump, and the host's reason
if it killed the process on purpose. Its channel then fails every call still
on it with ``Death.error_for``: the start handshake gets a ``LoadError``; a
call that never started gets ``NotStarted`` (its caller sends it again);
a started call gets ``HostClosed``, ``CallTimeout``, ``ProtocolError`` or
``WorkerCrashed`` as the reason says.
"""

from __future__ import annotations

import os
import re
from typing import Any

from host.errors import (
    CallTimeout,
    HostClosed,
    LoadError,
    OutOfMemory,
    ProtocolError,
    WorkerCrashed,
)
from host.launch.launcher import WorkerSpec
from host.launch.worker_process import STDERR_TAIL_BYTES, describe_exit
from host.wire.pending import Pending
from host.workers.incarnation import CLOSING, PROTOCOL, REAP_TIMEOUT, Incarnation
from protocol import ProtocolViolation
from protocol.messages import MAX_ERROR_TRACEBACK


class NotStarted(Exception):
    """The worker died while this call waited in its pipe behind another."""


class Death:
    """How one incarnation ended, once its process has been reaped."""

    __slots__ = ("inc", "reason", "exit_code", "signal", "how", "stderr_tail", "dump", "oom")

    def __init__(
        self,
        inc: Incarnation,
        exit_code: int | None,
        signal: str | None,
        how: str,
        stderr_tail: str,
        dump: str | None,
    ) -> None:
        self.inc = inc
        #: Why the host ended it (``Incarnation.kill_reason``), or None: it died by itself.
        self.reason = inc.kill_reason
        self.exit_code = exit_code
        self.signal = signal
        #: The exit in words ("exited with status 1", "was killed by SIGSEGV", ...).
        self.how = how
        self.stderr_tail = stderr_tail
        self.dump = dump
        #: Killed by the kernel's OOM killer (it died by itself of SIGKILL and
        #: its memory cgroup counted an OOM kill): "limit" at the cgroup's
        #: limit, "machine" with the machine short; else None.
        self.oom = inc.proc.oom_killed() if self.reason is None and signal == "SIGKILL" else None

    @classmethod
    def reap(cls, inc: Incarnation, violation: ProtocolViolation | None) -> Death:
        """Kill what is left of ``inc``'s process group and reap its process
        (waiting at most ``REAP_TIMEOUT``); a ``violation`` becomes its kill
        reason unless the host had one already."""
        proc = inc.proc
        if violation is not None and inc.kill_reason is None:
            inc.kill_reason = (PROTOCOL, str(violation))
        # Kill the group before reaping: the unreaped leader keeps the group
        # id from being reused, and children it left behind die with it.
        proc.kill_group()
        returncode = proc.reap(REAP_TIMEOUT)
        exit_code, sig, how = describe_exit(returncode)
        # faulthandler's dump starts with the user's frames (most recent
        # first) and can outgrow the short tail: look for it further back.
        long_tail = proc.stderr_tail(MAX_ERROR_TRACEBACK)
        tail = long_tail[-STDERR_TAIL_BYTES:]
        fatal = long_tail.rfind("Fatal Python error")
        dump = long_tail[fatal:] if fatal >= 0 else None
        return cls(inc, exit_code, sig, how, tail, dump)

    def error_for(self, p: Pending) -> BaseException:
        """The error that call ``p`` (or the start handshake) fails with."""
        inc = self.inc
        spec = inc.spec
        name = spec.set_name
        reason = self.reason
        how = self.how
        exit_code, sig, tail, dump = self.exit_code, self.signal, self.stderr_tail, self.dump
        if p is inc.channel.handshake:
            why = reason[1] if reason else f"the worker {how} while importing the module"
            if self.oom:
                cause = _oom_cause(spec, self.oom)
                why = f"the worker ran out of memory while importing the module ({cause})"
            return LoadError(
                name,
                why,
                source=spec.source,
                exit_code=exit_code,
                signal=sig,
                stderr_tail=tail,
            )
        fields: dict[str, Any] = dict(exit_code=exit_code, signal=sig, stderr_tail=tail)
        if reason is not None and reason[0] == CLOSING:
            why = reason[1] if p.started else "the host was closed before the call started"
            return HostClosed(name, p.function, why, **fields)
        if not p.started:
            return NotStarted()  # waited in the pipe: its caller sends it again
        if p.msgid in inc.timed_out:
            return CallTimeout(name, p.function, "timed out", **fields)
        if reason is not None and reason[0] == PROTOCOL:
            return ProtocolError(name, p.function, reason[1], **fields)
        if reason is not None:
            # details["cause"]: why the host ended it ("timeout" of another
            # call, "recycle", "retired", "start"), for callers to branch on.
            return WorkerCrashed(
                name, p.function, reason[1], details={"cause": reason[0]}, **fields
            )
        if self.oom:
            return OutOfMemory(name, p.function, _oom_cause(spec, self.oom), **fields)
        # One sentence; the dump and the stderr stay in their attributes.
        text = f"{how} during the call"
        site = _crash_site(dump, spec.path)
        if site:
            text += f", in {site}"
        if dump:
            text += "; its Python traceback is in .traceback"
        elif tail:
            text += "; what it wrote to stderr is in .stderr_tail"
        return WorkerCrashed(name, p.function, text, traceback=dump, **fields)


def _oom_cause(spec: WorkerSpec, where: str) -> str:
    if where != "limit":
        return "the kernel's OOM killer ended the worker: the machine ran out of memory"
    limits = spec.limits
    total = (limits.memory_mb or 0) + (limits.disk_mb or 0)
    return (
        f"the kernel's OOM killer ended the worker at its memory cgroup's limit, "
        f"{total} MiB (memory_mb + disk_mb: heap, scratch and shared memory together)"
    )


_DUMP_FRAME = re.compile(r'^\s*File "(?P<file>.+)", line (?P<line>\d+) in (?P<func>\S+)', re.M)


def _crash_site(dump: str | None, source: str | None) -> str | None:
    """The innermost frame of the set's own file in a faulthandler dump, as
    "func at file.py line N", or ``None`` (no dump, or no frame of that file)."""
    if not dump or not source:
        return None
    for frame in _DUMP_FRAME.finditer(dump):
        if os.path.abspath(frame["file"]) == os.path.abspath(source):
            return f"{frame['func']} at {os.path.basename(source)} line {frame['line']}"
    return None
