"""What users write to place sets on Ray, and what crosses from an actor:
checked without a cluster (``tests/test_ray.py`` runs them on one)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from host import (
    CallError,
    CallTimeout,
    FunctionHost,
    Limits,
    LoadError,
    RayPlacement,
    RayResources,
    ResultError,
    UserFunctionError,
    WorkerCrashed,
)
from host.placement.error_data import (
    call_error_from_data,
    error_to_data,
    load_error_from_data,
)


def test_resources_become_actor_options():
    asked = RayResources(num_cpus=2, memory_mb=300, resources={"tenant_a": 0.5})
    assert asked.actor_options() == {
        "num_cpus": 2,
        "memory": 300 * 1024 * 1024,
        "resources": {"tenant_a": 0.5},
    }
    assert RayResources().actor_options() == {"num_cpus": 0.0}
    assert hash(Limits(placement=asked)) == hash(Limits(placement=asked))


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"num_cpus": -1}, "num_cpus"),
        ({"num_cpus": float("inf")}, "num_cpus"),
        ({"memory_mb": 0}, "memory_mb"),
        ({"memory_mb": True}, "memory_mb"),
        ({"resources": {"": 1}}, "custom resource needs a non-empty name"),
        ({"resources": {"gpu": -2}}, "custom resource 'gpu'"),
        ({"resources": {"gpu": "1"}}, "custom resource 'gpu'"),
    ],
)
def test_bad_resources_are_refused_naming_the_field(kwargs, names):
    with pytest.raises(ValueError, match=names):
        RayResources(**kwargs)


def test_bad_placements_are_refused():
    with pytest.raises(TypeError, match="placement must be a RayResources"):
        Limits(placement={"num_cpus": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='placement must be None, "ray" or a RayPlacement'):
        FunctionHost(placement="kubernetes")
    with pytest.raises(ValueError, match="max_concurrency"):
        RayPlacement(max_concurrency=0)
    with pytest.raises(ValueError, match="start_method"):
        RayPlacement(start_method="fork")


def test_expose_is_refused_for_sets_on_ray(tmp_path):
    (tmp_path / "s.py").write_text("def f() -> int:\n    'F.'\n    return 1\n")
    with FunctionHost(builtin_dir=tmp_path / "none", user_dirs=[], placement="ray") as fh:
        with pytest.raises(ValueError, match="expose= is not available for sets placed on Ray"):
            fh.load_function_set(tmp_path / "s.py", context=object(), expose=["x"])


def test_nothing_but_the_placement_code_imports_ray():
    code = (
        "import sys, host, host.cli.main, host.placement.ray_set_workers, "
        "host.placement.set_endpoint; print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "error",
    [
        WorkerCrashed("s", "f", "was killed by SIGSEGV", signal="SIGSEGV", stderr_tail="tail"),
        CallTimeout("s", "f", "did not finish within 1s", details={"cause": "queued"}),
        UserFunctionError("s", "f", "no", remote_type="ValueError", traceback="tb", stdout="o"),
        ResultError("s", "f", "too big", kind="result_too_large", details={"encoded_bytes": 9}),
    ],
    ids=lambda e: type(e).__name__,
)
def test_call_errors_cross_as_data_and_come_back_as_the_same_class(error):
    data = error_to_data(error)
    back = call_error_from_data(data, "s", "f")
    assert type(back) is type(error)
    assert str(back) == str(error)
    for field in ("kind", "message", "remote_type", "traceback", "signal", "stderr_tail"):
        assert getattr(back, field) == getattr(error, field)
    assert (back.details, back.stdout) == (error.details, error.stdout)


def test_an_unknown_class_name_is_a_plain_call_error_never_an_import():
    back = call_error_from_data({"class": "os.system", "message": "hi", "kind": "x"}, "s", "f")
    assert type(back) is CallError


def test_load_errors_cross_as_data():
    error = LoadError("s", "RuntimeError: no", source="/x/s.py", remote_type="RuntimeError")
    back = load_error_from_data(error_to_data(error), "s")
    assert (str(back), back.source, back.remote_type) == (str(error), "/x/s.py", "RuntimeError")
