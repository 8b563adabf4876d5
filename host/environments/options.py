"""How a host builds its sets' environments: indexes, wheels or sources, cache."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


def _is_url(text: str) -> bool:
    return "://" in text


@dataclass(frozen=True)
class EnvironmentOptions:
    """Options for every environment a ``FunctionHost`` builds.

    - ``index_url``: the package index (uv's default, PyPI, when None).
    - ``extra_index_urls``: more indexes to search.
    - ``find_links``: directories (or URLs) of wheels to search too.
    - ``no_index``: search only ``find_links`` (no network at all).
    - ``allow_sdist``: allow building packages from source distributions.
      Off by default: a build script runs on the host, outside every
      sandbox, with the host's rights; wheels only unpack.
    - ``allow_direct_references``: allow requirements that name a URL or
      path (``pkg @ https://...``, ``./dir``) instead of a project. Off by
      default: the host would fetch or read whatever a set's block names,
      whatever ``no_index`` and the index options say.
    - ``cache_dir``: where environments live (default ``$FNHOST_CACHE_DIR``,
      else ``$XDG_CACHE_HOME/fnhost``, else ``~/.cache/fnhost``).
    - ``build_timeout``: seconds one build (or the wait for another
      process's build of the same spec) may take.

    The index options are part of an environment's key: the same
    requirements from another index are another environment.
    """

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    allow_sdist: bool = False
    allow_direct_references: bool = False
    cache_dir: str | None = None
    build_timeout: float = 900.0

    def __post_init__(self) -> None:
        # Relative directories are taken from the cwd now, so the key and
        # uv see the same place whatever the cwd is later.
        links = tuple(p if _is_url(p) else os.path.abspath(p) for p in self.find_links)
        object.__setattr__(self, "find_links", links)
        object.__setattr__(self, "extra_index_urls", tuple(self.extra_index_urls))
        if self.build_timeout <= 0:
            raise ValueError("build_timeout must be positive")

    def key_fields(self) -> dict[str, Any]:
        """What of these options changes what an environment contains."""
        return {
            "index_url": self.index_url,
            "extra_index_urls": list(self.extra_index_urls),
            "find_links": list(self.find_links),
            "no_index": self.no_index,
            "allow_sdist": self.allow_sdist,
        }

    def uv_arguments(self) -> list[str]:
        """The ``uv pip install`` options these stand for."""
        args = [] if self.allow_sdist else ["--only-binary", ":all:"]
        if self.no_index:
            args.append("--no-index")
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args
