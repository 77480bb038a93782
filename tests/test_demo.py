"""The demo's promise for every assignment, graded through real nbgrader."""

from __future__ import annotations

import pytest
from conftest import ASSIGNMENTS, COURSE

from autograde.demo import write_submissions
from autograde.grade import grade


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_demo_scores_of_every_assignment(name, tmp_path):
    """The demo's promise for each assignment: reference all autograded points, blank 0."""
    write_submissions(COURSE, name, tmp_path / "subs")
    report = grade(COURSE, name, tmp_path / "subs", tmp_path / "out", jobs=2, progress=False)
    s = {r.student: r for r in report.students}
    assert report.auto_max > 0
    assert s["reference"].score == report.auto_max, s["reference"].reasons
    assert s["blank"].score == 0
    assert 0 < s["partial"].score < report.auto_max
    assert s["broken"].score < report.auto_max and s["broken"].reasons
