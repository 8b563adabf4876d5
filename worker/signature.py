"""One function's description: its JSON schema and its parameters' validators.

``describe_function`` reads the signature, the (resolved) type hints and the
docstring. Any failure here is reported as the reason the function was
skipped; the rest of the set still loads.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from typing import Any

from protocol.context_marker import MARKER_SPELLINGS, AgentContext
from protocol.names import function_name_problem
from worker.docstrings import parse_docstring
from worker.named_types import json_default
from worker.schema import new_builder
from worker.typespec import (
    ANY,
    JSON,
    TypeSpec,
    UnsupportedAnnotation,
    fail,
)

#: Parameter names that will receive the call's context: MemGPT passes the
#: agent as ``self``, Letta its state as ``agent_state``.
CONTEXT_PARAMETER_NAMES = frozenset({"self", "agent_state"})

#: A parameter of this name receives ``worker.progress.report_progress``
#: during a call: a function reports progress without importing fnhost (run
#: outside fnhost, it gets its default).
PROGRESS_PARAMETER = "report_progress"

#: Parameter names reserved for the host: never in a schema, never set by a
#: caller, their annotations ignored (``self: "Agent"`` with ``Agent``
#: imported only under ``TYPE_CHECKING`` costs nothing); filled with their
#: default or None. A parameter annotated ``AgentContext`` is reserved too.
RESERVED_PARAMETERS = CONTEXT_PARAMETER_NAMES | {"cls", PROGRESS_PARAMETER}


class FunctionSkipped(Exception):
    """This function cannot be exported; the message is the reason."""


@dataclass
class ParameterSpec:
    name: str
    kind: inspect._ParameterKind
    type: TypeSpec
    has_default: bool
    default: Any
    hidden: bool = False  # reserved name: not in the schema, never set by a caller


@dataclass
class FunctionSpec:
    name: str
    function: Any
    parameters: list[ParameterSpec]
    schema: JSON
    returns: JSON | None
    warnings: list[str] = field(default_factory=list)
    #: The parameters that are to receive the call's context (``self``,
    #: ``agent_state`` or annotated ``AgentContext``; not ``cls``, not
    #: ``*args``/``**kwargs``), in signature order. Today they receive
    #: their default or None, like every reserved parameter.
    context_parameters: tuple[str, ...] = ()
    #: The parameter that receives the progress reporter (``report_progress``).
    progress_parameters: tuple[str, ...] = ()
    by_name: dict[str, ParameterSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {p.name: p for p in self.parameters if not p.hidden}


def describe_function(name: str, fn: Any) -> FunctionSpec:
    """Build the schema and validators for one function (``FunctionSkipped`` on failure).

    ``name`` is the name the module exports it under (its key in the module's
    namespace, which ``globals()[...] = fn`` can make anything); a name that
    breaks ``protocol.names.FUNCTION_NAME_RULE`` is skipped with the reason.
    """
    problem = function_name_problem(name)
    if problem is not None:
        raise FunctionSkipped(problem)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise FunctionSkipped(f"signature cannot be read: {exc}")
    hints, marked = _type_hints(fn)
    doc = parse_docstring(fn)
    builder = new_builder()
    properties: JSON = {}
    required: list[str] = []
    params: list[ParameterSpec] = []
    context: list[str] = []
    progress: list[str] = []
    try:
        for p in signature.parameters.values():
            if p.name in RESERVED_PARAMETERS or p.name in marked:
                # Never in the schema. MemGPT-style tools take the agent as
                # ``self``: a context parameter receives the call's context
                # proxy (worker.context_proxy), or without one its default,
                # or None; ``cls`` always its default, or None.
                value = None if p.default is p.empty else p.default
                to_fill = p.name in CONTEXT_PARAMETER_NAMES or p.name in marked
                if p.name == PROGRESS_PARAMETER:
                    # Filled by the binding with the progress reporter.
                    to_fill = True
                    if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                        progress.append(p.name)
                    params.append(ParameterSpec(p.name, p.kind, ANY, True, value, hidden=True))
                    continue
                if (
                    not to_fill
                    and p.default is p.empty
                    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                ):
                    builder.warnings.append(f"parameter {p.name!r} is reserved; it receives None")
                params.append(ParameterSpec(p.name, p.kind, ANY, True, value, hidden=True))
                if to_fill and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    context.append(p.name)
                continue
            annotation = hints.get(p.name, inspect.Parameter.empty)
            where = f"parameter {p.name!r}"
            spec = builder.build(annotation, where)
            prop = dict(spec.schema)
            if p.kind is p.VAR_POSITIONAL:
                prop = {"type": "array", "items": spec.schema}
                spec = _variadic_list(spec)
            elif p.kind is p.VAR_KEYWORD:
                prop = {"type": "object", "additionalProperties": spec.schema}
                spec = _variadic_map(spec)
            if p.name in doc.params and "description" not in prop:
                if "$ref" in prop:
                    prop = {"anyOf": [prop]}
                prop["description"] = doc.params[p.name]
            has_default = p.default is not p.empty
            if has_default:
                shown, value = json_default(p.default)
                if shown:
                    if "$ref" in prop:  # keep $ref free of siblings
                        prop = {"anyOf": [prop]}
                    prop["default"] = value
            elif p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                required.append(p.name)
            properties[p.name] = prop
            params.append(ParameterSpec(p.name, p.kind, spec, has_default, p.default))
    except UnsupportedAnnotation as exc:
        raise FunctionSkipped(str(exc))
    returns = None
    if "return" in hints:
        # The return schema is informative only; the result encoder decides
        # what can be sent. An unsupported return type costs the schema, not
        # the function.
        return_builder = new_builder()
        try:
            returns = dict(return_builder.build(hints["return"], "return value").schema)
        except UnsupportedAnnotation as exc:
            builder.warnings.append(f"{exc}; no return schema")
        else:
            if doc.returns and "description" not in returns:
                if "$ref" in returns:
                    returns = {"anyOf": [returns]}
                returns["description"] = doc.returns
            if return_builder.defs:
                returns["$defs"] = return_builder.defs
    parameters: JSON = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if builder.defs:
        parameters["$defs"] = builder.defs
    schema: JSON = {"name": name, "description": doc.description, "parameters": parameters}
    if not doc.description:
        builder.warnings.append("no description: add a docstring")
    return FunctionSpec(
        name=name,
        function=fn,
        parameters=params,
        schema=schema,
        returns=returns,
        warnings=builder.warnings,
        context_parameters=tuple(context),
        progress_parameters=tuple(progress),
    )


class _Annotations:
    """What ``typing.get_type_hints`` reads of a function, with some annotations
    left out: a stand-in, so the user's function is never changed."""

    def __init__(self, annotations: dict[str, Any], fn: Any) -> None:
        self.__annotations__ = annotations
        # Python 3.12+ resolves a generic function's type parameters (def f[T]) from here.
        self.__type_params__ = getattr(fn, "__type_params__", ())


