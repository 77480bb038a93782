"""Grading on a real Dask cluster (`sit471 grade --cluster`): a scheduler and two
single-threaded workers started here on loopback, in this environment, stopped after."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COURSE, REPO, shared
from test_grading import _grade_batch
from test_postgres import SECRET, use_secret

from autograde.demo import write_submissions
from autograde.grade import grade

NAME = "01_backprop"
DASK = str(Path(sys.executable).parent / "dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A scheduler and workers, each its own process group (so a kill takes its kernels)."""

    def __init__(self, folder: Path, workers: int = 2):
        self.folder = folder
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = self._start("scheduler", "scheduler", "--host", "127.0.0.1",
                                     "--port", port, "--no-dashboard")
        self.workers = {f"w{k}": self._start(f"w{k}", "worker", self.address, "--nthreads",
                                             "1", "--no-nanny", "--no-dashboard", "--name",
                                             f"w{k}", "--local-directory", str(folder / f"w{k}"))
                        for k in range(workers)}
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)

    def _start(self, log: str, *args: str) -> subprocess.Popen:
        with (self.folder / f"{log}.log").open("w") as fh:
            return subprocess.Popen([DASK, *args], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def worker_address(self, client, name: str) -> str:
        return next(a for a, w in client.scheduler_info()["workers"].items()
                    if w["name"] == name)

    def stop(self) -> None:
        procs = [*self.workers.values(), self.scheduler]
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("cluster"))
    yield running
    running.stop()
    for proc in [*running.workers.values(), running.scheduler]:
        with pytest.raises(ProcessLookupError):  # nothing of the group is left
            os.killpg(proc.pid, 0)


def _grades(out: Path) -> str:
    return (out / "grades.csv").read_text()


def test_the_cluster_grades_as_the_local_pool_does(cluster, tmp_path_factory, tmp_path):
    _, local_out, subs = shared(tmp_path_factory, "grading_01", _grade_batch)
    out = tmp_path / "out"
    use_secret(out, like=local_out)
    report = grade(COURSE, NAME, subs, out, progress=False, cluster=cluster.address)
    for export in ("grades.csv", "points.csv", f"report-{NAME}.txt"):
        assert (out / export).read_text() == (local_out / export).read_text(), export
    scores = {s.student: s for s in report.students}
    assert scores["notjson"].reasons == [
        "grading failed: NotJSONError: Notebook does not appear to be JSON: "
        "'{ this is not a notebook'"]
    assert any("GraderVerdict: sigmoid on input of shape (2, 5, 3)" in r
               for r in scores["hiddenfail"].reasons)
    html = (out / "feedback" / "broken" / NAME / "backprop.html").read_text()
    assert "NameError" in html and "BEGIN HIDDEN TESTS" not in html
    assert (out / "nbgrader" / "autograded" / "reference" / NAME / "backprop.ipynb").is_file()


def test_a_worker_killed_mid_batch_costs_no_student(cluster, tmp_path):
    from distributed import Client

    demo = tmp_path / "demo"
    write_submissions(COURSE, NAME, demo)
    subs = tmp_path / "subs"
    expected = {}
    for k in range(6):
        variant = ("reference", "blank", "partial")[k % 3]
        shutil.copytree(demo / variant, subs / f"s{k}")
        expected[f"s{k}"] = {"reference": 15.0, "blank": 0.0, "partial": 7.0}[variant]
    out = tmp_path / "out"
    use_secret(out, SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "autograde.cli", "grade", NAME, str(subs), "--out", str(out),
         "--cluster", cluster.address],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    with Client(cluster.address, timeout=60) as client:
        victim = cluster.worker_address(client, "w0")
        for line in proc.stderr:
            lines.append(line)
            if "1/6 graded" in line:
                break
        busy = client.processing(workers=[victim])[victim]
        os.killpg(cluster.workers["w0"].pid, signal.SIGKILL)
    lines += list(proc.stderr)
    assert proc.wait(timeout=300) == 0, "".join(lines)
    assert busy, "the killed worker should have been grading"
    assert sum("graded (" in line for line in lines) == 6
    with (out / "grades.csv").open() as fh:
        assert {r["student_id"]: float(r["score"]) for r in csv.DictReader(fh)} == expected


def test_a_worker_with_other_grading_code_is_refused(cluster, tmp_path, monkeypatch):
    import autograde.cluster
    from autograde.course import CourseError

    monkeypatch.setattr(autograde.cluster, "code_digest", lambda: "another version")
    with pytest.raises(CourseError, match="another version of the course's grading code"):
        grade(COURSE, NAME, tmp_path / "none", tmp_path / "out", progress=False,
              cluster=cluster.address)
