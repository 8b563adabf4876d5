"""``fnhost check``: lint function sets before deploying them.

Loads each set in a real worker (so what it reports is what the host would
see) and lists what is wrong or weak. Errors make a set unusable as it is;
warnings make it worse for a model.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from host.api.function_host import FunctionHost
from host.api.set_sources import set_files, worker_spec
from host.environments.set_environments import SetEnvironments
from host.errors import HostError, LoadError, NameConflict, SchemaFormatError
from host.limits import Limits
from host.tools.formats import tool_definition

#: Formats every function is tried against: (label, format, strict).
TARGETS = (("OpenAI strict mode", "openai", True), ("Gemini", "gemini", False))


@dataclass(frozen=True)
class Finding:
    severity: str  # "error", "warning" or "info" (a set's environment)
    set_name: str
    function: str | None
    code: str
    message: str

    def line(self) -> str:
        where = self.set_name + (f".{self.function}" if self.function else "")
        return f"{self.severity:<7} {where}: {self.message} [{self.code}]"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _files(paths: list[str]) -> list[Path]:
    return [f for p in map(Path, paths) for f in (set_files(p) if p.is_dir() else [p])]


def _declared_environment(path: Path) -> str | None:
    """What the set's own environment is and whether it was built before this
    check, or None for a set that runs on the host's interpreter (a
    malformed declaration is reported by the load)."""
    try:
        spec = worker_spec(path, None, Limits(), {})
        env_spec, built = SetEnvironments().status(spec)
    except (HostError, ValueError, TypeError):
        return None
    if env_spec is None:
        return None
    state = "built" if built else "not built yet (built by this check)"
    return f"runs in its own environment ({env_spec.describe()}): {state}"


def check(paths: list[str], timeout: float = 10.0) -> list[Finding]:
    """Findings for every set in ``paths`` (files or directories)."""
    findings: list[Finding] = []
    with (
        tempfile.TemporaryDirectory(prefix="fnhost-check-") as empty,
        FunctionHost(builtin_dir=empty, user_dirs=[], limits=Limits(start_timeout=timeout)) as fh,
    ):
        for path in _files(paths):
            name = path.stem
            declared = _declared_environment(path)
            try:
                fh.load_function_set(path)
            except LoadError as exc:
                findings.append(Finding("error", name, None, "load-failed", exc.message))
                continue
            except NameConflict as exc:
                findings.append(Finding("error", name, None, "name-conflict", str(exc)))
                continue
            except HostError as exc:
                findings.append(Finding("error", name, None, "load-failed", str(exc)))
                continue
            if declared is not None:
                where = fh.function_sets[name]["environment"]
                findings.append(
                    Finding("info", name, None, "environment", f"{declared}, at {where}")
                )
        for set_name, info in fh.function_sets.items():
            if not info["functions"] and not info["skipped"]:
                findings.append(
                    Finding("warning", set_name, None, "no-functions", "exports no functions")
                )
            for func, reason in info["skipped"].items():
                findings.append(
                    Finding("error", set_name, func, "skipped", f"not exported: {reason}")
                )
            for func, warnings in info["warnings"].items():
                for text in warnings:
                    code = "no-description" if text.startswith("no description") else "schema"
                    findings.append(Finding("warning", set_name, func, code, text))
        for set_name, funcs in fh.schemas(merge=False).items():
            for func, schema in funcs.items():
                props = schema["parameters"].get("properties", {})
                for param, prop in props.items():
                    if "description" not in prop:
                        findings.append(
                            Finding(
                                "warning",
                                set_name,
                                func,
                                "no-parameter-description",
                                f"parameter {param!r} has no description",
                            )
                        )
                for label, fmt, strict in TARGETS:
                    try:
                        # The schema has what these formats read: description, parameters.
                        tool_definition(schema, func, fmt, strict)
                    except SchemaFormatError as exc:
                        findings.append(
                            Finding(
                                "warning",
                                set_name,
                                func,
                                f"{fmt}{'-strict' if strict else ''}",
                                f"cannot be used with {label}: parameter {exc.parameter!r} "
                                f"{exc.reason}",
                            )
                        )
    return findings
