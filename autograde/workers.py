"""The pool of grading workers, startable before anything heavy is imported.

A worker's first task imports nbgrader (about a second) and, given the assignment, starts
the worker's first kernel (a warm kernel, ``autograde/kernels.py``). `sit471 grade` starts
the pool first thing, so that the workers do this while the main process imports and
prepares the batch; `autograde.grade.grade` makes its own pool when it is not given one.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

from pebble import ProcessPool

from autograde.timeline import mark


def warm_up(course: str | None = None, name: str | None = None, sandboxed: bool = True) -> None:
    """A worker's first task: given the course root and an assignment, start the worker's
    first kernel for it (before the imports, so that the two overlap); then import what
    grading needs and, given the assignment, write one feedback page in memory
    (``autograde/feedback.py``), before a submission arrives."""
    if name is not None:
        from autograde import kernels

        kernels.worker_setup(sandboxed)
        try:
            kernels.prestart_for(Path(course), name)
        except Exception as exc:  # grading then starts its kernels itself
            print(f"sit471: no warm kernel: {type(exc).__name__}: {exc}", file=sys.stderr)
        mark("worker: first kernel launched")
    import autograde.grade  # noqa: F401

    mark("worker: imported")
    if name is not None:
        from autograde import feedback

        feedback.warm_up_in_background(Path(course), name)


def start_pool(jobs: int | None = None,
               warm: tuple[Path, str, bool] | None = None) -> ProcessPool:
    """A pool of ``jobs`` (default: the number of cores) spawned workers, warming up.

    ``warm``: (course root, assignment, sandboxed) of the batch to come, for which each
    worker starts a kernel ahead of time. The pool's ``jobs`` attribute is its size.
    """
    jobs = jobs or os.cpu_count() or 1
    pool = ProcessPool(max_workers=jobs, context=multiprocessing.get_context("spawn"))
    pool.jobs = jobs
    args = (str(warm[0]), warm[1], warm[2]) if warm else ()
    for _ in range(jobs):
        pool.schedule(warm_up, args=args)
    return pool
