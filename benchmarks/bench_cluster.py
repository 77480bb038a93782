"""Grading on a Dask cluster against the local pool, on this machine, in one run.

32 submissions of 01_backprop (the demo's four variants in turn), each graded by the
`sit471 grade` command into a new output folder:

* local: ``--jobs 2`` (the pebble pool);
* cluster: ``--cluster`` to a scheduler and two ``dask worker --nthreads 1`` processes
  started here on loopback before the timing (as a standing cluster would be; their first
  task's imports are inside the timing, the grader checks them before sending work).

Also timed, in this process, for one student: what the grader does per student on a
cluster (write the returned rows through nbgrader's Gradebook API, and the files), against
the alternative of running nbgrader autograde on the returned, executed notebook with
execution turned off.

    .venv/bin/python benchmarks/bench_cluster.py [--repeats 2] [--out benchmarks/results/cluster.md]

Prints a markdown table (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autograde.course import find_course_root, make_work_root, run_step  # noqa: E402
from autograde.demo import VARIANTS, write_submissions  # noqa: E402

NAME = "01_backprop"
SIT471 = [sys.executable, "-m", "autograde.cli"]
DASK = str(Path(sys.executable).parent / "dask")


def _submissions(demo: Path, dest: Path, n: int) -> Path:
    for k in range(n):
        shutil.copytree(demo / VARIANTS[k % len(VARIANTS)], dest / f"s{k:02d}")
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster(tmp: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    from distributed import Client

    address = f"tcp://127.0.0.1:{_free_port()}"
    log = (tmp / "dask.log").open("w")
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port",
                               address.rsplit(":", 1)[1], "--no-dashboard"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)]
    procs += [subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny",
                                "--no-dashboard", "--local-directory", str(tmp / f"w{k}")],
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True) for k in range(workers)]
    with Client(address, timeout=60) as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM, then SIGKILL for what is still running 20 s later (each a process group)."""
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _grade(subs: Path, out: Path, *flags: str) -> tuple[float, float]:
    """Wall seconds of one `sit471 grade` command, and the CPU seconds of its process tree
    (for --cluster: the grader alone; for the local pool: grader, workers and kernels)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([*SIT471, "grade", NAME, str(subs), "--out", str(out), *flags], cwd=REPO,
                   check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


_NO_EXECUTE = '''
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, DeduplicateIds,
                                    IgnorePattern, LimitOutput, OverwriteCells,
                                    OverwriteKernelspec, SaveAutoGrades)
c.Autograde.sanitize_preprocessors = [DeduplicateIds, OverwriteKernelspec, OverwriteCells,
                                      CheckCellMetadata]
c.Autograde.autograde_preprocessors = [IgnorePattern, LimitOutput, SaveAutoGrades,
                                       AssignLatePenalties, CheckCellMetadata]
'''


def _save_costs(course: Path, graded: Path, tmp: Path) -> tuple[float, float]:
    """Seconds, in the grader, to take in one student's returned result: (a) the rows
    through the Gradebook API plus the files (what `--cluster` does), (b) nbgrader autograde
    on the executed notebook with execution off (the alternative)."""
    import warnings

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    from autograde.cluster import _read_tree, _submission_rows, save_result
    from autograde.course import gradebook_url

    work = graded / "nbgrader"
    copy = tmp / "save"
    make_work_root(work, copy, NAME)
    shutil.copy2(work / "gradebook.db", copy / "gradebook.db")
    result = {"error": None, "rows": _submission_rows(work, NAME, "s00"), "log": "",
              "autograded": _read_tree(work / "autograded" / "s00" / NAME),
              "feedback": _read_tree(work / "feedback" / "s00" / NAME)}
    with Gradebook(gradebook_url(copy), "sit471") as gb:
        gb.remove_submission(NAME, "s00")
        start = time.perf_counter()
        save_result(gb, copy, NAME, "s00", result)
        api = time.perf_counter() - start

    plain = make_work_root(course, tmp / "no-execute", NAME)
    with (plain / "nbgrader_config.py").open("a") as fh:
        fh.write(_NO_EXECUTE)
    warnings.simplefilter("ignore", SAWarning)  # nbgrader's own, as in the grading workers
    run_step(plain, "generate_assignment", NAME)
    dest = plain / "submitted" / "s00" / NAME
    dest.mkdir(parents=True)
    shutil.copy2(work / "autograded" / "s00" / NAME / "backprop.ipynb", dest / "backprop.ipynb")
    run_step(plain, "autograde", NAME, "s00")  # first run: nbgrader's own imports
    start = time.perf_counter()
    done = run_step(plain, "autograde", NAME, "s00")
    rerun = time.perf_counter() - start
    assert done["success"], done
    with Gradebook(gradebook_url(plain), "sit471") as gb:
        assert float(gb.find_submission(NAME, "s00").score) == 15.0
    return api, rerun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="submissions")
    parser.add_argument("--repeats", type=int, default=1, help="alternated runs of each")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" /
                        "cluster.md")
    args = parser.parse_args()
    course = find_course_root(REPO)
    load = os.getloadavg()[0]
    runs: dict[str, list[tuple[float, float]]] = {"local": [], "cluster": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_submissions(course, NAME, tmp / "demo")
        subs = _submissions(tmp / "demo", tmp / "subs", args.n)
        address, procs = _start_cluster(tmp, 2)
        try:
            for k in range(args.repeats):
                runs["local"].append(_grade(subs, tmp / f"local{k}", "--jobs", "2"))
                runs["cluster"].append(_grade(subs, tmp / f"cluster{k}", "--cluster", address))
                same = (tmp / f"local{k}" / "grades.csv").read_text() == (
                    tmp / f"cluster{k}" / "grades.csv").read_text()
                assert same, "the cluster's grades differ from the local pool's"
        finally:
            _stop(procs)
        api, rerun = _save_costs(course, tmp / "cluster0", tmp)

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    local = mean([w for w, _ in runs["local"]])
    cluster = mean([w for w, _ in runs["cluster"]])
    grader_cpu = mean([c for _, c in runs["cluster"]])
    lines = [
        "# Grading on a Dask cluster",
        "",
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load:.1f} (one minute) before the run. "
        f"{args.n} submissions of {NAME} "
        "(the demo's four variants in turn), each run by the `sit471 grade` command into a "
        "new output folder, with the sandbox and the grader's verdicts; the cluster is a "
        "scheduler and two `dask worker --nthreads 1 --no-nanny` processes on loopback, "
        f"started before the timing. Measured {time.strftime('%Y-%m-%d %H:%M')} in one run "
        f"of `benchmarks/bench_cluster.py` ({args.repeats} alternated run(s) of each); "
        "grades.csv is identical in every pair.",
        "",
        "| run | seconds (each run) | mean |",
        "|---|---:|---:|",
        f"| local `--jobs 2` | {', '.join(f'{w:.1f}' for w, _ in runs['local'])} | "
        f"{local:.1f} |",
        f"| `--cluster`, 2 workers × 1 thread | "
        f"{', '.join(f'{w:.1f}' for w, _ in runs['cluster'])} | {cluster:.1f} |",
        "",
        f"- the cluster adds {100 * (cluster / local - 1):+.1f} % to the total "
        f"(cluster / local = {cluster / local:.3f})",
        f"- the grader's own CPU with `--cluster`: {grader_cpu:.1f} s, "
        f"{grader_cpu / args.n:.2f} s per submission (bundle, tasks, results, gradebook, "
        "reports)",
        f"- taking in one returned result in the grader: {api * 1000:.0f} ms through "
        f"nbgrader's Gradebook API (what `--cluster` does) against {rerun * 1000:.0f} ms for "
        "nbgrader autograde on the executed notebook with execution off",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
