"""The pool of grading workers, startable before anything heavy is imported.

A worker's first task imports nbgrader (about a second). `sit471 grade` starts the pool
first thing, so that the workers import while the main process imports and prepares the
batch; `autograde.grade.grade` makes its own pool when it is not given one.
"""

from __future__ import annotations

import multiprocessing
import os

from pebble import ProcessPool


def warm_up() -> None:
    """A worker's first task: import what grading needs, before a submission arrives."""
    import autograde.grade  # noqa: F401


def start_pool(jobs: int | None = None) -> ProcessPool:
    """A pool of ``jobs`` (default: the number of cores) spawned workers, warming up."""
    jobs = jobs or os.cpu_count() or 1
    pool = ProcessPool(max_workers=jobs, context=multiprocessing.get_context("spawn"))
    for _ in range(jobs):
        pool.schedule(warm_up)
    return pool
