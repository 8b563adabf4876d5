"""Per-set environments, for real: uv builds them from wheels these tests
write by hand (``--no-index --find-links``, so no index is needed), and the
sets' workers run on their interpreters under the usual sandbox."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from host import CallError, LoadError, Sandbox
from host.environments import EnvironmentOptions, list_environments
from tests.conftest import zygote_pids
from tests.local_wheels import make_wheel, script_block

pytest.importorskip("uv", reason="per-set environments need uv: pip install 'fnhost[envs]'")

PKG = "fnhost_envtest_pkg"

VERSION_SET = """
import sys

import {pkg}


def version() -> str:
    \"\"\"The version of the package this set sees.\"\"\"
    return {pkg}.__version__


def interpreter() -> str:
    \"\"\"The interpreter this worker runs on.\"\"\"
    return sys.executable


def can_import(name: str) -> bool:
    \"\"\"Whether a module is importable here.\"\"\"
    import importlib.util

    return importlib.util.find_spec(name) is not None


def crash() -> None:
    \"\"\"Die of a signal.\"\"\"
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)
"""


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    directory = tmp_path / "wheels"
    make_wheel(directory, PKG, "1.0")
    make_wheel(directory, PKG, "2.0")
    return directory


@pytest.fixture
def options(tmp_path: Path, wheels: Path) -> EnvironmentOptions:
    return EnvironmentOptions(
        no_index=True, find_links=(str(wheels),), cache_dir=str(tmp_path / "c")
    )


def write_version_set(write_set, name: str, *deps: str) -> Path:
    return write_set(name, script_block(*deps) + VERSION_SET.format(pkg=PKG))


def test_two_sets_pinning_different_versions_each_see_their_own(make_host, write_set, options):
    one = write_version_set(write_set, "one", f"{PKG}==1.0")
    two = write_version_set(write_set, "two", f"{PKG}==2.0")
    fh = make_host(environments=options, on_conflict="prefix")
    fh.load_function_set(one)
    fh.load_function_set(two)
    assert fh.call("one.version") == "1.0"
    assert fh.call("two.version") == "2.0"
    # Each on its own environment's interpreter, and the host sees neither.
    envs = {fh.call("one.interpreter"), fh.call("two.interpreter")}
    assert len(envs) == 2 and sys.executable not in envs
    assert all(p.startswith(options.cache_dir) for p in envs)
    assert importlib.util.find_spec(PKG) is None


def test_a_set_in_an_environment_sees_none_of_the_hosts_packages(make_host, write_set, options):
    path = write_version_set(write_set, "isolated", PKG)
    fh = make_host(environments=options)
    fh.load_function_set(path)
    assert importlib.util.find_spec("pytest") is not None  # the host has it
    assert fh.call("can_import", {"name": "pytest"}) is False
    assert fh.call("can_import", {"name": "host"}) is False
    # fnhost's worker code is there, as it must be.
    assert fh.call("can_import", {"name": "worker"}) is True


def test_a_set_that_declares_nothing_runs_on_the_hosts_interpreter(make_host, write_set, options):
    path = write_set(
        "plain",
        """
        import sys

        def interpreter() -> str:
            \"\"\"The interpreter.\"\"\"
            return sys.executable
        """,
    )
    fh = make_host(environments=options)
    fh.load_function_set(path)
    assert fh.call("interpreter") == sys.executable
    assert list_environments(options.cache_dir) == []


def test_requirements_passed_by_the_host_replace_the_files_block(make_host, write_set, options):
    path = write_version_set(write_set, "pinned", f"{PKG}==1.0")
    fh = make_host(environments=options)
    fh.load_function_set(path, requirements=[f"{PKG}==2.0"])
    assert fh.call("version") == "2.0"


def test_requirements_for_a_set_without_a_block(make_host, write_set, options):
    path = write_set("bare", VERSION_SET.format(pkg=PKG))
    fh = make_host(environments=options)
    fh.load_function_set(path, requirements=[f"{PKG}==1.0"])
    assert fh.call("version") == "1.0"


def test_requirements_must_be_a_list_of_strings(make_host, write_set, options):
    path = write_set("bare", VERSION_SET.format(pkg=PKG))
    fh = make_host(environments=options)
    with pytest.raises(TypeError, match="list of strings"):
        fh.load_function_set(path, requirements=f"{PKG}==1.0")


def test_the_second_load_of_the_same_spec_does_not_build(make_host, write_set, options, caplog):
    first = write_version_set(write_set, "first", f"{PKG}==1.0")
    second = write_version_set(write_set, "second", f"{PKG}==1.0")
    caplog.set_level(logging.INFO, logger="fnhost.environments")
    fh = make_host(environments=options, on_conflict="prefix")
    start = time.perf_counter()
    fh.load_function_set(first)
    built = time.perf_counter() - start
    builds = [r for r in caplog.records if "building environment" in r.getMessage()]
    assert len(builds) == 1
    marker = next(e for e in list_environments(options.cache_dir) if e.state == "ready")
    # Another set with the same spec, in another host: no build.
    fh2 = make_host(environments=options)
    start = time.perf_counter()
    fh2.load_function_set(second)
    again = time.perf_counter() - start
    assert [r for r in caplog.records if "building environment" in r.getMessage()] == builds
    assert fh2.call("version") == "1.0"
    envs = list_environments(options.cache_dir)
    assert [e.key for e in envs] == [marker.key]
    assert envs[0].built_at == marker.built_at
    print(f"first load (build) {built * 1000:.0f} ms, second load {again * 1000:.0f} ms")


def test_a_set_in_an_environment_gets_the_same_sandbox(make_host, write_set, options):
    env_set = write_version_set(write_set, "walled", PKG)
    plain = write_set(
        "plainwall",
        """
        def nothing() -> None:
            \"\"\"Nothing.\"\"\"
        """,
    )
    fh = make_host(environments=options)
    fh.load_function_set(env_set)
    fh.load_function_set(plain)
    assert fh.protections("walled") == fh.protections("plainwall")
    assert fh.protections("walled")["forked_from_zygote"] is True


PTH_RECORD = (
    "import builtins, os; builtins.__dict__.setdefault('_pth_ran', []).append("
    "(os.getuid(), [l for l in open('/proc/self/status') if l.startswith('Seccomp:')]"
    "[0].split()[1],"
    " os.readlink('/proc/self/ns/net')))\n"
)
#: The same line, leaving a mark outside any worker's scratch: only a run
#: outside the wall (the build, the zygote) can write it.
PTH_MARK = (
    "import os; exec(\"try:\\n open({marker!r}, 'a').write(str(os.getpid()) + '\\\\n')"
    '\\nexcept OSError:\\n pass")\n'
)

PTH_SET = """
import builtins
import extramod


