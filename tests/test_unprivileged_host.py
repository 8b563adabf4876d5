"""A host that is not root: no uid to give away, but a PID, mount and IPC
namespace of the worker's own, entered through a user namespace that maps
the host's uid to root (worker/enclosure.py). The host runs for real as
``nobody`` (uid 65534), with a copy of fnhost and its dependencies that
``nobody`` can read (the interpreter of this test run may live under a 0700
``/root``: the system's Python 3.11 is used instead).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

import pytest

from tests.conftest import process_alive, process_tree, wait_for
from tests.test_wall import ATTACKS

NOBODY = 65534
SYSTEM_PYTHON = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root (to become nobody), setpriv and the system's Python of this version",
)

WAITING_HOST = textwrap.dedent(
    """
    import json, os, sys, time
    from host import FunctionHost

    set_path, empty = sys.argv[1:3]
    fh = FunctionHost(builtin_dir=empty, user_dirs=[])
    fh.load_function_set(set_path)
    print(json.dumps({"warden": fh.function_sets["attacks"]["pid"]}), flush=True)
    time.sleep(60)
    """
)

HOST_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from host import FunctionHost, Limits

    method, set_path, empty = sys.argv[1:4]
    with FunctionHost(start_method=method, builtin_dir=empty, user_dirs=[]) as fh:
        fh.load_function_set(set_path)
        print(json.dumps({
            "outcomes": fh.call("meddle", {"pids": [os.getpid()]}),
            "report": fh.protections("attacks"),
            "inside_pid": fh.call("pids_here"),
            "handle_pid": fh.function_sets["attacks"]["pid"],
            "uid": os.getuid(),
        }))
    """
)


def make_home(uid: int, gid: int, prefix: str) -> str:
    """A directory user ``uid`` can use: a venv of the system's Python
    holding copies of fnhost, msgpack and docstring_parser, the scripts, a
    set, and ``tmp`` (the host's TMPDIR, 0700, the user's)."""
    home = tempfile.mkdtemp(prefix=prefix)
    os.chmod(home, 0o755)
    venv = os.path.join(home, "venv")
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", venv], check=True)
    site = subprocess.run(
        [
            os.path.join(venv, "bin", "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ours = sysconfig.get_path("platlib")
    for package, source in (
        ("host", repo),
        ("worker", repo),
        ("protocol", repo),
        ("msgpack", ours),
        ("docstring_parser", ours),
    ):
        shutil.copytree(
            os.path.join(source, package),
            os.path.join(site, package),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    with open(os.path.join(home, "host_script.py"), "w") as f:
        f.write(HOST_SCRIPT)
    with open(os.path.join(home, "waiting_host.py"), "w") as f:
        f.write(WAITING_HOST)
    with open(os.path.join(home, "attacks.py"), "w") as f:
        f.write(ATTACKS)
    os.mkdir(os.path.join(home, "empty"))
    tmp = os.path.join(home, "tmp")
    os.mkdir(tmp)
    os.chown(tmp, uid, gid)
    for root, dirs, files in os.walk(home):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755 if name != "tmp" else 0o700)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):  # a link's target is the system's
                os.chmod(path, 0o644)
    return home


def run_as(uid: int, gid: int, home: str, script: str, *args: str, **popen):
    """Run ``script`` of ``home`` with the venv's Python as ``uid``/``gid``
    (no other groups), TMPDIR ``home/tmp``: a ``subprocess.run`` result, or
    with ``popen`` given a ``Popen`` (its keyword arguments)."""
    argv = [
        "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
        os.path.join(home, "venv", "bin", "python"), os.path.join(home, script), *args,
    ]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": os.path.join(home, "tmp")}
    if popen:
        return subprocess.Popen(argv, cwd=home, env=env, **popen)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=home, env=env)


@pytest.fixture(scope="module")
def nobody_home():
    home = make_home(NOBODY, NOBODY, "fnhost-nobody-")
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_a_host_that_is_not_root_gets_a_pid_namespace_but_no_own_uid(nobody_home, method):
    home = nobody_home
    result = run_as(
        NOBODY, NOBODY, home, "host_script.py",
        method, os.path.join(home, "attacks.py"), os.path.join(home, "empty"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["uid"] == NOBODY
    report = facts["report"]
    # The truth about this host: no own uid, but the namespaces hold.
    assert report["own_uid"] is False
    assert report["pid_namespace"] is True
    assert report["host_limits_protected"] is True
    assert report["user_namespace"] is True
    assert report["scratch_tmpfs"] is True
    # The host cannot be reached by its pid: prlimit, setpriority,
    # affinity and kill all find no such process.
    (outcome,) = facts["outcomes"].values()
    assert outcome == ["ESRCH"] * 5
    assert facts["inside_pid"] == [1, facts["handle_pid"]]


def test_workers_of_a_host_that_is_not_root_die_with_their_zygote(nobody_home):
    home = nobody_home
    host = run_as(
        NOBODY, NOBODY, home, "waiting_host.py",
        os.path.join(home, "attacks.py"), os.path.join(home, "empty"),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        warden = json.loads(host.stdout.readline())["warden"]
        processes = process_tree(warden)
        assert len(processes) == 3  # warden, init, worker
        with open(f"/proc/{warden}/stat") as f:
            zygote = int(f.read().rsplit(")", 1)[1].split()[1])
        os.kill(zygote, signal.SIGKILL)
        assert wait_for(lambda: not any(process_alive(p) for p in processes), 5.0)
    finally:
        host.kill()
        host.wait()
