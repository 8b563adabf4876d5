"""A host that is not root but has subordinate ids: ``/etc/subuid`` and
``/etc/subgid`` grant its user a range, and ``newuidmap``/``newgidmap``
(Debian's ``uidmap``) map it. Each worker then runs as an id of that range,
not the host's (worker/subordinate_ids.py, worker/enclosure.py).

The host runs for real as the user ``.ci/prepare-subuid`` makes
(``fnhost-subuid``), with the copy of fnhost ``make_home`` builds; the
test, root, looks at the workers from outside (``/proc/<pid>/status``).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import textwrap

import pytest

from tests.conftest import process_alive, process_tree, wait_for
from tests.test_unprivileged_host import SYSTEM_PYTHON, make_home, run_as
from worker import subordinate_ids

USER = "fnhost-subuid"


def _grant() -> subordinate_ids.Grant | None:
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        return None
    return subordinate_ids.granted(entry.pw_uid, entry.pw_gid)


GRANT = _grant() if os.geteuid() == 0 else None
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or GRANT is None
    or subordinate_ids.tools() is None
    or not shutil.which("setpriv")
    or not os.path.exists(SYSTEM_PYTHON),
    reason=f"needs root, the user {USER} with a range in /etc/subuid and /etc/subgid and "
    "newuidmap/newgidmap setuid root (run .ci/prepare-subuid), setpriv and the "
    "system's Python of this version",
)

MORE = r"""

def scratch_and_stdout() -> list:
    with open("mine.txt", "w") as f:
        f.write("x")
    with open("/dev/stdout", "w") as f:
        f.write("through /dev/stdout")
    return sorted(os.listdir("."))
"""

WRITER = r"""
import os


def write_into(path: str) -> str:
    with open(os.path.join(path, "written.txt"), "w") as f:
        f.write("x")
    return "written"
