"""Loading function sets: sources, names, merge/nest, conflicts, load failures."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import subprocess
import sys

import pytest

from host import FunctionHost, HostClosed, Limits, LoadError, NameConflict, Sandbox

from .conftest import worker_pids

ADD = '''
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
'''


def test_load_function_set_returns_schema_and_callable(fh, write_set):
    fns = fh.load_function_set(write_set("maths", ADD))
    assert set(fns) == {"add"}
    schema = fns["add"]["json_schema"]
    assert schema["name"] == "add"
    assert schema["description"] == "Add two integers."
    assert schema["parameters"]["required"] == ["a", "b"]
    assert fns["add"]["function"](a=2, b=3) == 5
    assert fns["add"]["function"](2, 3) == 5


def test_every_entry_answers_to_memgpt_s_python_function_key(make_host, write_set, tmp_path):
    # MemGPT's function dicts hold the callable under "python_function".
    fh = make_host(builtin_dir=tmp_path / "none", user_dirs=[tmp_path / "sets"])
    loaded = fh.load_function_set(write_set("maths", ADD))
    assert loaded["add"]["python_function"] is loaded["add"]["function"]
    assert loaded["add"]["python_function"](a=2, b=3) == 5
    merged = fh.load_all_function_sets(merge=True)
    assert merged["add"]["python_function"] is merged["add"]["function"]
    assert merged["add"]["python_function"](a=1, b=1) == 2
    nested = fh.functions(merge=False)["maths"]["add"]
    assert nested["python_function"] is nested["function"]
    assert nested["python_function"](4, 5) == 9


def test_set_name_defaults_to_stem_and_can_be_given(fh, write_set):
    path = write_set("maths", ADD)
    fh.load_function_set(path, name="arith")
    assert list(fh.function_sets) == ["arith"]
    assert fh.call("arith.add", {"a": 1, "b": 1}) == 2


def test_load_by_importable_module_name(fh, write_set, sets_dir, monkeypatch):
    write_set("fnhost_test_modname", ADD)
    monkeypatch.syspath_prepend(str(sets_dir))
    fns = fh.load_function_set("fnhost_test_modname")
    assert "fnhost_test_modname" not in sys.modules  # never imported into the host
    assert fns["add"]["function"](a=4, b=5) == 9
    assert list(fh.function_sets) == ["fnhost_test_modname"]


MARKED = '''
MARK = "file"


def mark() -> str:
    """What MARK is where this runs."""
    return MARK
'''


def _imported(name: str, path, package: bool = False):
    """Import a file the way a user's ``import`` would, without sys.modules."""
    locations = [str(path.parent)] if package else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_an_imported_module_object_runs_its_file_in_the_worker(fh, write_set):
    path = write_set("my_tools", MARKED)
    module = _imported("my_tools", path)
    module.MARK = "host"  # the host's object is not what runs
    fns = fh.load_function_set(module)
    assert list(fh.function_sets) == ["my_tools"]
    assert fh.function_sets["my_tools"]["source"] == str(path)
    assert fns["mark"]["function"]() == "file"
    pid = fh.function_sets["my_tools"]["pid"]
    # Exactly as if the path had been given: the same set, not a second one.
    fh.load_function_set(path)
    assert fh.function_sets["my_tools"]["pid"] == pid


def test_an_imported_package_is_named_after_the_package(fh, sets_dir, write_set):
    package = sets_dir / "toolbox"
    package.mkdir()
    (package / "__init__.py").write_text(MARKED)
    fns = fh.load_function_set(_imported("toolbox", package / "__init__.py", package=True))
    assert list(fh.function_sets) == ["toolbox"]
    assert fns["mark"]["function"]() == "file"
    # name= wins over the module's own, as for a path.
    other = _imported("other_tools", write_set("other_tools", MARKED.replace("mark", "mark2")))
    fh.load_function_set(other, name="renamed")
    assert fh.call("renamed.mark2", {}) == "file"


