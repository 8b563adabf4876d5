"""The launcher's jobs for later (``Launcher.submit_later``), which start a
set's standby after its restart: run on the launcher's thread when due, in
due order, behind no other job; failed, never lost, when the launcher closes."""

from __future__ import annotations

import threading
import time

import pytest

from host.launch.launcher import Launcher


@pytest.fixture
def launcher():
    launcher = Launcher(start_method="spawn")
    yield launcher
    launcher.close()


@pytest.mark.timeout(30)
def test_jobs_for_later_run_when_due_in_due_order_on_the_launcher_thread(launcher):
    ran: list[tuple[str, float, bool]] = []
    start = time.monotonic()

    def job(name: str):
        return lambda: ran.append((name, time.monotonic() - start, launcher.on_thread()))

    late = launcher.submit_later(0.3, job("late"))
    early = launcher.submit_later(0.1, job("early"))
    now = launcher.submit(job("now"))
    late.result(5)
    early.result(5)
    now.result(5)
    assert [name for name, _, _ in ran] == ["now", "early", "late"]
    times = {name: at for name, at, _ in ran}
    assert times["early"] >= 0.1 and times["late"] >= 0.3
    assert all(on_thread for _, _, on_thread in ran)


@pytest.mark.timeout(30)
def test_a_job_for_later_fails_when_the_launcher_closes_first():
    launcher = Launcher(start_method="spawn")
    ran = threading.Event()
    pending = launcher.submit_later(60.0, ran.set)
    launcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        pending.result(5)
    assert not ran.is_set()
    with pytest.raises(RuntimeError, match="closed"):
        launcher.submit_later(0.0, ran.set).result(5)