def _type_hints(fn: Any) -> tuple[dict[str, Any], set[str]]:
    """The resolved annotations of ``fn``'s ordinary parameters and its return,
    and the names of the parameters marked ``AgentContext``.

    The annotations of reserved parameters are never evaluated (so one that
    cannot be resolved costs nothing), nor those spelt as one of
    ``MARKER_SPELLINGS``. Raises ``FunctionSkipped`` when any other cannot be
    resolved (the exception's type and message are the reason).
    """
    raw = dict(getattr(fn, "__annotations__", None) or {})
    marked = {
        name
        for name, value in raw.items()
        if name != "return" and isinstance(value, str) and value in MARKER_SPELLINGS
    }
    kept = {name: value for name, value in raw.items() if name not in RESERVED_PARAMETERS | marked}
    # The namespace typing.get_type_hints itself would use: the globals of
    # the innermost function a decorator wrapped.
    inner = fn
    while hasattr(inner, "__wrapped__"):
        inner = inner.__wrapped__
    globalns = getattr(inner, "__globals__", {})
    try:
        hints = typing.get_type_hints(
            _Annotations(kept, fn), globalns=globalns, include_extras=True
        )
    except Exception as exc:  # NameError for an undefined forward reference, and worse
        raise FunctionSkipped(f"type annotations cannot be resolved: {type(exc).__name__}: {exc}")
    marked |= {n for n, hint in hints.items() if n != "return" and hint is AgentContext}
    return hints, marked


def _variadic_list(item: TypeSpec) -> TypeSpec:
    def coerce(v: Any, p: str) -> list:
        if type(v) is not list:
            fail(p, f"array of {item.expected}", v)
        return [item.coerce(x, f"{p}[{i}]") for i, x in enumerate(v)]

    return TypeSpec({"type": "array"}, coerce, f"array of {item.expected}")


def _variadic_map(value: TypeSpec) -> TypeSpec:
    def coerce(v: Any, p: str) -> dict:
        if type(v) is not dict or not all(type(k) is str for k in v):
            fail(p, f"object of {value.expected}", v)
        return {k: value.coerce(x, f"{p}.{k}") for k, x in v.items()}

    return TypeSpec({"type": "object"}, coerce, f"object of {value.expected}")
