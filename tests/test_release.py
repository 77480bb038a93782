"""`sit471 release`: deterministic, and --check catches every stale or missing copy."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import ASSIGNMENTS, REPO

from autograde.release import release


def _sit471(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "autograde.cli", *args], cwd=cwd, capture_output=True, text=True
    )


def test_committed_release_and_solutions_are_up_to_date():
    proc = _sit471("release", "--all", "--check")
    assert proc.returncode == 0, proc.stderr


@pytest.fixture()
def course_copy(tmp_path):
    """A copy of the repository's course and solutions to release into."""
    shutil.copytree(REPO / "course" / "source", tmp_path / "course" / "source")
    shutil.copy2(REPO / "course" / "nbgrader_config.py", tmp_path / "course")
    return tmp_path / "course"


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_release_is_deterministic_and_matches_committed_copies(course_copy):
    name = ASSIGNMENTS[0]
    release(course_copy, [name])
    first = _snapshot(course_copy.parent)
    release(course_copy, [name])
    assert _snapshot(course_copy.parent) == first
    committed = (REPO / "course" / "release" / name / "backprop.ipynb").read_bytes()
    assert (course_copy / "release" / name / "backprop.ipynb").read_bytes() == committed
    assert not (course_copy / "gradebook.db").exists(), "release must not leave a gradebook"


def test_check_names_stale_missing_and_extra_files(course_copy):
    name = ASSIGNMENTS[0]
    release(course_copy, [name])
    assert release(course_copy, [name], check=True) == []
    released = course_copy / "release" / name / "backprop.ipynb"
    released.write_text(released.read_text().replace("Backpropagation", "Backprop"))
    (course_copy.parent / "solutions" / name / "backprop.ipynb").unlink()
    (course_copy / "release" / name / "notes.txt").write_text("hand-made")
    before = _snapshot(course_copy.parent)
    problems = release(course_copy, [name], check=True)
    assert _snapshot(course_copy.parent) == before, "--check must change nothing"
    assert f"stale: course/release/{name}/backprop.ipynb" in problems
    assert f"missing: solutions/{name}/backprop.ipynb" in problems
    assert any("extra" in p and "notes.txt" in p for p in problems)


def test_cli_check_exit_status_and_unknown_assignment(course_copy):
    proc = _sit471("--course", str(course_copy), "release", ASSIGNMENTS[0], "--check")
    assert proc.returncode == 1 and "missing:" in proc.stderr
    proc = _sit471("--course", str(course_copy), "release", "99_nope")
    assert proc.returncode == 2
    assert "no assignment '99_nope'" in proc.stderr
