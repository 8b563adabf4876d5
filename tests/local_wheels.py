"""Tiny wheels and sdists written by hand, for the environment tests: a
wheel is a zip of the package and its ``.dist-info`` (METADATA, WHEEL,
RECORD), so no build tool and no index is needed."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    body: str = "",
    requires_python: str | None = None,
    requires: tuple[str, ...] = (),
    extra: dict[str, str] | None = None,
) -> Path:
    """``<name>-<version>-py3-none-any.whl`` in ``directory``: a package
    ``name`` whose ``__init__`` sets ``__version__`` and runs ``body``;
    ``extra``: more files at the wheel's root (a ``.pth``, a module)."""
    directory.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    if requires_python:
        meta += f"Requires-Python: {requires_python}\n"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n{body}".encode(),
        f"{dist}/METADATA": meta.encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: fnhost-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        **{path: text.encode() for path, text in (extra or {}).items()},
    }
    record = "".join(_record_line(p, d) for p, d in files.items()) + f"{dist}/RECORD,,\n"
    files[f"{dist}/RECORD"] = record.encode()
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for member, data in files.items():
            z.writestr(member, data)
    return path


def make_sdist(directory: Path, name: str, version: str) -> Path:
    """``<name>-<version>.tar.gz``: a source distribution only (no wheel)."""
    directory.mkdir(parents=True, exist_ok=True)
    pyproject = (
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
    ).encode()
    path = directory / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(f"{name}-{version}/pyproject.toml")
        info.size = len(pyproject)
        tar.addfile(info, io.BytesIO(pyproject))
    return path


def script_block(*dependencies: str, requires_python: str | None = None) -> str:
    """A PEP 723 ``# /// script`` block declaring ``dependencies``."""
    lines = ["# /// script"]
    if requires_python is not None:
        lines.append(f"# requires-python = {requires_python!r}")
    deps = ", ".join(f'"{d}"' for d in dependencies)
    lines.append(f"# dependencies = [{deps}]")
    lines.append("# ///")
    return "\n".join(lines) + "\n"
