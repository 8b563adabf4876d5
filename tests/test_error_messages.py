"""``str(err)`` is one line a person or a model can act on, for every error
class, with no fnhost frames or paths in it; the details (the user's frames,
the worker's stderr) are in attributes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import host
from host import (
    CallError,
    CallTimeout,
    FunctionHost,
    HostClosed,
    InvalidArguments,
    Limits,
    LoadError,
    OutOfMemory,
    ProtocolError,
    ResultError,
    UnknownFunction,
    UserFunctionError,
    WorkerCrashed,
)

SOURCE = '''
import ctypes
import json
import os
import sys
import time


def add(a: int) -> int:
    return a


def fail() -> None:
    raise ValueError("first line\\nsecond line\\n\\n  third, indented")


def segfault() -> None:
    ctypes.string_at(0)


def deep_segfault(depth: int) -> None:
    """faulthandler's dump of 100 frames outgrows a short stderr tail."""
    if depth:
        deep_segfault(depth - 1)
    ctypes.string_at(0)


def say_then_die() -> None:
    sys.stderr.write("line one\\nline two\\n")
    sys.stderr.flush()
    os._exit(9)


def spin() -> None:
    while True:
        pass


def allocate(mb: int) -> int:
    return len(bytearray(mb * 1024 * 1024))


def unsendable():
    return object()


def garbage() -> str:
    fd = json.loads(sys.argv[1])["out_fd"]
    os.write(fd, b"\\x00\\x00\\x00\\x05\\xc1\\xc1\\xc1\\xc1\\xc1")
    time.sleep(5)
    return "genuine"
'''

#: fnhost's own code: none of it belongs in a sentence meant for a user.
FNHOST_DIRS = [
    str(Path(host.__file__).resolve().parent.parent / package) + os.sep
    for package in ("host", "worker", "protocol")
]


@pytest.fixture
def errors_host(make_host, write_set) -> FunctionHost:
    fh = make_host(limits=Limits(timeout=2.0, memory_mb=256, crash_limit=100))
    fh.load_function_set(write_set("errs", SOURCE))
    return fh


def _raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("no error")


CASES: dict[str, tuple[type[BaseException], Callable[[FunctionHost], object]]] = {
    "unknown": (UnknownFunction, lambda fh: fh.call("nope")),
    "invalid": (InvalidArguments, lambda fh: fh.call("add", {"a": "x\ny"})),
    "raised": (UserFunctionError, lambda fh: fh.call("fail")),
    "segfault": (WorkerCrashed, lambda fh: fh.call("segfault")),
    "deep_segfault": (WorkerCrashed, lambda fh: fh.call("deep_segfault", {"depth": 150})),
    "stderr": (WorkerCrashed, lambda fh: fh.call("say_then_die")),
    "timeout": (CallTimeout, lambda fh: fh.call("spin", timeout=0.3)),
    "memory": (OutOfMemory, lambda fh: fh.call("allocate", {"mb": 1024})),
    "result": (ResultError, lambda fh: fh.call("unsendable")),
    "protocol": (ProtocolError, lambda fh: fh.call("garbage")),
}


def _line_of(function: str, code: str) -> int:
    """The line number of ``code`` in ``function`` of SOURCE as written to disk."""
    lines = SOURCE.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {function}("))
    return next(i for i in range(start, len(lines)) if lines[i].strip() == code) + 1


def _check_sentence(text: str) -> None:
    assert "\n" not in text and "\r" not in text, text
    assert text == text.strip()
    for directory in FNHOST_DIRS:
        assert directory not in text, text
    assert "<frozen" not in text, text


@pytest.mark.parametrize("case", list(CASES))
def test_every_call_error_is_one_line_without_fnhost_paths(errors_host, case):
    cls, action = CASES[case]
    err = _raised(lambda: action(errors_host))
    assert type(err) is cls, repr(err)
    _check_sentence(str(err))
    assert err.set_name == "errs" or cls is UnknownFunction


def test_a_closed_hosts_error_and_a_parked_sets_error_are_one_line(make_host, write_set):
    fh = make_host(limits=Limits(crash_limit=1, crash_window=60.0))
    fh.load_function_set(write_set("errs", SOURCE))
    first = _raised(lambda: fh.call("segfault"))
    assert isinstance(first, WorkerCrashed)
    parked = _raised(lambda: fh.call("add", {"a": 1}))
    assert isinstance(parked, WorkerCrashed) and parked.details["cause"] == "parked"
    _check_sentence(str(parked))
    fh.close()
    closed = _raised(lambda: fh.call("add", {"a": 1}))
    assert isinstance(closed, HostClosed)
    _check_sentence(str(closed))


def test_a_load_error_is_one_line(make_host, write_set):
    fh = make_host()
    with pytest.raises(LoadError) as info:
        fh.load_function_set(write_set("broken", 'raise RuntimeError("no\\nway")\n'))
    _check_sentence(str(info.value))
    assert "RuntimeError" in str(info.value)


def test_a_crash_names_the_users_frame_and_keeps_the_dump(errors_host, sets_dir):
    err = _raised(lambda: errors_host.call("segfault"))
    assert isinstance(err, WorkerCrashed) and err.signal == "SIGSEGV"
    line = _line_of("segfault", "ctypes.string_at(0)")
    assert f"in segfault at errs.py line {line}" in str(err)
    assert err.traceback.startswith("Fatal Python error: Segmentation fault")
    assert f'File "{sets_dir / "errs.py"}", line {line} in segfault' in err.traceback


def test_a_deep_crash_keeps_the_users_innermost_frames(errors_host):
    """The dump lists the innermost frames first; it is longer than the short
    stderr tail, whose end holds only the outermost ones."""
    err = _raised(lambda: errors_host.call("deep_segfault", {"depth": 150}))
    assert isinstance(err, WorkerCrashed)
    assert err.traceback is not None
    assert err.traceback.startswith("Fatal Python error: Segmentation fault")
    assert "in string_at" in err.traceback and "in deep_segfault" in err.traceback
    line = _line_of("deep_segfault", "ctypes.string_at(0)")
    assert f"in deep_segfault at errs.py line {line}" in str(err)


def test_what_a_dying_worker_wrote_is_in_stderr_tail_not_in_str(errors_host):
    err = _raised(lambda: errors_host.call("say_then_die"))
    assert isinstance(err, WorkerCrashed) and err.exit_code == 9
    assert "line one\nline two" in err.stderr_tail
    assert "line one" not in str(err)


def test_a_user_exception_keeps_its_message_and_traceback(errors_host):
    err = _raised(lambda: errors_host.call("fail"))
    assert isinstance(err, CallError)
    assert err.message == "first line\nsecond line\n\n  third, indented"
    assert str(err) == "errs.fail raised ValueError: first line second line third, indented"
    assert "in fail" in err.traceback
