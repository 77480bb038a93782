"""Execution time of every assignment notebook, the way autograding runs it.

For each assignment, the `reference` demo submission (solutions filled in) is
1. executed top to bottom in a fresh kernel with NBGRADER_EXECUTION=autograde (nbclient), and
2. graded by `sit471 grade` with one job (nbgrader's autograde and feedback included),
so the table shows the notebook's own time and what grading adds. Budget: 45 s per
notebook (hard cap), 20 s goal, on 2 cores. Below the table: 04's quick experiment, which a
student's run starts and grading skips (the notebook says it takes about 30 s on two cores;
the test suite runs it at a tiny size).

    python benchmarks/notebook_times.py [--out benchmarks/results/notebook_times.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograde.course import assignments, find_course_root
from autograde.demo import write_submissions
from autograde.grade import grade
from autograde.kernels import PromptKernelManager

BUDGET_S = 45.0
IGNORED = (".ipynb_checkpoints", "__pycache__", "runs", ".*")


def time_execution(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       kernel_manager_class=PromptKernelManager,  # the client grading uses
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        return time.perf_counter() - start
    finally:
        del os.environ["NBGRADER_EXECUTION"]


def time_quick_experiment() -> tuple[float, int]:
    """04's quick experiment as the notebook starts it in a student's run (two processes),
    with the reference answers for exercises 5 and 6: (seconds, trainings)."""
    from sit471.reference import transfer as ref
    from sit471.transfer import quick_sweep

    start = time.perf_counter()
    out = quick_sweep(ref.approach1, ref.approach2, jobs=2, log=lambda s: None)
    return time.perf_counter() - start, len(out["runs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "notebook_times.md")
    args = parser.parse_args()
    course = find_course_root()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in assignments(course):
            subs = Path(tmp) / name
            write_submissions(course, name, subs)
            # the assignment's own files (cached results) beside the notebook, as a student
            # has them and as grading copies them from the release
            shutil.copytree(course / "source" / name, subs / "reference", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.ipynb", *IGNORED))
            for nb_path in sorted((subs / "reference").glob("*.ipynb")):
                executed = time_execution(nb_path)
                one = Path(tmp) / f"{name}-one"
                (one / "reference").mkdir(parents=True)
                (one / "reference" / nb_path.name).write_bytes(nb_path.read_bytes())
                start = time.perf_counter()
                report = grade(course, name, one, Path(tmp) / f"{name}-out", jobs=1,
                               progress=False)
                graded = time.perf_counter() - start
                score = f"{report.students[0].score:g}/{report.auto_max:g}"
                if report.manual:
                    score += f" (+{report.students[0].max_score - report.auto_max:g} by hand)"
                rows.append((f"{name}/{nb_path.name}", executed, graded, score))
    lines = [
        "# Notebook execution times",
        "",
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. Measured {time.strftime('%Y-%m-%d')} by "
        "`benchmarks/notebook_times.py`.",
        "",
        "| notebook | executed (s) | graded by `sit471 grade --jobs 1` (s) | grading overhead | "
        f"autograded score | within {BUDGET_S:.0f} s |",
        "|---|---:|---:|---:|---|---|",
    ]
    for nb, executed, graded, score in rows:
        lines.append(f"| {nb} | {executed:.1f} | {graded:.1f} | {graded / executed:.1f}× | "
                     f"{score} | {'yes' if executed <= BUDGET_S else 'NO'} |")
    seconds, trainings = time_quick_experiment()
    lines += ["", f"04's quick experiment in a student's run (not graded): {trainings} trainings "
              f"in {seconds:.1f} s (the notebook says about 30 s on two cores)."]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
