"""Where a grading run's time goes: ``mark(label)`` appends ``time pid label`` to the file
named by ``$SIT471_TIMELINE`` (nothing when unset). The main process, its workers and their
kernels' start-up mark their phases; ``benchmarks/bench_grading.py`` reads the file back
into the profile of the fixed cost it reports."""

from __future__ import annotations

import os
import time

ENV = "SIT471_TIMELINE"


def mark(label: str) -> None:
    """Record that ``label`` happened now (in this process)."""
    path = os.environ.get(ENV)
    if path:
        with open(path, "a") as fh:
            fh.write(f"{time.time():.3f} {os.getpid()} {label}\n")


def read(path: str) -> list[tuple[float, int, str]]:
    """The marks in ``path``, in time order: (seconds since the first, pid, label)."""
    with open(path) as fh:
        rows = [line.split(" ", 2) for line in fh if line.strip()]
    marks = sorted((float(t), int(pid), label.strip()) for t, pid, label in rows)
    start = marks[0][0] if marks else 0.0
    return [(t - start, pid, label) for t, pid, label in marks]
