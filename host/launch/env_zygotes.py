"""The zygotes of set environments: one per environment interpreter, started
on the first spawn that needs it (on the launcher thread, like the host's
own zygote), given up after two failures in a row (spawns then start a new
interpreter each), closed with the launcher."""

from __future__ import annotations

from host.launch.interpreter import Interpreter, worker_argv
from host.launch.zygote import Zygote

#: Failures in a row after which an environment's spawns stop using its zygote.
MAX_FAILURES = 2


class EnvZygotes:
    """Zygotes by interpreter. Launcher thread only (``close`` excepted)."""

    def __init__(self, host_pid: int, env: dict[str, str], memory_cgroup: str | None) -> None:
        self._host_pid = host_pid
        self._env = env
        self._memory_cgroup = memory_cgroup
        self._zygotes: dict[Interpreter, Zygote] = {}
        self._failures: dict[Interpreter, int] = {}

    def usable(self, interpreter: Interpreter) -> bool:
        """Whether spawns on ``interpreter`` should still go through a zygote."""
        return self._failures.get(interpreter, 0) < MAX_FAILURES

    def get(self, interpreter: Interpreter) -> Zygote:
        """The running zygote of ``interpreter``, started (again) if needed.
        Raises ``OSError`` if it cannot be started."""
        zygote = self._zygotes.get(interpreter)
        if zygote is None or not zygote.alive:
            if zygote is not None:
                zygote.close()
            zygote = self._zygotes[interpreter] = Zygote(
                self._host_pid,
                self._env,
                self._memory_cgroup,
                argv=worker_argv(interpreter, "worker.zygote"),
            )
        return zygote

    def record(self, interpreter: Interpreter, ok: bool) -> None:
        """Count a spawn through ``interpreter``'s zygote that failed (or reset on success)."""
        self._failures[interpreter] = 0 if ok else self._failures.get(interpreter, 0) + 1

    def close(self) -> None:
        """Close every zygote (each kills what it still has). Idempotent."""
        for zygote in list(self._zygotes.values()):
            zygote.close()
