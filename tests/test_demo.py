"""The demo's promise for every assignment, graded through real nbgrader."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import ASSIGNMENTS, COURSE, grading_pool, shared

from autograde.demo import write_submissions
from autograde.grade import grade

# assignment 01's demo students are graded in tests/test_grading.py's batch, beside others
GRADING_01 = "tests/test_grading.py"


def demo_group(name: str) -> str:
    """The xdist group of the tests that read ``name``'s graded demo batch (one worker)."""
    return GRADING_01 if name == "01_backprop" else f"demo_{name}"


def by_assignment(names=ASSIGNMENTS):
    """Assignment names as parameters, each in the xdist group of its graded demo batch."""
    return [pytest.param(name, marks=pytest.mark.xdist_group(demo_group(name)), id=name)
            for name in names]


def graded_demo(tmp_path_factory, name: str):
    """(report, output folder) of the four demo submissions of ``name`` graded once for
    the session; the autograded notebooks lie in ``out/nbgrader/autograded/STUDENT/NAME``."""
    if name == "01_backprop":
        from test_grading import _grade_batch

        report, out, _ = shared(tmp_path_factory, "grading_01", _grade_batch)
        return report, out

    def compute(tmp: Path):
        write_submissions(COURSE, name, tmp / "subs")
        report = grade(COURSE, name, tmp / "subs", tmp / "out", progress=False,
                       pool=grading_pool())
        return report, tmp / "out"

    return shared(tmp_path_factory, f"demo_{name}", compute)


def autograded(out: Path, student: str, name: str, notebook: str) -> nbformat.NotebookNode:
    """The notebook of ``student`` as autograding ran it (with its outputs and verdicts)."""
    return nbformat.read(out / "nbgrader" / "autograded" / student / name / notebook,
                         as_version=4)


@pytest.mark.parametrize("name", by_assignment())
def test_demo_scores_of_every_assignment(name, tmp_path_factory):
    """The demo's promise for each assignment: reference all autograded points, blank 0."""
    report, _ = graded_demo(tmp_path_factory, name)
    s = {r.student: r for r in report.students}
    assert report.auto_max > 0
    assert s["reference"].score == report.auto_max, s["reference"].reasons
    assert s["blank"].score == 0
    assert 0 < s["partial"].score < report.auto_max
    assert s["broken"].score < report.auto_max and s["broken"].reasons