"""

HOST = textwrap.dedent(
    """
    import json, os, sys
    from host import FunctionHost, Limits, Sandbox

    method, set_path, sibling, writer, empty, secret, writable = sys.argv[1:8]
    with FunctionHost(start_method=method, builtin_dir=empty, user_dirs=[]) as fh:
        fh.load_function_set(set_path)
        fh.load_function_set(sibling, "sibling")
        fh.load_function_set(
            writer, limits=Limits(sandbox=Sandbox(writable_paths=(writable,)))
        )
        detailed = fh.call_detailed("scratch_and_stdout", {})
        print(json.dumps({
            "outcomes": fh.call("meddle", {"pids": [os.getpid()]}),
            "secret": fh.call("attacks.open_path", {"path": secret}),
            "scratch": detailed.value,
            "stdout": detailed.stdout,
            "report": fh.protections("attacks"),
            "sibling_report": fh.protections("sibling"),
            "writer_report": fh.protections("writer"),
            "written": fh.call("write_into", {"path": writable}),
            "inside_pid": fh.call("attacks.pids_here"),
            "pids": {name: fh.function_sets[name]["pid"] for name in fh.function_sets},
            "uid": os.getuid(),
            "gid": os.getgid(),
        }), flush=True)
        sys.stdin.readline()  # while the test looks at the workers
    print(json.dumps(sorted(os.listdir(os.environ["TMPDIR"]))), flush=True)
    """
)


@pytest.fixture(scope="module")
def subuid_home():
    entry = pwd.getpwnam(USER)
    home = make_home(entry.pw_uid, entry.pw_gid, "fnhost-subuid-")
    with open(os.path.join(home, "attacks.py"), "a") as f:
        f.write(MORE)
    with open(os.path.join(home, "sibling.py"), "w") as f:
        f.write("def hello() -> str:\n    return 'hi'\n")
    with open(os.path.join(home, "writer.py"), "w") as f:
        f.write(WRITER)
    with open(os.path.join(home, "subuid_host.py"), "w") as f:
        f.write(HOST)
    # The host user's secret, in a directory every uid may enter.
    with open(os.path.join(home, "secret"), "w") as f:
        f.write("the host's")
    os.chown(os.path.join(home, "secret"), entry.pw_uid, entry.pw_gid)
    os.chmod(os.path.join(home, "secret"), 0o600)
    writable = os.path.join(home, "writable")
    os.mkdir(writable)
    os.chown(writable, entry.pw_uid, entry.pw_gid)
    for name in ("attacks.py", "sibling.py", "writer.py", "subuid_host.py"):
        os.chmod(os.path.join(home, name), 0o644)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def _ids(pid: int) -> tuple[set[int], set[int]]:
    """Every uid and gid (real, effective, saved, fs) of ``pid``, seen from here."""
    with open(f"/proc/{pid}/status") as f:
        lines = {line.split(":")[0]: line.split()[1:] for line in f}
    return {int(v) for v in lines["Uid"]}, {int(v) for v in lines["Gid"]}


def _run_host(home: str, method: str) -> tuple[dict, dict[str, dict[int, tuple]], list[str]]:
    """Run the host as the user; (its facts, each set's processes' ids seen
    from outside while it runs, its TMPDIR after it closed)."""
    entry = pwd.getpwnam(USER)
    host = run_as(
        entry.pw_uid, entry.pw_gid, home, "subuid_host.py", method,
        os.path.join(home, "attacks.py"), os.path.join(home, "sibling.py"),
        os.path.join(home, "writer.py"),
        os.path.join(home, "empty"), os.path.join(home, "secret"),
        os.path.join(home, "writable"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = host.stdout.readline()
        assert line, host.stderr.read()
        facts = json.loads(line)
        ids = {name: {p: _ids(p) for p in process_tree(pid)} for name, pid in facts["pids"].items()}
        host.stdin.write("\n")
        host.stdin.flush()
        left = json.loads(host.stdout.readline())
        assert host.wait(timeout=30) == 0, host.stderr.read()
    finally:
        host.kill()
        host.wait()
    return facts, ids, left


@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_each_worker_of_a_host_with_a_subuid_range_runs_as_an_id_of_that_range(subuid_home, method):
    facts, ids, left = _run_host(subuid_home, method)
    assert GRANT is not None
    host_uid, host_gid = facts["uid"], facts["gid"]
    assert host_uid == pwd.getpwnam(USER).pw_uid
    uids_of = {}
    for name in ("attacks", "sibling"):
        warden = facts["pids"][name]
        assert len(ids[name]) == 3  # warden, init, worker
        # Seen from outside, every process of the worker has one uid and one
        # gid: of the range, at the warden's offset, not the host's.
        offset = GRANT.worker_id(warden) - 1
        assert {frozenset(u) for u, _ in ids[name].values()} == {frozenset({GRANT.uid + offset})}
        assert {frozenset(g) for _, g in ids[name].values()} == {frozenset({GRANT.gid + offset})}
        assert GRANT.uid <= GRANT.uid + offset < GRANT.uid + GRANT.uid_count
        assert GRANT.uid + offset != host_uid and GRANT.gid + offset != host_gid
        uids_of[name] = GRANT.uid + offset
    assert uids_of["attacks"] != uids_of["sibling"]  # one per worker
    report = facts["report"]
    assert report["own_uid"] is True
    assert facts["sibling_report"]["own_uid"] is True
    assert report["pid_namespace"] is True and report["host_limits_protected"] is True
    # The host's pid names nothing in here: limits, priority, CPU placement
    # and signals all miss it.
    (outcome,) = facts["outcomes"].values()
    assert outcome == ["ESRCH"] * 5
    assert facts["inside_pid"] == [1, facts["pids"]["attacks"]]
    # The host user's own file (0600, in a directory anyone may enter): the
    # host's uid could read it; the worker's may not.
    assert facts["secret"] == "EACCES"
    # Its scratch is its own, and its stdout reopens as its own.
    assert facts["scratch"] == ["mine.txt"]
    assert facts["stdout"] == "through /dev/stdout"
    # The host removed every worker's directory.
    assert left == []


def test_a_set_that_needs_the_hosts_uid_keeps_it_and_the_report_says_so(subuid_home):
    """A writable path would need an idmapped mount (root only) to be
    writable for a subordinate uid: the worker keeps the host's uid."""
    facts, ids, _ = _run_host(subuid_home, "zygote")
    assert facts["writer_report"]["own_uid"] is False
    worker = max(ids["writer"])  # the last of the tree: the worker itself
    assert facts["uid"] in ids["writer"][worker][0]
    assert facts["writer_report"]["writable_paths_open"] is True
    assert facts["written"] == "written"


def test_workers_with_subordinate_ids_die_with_their_zygote(subuid_home):
    entry = pwd.getpwnam(USER)
    host = run_as(
        entry.pw_uid, entry.pw_gid, subuid_home, "waiting_host.py",
        os.path.join(subuid_home, "attacks.py"), os.path.join(subuid_home, "empty"),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        warden = json.loads(host.stdout.readline())["warden"]
        processes = process_tree(warden)
        assert len(processes) == 3
        with open(f"/proc/{warden}/stat") as f:
            zygote = int(f.read().rsplit(")", 1)[1].split()[1])
        os.kill(zygote, signal.SIGKILL)
        assert wait_for(lambda: not any(process_alive(p) for p in processes), 5.0)
    finally:
        host.kill()
        host.wait()
