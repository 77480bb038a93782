"""Grading runs: late penalties, the instructors' summary, and a run killed part-way."""

from __future__ import annotations

from datetime import datetime

from conftest import COURSE
from grading_helpers import EXPECTED_01 as EXPECTED
from grading_helpers import cli, grades, kill_after_first_student_then_rerun

from autograde.demo import write_submissions
from autograde.grade import grade

NAME = "01_backprop"

def test_late_submission_loses_ten_percent_per_started_day(tmp_path):
    subs = tmp_path / "subs"
    write_submissions(COURSE, NAME, subs)
    (subs / "reference" / "timestamp.txt").write_text("2026-03-03 10:00:00")  # 34 h late
    (subs / "partial" / "timestamp.txt").write_text("2026-03-01 10:00:00")  # on time
    out = tmp_path / "out"
    report = grade(
        COURSE, NAME, subs, out, jobs=2, progress=False, due=datetime(2026, 3, 1, 23, 59)
    )
    scores = {s.student: s for s in report.students}
    assert scores["reference"].score == 12.0  # 2 started days: 20 % of 15
    assert "late by 34.0 h: 3 points deducted" in scores["reference"].reasons
    assert scores["partial"].score == 7.0
    assert grades(out) == {**EXPECTED, "reference": 12.0}
    summary = (out / f"summary-{NAME}.txt").read_text()
    assert "test_sigmoid: mean 0.75 / 1" in summary
    assert "NotImplementedError: not answered yet" in summary


def test_a_killed_run_completes_on_the_next_run_with_the_same_grades(tmp_path):
    subs = tmp_path / "subs"
    write_submissions(COURSE, NAME, subs)
    out = tmp_path / "out"
    cmd = cli("grade", NAME, str(subs), "--out", str(out), "--jobs", "1")
    again = kill_after_first_student_then_rerun(cmd, out)
    assert again.returncode == 0, again.stderr
    assert grades(out) == EXPECTED