def pth_runs() -> list:
    \"\"\"Where the .pth's import line ran.\"\"\"
    return [list(r) for r in getattr(builtins, "_pth_ran", [])]


def extra() -> str:
    \"\"\"A module a .pth's directory line put on sys.path.\"\"\"
    return extramod.WHERE
"""


@pytest.mark.parametrize("start_method", ["zygote", "spawn"])
def test_a_dependencys_pth_file_runs_only_inside_the_wall(
    make_host, write_set, tmp_path, start_method
):
    """A wheel's ``.pth`` ``import`` line runs when ``site`` starts: in the
    environment's zygote, as the host's uid with no filter, before the
    wall, if the interpreter ran ``site`` at its start. It must run in the
    worker, after every layer, and a ``.pth`` directory line must still
    work."""
    links = tmp_path / "pthwheels"
    marks = tempfile.mkdtemp(prefix="fnhost-test-pth-")  # writable by any uid, but walled
    os.chmod(marks, 0o777)
    marker = os.path.join(marks, "ran")
    make_wheel(
        links,
        "pthprobe",
        "1.0",
        extra={
            "pthprobe_hook.pth": PTH_RECORD,
            "pthprobe_mark.pth": PTH_MARK.format(marker=marker),
            # Modules the standard library tries to import (copy tries
            # org.python.core, subprocess msvcrt): found before the wall if
            # site-packages were on sys.path there.
            "org/__init__.py": PTH_RECORD,
            "msvcrt.py": PTH_RECORD,
            "pthprobe_dirs.pth": "pthextra\n",
            "pthextra/extramod.py": "WHERE = 'pthextra'\n",
        },
    )
    options = EnvironmentOptions(
        no_index=True, find_links=(str(links),), cache_dir=str(tmp_path / "c")
    )
    fh = make_host(environments=options, start_method=start_method)
    fh.load_function_set(write_set("pthset", script_block("pthprobe==1.0") + PTH_SET))
    assert fh.call("extra") == "pthextra"
    runs = fh.call("pth_runs")
    try:
        # Not the build either (uv's --compile-bytecode ran the interpreter with site).
        assert not os.path.exists(marker), open(marker).read()
    finally:
        shutil.rmtree(marks, ignore_errors=True)
    assert runs, "the .pth's import line never ran"
    assert fh.protections("pthset")["seccomp"] is True
    for uid, seccomp, netns in runs:  # the .pth's, and org's if the set imported copy
        assert seccomp == "2", runs  # in the worker, under its filter
        assert netns != os.readlink("/proc/self/ns/net")  # not in the host's network
        if fh.protections("pthset")["own_uid"]:
            assert uid != os.getuid()


def test_a_crashed_worker_restarts_in_its_environment_from_its_own_zygote(
    make_host, write_set, options
):
    path = write_version_set(write_set, "crashy", f"{PKG}==2.0")
    fh = make_host(environments=options)
    before = zygote_pids()
    fh.load_function_set(path)
    assert len(zygote_pids() - before) >= 1
    with pytest.raises(CallError):
        fh.call("crash")
    assert fh.call("version") == "2.0"
    assert fh.protections("crashy")["forked_from_zygote"] is True


def test_spawned_workers_run_in_the_environment_too(make_host, write_set, options):
    path = write_version_set(write_set, "spawned", f"{PKG}==1.0")
    fh = make_host(environments=options, start_method="spawn")
    fh.load_function_set(path)
    assert fh.call("version") == "1.0"
    assert fh.protections("spawned").get("forked_from_zygote") is not True


def test_confined_reads_still_reach_the_environment(make_host, write_set, options):
    from host import Limits

    path = write_version_set(write_set, "confined", f"{PKG}==1.0")
    fh = make_host(
        environments=options, limits=Limits(timeout=10.0, sandbox=Sandbox(confine_reads=True))
    )
    fh.load_function_set(path)
    assert fh.call("version") == "1.0"


def test_reload_rebuilds_when_the_declared_dependencies_change(make_host, write_set, options):
    path = write_version_set(write_set, "moving", f"{PKG}==1.0")
    fh = make_host(environments=options)
    fh.load_function_set(path)
    assert fh.call("version") == "1.0"
    write_version_set(write_set, "moving", f"{PKG}==2.0")
    fh.reload("moving")
    assert fh.call("version") == "2.0"
    assert len([e for e in list_environments(options.cache_dir) if e.state == "ready"]) == 2
    # A restart after the reload stays on the new environment.
    with pytest.raises(CallError):
        fh.call("crash")
    assert fh.call("version") == "2.0"


def test_a_reload_whose_dependencies_cannot_be_had_keeps_the_last_good_version(
    make_host, write_set, options
):
    path = write_version_set(write_set, "steady", f"{PKG}==1.0")
    fh = make_host(environments=options)
    fh.load_function_set(path)
    write_version_set(write_set, "steady", f"{PKG}==9.9")
    with pytest.raises(LoadError, match=r"cannot be resolved"):
        fh.reload("steady")
    assert fh.call("version") == "1.0"
    assert "steady" in fh.load_errors


def test_watch_rebuilds_when_the_block_changes(make_host, write_set, options):
    from tests.conftest import wait_for

    path = write_version_set(write_set, "watched", f"{PKG}==1.0")
    fh = make_host(environments=options, watch=True, watch_interval=0.1)
    fh.load_function_set(path)
    assert fh.call("version") == "1.0"
    time.sleep(0.05)
    write_version_set(write_set, "watched", f"{PKG}==2.0")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert wait_for(lambda: fh.call("version") == "2.0", 20.0)


def test_function_sets_name_the_environment(make_host, write_set, options):
    path = write_version_set(write_set, "named", PKG)
    fh = make_host(environments=options)
    fh.load_function_set(path)
    (env,) = list_environments(options.cache_dir)
    marker = json.loads((Path(env.path) / "fnhost-env.json").read_text())
    assert marker["requirements"] == [PKG]
    assert fh.call("interpreter") == os.path.join(env.path, "bin", "python")
    assert fh.function_sets["named"]["environment"] == env.path


def test_the_readme_set_runs_in_its_environment(make_host, tmp_path):
    """The README's example set, with a stand-in wheel of the package it pins
    (same name and version, written here: no index needed)."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (snippet,) = [
        s for s in re.findall(r"```python\n(.*?)```", readme, re.S) if s.startswith("# /// script")
    ]
    path = tmp_path / "sizes.py"
    path.write_text(snippet)
    links = tmp_path / "links"
    make_wheel(links, "humanize", "4.9.0", body="def naturalsize(n):\n    return f'{n / 1e6} MB'\n")
    options = EnvironmentOptions(
        no_index=True, find_links=(str(links),), cache_dir=str(tmp_path / "c")
    )
    fh = make_host(environments=options)
    fh.load_function_set(path)
    assert fh.call("file_size", {"n_bytes": 1_000_000}) == "1.0 MB"


