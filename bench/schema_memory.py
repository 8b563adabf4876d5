"""Schema and memory rows: loading a set of 2,000 functions, and what an
idle worker, its zygote and the zygote's spare cost."""

from __future__ import annotations

import textwrap
import time
from typing import TYPE_CHECKING

from bench.calls import add_args
from bench.process_memory import children, memory_mb, name, parent, private_mb
from host import FunctionHost

if TYPE_CHECKING:
    from bench.__main__ import Bench


def run_schema_and_memory(bench: Bench) -> None:
    """The schema load of a 2,000-function set, and an idle worker's memory
    beside its zygote and spare."""
    path = bench.root / "big.py"
    path.write_text(
        "\n".join(
            textwrap.dedent(f'''
        def f{i}(a: int, b: str = "x", c: list[float] | None = None) -> int:
            """Function {i}.

            Args:
                a: A number.
                b: A text.
                c: Some values.
            """
            return a
        ''')
            for i in range(2000)
        )
    )
    for _ in range(bench.rounds):
        start = time.perf_counter()
        with FunctionHost(builtin_dir=bench.empty, user_dirs=[]) as fh:
            fh.load_function_set(path)
            schemas = fh.schemas()
            elapsed = time.perf_counter() - start
            assert len(schemas) == 2000
            bench.record("schema: load 2000 functions", ms=elapsed * 1e3)
    with FunctionHost(builtin_dir=bench.empty, user_dirs=[]) as fh:
        fh.load_function_set(bench.set_path, name="bench")
        fh.call("add", add_args(1))
        pid = fh.function_sets["bench"]["pid"]
        rss, pss = memory_mb(pid)
        bench.record("idle worker memory", rss_mb=rss, pss_mb=pss)
        # What a host adds besides its workers: the zygote and its spare
        # (the child forked ahead of the next spawn, "fnhost-spare").
        zygote = parent(pid)
        spares = [c for c in children(zygote) if name(c) == "fnhost-spare"]
        figures = {"zygote_pss_mb": memory_mb(zygote)[1]}
        if spares:
            figures["spare_pss_mb"] = memory_mb(spares[0])[1]
            figures["spare_private_mb"] = private_mb(spares[0])
        bench.record("zygote and spare memory", **figures)
