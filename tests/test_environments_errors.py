"""Every way a set's environment can fail: each a ``LoadError`` that names
the set, the requirement and the cause, and says what to do; the other
sets load."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from host import LoadError
from host.environments import EnvironmentOptions, list_environments
from tests.local_wheels import make_sdist, make_wheel, script_block

pytest.importorskip("uv", reason="per-set environments need uv: pip install 'fnhost[envs]'")

PKG = "fnhost_errtest_pkg"

BODY = """
def ping() -> str:
    \"\"\"Answer.\"\"\"
    return "pong"
"""


@pytest.fixture
def links(tmp_path: Path) -> Path:
    directory = tmp_path / "wheels"
    make_wheel(directory, PKG, "1.0")
    make_wheel(directory, "fnhost_future_only", "1.0", requires_python=">=3.99")
    make_sdist(directory, "fnhost_source_only", "1.0")
    return directory


@pytest.fixture
def options(tmp_path: Path, links: Path) -> EnvironmentOptions:
    return EnvironmentOptions(
        no_index=True, find_links=(str(links),), cache_dir=str(tmp_path / "c")
    )


def load_error(make_host, write_set, options, name: str, head: str) -> LoadError:
    path = write_set(name, head + BODY)
    fh = make_host(environments=options)
    with pytest.raises(LoadError) as info:
        fh.load_function_set(path)
    assert fh.load_errors[name] is info.value
    assert info.value.set_name == name
    # Nothing that could pass for a built environment is left.
    assert all(e.state != "ready" for e in list_environments(options.cache_dir))
    return info.value


def test_an_unknown_package_names_the_requirement(make_host, write_set, options):
    err = load_error(make_host, write_set, options, "unknown", script_block("no_such_pkg_x>=1"))
    text = str(err)
    assert "'unknown'" in text
    assert "requirement 'no_such_pkg_x>=1' cannot be resolved" in text
    assert "not found" in text and "check the names and versions" in text


def test_a_missing_version_names_the_requirement_not_the_others(make_host, write_set, options):
    err = load_error(
        make_host,
        write_set,
        options,
        "missingversion",
        script_block(f"{PKG}==1.0", "fnhost_errtest_other==2.0"),
    )
    assert "requirement 'fnhost_errtest_other==2.0' cannot be resolved" in str(err)
    assert f"'{PKG}==1.0'" not in str(err)


def test_an_unreachable_index_says_so(make_host, write_set, tmp_path, monkeypatch):
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")  # uv retries 3 times by default (~10 s)
    options = EnvironmentOptions(
        index_url="http://127.0.0.1:9/simple", cache_dir=str(tmp_path / "c")
    )
    err = load_error(make_host, write_set, options, "offline", script_block(f"{PKG}==1.0"))
    assert f"no package index could be reached to install '{PKG}==1.0'" in str(err)
    assert "127.0.0.1:9" in str(err) and "find_links" in str(err)


def test_requires_python_of_the_set_is_checked_before_building(make_host, write_set, options):
    head = script_block(PKG, requires_python=">=3.99")
    err = load_error(make_host, write_set, options, "future", head)
    assert f"requires Python >=3.99 and this host runs Python {platform.python_version()}" in str(
        err
    )
    assert list_environments(options.cache_dir) == []


def test_a_requirement_that_does_not_support_this_python(make_host, write_set, options):
    err = load_error(make_host, write_set, options, "needsnew", script_block("fnhost_future_only"))
    assert "requirement 'fnhost_future_only' does not support Python" in str(err)
    assert ">=3.99" in str(err)


def test_a_source_only_package_is_refused_unless_sources_are_allowed(make_host, write_set, options):
    err = load_error(make_host, write_set, options, "sourcy", script_block("fnhost_source_only"))
    assert "requirement 'fnhost_source_only' has no wheel" in str(err)
    assert "allow_sdist=True" in str(err)


def test_an_invalid_requirement(make_host, write_set, options):
    err = load_error(make_host, write_set, options, "badreq", script_block("tiny pkg =="))
    assert "requirement 'tiny pkg ==' is invalid" in str(err)


def test_a_requirement_that_would_be_an_option_never_reaches_uv(make_host, write_set, options):
    err = load_error(
        make_host, write_set, options, "sneaky", script_block("--index-url=http://evil/")
    )
    assert "cannot start with '-'" in str(err)
    assert list_environments(options.cache_dir) == []


@pytest.mark.parametrize(
    "block,expected",
    [
        ("# /// script\n# dependencies = [\n# ///\n", "not valid TOML"),
        ('# /// script\n# dependencies = "requests"\n# ///\n', "must be a list of strings"),
        ("# /// script\n# requires-python = 3.11\n# ///\n", "must be a string"),
        ('# /// script\n# requires-python = "3.11"\n# ///\n', "requires-python is invalid"),
        (
            "# /// script\n# dependencies = []\n# ///\n\n"
            "# /// script\n# dependencies = []\n# ///\n",
            "more than one",
        ),
    ],
)
def test_a_malformed_block(make_host, write_set, options, block, expected):
    err = load_error(make_host, write_set, options, "malformed", block)
    assert expected in str(err)


def test_the_other_sets_load(make_host, write_set, options, tmp_path):
    directory = tmp_path / "user"
    directory.mkdir()
    write_set("broken", script_block("no_such_pkg_y") + BODY, directory)
    write_set("fine", script_block(f"{PKG}==1.0") + BODY.replace("ping", "pong"), directory)
    write_set("plain", BODY.replace("ping", "plain_ping"), directory)
    fh = make_host(environments=options, user_dirs=[directory])
    fh.load_all_function_sets()
    assert set(fh.load_errors) == {"broken"}
    assert "no_such_pkg_y" in str(fh.load_errors["broken"])
    assert fh.call("pong") == "pong"
    assert fh.call("plain_ping") == "pong"


def test_without_uv_the_set_fails_saying_how_to_install_it(write_set, tmp_path, empty_dir):
    """A host whose Python has no ``uv`` package and no ``uv`` on PATH."""
    import json
    import subprocess
    import sys

    path = write_set("needsuv", script_block(f"{PKG}==1.0") + BODY)
    plain = write_set("nouv", BODY)
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "uv.py").write_text("raise ImportError('no uv here')\n")
    script = (
        "import json, sys\n"
        "from host import FunctionHost, LoadError\n"
        "from host.environments import EnvironmentOptions\n"
        f"with FunctionHost(builtin_dir={str(empty_dir)!r}, user_dirs=[], environments="
        f"EnvironmentOptions(no_index=True, cache_dir={str(tmp_path / 'c')!r})) as fh:\n"
        "    try:\n"
        f"        fh.load_function_set({str(path)!r})\n"
        "    except LoadError as exc:\n"
        "        error = str(exc)\n"
        f"    fh.load_function_set({str(plain)!r})\n"
        "    print(json.dumps({'error': error, 'other': fh.call('ping')}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(shadow)},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=50,
    )
    result = json.loads(out.stdout)
    assert "its environment cannot be built: uv is not installed" in result["error"]
    assert "pip install 'fnhost[envs]'" in result["error"]
    assert result["other"] == "pong"


@pytest.mark.parametrize(
    "requirement",
    [
        "fnhost_errtest_pkg @ http://127.0.0.1:{port}/fnhost_errtest_pkg-1.0-py3-none-any.whl",
        "http://127.0.0.1:{port}/fnhost_errtest_pkg-1.0-py3-none-any.whl",
        "./fnhost_errtest_pkg-1.0-py3-none-any.whl",
        "fnhost_errtest_pkg @ file:///etc/passwd",
        # A URL without "//", a relative path, an archive named as if a project:
        # uv reads each as a location.
        "http:127.0.0.1:{port}/fnhost_errtest_pkg-1.0-py3-none-any.whl",
        "wheels/fnhost_errtest_pkg-1.0-py3-none-any.whl",
        "fnhost_errtest_pkg-1.0-py3-none-any.whl",
        "file:etc/passwd",
    ],
)
def test_a_direct_reference_is_refused_before_anything_is_fetched(
    make_host, write_set, options, requirement
):
    """``no_index`` says "no network at all": a set's block naming a URL
    would make the host's uv fetch it anyway (and a path read it)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    try:
        req = requirement.format(port=listener.getsockname()[1])
        err = load_error(make_host, write_set, options, "direct", script_block(req))
        assert "direct reference" in str(err) and "allow_direct_references" in str(err)
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody came
    finally:
        listener.close()


def test_direct_references_load_when_allowed(make_host, write_set, tmp_path, links):
    options = EnvironmentOptions(
        no_index=True,
        find_links=(str(links),),
        cache_dir=str(tmp_path / "c"),
        allow_direct_references=True,
    )
    wheel = links / f"{PKG}-1.0-py3-none-any.whl"
    path = write_set("direct", script_block(f"{PKG} @ {wheel.as_uri()}") + BODY)
    fh = make_host(environments=options)
    fh.load_function_set(path)
    assert fh.call("ping") == "pong"
