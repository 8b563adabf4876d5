"""Per-set virtual environments: a set declares its dependencies (PEP 723
inline script metadata, or ``requirements=`` from the host), and fnhost
builds one environment per spec with uv, caches it, and runs the set's
workers on its interpreter. See ``docs/environments.md``."""

from host.environments.env_cache import EnvInfo, cache_root, list_environments, prune
from host.environments.env_spec import EnvSpec
from host.environments.options import EnvironmentOptions
from host.environments.provision import EnvBuildError, Environment, ensure_environment
from host.environments.set_environments import SetEnvironments

__all__ = [
    "EnvBuildError",
    "EnvInfo",
    "EnvSpec",
    "Environment",
    "EnvironmentOptions",
    "SetEnvironments",
    "cache_root",
    "ensure_environment",
    "list_environments",
    "prune",
]
