"""What ``describe_function`` records of reserved parameters, read in-process.

The schemas and calls are tested through real workers in test_schemas.py;
``FunctionSpec.context_parameters`` never leaves the worker, so it is read
here from the worker's own function on modules compiled by the test.
"""

from __future__ import annotations

import textwrap

import pytest

from worker.signature import FunctionSkipped, describe_function

SOURCE = '''
from __future__ import annotations

from typing import TYPE_CHECKING

import protocol.context_marker as marker

if TYPE_CHECKING:
    from agent import Agent, AgentState
    from protocol.context_marker import AgentContext


def memgpt(self: Agent, name: str) -> None:
    """MemGPT."""


def letta(agent_state: AgentState, query: str) -> None:
    """Letta."""


def own_names(box: marker.AgentContext, n: int, *, other: AgentContext) -> None:
    """Marked twice: resolved and by spelling."""


def dotted(ctx: protocol.context_marker.AgentContext) -> None:  # noqa: F821
    """Marked by the dotted spelling."""


def classy(cls, self: Agent = "given", n: int = 0) -> None:
    """cls is reserved but not for the context; self keeps its default."""


def variadic(*agent_state, **self) -> None:
    """Reserved names as variadics: hidden, nothing to fill."""


def plain(x: int) -> None:
    """Nothing reserved."""


def broken(self: Agent, x: Nope) -> None:  # noqa: F821
    """An ordinary parameter that cannot be resolved."""
'''


@pytest.fixture(scope="module")
def module() -> dict:
    namespace: dict = {"__name__": "reserved_module"}
    exec(compile(textwrap.dedent(SOURCE), "reserved_module.py", "exec"), namespace)
    return namespace


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("memgpt", ("self",)),
        ("letta", ("agent_state",)),
        ("own_names", ("box", "other")),
        ("dotted", ("ctx",)),
        ("classy", ("self",)),
        ("variadic", ()),
        ("plain", ()),
    ],
)
def test_context_parameters_are_the_reserved_ones_to_fill(module, name, expected):
    spec = describe_function(name, module[name])
    assert spec.context_parameters == expected
    assert set(spec.schema["parameters"]["properties"]).isdisjoint(expected)


def test_a_reserved_parameter_with_a_default_keeps_it(module):
    spec = describe_function("classy", module["classy"])
    hidden = {p.name: p.default for p in spec.parameters if p.hidden}
    assert hidden == {"cls": None, "self": "given"}
    assert spec.schema["parameters"]["properties"] == {"n": {"type": "integer", "default": 0}}


def test_the_user_function_is_not_changed(module):
    fn = module["own_names"]
    before = dict(fn.__annotations__)
    describe_function("own_names", fn)
    assert fn.__annotations__ == before
    assert "box" in fn.__annotations__ and "other" in fn.__annotations__


def test_an_ordinary_unresolvable_annotation_still_skips(module):
    with pytest.raises(FunctionSkipped, match="NameError: name 'Nope' is not defined"):
        describe_function("broken", module["broken"])