def test_a_module_without_a_source_file_is_a_type_error(fh, sets_dir, monkeypatch):
    (sets_dir / "spacey").mkdir()  # no __init__.py: a namespace package
    monkeypatch.syspath_prepend(str(sets_dir))
    monkeypatch.delitem(sys.modules, "spacey", raising=False)
    namespace = importlib.import_module("spacey")
    monkeypatch.delitem(sys.modules, "spacey")
    import _decimal

    for module, words in (
        (sys, ["'sys'", "has no file"]),  # built-in
        (namespace, ["'spacey'", "has no file"]),
        (_decimal, ["not Python source", ".so"]),  # extension module
    ):
        with pytest.raises(TypeError) as info:
            fh.load_function_set(module)
        assert all(w in str(info.value) for w in words), str(info.value)
    assert fh.function_sets == {} and fh.load_errors == {}
    assert worker_pids() == set()


def test_loading_same_source_twice_is_idempotent(fh, write_set):
    path = write_set("maths", ADD)
    fh.load_function_set(path)
    pid = fh.function_sets["maths"]["pid"]
    fh.load_function_set(path)
    assert fh.function_sets["maths"]["pid"] == pid


def test_load_all_builtins_then_user_dirs_merged_and_nested(make_host, write_set, tmp_path):
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    write_set(
        "base",
        '''
        def send_message(text: str) -> str:
            """Send a message."""
            return "sent: " + text
    ''',
        directory=builtin,
    )
    write_set("maths", ADD)
    write_set("_helper", "def ignored(): pass\n")
    fh = make_host(builtin_dir=builtin, user_dirs=[tmp_path / "sets"])
    merged = fh.load_all_function_sets(merge=True)
    assert set(merged) == {"send_message", "add"}
    assert merged["send_message"]["function"](text="hi") == "sent: hi"
    nested = fh.load_all_function_sets(merge=False)
    assert set(nested) == {"base", "maths"}
    assert set(nested["maths"]) == {"add"}
    assert fh.function_sets["base"]["origin"] == "builtin"
    assert fh.function_sets["maths"]["origin"] == "user"
    assert fh.schemas(merge=True)["add"]["name"] == "add"
    assert fh.schemas(merge=False)["base"]["send_message"]["description"] == "Send a message."


def test_default_user_dir_from_environment(make_host, write_set, sets_dir, monkeypatch):
    write_set("maths", ADD)
    monkeypatch.setenv("FNHOST_FUNCTIONS_DIR", str(sets_dir))
    fh = make_host(user_dirs=None)
    assert "add" in fh.load_all_function_sets()


def test_bundled_builtins_load_by_default(make_host):
    """The bundled built-ins (MemGPT's memory tools) load with the rest;
    what they do with their agent is tests/test_builtins.py's."""
    fh = make_host(builtin_dir=None)
    fns = fh.load_all_function_sets()
    assert "core_memory_append" in fns and "send_message" in fns
    assert fh.function_sets["memgpt"]["origin"] == "builtin"


