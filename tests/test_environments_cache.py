"""The environment cache under stress: two hosts building the same spec at
once, builds interrupted (uv killed, the building host killed, a half
directory left), pruning and the ``fnhost env`` command; and the pure
parts (PEP 723 blocks, requires-python)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from host.cli.main import main
from host.environments import EnvironmentOptions, list_environments, prune
from host.environments.build_lock import build_lock
from host.environments.inline_metadata import ScriptMetadataError, parse_script_metadata
from host.environments.python_requirement import python_satisfies
from tests.conftest import wait_for
from tests.local_wheels import make_wheel, script_block

PKG = "fnhost_cachetest_pkg"
ROOT = Path(__file__).resolve().parent.parent

SET_SOURCE = f"""
import {PKG}


def version() -> str:
    \"\"\"The package's version.\"\"\"
    return {PKG}.__version__
"""

#: A host in a process of its own: waits for the file argv[1], loads the set
#: argv[4] with wheels from argv[2] and the cache argv[3], prints what it saw.
HOST_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys, time
    from host import FunctionHost, LoadError
    from host.environments import EnvironmentOptions

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    go, links, cache, path, builtins = sys.argv[1:6]
    while not os.path.exists(go):
        time.sleep(0.001)
    options = EnvironmentOptions(no_index=True, find_links=(links,), cache_dir=cache)
    with FunctionHost(builtin_dir=builtins, user_dirs=[], environments=options) as fh:
        try:
            fh.load_function_set(path)
        except LoadError as exc:
            print(json.dumps({"pid": os.getpid(), "error": str(exc)}))
        else:
            print(json.dumps({"pid": os.getpid(), "version": fh.call("version")}))
    """
)


def _needs_uv() -> None:
    pytest.importorskip("uv", reason="per-set environments need uv: pip install 'fnhost[envs]'")


@pytest.fixture
def setup(tmp_path: Path, write_set, empty_dir: Path):
    _needs_uv()
    links = tmp_path / "wheels"
    links.mkdir()
    cache = tmp_path / "cache"
    path = write_set("cached", script_block(f"{PKG}==1.0") + SET_SOURCE)
    go = tmp_path / "go"

    def start_host() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                HOST_SCRIPT,
                str(go),
                str(links),
                str(cache),
                str(path),
                str(empty_dir),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    options = EnvironmentOptions(no_index=True, find_links=(str(links),), cache_dir=str(cache))
    return links, cache, path, go, start_host, options


