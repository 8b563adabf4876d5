"""Running a worker program on an interpreter other than the host's: a set's
own environment (``host.environments``).

The worker programs are started as ``python -I -m worker`` (and
``-m worker.zygote``); ``-I`` ignores ``PYTHONPATH`` and the user's site
directory, and an environment holds only the set's packages. So the
command puts the directory with fnhost's worker code (a copy made for
environments, ``host.environments.worker_runtime``) first on ``sys.path``
itself and then runs the module as ``-m`` would. Chosen over a ``.pth``
file in the environment because the environment then stays the user's
packages alone, shared by hosts of any fnhost version, each of which
brings its own worker code.

``-S`` too: ``site`` would otherwise run the ``import`` lines of every
``.pth`` file a dependency ships at interpreter start: in the zygote, as
the host's uid, before any layer of the wall. Nor is the environment's
site-packages on ``sys.path`` before the wall: the standard library tries
optional imports (``copy`` tries ``org.python.core``, ``subprocess``
``msvcrt``), and a dependency shipping such a module would run in the
zygote. The worker adds it, and reads its ``.pth`` files, once the wall is
up, just before it imports the set (``worker.loader.add_site_packages``);
the wall's reveals and read rules include it from the start
(``worker.loader.environment_site_packages``). A ``.pth`` line naming a
directory outside the environment is out of the worker's reach.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

#: ``-c`` code that puts the worker code first on ``sys.path`` and runs the
#: module named after it (``-c BOOT -m worker CONFIG``: ``ps`` and the
#: tests see ``-m worker`` as for any worker) with ``sys.argv`` as ``-m`` sets it.
_BOOT = (
    "import sys, runpy; sys.path.insert(0, {runtime!r}); module = sys.argv[2]; "
    "del sys.argv[1:3]; runpy.run_module(module, run_name='__main__', alter_sys=True)"
)


@dataclass(frozen=True)
class Interpreter:
    """A set environment's interpreter and the worker code it runs."""

    python: str  # <environment>/bin/python
    runtime: str  # the directory holding fnhost's worker and protocol packages
    environment: str  # the environment's directory

    def argv(self, module: str, *args: str) -> list[str]:
        """The command running ``module`` (``worker`` or ``worker.zygote``) as
        ``python -I -S -m module args...`` would (see the module on ``-S``)."""
        boot = _BOOT.format(runtime=self.runtime)
        return [self.python, "-I", "-S", "-c", boot, "-m", module, *args]


def worker_argv(interpreter: Interpreter | None, module: str, *args: str) -> list[str]:
    """``python -I -m module args``: on the host's interpreter, or an environment's."""
    if interpreter is None:
        return [sys.executable, "-I", "-m", module, *args]
    return interpreter.argv(module, *args)
