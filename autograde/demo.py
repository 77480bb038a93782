"""`sit471 demo`: release every assignment, grade four made-up students, print the gradebook.

The four demo submissions are built from each assignment's release notebooks:

* ``reference``: every answer cell filled with the source's solution (full marks expected);
* ``blank``: the release untouched (0 expected);
* ``partial``: the first half of the answer cells filled (a score in between);
* ``broken``: the reference with a syntax error in one answer cell and a run-time error in
  another (graded like any other submission: the grader must not stop).
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import nbformat
from pebble import ProcessPool

from autograde.course import assignments
from autograde.grade import GradeReport, grade
from autograde.release import release

VARIANTS = ("reference", "blank", "partial", "broken")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def solution_text(source: str) -> str:
    """The solution cell's source without its BEGIN/END SOLUTION marker lines."""
    return "\n".join(
        line for line in source.splitlines() if line.strip() not in (BEGIN, END)
    )


def _answers(source_nb: nbformat.NotebookNode) -> dict[str, str]:
    return {
        c.metadata["nbgrader"]["grade_id"]: solution_text(c.source)
        for c in source_nb.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }


def build_submission(
    release_nb: nbformat.NotebookNode, source_nb: nbformat.NotebookNode, variant: str
) -> nbformat.NotebookNode:
    """One demo submission of the given variant, as a student would hand it in."""
    nb = copy.deepcopy(release_nb)
    answers = _answers(source_nb)
    answer_cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    code = [c for c in answer_cells if c.cell_type == "code"]
    written = [c for c in answer_cells if c.cell_type != "code"]  # graded by hand
    # partial: the first half of the code answers (and of the written ones), so that the
    # autograded score lies strictly between 0 and full however many questions follow
    partial = {id(c) for cells in (code, written) for c in cells[:(len(cells) + 1) // 2]}
    for cell in answer_cells:
        if variant in ("reference", "broken") or (variant == "partial" and id(cell) in partial):
            cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
    if variant == "broken" and len(code) >= 2:
        code[len(code) // 2].source += "\noops = (  # demo: a syntax error\n"
        code[-1].source = "1 / 0  # demo: a run-time error\n" + code[-1].source
    return nb


def write_submissions(course_root: Path, name: str, dest: Path) -> None:
    """Write ``dest/<variant>/<notebook>.ipynb`` for every variant and notebook of ``name``."""
    for release_path in sorted((course_root / "release" / name).glob("*.ipynb")):
        release_nb = nbformat.read(release_path, as_version=4)
        source_nb = nbformat.read(course_root / "source" / name / release_path.name, as_version=4)
        for variant in VARIANTS:
            (dest / variant).mkdir(parents=True, exist_ok=True)
            nbformat.write(build_submission(release_nb, source_nb, variant),
                           dest / variant / release_path.name)


def demo(course_root: Path, out: Path, jobs: int | None = None, sandbox: bool = True,
         pool: ProcessPool | None = None) -> list[GradeReport]:
    """Release, build submissions, grade; returns one report per assignment."""
    names = assignments(course_root)
    start = time.perf_counter()
    print(f"releasing {len(names)} assignment(s)...", file=sys.stderr, flush=True)
    release(course_root, names)
    reports = []
    for name in names:
        submissions = out / "submissions" / name
        write_submissions(course_root, name, submissions)
        reports.append(grade(course_root, name, submissions, out, jobs=jobs,
                             sandbox=sandbox, pool=pool))
    print(f"demo finished in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return reports