def _uv_installs(cache: Path) -> list[int]:
    """Pids of ``uv pip install`` processes building into ``cache``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"install" in argv and any(str(cache).encode() in a for a in argv):
            found.append(int(entry))
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_two_hosts_building_the_same_spec_at_once_end_with_one_env(setup):
    links, cache, path, go, start_host, _ = setup
    make_wheel(links, PKG, "1.0")
    hosts = [start_host(), start_host()]
    go.touch()  # both start loading now
    outs = [h.communicate(timeout=50) for h in hosts]
    results = [json.loads(out) for out, _ in outs]
    assert [r.get("version") for r in results] == ["1.0", "1.0"], outs
    envs = list_environments(str(cache))
    assert [e.state for e in envs] == ["ready"]
    marker = json.loads((Path(envs[0].path) / "fnhost-env.json").read_text())
    assert marker["builder_pid"] in {r["pid"] for r in results}
    logs = "".join(err for _, err in outs)
    assert logs.count("building environment") == 1, logs


@pytest.mark.parametrize("victim", ["uv", "host"])
def test_an_interrupted_build_is_never_taken_for_a_good_env(setup, make_host, victim):
    links, cache, path, go, start_host, options = setup
    # A "wheel" uv blocks on when it opens it: the build is caught mid-way.
    fifo = links / f"{PKG}-1.0-py3-none-any.whl"
    os.mkfifo(fifo)
    go.touch()
    host = start_host()
    try:
        assert wait_for(lambda: _uv_installs(cache), 30.0), host.stderr
        builds = list((cache / "envs").glob(".build-*"))
        assert len(builds) == 1 and (builds[0] / "bin" / "python").exists()
        if victim == "uv":
            _kill(_uv_installs(cache))
            out, err = host.communicate(timeout=30)
            result = json.loads(out)
            assert "could not be built" in result["error"] and "signal 9" in result["error"]
            assert not list((cache / "envs").glob(".build-*"))  # the host cleaned up
        else:
            os.killpg(host.pid, signal.SIGKILL)  # the host, its workers, its zygotes
            host.wait(timeout=10)
            _kill(_uv_installs(cache))  # uv ran in a session of its own
            # What the dead host left: a venv without a marker, listed as incomplete.
            assert [e.state for e in list_environments(str(cache))] == ["incomplete"]
            # And, worse, a half directory under the key's own name.
            key = builds[0].name.split("-")[1]
            shutil.copytree(builds[0], cache / "envs" / key, symlinks=True)
    finally:
        _kill([host.pid])
        host.wait(timeout=10)
    assert all(e.state != "ready" for e in list_environments(str(cache)))
    fifo.unlink()
    make_wheel(links, PKG, "1.0")
    fh = make_host(environments=options)
    fh.load_function_set(path)
    assert fh.call("version") == "1.0"
    assert [e.state for e in list_environments(str(cache))] == ["ready"]


def test_prune_removes_leftovers_and_old_envs_but_not_a_build_under_way(setup, make_host):
    links, cache, path, go, start_host, options = setup
    make_wheel(links, PKG, "1.0")
    fh = make_host(environments=options)
    fh.load_function_set(path)
    envs = cache / "envs"
    (envs / ".build-aaaa-1").mkdir()
    (envs / ".build-bbbb-1").mkdir()
    with build_lock(str(envs / "bbbb.lock"), 1.0):  # bbbb is being built
        removed = prune(str(cache))
    assert removed == [str(envs / ".build-aaaa-1")]
    assert [e.state for e in list_environments(str(cache))] == ["incomplete", "ready"]
    removed = prune(str(cache), older_than_days=None)
    assert len(removed) == 3  # the leftover, the environment and the worker runtime
    assert list_environments(str(cache)) == []


def test_env_list_and_prune_commands(setup, make_host, capsys):
    links, cache, path, go, start_host, options = setup
    make_wheel(links, PKG, "1.0")
    make_host(environments=options).load_function_set(path)
    assert main(["env", "list", "--cache-dir", str(cache), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["requirements"] for e in listed["environments"]] == [[f"{PKG}==1.0"]]
    assert main(["env", "list", "--cache-dir", str(cache)]) == 0
    assert "ready" in capsys.readouterr().out
    assert main(["env", "prune", "--cache-dir", str(cache), "--all", "--dry-run"]) == 0
    assert "would remove 2 entries" in capsys.readouterr().out
    assert len(list_environments(str(cache))) == 1
    assert main(["env", "prune", "--cache-dir", str(cache), "--all"]) == 0
    assert list_environments(str(cache)) == []


def test_check_reports_each_sets_environment(setup, capsys, monkeypatch):
    links, cache, path, go, start_host, options = setup
    make_wheel(links, PKG, "1.0")
    monkeypatch.setenv("FNHOST_CACHE_DIR", str(cache))
    monkeypatch.setenv("UV_NO_INDEX", "1")
    monkeypatch.setenv("UV_FIND_LINKS", str(links))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"cached: runs in its own environment (1 requirement: {PKG}==1.0): not built yet" in out
    assert main(["check", str(path)]) == 0
    assert f"(1 requirement: {PKG}==1.0): built, at {cache}" in capsys.readouterr().out


# -- the pure parts ---------------------------------------------------------


def test_a_pep_723_block_is_read_as_the_pep_says():
    text = (
        "import os\n# /// script\n# requires-python = '>=3.11'\n# dependencies = [\n"
        "#   'requests<3',\n#   'rich',\n# ]\n# ///\n\ndef f(): pass\n"
    )
    meta = parse_script_metadata(text)
    assert meta is not None
    assert meta.dependencies == ("requests<3", "rich")
    assert meta.requires_python == ">=3.11"
    assert parse_script_metadata("# /// pyproject\n# x = 1\n# ///\n") is None
    assert parse_script_metadata("def f(): pass\n") is None
    with pytest.raises(ScriptMetadataError):
        parse_script_metadata("# /// script\n# dependencies = [1]\n# ///\n")


@pytest.mark.parametrize(
    "spec,version,expected",
    [
        (">=3.11", (3, 11, 7), True),
        (">=3.12", (3, 11, 7), False),
        ("<3.12,>=3.10", (3, 11, 7), True),
        ("==3.11.*", (3, 11, 7), True),
        ("==3.12.*", (3, 11, 7), False),
        ("!=3.11.*", (3, 11, 7), False),
        ("~=3.10", (3, 11, 7), True),
        ("~=3.11.2", (3, 11, 7), True),
        ("~=3.11.8", (3, 11, 7), False),
        ("==3.11", (3, 11, 0), True),
        (">3.11", (3, 11, 0), False),
        ("===3.11.7", (3, 11, 7), True),
    ],
)
def test_requires_python(spec, version, expected):
    assert python_satisfies(spec, version) is expected


@pytest.mark.parametrize("spec", ["3.11", "", ">=three", "~=3", ">=3.*"])
def test_an_invalid_requires_python_is_an_error(spec):
    with pytest.raises(ValueError):
        python_satisfies(spec, (3, 11, 7))
