"""Bind a JSON arguments object to a function's parameters.

Validation happens against the same ``TypeSpec``s that produced the schema.
The first problem raises ``ArgumentError`` with a path (``items[2].price``),
what was expected and what was given; nothing is called.
"""

from __future__ import annotations

import inspect
from typing import Any

from worker.progress import report_progress
from worker.signature import FunctionSpec
from worker.typespec import ArgumentError, describe_value

P = inspect.Parameter


def bind(
    spec: FunctionSpec, arguments: Any, context: Any = None
) -> tuple[list[Any], dict[str, Any]]:
    """Return ``(args, kwargs)`` to call ``spec.function`` with.

    - a reserved parameter gets ``context`` (the call's context proxy) if it
      is one of ``spec.context_parameters`` and the call has a context, the
      progress reporter (``worker.progress.report_progress``) if it is named
      ``report_progress``, else its default, or None;
    - unknown keys are rejected (the schema is closed);
    - a missing required parameter is rejected;
    - ``null`` for a parameter with a default that does not accept ``null``
      means "use the default" (what OpenAI strict mode sends);
    - positional-only parameters and ``*args`` are passed positionally,
      keyword-only parameters and ``**kwargs`` by keyword.
    """
    if not isinstance(arguments, dict):
        raise ArgumentError("$", "an object of named arguments", describe_value(arguments))
    for key in arguments:
        if key not in spec.by_name:
            known = ", ".join(spec.by_name)
            expected = f"one of the parameters {known}" if known else "no arguments"
            raise ArgumentError(str(key), expected, "an unexpected argument")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for param in spec.parameters:
        if param.hidden:
            filled = param.default
            if context is not None and param.name in spec.context_parameters:
                filled = context
            elif param.name in spec.progress_parameters:
                filled = report_progress
            if param.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
                args.append(filled)
            elif param.kind is P.KEYWORD_ONLY:
                kwargs[param.name] = filled
            continue
        present = param.name in arguments
        value: Any = arguments.get(param.name)
        if present and value is None and param.kind in (P.VAR_POSITIONAL, P.VAR_KEYWORD):
            present = False  # null for *args/**kwargs: none given (strict mode sends it)
        if present and value is None and param.has_default:
            try:
                value = param.type.coerce(None, param.name)
            except ArgumentError:
                present = False  # null means "use the default"
        elif present:
            value = param.type.coerce(value, param.name)
        if param.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
            if present:
                args.append(value)
            elif param.has_default:
                args.append(param.default)
            else:
                raise ArgumentError(param.name, f"{param.type.expected} (required)", "nothing")
        elif param.kind is P.VAR_POSITIONAL:
            if present:
                args.extend(value)
        elif param.kind is P.KEYWORD_ONLY:
            if present:
                kwargs[param.name] = value
            elif not param.has_default:
                raise ArgumentError(param.name, f"{param.type.expected} (required)", "nothing")
        else:  # VAR_KEYWORD
            if present:
                for key, item in value.items():
                    if key in spec.by_name and key != param.name:
                        kind = spec.by_name[key].kind
                        # Only a name that Python would bind by keyword collides.
                        if kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
                            raise ArgumentError(
                                f"{param.name}.{key}",
                                f"a key other than the named parameter {key!r}",
                                "a duplicate",
                            )
                    kwargs[key] = item
    return args, kwargs
