"""A set's environment, from what it declares to the interpreter its workers run on.

A set declares dependencies in its file (a PEP 723 ``# /// script``
block) or the host passes them (``load_function_set(...,
requirements=[...])``, which replaces the block's ``dependencies``; the
block's ``requires-python`` still applies). A set that declares nothing
runs on the host's interpreter, as before; one that declares anything,
even an empty list, runs in an environment of exactly those packages.
"""

from __future__ import annotations

import dataclasses
import platform

from host.environments.env_spec import EnvSpec, requirement_problem
from host.environments.inline_metadata import ScriptMetadataError, read_script_metadata
from host.environments.options import EnvironmentOptions
from host.environments.provision import EnvBuildError, ensure_environment, is_built
from host.environments.python_requirement import python_satisfies
from host.environments.uv_build import (
    INDEX_UNREACHABLE,
    INVALID_REQUIREMENT,
    REQUIRES_PYTHON,
    SDIST_ONLY,
    TIMEOUT,
    UNRESOLVABLE,
    UV_MISSING,
)
from host.errors import LoadError
from host.launch.interpreter import Interpreter
from host.launch.launcher import WorkerSpec

#: What to do about each cause, appended to its LoadError.
ADVICE = {
    INVALID_REQUIREMENT: "write it as PEP 508 says, e.g. 'requests>=2.31'",
    UNRESOLVABLE: "check the names and versions, or the index options (EnvironmentOptions)",
    INDEX_UNREACHABLE: "check the network or proxy, or point EnvironmentOptions at a "
    "reachable index_url or a find_links directory of wheels",
    REQUIRES_PYTHON: "pin a version that supports this Python, or run the host on a "
    "Python it supports",
    SDIST_ONLY: "pin a version that has a wheel for this platform, or allow building from "
    "source with EnvironmentOptions(allow_sdist=True) (its build scripts then run on the host, "
    "outside the sandbox)",
    TIMEOUT: "raise EnvironmentOptions(build_timeout=...) or check the network",
}


class SetEnvironments:
    """Prepares sets' worker specs with their environments (thread-safe:
    builds of the same spec are serialized by its lock)."""

    def __init__(self, options: EnvironmentOptions | None = None) -> None:
        self.options = options or EnvironmentOptions()

    def spec_of(self, spec: WorkerSpec) -> EnvSpec | None:
        """The environment ``spec``'s set declares, or None (the host's interpreter).

        Raises ``LoadError`` for a malformed ``# /// script`` block, a
        ``requires-python`` this Python does not meet, or a requirement
        that cannot be one.
        """
        metadata = None
        if spec.path is not None:
            try:
                metadata = read_script_metadata(spec.path)
            except ScriptMetadataError as exc:
                raise LoadError(spec.set_name, str(exc), source=spec.source) from None
        if spec.requirements is None and metadata is None:
            return None
        if metadata is not None and metadata.requires_python:
            self._check_python(spec, metadata.requires_python)
        requirements = spec.requirements
        if requirements is None:
            assert metadata is not None
            requirements = metadata.dependencies
        for requirement in requirements:
            problem = requirement_problem(requirement, self.options.allow_direct_references)
            if problem:
                raise LoadError(
                    spec.set_name,
                    f"requirement {requirement!r} is invalid: {problem}",
                    source=spec.source,
                )
        return EnvSpec(tuple(requirements), self.options)

    def _check_python(self, spec: WorkerSpec, requires: str) -> None:
        try:
            ok = python_satisfies(requires)
        except ValueError as exc:
            raise LoadError(
                spec.set_name, f"its requires-python is invalid: {exc}", source=spec.source
            ) from None
        if not ok:
            raise LoadError(
                spec.set_name,
                f"it requires Python {requires} and this host runs Python "
                f"{platform.python_version()}; run the host on a Python that meets it, "
                "or change requires-python in its '# /// script' block",
                source=spec.source,
            )

    def prepare(self, spec: WorkerSpec) -> WorkerSpec:
        """``spec`` with the interpreter its workers run on: its environment's,
        built now if the cache has none (this may take a while: progress goes
        to the ``fnhost.environments`` logger), or None for a set that
        declares nothing.

        Raises ``LoadError`` naming the set, the requirements concerned and
        the cause (see ``spec_of`` and ``ADVICE``).
        """
        env_spec = self.spec_of(spec)
        if env_spec is None:
            return dataclasses.replace(spec, interpreter=None)
        try:
            env = ensure_environment(env_spec, spec.set_name)
        except EnvBuildError as exc:
            raise LoadError(spec.set_name, _message(exc), source=spec.source) from None
        interpreter = Interpreter(python=env.python, runtime=env.runtime, environment=env.path)
        return dataclasses.replace(spec, interpreter=interpreter)

    def status(self, spec: WorkerSpec) -> tuple[EnvSpec | None, bool]:
        """(the declared environment or None, whether it is built): for ``fnhost check``.
        Raises ``LoadError`` as ``spec_of``."""
        env_spec = self.spec_of(spec)
        return env_spec, env_spec is not None and is_built(env_spec)


def _message(exc: EnvBuildError) -> str:
    reqs = ", ".join(repr(r) for r in exc.requirements)
    what = {
        UV_MISSING: "its environment cannot be built",
        INVALID_REQUIREMENT: f"requirement {reqs} is invalid",
        UNRESOLVABLE: f"requirement {reqs} cannot be resolved",
        INDEX_UNREACHABLE: f"no package index could be reached to install {reqs}",
        REQUIRES_PYTHON: f"requirement {reqs} does not support Python {platform.python_version()}",
        SDIST_ONLY: f"requirement {reqs} has no wheel to install and building from source is off",
        TIMEOUT: f"building its environment ({reqs}) took too long",
    }.get(exc.cause, f"its environment ({reqs or 'no requirements'}) could not be built")
    advice = ADVICE.get(exc.cause)
    return f"{what}: {exc.detail}" + (f"; {advice}" if advice else "")
