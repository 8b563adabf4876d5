"""Function sets placed on a Ray cluster (issue 18), on a real local
multi-node cluster (``ray.cluster_utils.Cluster``: three raylets on this
machine), with real workers behind real actors: no mocks.

Every Ray process of these tests listens on and talks to 127.0.0.1 only
(``test_ray_stays_on_loopback`` checks it with ``ss``). The cluster is
started once for the module; each node has a custom resource naming it
(``node_b``, ``node_c``) and the two workers' nodes share ``pool`` and
``fnhost`` (which the README's snippet asks for).

Marked ``ray`` (``-m 'not ray'`` deselects them); skipped with a reason
only when ``import ray`` fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# Read by Ray when it is imported: keep every node on 127.0.0.1 (on Linux Ray
# rewrites a loopback address to the machine's own otherwise), and send no
# usage statistics anywhere.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'fnhost[ray]')")

import host  # noqa: E402
from host import (  # noqa: E402
    CallTimeout,
    EnvironmentOptions,
    FunctionHost,
    InvalidArguments,
    Limits,
    LoadError,
    RayPlacement,
    RayResources,
    Sandbox,
    UserFunctionError,
    WorkerCrashed,
)
from host.placement.versions import check_versions, local_versions  # noqa: E402
from protocol import PROTOCOL_VERSION  # noqa: E402
from protocol.framing import unpack  # noqa: E402
from tests.local_wheels import make_wheel  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

SECRET_NAME = "FNHOST_RAY_TEST_SECRET"
SECRET = "driver-only-7f3a"

TOOLS = """
import os
import signal
import time

def add(a: int, b: int) -> int:
    \"\"\"Add two numbers.\"\"\"
    return a + b

def getenv(name: str) -> str:
    \"\"\"A variable of the worker's environment, or "" when it has none.\"\"\"
    return os.environ.get(name, "")

def segfault() -> None:
    \"\"\"Die by SIGSEGV.\"\"\"
    os.kill(os.getpid(), signal.SIGSEGV)

def nap(seconds: float, mark: str = "") -> float:
    \"\"\"Sleep, after leaving a file named ``mark`` (if given) to say it started.\"\"\"
    if mark:
        open(mark, "w").close()
    time.sleep(seconds)
    return seconds

def fail(text: str) -> None:
    \"\"\"Raise ValueError(text).\"\"\"
    raise ValueError(text)

def big(n: int) -> str:
    \"\"\"A string of n bytes.\"\"\"
    return "x" * n

def wait_for(path: str, mark: str = "") -> bool:
    \"\"\"Return once a file named ``path`` exists (after leaving ``mark``, as ``nap``).\"\"\"
    if mark:
        open(mark, "w").close()
    while not os.path.exists(path):
        time.sleep(0.02)
    return True
