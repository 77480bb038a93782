"""`sit471 release`: student copies and solutions generated from the single source.

For each assignment, nbgrader's generate_assignment and generate_solution run in a scratch
copy of the course; the results then replace ``course/release/NAME`` and
``solutions/NAME`` (or, with ``check``, are only compared with them). Generation is
deterministic, so releasing twice changes no byte.
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
from pathlib import Path

from autograde.course import (
    CourseError,
    check_assignment,
    failure_reason,
    make_work_root,
    run_step,
)


def _files(folder: Path) -> set[Path]:
    if not folder.is_dir():
        return set()
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}


def compare_trees(fresh: Path, committed: Path, label: Path) -> list[str]:
    """Lines naming each file of ``committed`` that is missing, stale or extra."""
    new, old = _files(fresh), _files(committed)
    problems = [f"missing: {label / f}" for f in sorted(new - old)]
    problems += [
        f"stale: {label / f}"
        for f in sorted(new & old)
        if not filecmp.cmp(fresh / f, committed / f, shallow=False)
    ]
    problems += [f"extra (not generated from source): {label / f}" for f in sorted(old - new)]
    return problems


def generate(course_root: Path, name: str, scratch: Path) -> dict[str, Path]:
    """Generate the release and solution copies of ``name`` under ``scratch``."""
    check_assignment(course_root, name)
    work = make_work_root(course_root, scratch / "course", name)
    for step in ("generate_assignment", "generate_solution"):
        result = run_step(work, step, name)
        if not result["success"]:
            raise CourseError(f"{step} failed for {name}: {failure_reason(result)}")
    return {"release": work / "release" / name, "solutions": work / "solution" / name}


def release(
    course_root: Path,
    names: list[str],
    check: bool = False,
    solutions_root: Path | None = None,
) -> list[str]:
    """Release ``names``; with ``check``, change nothing and return every stale file instead."""
    solutions_root = solutions_root or course_root.parent / "solutions"
    repo = course_root.parent
    problems: list[str] = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="sit471-release-") as tmp:
            fresh = generate(course_root, name, Path(tmp))
            targets = {
                "release": course_root / "release" / name,
                "solutions": solutions_root / name,
            }
            for kind, committed in targets.items():
                label = committed.relative_to(repo) if committed.is_relative_to(repo) else committed
                if check:
                    problems += compare_trees(fresh[kind], committed, label)
                else:
                    if committed.exists():
                        shutil.rmtree(committed)
                    shutil.copytree(fresh[kind], committed)
    return problems
