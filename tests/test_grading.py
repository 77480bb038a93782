"""End to end through real nbgrader: release -> demo submissions -> autograde -> scores."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import COURSE, REPO, grading_pool, shared
from grading_helpers import grades

from autograde.course import CourseError
from autograde.demo import write_submissions
from autograde.grade import grade

NAME = "01_backprop"
NOTEBOOK = "backprop.ipynb"


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """Demo submissions plus broken inputs, graded once for the session."""
    return shared(tmp_path_factory, "grading_01", _grade_batch)


def _grade_batch(tmp):
    subs = tmp / "subs"
    write_submissions(COURSE, NAME, subs)
    # the assignment-folder layout: <student>/<NAME>/<notebook>
    (subs / "nested" / NAME).mkdir(parents=True)
    shutil.copy2(subs / "reference" / NOTEBOOK, subs / "nested" / NAME / NOTEBOOK)
    (subs / "notjson").mkdir()
    (subs / "notjson" / NOTEBOOK).write_text("{ this is not a notebook")
    # passes the visible sigmoid tests, fails the hidden ones (3-D input)
    nb = json.loads((subs / "reference" / NOTEBOOK).read_text())
    cell = next(
        c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "sigmoid"
    )
    cell["source"] = (
        "".join(cell["source"])
        + "\n_right = sigmoid\nsigmoid = lambda z: _right(z) * (np.ndim(z) < 3)\n"
    )
    (subs / "hiddenfail").mkdir()
    (subs / "hiddenfail" / NOTEBOOK).write_text(json.dumps(nb))
    (subs / "empty").mkdir()
    (subs / "empty" / "notes.txt").write_text("I ran out of time")
    (subs / "wrongname").mkdir()
    shutil.copy2(subs / "reference" / NOTEBOOK, subs / "wrongname" / "my_backprop.ipynb")
    before = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()}
    out = tmp / "out"
    report = grade(COURSE, NAME, subs, out, progress=False, pool=grading_pool())
    after = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()}
    assert before == after, "grading must never modify the submissions"
    return report, out, subs


def _by_student(report):
    return {s.student: s for s in report.students}


def test_demo_scores(graded):
    report, _, _ = graded
    s = _by_student(report)
    full = s["reference"].max_score
    assert full == 15
    assert s["reference"].score == full and s["nested"].score == full
    assert s["blank"].score == 0
    assert 0 < s["partial"].score < full
    assert 0 < s["broken"].score < full


def test_every_lost_point_has_a_reason(graded):
    report, out, _ = graded
    s = _by_student(report)
    assert s["reference"].reasons == []
    assert any("NotImplementedError: not answered yet" in r for r in s["blank"].reasons)
    assert any("NameError" in r for r in s["broken"].reasons)
    assert s["notjson"].score == 0 and s["notjson"].reasons
    assert s["notjson"].reasons == [
        "grading failed: NotJSONError: Notebook does not appear to be JSON: "
        "'{ this is not a notebook'"
    ]
    assert s["wrongname"].score == 15
    assert s["wrongname"].reasons == [
        "notebook my_backprop.ipynb graded as backprop.ipynb (renamed)"
    ]
    assert s["empty"].score == 0
    assert s["empty"].reasons == ["notebook backprop.ipynb not found in the submission"]
    text = (out / f"report-{NAME}.txt").read_text()
    assert "reference: 15 / 15" in text and "notjson: 0 / 15" in text


def test_grades_csv_and_points_csv(graded):
    report, out, _ = graded
    with (out / "grades.csv").open() as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {s.student for s in report.students}
    assert float(rows["reference"]["score"]) == 15.0
    assert float(rows["blank"]["score"]) == 0.0
    with (out / "points.csv").open() as fh:
        points = [r for r in csv.DictReader(fh) if r["student_id"] == "partial"]
    assert len(points) == len(report.tests) == 10
    assert sum(float(r["points"]) for r in points) == _by_student(report)["partial"].score


def test_feedback_names_tests_but_hides_hidden_code(graded):
    report, out, _ = graded
    hidden = _by_student(report)["hiddenfail"]
    assert hidden.points["test_sigmoid"] == 0 and hidden.score == 14
    assert any("GraderVerdict: sigmoid on input of shape (2, 5, 3)" in r
               for r in hidden.reasons), hidden.reasons
    html = (out / "feedback" / "hiddenfail" / NAME / "backprop.html").read_text()
    assert "input of shape (2, 5, 3)" in html
    for secret in ("BEGIN HIDDEN TESTS", "sit471.reference", "_ref.", "default_rng(10",
                   "vnd.sit471.results", "sit471.channel", "send("):
        assert secret not in html, secret
    html = (out / "feedback" / "broken" / NAME / "backprop.html").read_text()
    assert "NameError" in html
    for secret in ("BEGIN HIDDEN TESTS", "sit471.reference", "_ref.", "default_rng(10"):
        assert secret not in html, secret


def test_table_lists_every_student_and_test(graded):
    report, _, _ = graded
    table = report.table()
    assert table.splitlines()[1].split()[:4] == ["student", "score", "max", "sigmoid"]
    assert len(table.splitlines()) == 2 + len(report.students)


def test_grading_again_is_idempotent(graded):
    report, out, subs = graded
    before = (out / "grades.csv").read_text()
    again = grade(COURSE, NAME, subs, out, progress=False, pool=grading_pool())
    assert (out / "grades.csv").read_text() == before
    assert [(s.student, s.score) for s in again.students] == [
        (s.student, s.score) for s in report.students
    ]


def test_a_new_submission_replaces_the_old_grades(tmp_path):
    subs = tmp_path / "subs"
    write_submissions(COURSE, NAME, subs)
    keep = {"alice": "reference", "bob": "reference"}
    for student, variant in keep.items():
        (subs / student).mkdir()
        shutil.copy2(subs / variant / NOTEBOOK, subs / student / NOTEBOOK)
    for variant in ("reference", "blank", "partial", "broken"):
        shutil.rmtree(subs / variant)
    out = tmp_path / "out"
    report = grade(COURSE, NAME, subs, out, progress=False, pool=grading_pool())
    first = {s.student: s.score for s in report.students}
    assert first == {"alice": 15.0, "bob": 15.0}
    (subs / "alice" / NOTEBOOK).write_text("not json")
    (subs / "bob" / NOTEBOOK).unlink()
    second = grade(COURSE, NAME, subs, out, progress=False, pool=grading_pool())
    assert {s.student: s.score for s in second.students} == {"alice": 0.0, "bob": 0.0}
    assert grades(out) == {"alice": 0.0, "bob": 0.0}
    assert not (out / "feedback" / "bob").exists() or not any(
        (out / "feedback" / "bob").rglob("*.html")
    )


def test_lms_zip_is_collected(tmp_path):
    subs = tmp_path / "subs"
    write_submissions(COURSE, NAME, subs)
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        # a plain name and one with the pattern's separator in it, one of each variant
        for student, variant in [("alice", "reference"), ("b_doe", "blank")]:
            zf.write(
                subs / variant / NOTEBOOK,
                f"{NAME}_{student}_attempt_2026-11-20-10-00-00_backprop.ipynb",
            )
    report = grade(COURSE, NAME, archive, tmp_path / "out", progress=False, pool=grading_pool())
    scores = {s.student: s.score for s in report.students}
    assert scores == {"alice": 15.0, "b_doe": 0.0}
    # a later zip into the same output folder: its students only, from its own files
    # (b_doe's new notebook is the reference; alice, not in it, is not listed)
    later = tmp_path / "later.zip"
    with zipfile.ZipFile(later, "w") as zf:
        for student, variant in [("b_doe", "reference"), ("carol", "blank")]:
            zf.write(subs / variant / NOTEBOOK,
                     f"{NAME}_{student}_attempt_2026-11-21-10-00-00_backprop.ipynb")
    report = grade(COURSE, NAME, later, tmp_path / "out", progress=False, pool=grading_pool())
    assert {s.student: s.score for s in report.students} == {"b_doe": 15.0, "carol": 0.0}


def test_zip_with_unmatched_names_says_so(tmp_path):
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("some_other_name.ipynb", "{}")
    with pytest.raises(CourseError, match="matched the file-name pattern"):
        grade(COURSE, NAME, archive, tmp_path / "out", jobs=1, progress=False)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "autograde.cli", *args], cwd=REPO, capture_output=True, text=True
    )


def test_cli_exits_nonzero_with_a_reason_when_grading_cannot_run(tmp_path, capsys,
                                                                   monkeypatch):
    from autograde import timeline

    marks = tmp_path / "timeline.txt"  # a grading worker that started would mark it
    monkeypatch.setenv(timeline.ENV, str(marks))
    proc = _cli("grade", "99_nope", str(tmp_path), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "no assignment '99_nope'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # the other reasons from the same main() in this process (the exit status is its result)
    from autograde.cli import main

    assert main(["grade", NAME, str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "submissions not found" in capsys.readouterr().err
    (tmp_path / "file.txt").write_text("x")
    assert main(["grade", NAME, str(tmp_path / "file.txt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "folder or a .zip" in err and len(err.strip().splitlines()) == 1
    # each reason was found before any grading worker (or warm kernel) was started
    assert "worker:" not in (marks.read_text() if marks.exists() else "")
