"""Helpers of the grading-run tests (tests/test_grading_runs.py, tests/test_postgres.py)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

# the demo students of assignment 01 and their autograded scores
EXPECTED_01 = {"reference": 15.0, "blank": 0.0, "partial": 7.0, "broken": 9.0}


def grades(out: Path) -> dict[str, float]:
    """{student: score} from ``out``'s grades.csv."""
    with (out / "grades.csv").open() as fh:
        return {r["student_id"]: float(r["score"]) for r in csv.DictReader(fh)}


def cli(*args: str) -> list[str]:
    """The command line of ``sit471 ARGS`` run by this Python."""
    return [sys.executable, "-m", "autograde.cli", *args]


def kill_after_first_student_then_rerun(cmd: list[str], out: Path,
                                        students: int = 4) -> subprocess.CompletedProcess:
    """Run the grading command ``cmd`` (one job, ``students`` students, into ``out``), kill
    its whole process group once the first student is graded, check that it left no
    grades.csv, and return the completed rerun of the same command."""
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True,
                            stdout=subprocess.DEVNULL, start_new_session=True)
    for line in proc.stderr:
        if f"1/{students} graded" in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    assert not (out / "grades.csv").exists(), "the killed run should not have finished"
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