"""


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture(scope="module")
def cluster():
    """Three raylets on loopback: the head, ``node_b`` and ``node_c``."""
    from ray.cluster_utils import Cluster

    saved = os.environ.get(SECRET_NAME)
    # In the driver's environment, so the raylets and the actors inherit it.
    os.environ[SECRET_NAME] = SECRET
    loopback = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **loopback,
            "num_cpus": 1,
            "resources": {"head": 1},
            # A lost node is noticed in about a second, not 30.
            "_system_config": {
                "health_check_period_ms": 500,
                "health_check_failure_threshold": 2,
            },
        },
    )
    nodes = {
        name: cluster.add_node(**loopback, num_cpus=1, resources={name: 1, "pool": 1, "fnhost": 1})
        for name in ("node_b", "node_c")
    }
    ray.init(address=cluster.address, _node_ip_address="127.0.0.1", logging_level="WARNING")
    cluster.fnhost_nodes = nodes
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop(SECRET_NAME, None)
        else:
            os.environ[SECRET_NAME] = saved


@pytest.fixture(scope="module")
def sets_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("ray_sets")
    (directory / "tools.py").write_text(textwrap.dedent(TOOLS))
    (directory / "broken.py").write_text("raise RuntimeError('no import for you')\n")
    marks = directory / "marks"
    marks.mkdir()
    marks.chmod(0o777)
    return directory


def _on(node: str, **limits) -> Limits:
    limits.setdefault("timeout", 20.0)
    return Limits(placement=RayResources(resources={node: 0.01}), **limits)


@pytest.fixture(scope="module")
def fh(cluster, sets_dir):
    host = FunctionHost(
        builtin_dir=sets_dir / "none",
        user_dirs=[],
        placement=RayPlacement(),
        limits=_on("node_b"),
        on_conflict="prefix",
    )
    host.load_function_set(sets_dir / "tools.py")
    yield host
    host.close()


def _where(host: FunctionHost, set_name: str) -> dict:
    """The node and actor process of a set, as its actor reports them."""
    actor = ray.get_actor(_actor_name(host, set_name), namespace="fnhost")
    return ray.get(actor.where.remote())


def _actor_name(host: FunctionHost, set_name: str) -> str:
    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "fnhost"
        and a["name"].split(".")[1] == set_name
        and a["name"].startswith(host._placement.cluster.host_id + ".")
    ]
    assert len(names) == 1, names
    return names[0]


def _node_id(cluster, name: str) -> str:
    return cluster.fnhost_nodes[name].node_id


def test_calls_acalls_dispatch_and_tools_behave_as_locally(fh):
    assert fh.call("add", {"a": 2, "b": 3}) == 5
    assert fh.call("tools.add", '{"a": 1, "b": 1}') == 2

    async def many():
        return await asyncio.gather(*(fh.acall("add", {"a": i, "b": 1}) for i in range(64)))

    assert asyncio.run(many()) == [i + 1 for i in range(64)]
    with pytest.raises(UserFunctionError) as info:
        fh.call("fail", {"text": "no"})
    assert (info.value.remote_type, info.value.message) == ("ValueError", "no")
    assert "raise ValueError(text)" in info.value.traceback
    result = fh.dispatch(
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":1,"b":2}'}}
    )
    assert (result.value, result.is_error) == (3, False)
    bad = fh.dispatch(
        {"id": "c2", "type": "function", "function": {"name": "add", "arguments": '{"a":1}'}}
    )
    assert bad.is_error and isinstance(bad.error, InvalidArguments)
    assert {t["function"]["name"] for t in fh.tools()} >= {"add", "nap", "segfault"}
    report = fh.protections("tools")
    assert report["network_blocked"] and report["seccomp"] and report["forked_from_zygote"]
    with pytest.raises(Exception) as huge:
        fh.call("big", {"n": 80 * 1024 * 1024})
    assert type(huge.value).__name__ == "ResultError"
    with pytest.raises(NotImplementedError, match="progress reports are not available"):
        fh.call("add", {"a": 1, "b": 1}, on_progress=print)
    with pytest.raises(NotImplementedError, match="streams"):
        list(fh.call_stream("add", {"a": 1, "b": 1}))
    assert huge.value.kind == "result_too_large"


def test_a_set_that_fails_to_load_is_a_load_error_in_load_errors(fh, sets_dir):
    with pytest.raises(LoadError) as info:
        fh.load_function_set(sets_dir / "broken.py")
    assert info.value.remote_type == "RuntimeError"
    assert "no import for you" in info.value.message
    assert fh.load_errors["broken"].remote_type == "RuntimeError"


def test_a_set_that_hangs_at_import_is_a_load_error(fh, sets_dir):
    (sets_dir / "hangs.py").write_text("import time\ntime.sleep(600)\n")
    with pytest.raises(LoadError) as info:
        fh.load_function_set(sets_dir / "hangs.py", limits=_on("node_b", start_timeout=2.0))
    assert "did not finish importing within 2s" in info.value.message
    assert fh.load_errors["hangs"].message == info.value.message


def test_a_sets_dependencies_are_built_on_its_node(cluster, tmp_path):
    make_wheel(tmp_path / "wheels", "rayenvpkg", "1.5")
    (tmp_path / "needs.py").write_text(
        "import rayenvpkg\n\ndef version() -> str:\n    'Which.'\n"
        "    return rayenvpkg.__version__\n"
    )
    options = EnvironmentOptions(
        no_index=True, find_links=(str(tmp_path / "wheels"),), cache_dir=str(tmp_path / "c")
    )
    with FunctionHost(
        builtin_dir=tmp_path / "none",
        user_dirs=[],
        placement="ray",
        limits=_on("node_c"),
        environments=options,
    ) as host:
        host.load_function_set(tmp_path / "needs.py", requirements=["rayenvpkg==1.5"])
        assert host.call("version") == "1.5"


def test_sets_go_to_the_nodes_their_resources_name(cluster, fh, sets_dir):
    fh.load_function_set(sets_dir / "tools.py", name="tools_c", limits=_on("node_c"))
    assert _where(fh, "tools")["node_id"] == _node_id(cluster, "node_b")
    assert _where(fh, "tools_c")["node_id"] == _node_id(cluster, "node_c")
    assert fh.call("tools_c.add", {"a": 40, "b": 2}) == 42


def test_reload_swaps_in_the_new_version_on_the_node(fh, sets_dir, tmp_path):
    source = tmp_path / "versions.py"
    source.write_text("def version() -> int:\n    'Which.'\n    return 1\n")
    fh.load_function_set(source)
    assert fh.call("version") == 1
    before = fh.function_sets["versions"]["pid"]
    source.write_text(
        "def version() -> int:\n    'Which.'\n    return 2\n\n"
        "def extra() -> int:\n    'New.'\n    return 0\n"
    )
    assert fh.reload("versions") == {"added": ["extra"], "removed": [], "changed": []}
    # The new worker's pid, as the actor reported it at the swap.
    after = fh.function_sets["versions"]["pid"]
    assert after not in (None, before)
    assert fh.call("version") == 2
    assert fh.function_sets["versions"]["pid"] == after


def test_a_crash_on_the_node_is_worker_crashed_with_its_signal(fh):
    actor_before = _where(fh, "tools")["pid"]
    with pytest.raises(WorkerCrashed) as info:
        fh.call("segfault")
    assert info.value.signal == "SIGSEGV"
    assert "segfault" in (info.value.traceback or "")
    assert fh.call("add", {"a": 1, "b": 1}) == 2
    assert fh.protections("tools")["seccomp"]  # the restarted worker's
    assert _where(fh, "tools")["pid"] == actor_before  # the actor lived on


def test_a_timeout_kills_the_worker_beside_it_and_the_actor_lives(fh):
    actor_before = _where(fh, "tools")["pid"]
    worker_before = fh.function_sets["tools"]["pid"]
    with pytest.raises(CallTimeout) as info:
        fh.call("nap", {"seconds": 60}, timeout=1.0)
    assert "its worker was killed" in info.value.message
    assert fh.call("add", {"a": 1, "b": 2}) == 3
    assert fh.function_sets["tools"]["pid"] != worker_before
    # The restarted worker's report, as that call's answer brought it.
    assert fh.protections("tools")["seccomp"]
    assert _where(fh, "tools")["pid"] == actor_before


def test_the_hosts_environment_stays_off_the_node(fh):
    assert os.environ[SECRET_NAME] == SECRET
    actor = ray.get_actor(_actor_name(fh, "tools"), namespace="fnhost")
    # The actor's own process has it (Ray passes the environment on) ...
    assert ray.get(actor.__ray_call__.remote(lambda self: os.environ.get(SECRET_NAME))) == SECRET
    # ... the worker it runs does not.
    assert fh.call("getenv", {"name": SECRET_NAME}) == ""
    assert fh.call("getenv", {"name": "PATH"}) != ""


def _descendants(root: int) -> set[int]:
    """``root`` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, ValueError, IndexError):
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _alive(pid: int) -> bool:
    """A process ``pid`` exists and is not a zombie awaiting its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _our_processes() -> set[int]:
    """This process and every descendant of it (the raylets, GCS, actors, workers)."""
    return _descendants(os.getpid())


LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::ffff:127\.\d+\.\d+\.\d+\]|\[::1\]):\d+$")


def test_ray_stays_on_loopback(fh):
    ours = _our_processes()
    out = subprocess.run(["ss", "-Htanup"], capture_output=True, text=True, check=True).stdout
    checked = 0
    for line in out.splitlines():
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if not pids & ours:
            continue
        fields = line.split()
        state, local, peer = fields[1], fields[4], fields[5]
        assert LOOPBACK.match(local), f"listening or bound beyond loopback: {line}"
        if state != "LISTEN" and not peer.startswith("*") and not peer.startswith("0.0.0.0"):
            assert LOOPBACK.match(peer), f"talks beyond loopback: {line}"
        checked += 1
    assert checked > 10, "ss saw none of our Ray sockets"


def test_the_readme_snippet_runs_on_the_cluster(cluster, capsys, monkeypatch):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    first = "from host import FunctionHost, Limits, RayPlacement, RayResources"
    [snippet] = [s for s in re.findall(r"```python\n(.*?)```", readme, re.S) if s.startswith(first)]
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    # address="auto" is not looked up: this process's ray.init() connection is used.
    exec(compile(snippet, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["{'city': 'Paris', 'temperature': 14.0, 'units': 'metric'}", "True"]


def test_the_schema_cache_never_registers_a_placed_set_without_its_actor(
    cluster, sets_dir, tmp_path
):
    """A host on Ray ignores ``schema_cache``: each load places the actor,
    whose worker loads the set, so the set answers (a cache hit would have
    registered it with no actor to call)."""
    for _ in range(2):
        with FunctionHost(
            builtin_dir=sets_dir / "none",
            user_dirs=[],
            placement="ray",
            limits=_on("node_c"),
            schema_cache=tmp_path / "cache",
        ) as host:
            host.load_function_set(sets_dir / "tools.py", name="cached")
            assert host.function_sets["cached"]["pid"] is not None
            assert host.call("add", {"a": 2, "b": 3}) == 5
    assert not list((tmp_path / "cache").glob("*.msgpack"))


def test_closing_the_host_removes_its_actors_and_workers(cluster, sets_dir):
    host = FunctionHost(
        builtin_dir=sets_dir / "none", user_dirs=[], placement="ray", limits=_on("node_c")
    )
    host.load_function_set(sets_dir / "tools.py", name="closing")
    worker = host.function_sets["closing"]["pid"]
    actor = _where(host, "closing")["pid"]
    name = _actor_name(host, "closing")
    tree = _descendants(actor)  # the actor, its zygote and spare, the worker and its init
    assert worker in tree and len(tree) >= 3
    host.close()
    assert not _alive(worker)  # stopped before close() returned
    assert _wait(lambda: not any(_alive(p) for p in tree), 30), [p for p in tree if _alive(p)]
    with pytest.raises(ValueError):
        ray.get_actor(name, namespace="fnhost")


@pytest.fixture(scope="module")
def marked(fh, sets_dir):
    """The tools set again, on ``node_c``, allowed to write in ``marks``."""
    sandbox = Sandbox(writable_paths=(str(sets_dir / "marks"),))
    fh.load_function_set(
        sets_dir / "tools.py", name="marked", limits=_on("node_c", sandbox=sandbox)
    )
    return sets_dir / "marks"


async def _until(path: Path) -> None:
    while not path.exists():
        await asyncio.sleep(0.05)


def test_a_cancelled_acall_waiting_behind_another_never_runs_on_the_node(fh, marked):
    gate, started, ran = marked / "gate-1", marked / "started-1", marked / "ran-1"

    async def main() -> int:
        running = asyncio.ensure_future(
            fh.acall("marked.wait_for", {"path": str(gate), "mark": str(started)})
        )
        await _until(started)  # (two calls sent at once may start in either order)
        queued = asyncio.ensure_future(fh.acall("marked.nap", {"seconds": 0, "mark": str(ran)}))
        await asyncio.sleep(0.5)  # (it has most likely reached the worker's pipe)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        gate.touch()
        assert await running is True
        # Calls run in order: had the cancelled one run, it would have by now.
        return await fh.acall("marked.add", {"a": 1, "b": 1})

    assert asyncio.run(main()) == 2
    assert not ran.exists()


def test_stop_on_cancel_kills_the_running_remote_call_and_the_set_answers(fh, marked):
    """As locally: with ``stop_on_cancel``, cancelling an ``acall`` whose
    function runs on the node kills its worker there at once (restarted as
    after a timeout); the next call answers without waiting for it."""
    started = marked / "started-2"
    old_pid = fh.function_sets["marked"]["pid"]
    assert _alive(old_pid)

    async def main() -> int:
        running = asyncio.ensure_future(
            fh.acall(
                "marked.nap", {"seconds": 600, "mark": str(started)}, 200.0, stop_on_cancel=True
            )
        )
        await _until(started)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        # (Without the kill: only after the nap's 200 s timeout.)
        return await fh.acall("marked.add", {"a": 2, "b": 3})

    assert asyncio.run(main()) == 5
    assert not _alive(old_pid)  # the cancelled function stopped: its worker is gone
    assert fh.function_sets["marked"]["pid"] not in (None, old_pid)


def test_the_actor_reports_this_fnhost_and_protocol_version_and_its_node(cluster, fh):
    actor = ray.get_actor(_actor_name(fh, "tools"), namespace="fnhost")
    answer = unpack(ray.get(actor.load.remote()))
    assert answer["versions"] == {"fnhost": host.__version__, "protocol": PROTOCOL_VERSION}
    assert answer["node"]["id"] == _node_id(cluster, "node_b")
    assert answer["node"]["address"] == "127.0.0.1"


def test_a_version_mismatch_is_a_load_error_naming_both_versions_and_the_node():
    ours = local_versions()
    check_versions(dict(ours), "s", "10.0.0.7")  # the same: no error
    with pytest.raises(LoadError) as info:
        check_versions({**ours, "fnhost": "0.0.9"}, "s", "10.0.0.7 (id ab12)", "/x/s.py")
    message = info.value.message
    assert "10.0.0.7 (id ab12)" in message
    assert f"fnhost '0.0.9' on the node, {ours['fnhost']!r} here" in message
    assert "protocol" not in message  # only what differs
    assert (info.value.set_name, info.value.source) == ("s", "/x/s.py")
    with pytest.raises(LoadError, match=f"protocol 2 on the node, {PROTOCOL_VERSION} here"):
        check_versions({**ours, "protocol": 2}, "s", "n")
    with pytest.raises(LoadError, match="fnhost 'unknown' on the node.*protocol 'unknown'"):
        check_versions(None, "s", "n")  # an fnhost from before the check reports nothing


def test_views_of_a_placed_set_do_not_ask_its_actor(fh):
    """``function_sets``, ``tools`` and ``protections`` read what the actor
    reported: they answer while the actor's process is stopped."""
    actor_pid = _where(fh, "tools")["pid"]
    pool = ThreadPoolExecutor(1)
    os.kill(actor_pid, signal.SIGSTOP)
    try:
        views = pool.submit(
            lambda: (fh.function_sets["tools"], fh.tools(), fh.protections("tools"))
        )
        sets, tools, report = views.result(timeout=30)  # (asking the actor: never)
    finally:
        os.kill(actor_pid, signal.SIGCONT)
        pool.shutdown()
    assert _alive(sets["pid"]) and sets["protections"]["seccomp"]
    assert report["seccomp"] and report["forked_from_zygote"]
    assert "add" in {t["function"]["name"] for t in tools}


# Last: it removes a node (node_b or node_c) for good.
def test_a_node_lost_mid_call_fails_that_call_and_the_set_answers_again(cluster, sets_dir):
    host = FunctionHost(
        builtin_dir=sets_dir / "none",
        user_dirs=[],
        placement="ray",
        limits=Limits(
            timeout=60.0,
            placement=RayResources(resources={"pool": 1}),
            sandbox=Sandbox(writable_paths=(str(sets_dir / "marks"),)),
        ),
    )
    try:
        host.load_function_set(sets_dir / "tools.py", name="roaming")
        before = _where(host, "roaming")["node_id"]
        lost = next(n for n in cluster.fnhost_nodes.values() if n.node_id == before)
        mark = sets_dir / "marks" / "started"
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(host.call, "roaming.nap", {"seconds": 120, "mark": str(mark)})
            assert _wait(mark.exists, 30)
            cluster.remove_node(lost, allow_graceful=False)
            with pytest.raises(WorkerCrashed) as info:
                running.result()
        assert info.value.details["cause"] == "placement"
        assert "Ray actor or node" in str(info.value)
        assert host.call("roaming.add", {"a": 2, "b": 2}) == 4
        after = _where(host, "roaming")["node_id"]
        assert after != before
    finally:
        host.close()
