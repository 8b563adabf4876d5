"""What an environment is made of, and the key it is cached under."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from dataclasses import dataclass

from host.environments.options import EnvironmentOptions

#: A requirement's project name (PEP 508), for naming it in messages.
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def project_name(requirement: str) -> str:
    """The normalized project name of a requirement (PEP 503), or the text itself."""
    match = _NAME.match(requirement)
    if match is None:
        return requirement.strip()
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


_PROJECT = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_CLAUSE = r"(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_CLAUSES = rf"{_CLAUSE}(?:\s*,\s*{_CLAUSE})*"
#: A requirement of a project by name (PEP 508 without a URL): name,
#: extras, version clauses, then anything after ``;`` (the marker).
_BY_NAME = re.compile(
    rf"\s*{_PROJECT}\s*(?:\[\s*(?:{_PROJECT}(?:\s*,\s*{_PROJECT})*)?\s*\])?"
    rf"\s*(?:\(\s*{_CLAUSES}\s*\)|{_CLAUSES})?\s*(?:;.*)?"
)
#: Names uv reads as a file (an archive in the current directory).
_ARCHIVES = (".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz")


def _by_name(text: str) -> bool:
    """Whether ``text`` asks for a project by name (no URL, no path)."""
    if _BY_NAME.fullmatch(text) is None or "@" in text or "://" in text:
        return False  # (markers never need either)
    name = re.match(_PROJECT, text.strip())
    return name is not None and not name.group(0).lower().endswith(_ARCHIVES)


def requirement_problem(requirement: str, allow_direct: bool = False) -> str | None:
    """Why ``requirement`` cannot be handed to uv as one, or None.

    Checked here because each requirement goes on uv's command line: one
    that starts with ``-`` would be read as an option. Unless
    ``allow_direct``, a requirement must name a project found through the
    indexes and ``find_links`` the host chose: a direct reference (``name @
    URL``, a bare URL or path) would make the host fetch or read whatever it
    names, past ``no_index`` and every index option.
    """
    text = requirement.strip()
    if not text:
        return "an empty requirement"
    if text.startswith("-"):
        return "a requirement cannot start with '-' (options go in EnvironmentOptions)"
    if any(c in text for c in "\r\n\0"):
        return "a requirement is one line"
    if not allow_direct and not _by_name(text):
        return (
            "it is a direct reference (a URL or path), which the host would fetch or read "
            "past its index options; name a project (EnvironmentOptions(find_links=...) "
            "for local wheels), or allow them with "
            "EnvironmentOptions(allow_direct_references=True)"
        )
    return None


def python_identity() -> dict[str, str]:
    """The interpreter an environment is built on: implementation, version and
    the real path of the executable (the environment's ``bin/python`` links
    to it, so another install of the same version is another environment)."""
    return {
        "implementation": platform.python_implementation(),
        "version": platform.python_version(),
        "executable": os.path.realpath(sys.executable),
    }


#: uv's own settings from the environment that change what it installs: they
#: are passed on to uv (the host's environment is uv's), so they are part of
#: the key too. ``UV_INDEX_URL=... fnhost mcp ...`` is how the command line
#: points builds at another index.
UV_KEY_VARIABLES = (
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_NO_BUILD",
    "UV_NO_BINARY",
    "UV_INDEX_STRATEGY",
    "UV_PRERELEASE",
    "UV_RESOLUTION",
    "UV_EXCLUDE_NEWER",
    "UV_CONSTRAINT",
    "UV_OVERRIDE",
)


@dataclass(frozen=True)
class EnvSpec:
    """Requirements plus the options they are installed with."""

    requirements: tuple[str, ...]
    options: EnvironmentOptions

    @property
    def normalized(self) -> tuple[str, ...]:
        """The requirements, stripped, without duplicates, sorted: their order
        does not change what is installed."""
        return tuple(sorted({r.strip() for r in self.requirements}))

    @property
    def key(self) -> str:
        """The cache key: a hash of the Python, the requirements and the index options."""
        doc = {
            "python": python_identity(),
            "requirements": list(self.normalized),
            "options": self.options.key_fields(),
            "uv_settings": {k: os.environ[k] for k in UV_KEY_VARIABLES if k in os.environ},
        }
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        return digest[:24]

    def describe(self) -> str:
        reqs = self.normalized
        if not reqs:
            return "no requirements"
        return f"{len(reqs)} requirement{'s' if len(reqs) != 1 else ''}: {', '.join(reqs)}"