def test_conflict_error_names_both_sets(fh, write_set, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    fh.load_function_set(write_set("first", ADD))
    with pytest.raises(NameConflict) as info:
        fh.load_function_set(write_set("second", ADD, directory=other))
    assert "first" in str(info.value) and "second" in str(info.value)
    assert "'add'" in str(info.value)
    assert "second" not in fh.function_sets
    assert fh.call("add", {"a": 1, "b": 2}) == 3


def test_conflict_prefix_renames_later_set_only_for_colliding_names(make_host, write_set, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    fh = make_host(on_conflict="prefix")
    fh.load_function_set(write_set("first", ADD))
    fh.load_function_set(
        write_set(
            "second",
            ADD
            + '''
def sub(a: int, b: int) -> int:
    """Subtract."""
    return a - b
''',
            directory=other,
        )
    )
    schemas = fh.schemas()
    assert set(schemas) == {"add", "second__add", "sub"}
    assert schemas["second__add"]["name"] == "second__add"
    assert fh.call("second__add", {"a": 1, "b": 2}) == 3
    assert fh.call("first.add", {"a": 1, "b": 2}) == 3
    assert fh.call("second.add", {"a": 1, "b": 2}) == 3
    assert fh.call("sub", {"a": 5, "b": 2}) == 3


def test_a_user_set_named_like_a_builtin_fails_alone(make_host, write_set, tmp_path):
    """The bundled built-in set keeps its name; the user file of that name is
    a load error naming both files; every other set loads."""
    user_text = write_set("memgpt", "def shout_louder(text: str) -> str:\n    return text\n")
    write_set("maths", ADD)
    fh = make_host(builtin_dir=None, user_dirs=[tmp_path / "sets"])
    fns = fh.load_all_function_sets()
    assert "add" in fns and "send_message" in fns and "shout_louder" not in fns
    assert fh.function_sets["memgpt"]["origin"] == "builtin"
    err = fh.load_errors["memgpt"]
    assert isinstance(err, LoadError) and err.source == str(user_text)
    builtin_text = fh.function_sets["memgpt"]["source"]
    assert builtin_text != str(user_text)
    assert str(user_text) in str(err) and builtin_text in str(err)
    assert "built-in" in str(err)
    assert fh.call("add", {"a": 1, "b": 2}) == 3
    assert set(fh.load_all_function_sets()) == set(fns)  # again: the same outcome
    assert fh.load_errors["memgpt"].source == str(user_text)


def test_of_two_user_sets_with_one_name_the_first_dir_wins(make_host, write_set, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    write_set("maths", ADD, directory=first)
    later = write_set("maths", "def sub(a: int, b: int) -> int:\n    return a - b\n", second)
    write_set("other", "def ping() -> str:\n    return 'pong'\n", second)
    fh = make_host(user_dirs=[first, second])
    assert set(fh.load_all_function_sets()) == {"add", "ping"}
    assert str(later) in str(fh.load_errors["maths"])
    assert str(first / "maths.py") in str(fh.load_errors["maths"])


BROKEN = {
    "raises": ("raise RuntimeError('no config')\n", "RuntimeError: no config"),
    "syntax": ("def f(:\n    pass\n", "SyntaxError"),
    "exits0": ("import sys\nsys.exit(0)\n", "sys.exit(0)"),
    "segfault": ("import ctypes\nctypes.string_at(0)\n", "SIGSEGV"),
    "exits_hard": ("import os\nos._exit(3)\n", "status 3"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_import_failure_is_a_load_error(fh, write_set, kind):
    source, expected = BROKEN[kind]
    with pytest.raises(LoadError) as info:
        fh.load_function_set(write_set(f"bad_{kind}", source))
    err = info.value
    assert err.kind == "import_failed"
    assert err.set_name == f"bad_{kind}"
    assert expected in str(err) or expected == err.signal
    assert fh.load_errors[f"bad_{kind}"] is err
    assert f"bad_{kind}" not in fh.function_sets


def test_segfault_at_import_reports_signal(fh, write_set):
    with pytest.raises(LoadError) as info:
        fh.load_function_set(write_set("bad", BROKEN["segfault"][0]))
    assert info.value.signal == "SIGSEGV"


def test_hang_at_import_hits_start_timeout(fh, write_set):
    # Longer than pytest-timeout: a load that did not stop it hangs the test.
    path = write_set("hangs", "import time\ntime.sleep(600)\n")
    with pytest.raises(LoadError) as info:
        fh.load_function_set(path, limits=Limits(start_timeout=0.5))
    assert "0.5s" in str(info.value)


def test_missing_file_is_a_load_error(fh, tmp_path):
    with pytest.raises(LoadError) as info:
        fh.load_function_set(tmp_path / "nope.py")
    assert "no such file" in str(info.value)


def test_load_all_records_failures_and_loads_the_rest(make_host, write_set, tmp_path):
    write_set("good", ADD)
    for kind, (source, _) in BROKEN.items():
        write_set(f"bad_{kind}", source)
    write_set("hangs", "import time\ntime.sleep(60)\n")
    # 3 s: the hanging set fails by it, and the good one starts well within
    # it even on a loaded 2-core machine (1 s did not, now and then).
    fh = make_host(user_dirs=[tmp_path / "sets"], limits=Limits(start_timeout=3.0))
    fns = fh.load_all_function_sets()
    assert set(fns) == {"add"}
    assert fh.call("add", {"a": 1, "b": 2}) == 3
    assert set(fh.load_errors) == {f"bad_{k}" for k in BROKEN} | {"hangs"}
    assert all(isinstance(e, LoadError) for e in fh.load_errors.values())
    # Failed sets leave no process behind.
    assert len(worker_pids()) == 1


MEET = """
import os
import time

# Arrive, then wait for the other set: only workers that import at the same
# time get past this.
open(os.path.join({rendezvous!r}, {me!r}), "w").close()
while not os.path.exists(os.path.join({rendezvous!r}, {other!r})):
    time.sleep(0.01)


def {me}() -> str:
    return "met"
"""


def test_load_all_starts_the_workers_in_parallel(make_host, write_set, tmp_path):
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    for me, other in (("left", "right"), ("right", "left")):
        write_set(me, MEET.format(rendezvous=str(rendezvous), me=me, other=other))
    # One after another, the first would wait for the second until its start
    # timeout (twice 20 s, within pytest-timeout's 60) and fail to load.
    sandbox = Sandbox(writable_paths=(str(rendezvous),))
    fh = make_host(
        user_dirs=[tmp_path / "sets"], limits=Limits(start_timeout=20.0, sandbox=sandbox)
    )
    assert set(fh.load_all_function_sets()) == {"left", "right"}
    assert fh.load_errors == {}
    assert fh.call("left") == fh.call("right") == "met"


def test_a_load_failure_is_logged_with_its_reason(make_host, write_set, tmp_path, caplog):
    """One record per failed set naming it and why, never the bare exit
    status of its worker ("exited with status 0" after a failed import)."""
    for kind, (source, _) in BROKEN.items():
        write_set(f"bad_{kind}", source)
    fh = make_host(user_dirs=[tmp_path / "sets"])
    with caplog.at_level(logging.INFO, logger="fnhost"):
        fh.load_all_function_sets()  # in parallel: workers may exit before being read
    messages = [r.getMessage() for r in caplog.records]
    for kind, (_, expected) in BROKEN.items():
        prefix = f"function set 'bad_{kind}' failed to load: "
        failed = [m for m in messages if m.startswith(prefix)]
        assert len(failed) == 1, messages
        assert failed[0] == str(fh.load_errors[f"bad_{kind}"])
        assert expected in failed[0] or kind == "segfault"
    assert not [m for m in messages if m.startswith("worker (pid")], messages


def test_load_function_set_after_close_fails(write_set, empty_dir):
    fh = FunctionHost(builtin_dir=empty_dir, user_dirs=[])
    fh.close()
    with pytest.raises(HostClosed):
        fh.load_function_set(write_set("maths", ADD))


@pytest.mark.timeout(120)
def test_a_host_under_a_low_open_files_limit_loads_every_set(tmp_path):
    """Each set holds three fds in the host: under a soft limit of 256 the
    host raises its own limit (to the hard one) instead of failing the
    86th set with "too many open files"."""
    sets = tmp_path / "many"
    sets.mkdir()
    for i in range(100):
        (sets / f"s{i}.py").write_text(f"def f{i}() -> int:\n    return {i}\n")
    script = f"""
import json, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
from host import FunctionHost
with FunctionHost(builtin_dir={str(tmp_path / "none")!r}, user_dirs=[{str(sets)!r}]) as fh:
    fh.load_all_function_sets()
    errors = [str(e) for e in fh.load_errors.values()][:3]
    out = {{"loaded": len(fh.function_sets), "errors": errors, "last": fh.call("f99"),
           "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}}
print(json.dumps(out))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=110
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["errors"] == [] and out["loaded"] == 100 and out["last"] == 99
    assert out["soft"] > 256
