"""The gradebook on a real PostgreSQL server (`sit471 grade --db URL`).

The server is started by these tests on loopback (tests/postgres_server.py) and stopped
after them; without Debian's `postgresql` package they fail, naming it.
"""

from __future__ import annotations

import csv
import shutil
import subprocess

import pytest
from conftest import COURSE, REPO, grading_pool, shared
from grading_helpers import EXPECTED_01 as EXPECTED
from grading_helpers import cli, grades, kill_after_first_student_then_rerun
from postgres_server import PACKAGE_HINT, Server
from test_grading import _grade_batch

from autograde.demo import write_submissions
from autograde.grade import SECRET_FILE, grade

NAME = "01_backprop"
OTHER = "03_cnn_layers"


@pytest.fixture(scope="session")
def postgres():
    server = Server()
    if server.bin is None:
        pytest.fail(PACKAGE_HINT)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_run(tmp_path_factory):
    """The SQLite run of tests/test_grading.py (shared with it): report, out, submissions."""
    return shared(tmp_path_factory, "grading_01", _grade_batch)


def use_secret(out, secret: str | None = None, like=None) -> None:
    """Give the output folder ``out`` the hidden tests' secret of the folder ``like`` (the
    same inputs, so the same grades and reasons), or ``secret``. Some drawn inputs put even
    a right answer near a numerical threshold; a fixed secret keeps a test deterministic."""
    (out / "nbgrader").mkdir(parents=True, exist_ok=True)
    text = (like / "nbgrader" / SECRET_FILE).read_text() if like else secret
    (out / "nbgrader" / SECRET_FILE).write_text(text)


SECRET = "sit471-tests-" + "0" * 51


def _rows(url: str) -> dict[str, int]:
    """Rows per table of the submissions' part of the gradebook."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                  for t in ("student", "submitted_assignment", "submitted_notebook", "grade",
                            "comment")}
    engine.dispose()
    return counts


def _scores(url: str) -> dict[tuple[str, str], float]:
    from nbgrader.api import Gradebook

    with Gradebook(url, "sit471") as gb:
        return {(a.name, s.student.id): float(s.score)
                for a in gb.assignments for s in a.submissions}


@pytest.mark.xdist_group("tests/test_grading.py")  # on the worker that grades its batch
def test_postgres_gives_the_sqlite_exports_and_regrading_is_idempotent(
        postgres, sqlite_run, tmp_path):
    _, sqlite_out, subs = sqlite_run
    url = postgres.database()
    out = tmp_path / "out"
    use_secret(out, like=sqlite_out)
    report = grade(COURSE, NAME, subs, out, progress=False, pool=grading_pool(), db=url)
    assert not (out / "nbgrader" / "gradebook.db").exists(), "SQLite was used, not --db"
    for export in ("grades.csv", "points.csv", f"report-{NAME}.txt"):
        assert (out / export).read_text() == (sqlite_out / export).read_text(), export
    rows = _rows(url)
    assert rows["submitted_assignment"] == len(report.students) - 1  # "empty" has none
    again = grade(COURSE, NAME, subs, out, progress=False, pool=grading_pool(), db=url)
    assert (out / "grades.csv").read_text() == (sqlite_out / "grades.csv").read_text()
    assert [(s.student, s.score) for s in again.students] == [
        (s.student, s.score) for s in report.students]
    assert _rows(url) == rows, "a regrade must replace rows, never add any"


def test_two_assignments_graded_at_once_into_one_database_lose_no_row(postgres, tmp_path):
    url = postgres.database()  # empty: both runs create its tables and the same students
    procs = []
    for name in (NAME, OTHER):
        write_submissions(COURSE, name, tmp_path / name)
        for variant in ("partial", "broken"):  # two students each keep it short
            shutil.rmtree(tmp_path / name / variant)
        use_secret(tmp_path / f"out-{name}", SECRET)
        procs.append(subprocess.Popen(
            cli("grade", name, str(tmp_path / name), "--out", str(tmp_path / f"out-{name}"),
                 "--jobs", "1", "--db", url),
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    students = ("reference", "blank")
    scores = _scores(url)
    assert set(scores) == {(name, s) for name in (NAME, OTHER) for s in students}
    for name in (NAME, OTHER):
        with (tmp_path / f"out-{name}" / "points.csv").open() as fh:
            reported: dict[str, float] = {}
            for r in csv.DictReader(fh):
                reported[r["student_id"]] = reported.get(r["student_id"], 0) + float(r["points"])
        assert {s: scores[name, s] for s in students} == reported, name
    assert {s: scores[NAME, s] for s in students} == {"reference": 15.0, "blank": 0.0}
    assert scores[OTHER, "reference"] > 0 and scores[OTHER, "blank"] == 0
    rows = _rows(url)
    assert rows["student"] == 2 and rows["submitted_assignment"] == 4


def test_a_killed_run_into_postgres_completes_on_the_next_run(postgres, tmp_path):
    subs = tmp_path / "subs"
    write_submissions(COURSE, NAME, subs)
    out = tmp_path / "out"
    use_secret(out, SECRET)
    url = postgres.database()
    cmd = cli("grade", NAME, str(subs), "--out", str(out), "--jobs", "1", "--db", url)
    again = kill_after_first_student_then_rerun(cmd, out)
    assert again.returncode == 0, again.stderr
    assert grades(out) == EXPECTED
    assert _rows(url)["submitted_assignment"] == 4


def test_without_the_server_binaries_the_tests_fail_naming_the_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr("glob.glob", lambda _pattern: [])
    server = Server()
    assert server.bin is None
    with pytest.raises(RuntimeError, match="postgresql"):
        server.start()