@pytest.mark.network
def test_a_set_gets_its_package_from_the_real_index(make_host, write_set, tmp_path):
    """The one test that uses the network: PyPI through uv's defaults."""
    import socket

    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        pytest.skip("pypi.org cannot be reached from here")
    path = write_set(
        "fromindex",
        script_block("six==1.16.0")
        + """
import six


def six_version() -> str:
    \"\"\"The version of six.\"\"\"
    return six.__version__
""",
    )
    fh = make_host(environments=EnvironmentOptions(cache_dir=str(tmp_path / "c")))
    fh.load_function_set(path)
    assert fh.call("six_version") == "1.16.0"


def test_every_worker_of_a_pool_runs_in_the_environment(make_host, write_set, options):
    from host import Limits

    def interpreters(fh) -> set[str]:
        # A forked worker keeps its zygote's command line: argv[0] is its python.
        found = set()
        for pid in fh.function_sets["pooled"]["pids"]:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found.add(f.read().split(b"\0")[0].decode())
        return found

    path = write_version_set(write_set, "pooled", f"{PKG}==2.0")
    fh = make_host(environments=options, limits=Limits(timeout=10.0, workers=2))
    fh.load_function_set(path)
    (first,) = interpreters(fh)
    assert first == fh.call("interpreter") and first.startswith(options.cache_dir)
    assert len(fh.function_sets["pooled"]["pids"]) == 2
    write_version_set(write_set, "pooled", f"{PKG}==1.0")
    fh.reload("pooled")
    (second,) = interpreters(fh)
    assert second != first and second.startswith(options.cache_dir)
    assert fh.call("version") == "1.0"
