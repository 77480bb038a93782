"""`sit471 grade`: autograde a batch of submissions with nbgrader, in parallel.

Layout of the output folder (kept between runs, so grading again is idempotent):

    OUT/nbgrader/     grading copy of the course: config, source, gradebook.db, submitted/, ...
    OUT/grades.csv    nbgrader's CSV export of the gradebook
    OUT/points.csv    points per student and graded test
    OUT/report-NAME.txt  per student: score, and the reason for every lost point
    OUT/integrity-NAME.txt  per student: patterns and repaired cells for a TA to review
    OUT/summary-NAME.txt    per test: mean points and the most common failure messages
    OUT/feedback/<student>/<NAME>/<notebook>.html
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from nbgrader import __version__ as nbgrader_version
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins.export import CsvExportPlugin
from pebble import ProcessExpired, ProcessPool
from sqlalchemy.exc import SAWarning

from autograde import execute, verdict
from autograde import sandbox as kernel_sandbox
from autograde.course import (
    CONFIG_FILE,
    CourseError,
    check_assignment,
    failure_reason,
    gradebook_lock,
    gradebook_url,
    load_config,
    make_work_root,
    run_step,
    use_in_process_alembic,
)
from autograde.feedback import wait_for_warm_up
from autograde.integrity import scan
from autograde.kernels import worker_setup
from autograde.sanitize import repair
from autograde.submissions import DEFAULT_ZIP_REGEXP, collect
from autograde.timeline import mark
from autograde.workers import start_pool

use_in_process_alembic()  # a new gradebook in 0.1 s instead of 4 (see course.py)

#: In the grading copy: the secret from which each student's hidden-test inputs are drawn.
SECRET_FILE = ".sit471-secret"
#: In the grading copy's release folder: the digest of the source it was generated from.
RELEASED_FROM = ".sit471-released-from"


@dataclass
class StudentResult:
    student: str
    score: float = 0.0
    max_score: float = 0.0
    points: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # integrity report: for a TA to review


@dataclass
class GradeReport:
    assignment: str
    tests: list[tuple[str, float]]  # (grade id, points) in notebook order
    students: list[StudentResult]
    manual: list[str] = field(default_factory=list)  # grade ids a person grades (formgrader)

    @property
    def auto_max(self) -> float:
        """Points the autograder can award (everything but the manually graded answers)."""
        return sum(p for t, p in self.tests if t not in self.manual)

    def table(self) -> str:
        """The gradebook as aligned text: student, score, max, then points per test."""
        heads = ["student", "score", "max"] + [t.removeprefix("test_") for t, _ in self.tests]
        rows = [
            [s.student, _num(s.score), _num(s.max_score)]
            + [_num(s.points[t]) if t in s.points else "-" for t, _ in self.tests]
            for s in self.students
        ]
        widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
        lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                           enumerate(zip(r, widths, strict=True))) for r in [heads, *rows]]
        if self.manual:
            lines.append(f"(graded by hand in nbgrader's formgrader: {', '.join(self.manual)}; "
                         f"autograded maximum {_num(self.auto_max)})")
        return "\n".join([f"== {self.assignment} ==", *lines])

    def summary(self, top: int = 3) -> str:
        """For instructors: mean points per test and its most common failure messages."""
        lines = [f"{self.assignment}: {len(self.students)} submissions"]
        for test, points in self.tests:
            scores = [s.points.get(test, 0.0) for s in self.students]
            mean = sum(scores) / len(scores) if scores else 0.0
            lines.append(f"{test}: mean {mean:.2f} / {_num(points)}")
            messages = Counter(
                _NUMBER.sub("#", r.removeprefix(f"{test}: "))
                for s in self.students for r in s.reasons if r.startswith(f"{test}: ")
            )
            lines += [f"    {n} x {m}" for m, n in messages.most_common(top)]
        return "\n".join(lines) + "\n"


_NUMBER = re.compile(r"-?\d+(\.\d+)?(e-?\d+)?")


def _num(x: float) -> str:
    return f"{x:g}"


def _grade_student(
    work_root: str, name: str, student: str, sandboxed: bool = True, warm_next: bool = False,
) -> tuple[str, str | None]:
    """Autograde one student and write their feedback (runs in a worker process).

    ``warm_next``: more students will come to this worker, so its next kernel is started
    (``autograde/kernels.py``) while this student's feedback is written.
    Everything nbgrader and the student's kernel print goes to ``logs/<student>.log`` in
    the grading copy, so the terminal shows only progress.
    """
    root = Path(work_root)
    mark(f"worker: {student}: start")
    worker_setup(sandboxed)
    (root / "logs").mkdir(exist_ok=True)
    verdict.GRADING_SECRET = (root / SECRET_FILE).read_text().strip()
    with _output_to(root / "logs" / f"{student}.log"):
        warnings.simplefilter("ignore", SAWarning)
        result = run_step(root, "autograde", name, student)
        mark(f"worker: {student}: autograded")
        if warm_next:
            prestart(root, name)
        if not result["success"]:
            return student, failure_reason(result)
        wait_for_warm_up()  # the first page then finds what the warm-up compiled
        feedback = run_step(root, "generate_feedback", name, student)
        mark(f"worker: {student}: feedback written")
        if not feedback["success"]:
            return student, "feedback could not be generated: " + failure_reason(feedback)
    return student, None


def prestart(root: Path, name: str) -> None:
    """Start this worker's next kernel now; a kernel that cannot be started ahead is only
    logged (grading then starts one when it needs it, as it would have anyway)."""
    try:
        execute.prestart_kernel(root, name)
    except Exception as exc:
        print(f"sit471: no warm kernel: {type(exc).__name__}: {exc}", file=sys.stderr)


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def _grade_cells(notebook: Path) -> list[tuple[str, float, bool]]:
    """(grade id, points, autograded?) for every graded cell, in notebook order.

    A graded code cell that is not an answer is an autograder test; a graded answer cell
    (markdown or code with ``solution``) is graded by a person.
    """
    cells = json.loads(notebook.read_text())["cells"]
    out = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            auto = cell["cell_type"] == "code" and not meta.get("solution")
            out.append((meta["grade_id"], float(meta.get("points", 0)), auto))
    return out


def _limit_words(work: Path) -> list[tuple[re.Pattern, str]]:
    """(error pattern, plain words) for the sandbox's limits, with this course's values."""
    defaults = execute.LimitedKernelManager.class_traits()
    conf = load_config(work).LimitedKernelManager

    def value(trait: str) -> int:
        return conf.get(trait, defaults[trait].default_value)

    return [
        (re.compile(r"^(BlockingIOError: \[Errno 11\]|RuntimeError: can't start new thread)"),
         f"started more than {value('nproc_limit')} processes or threads (the limit)"),
        (re.compile(r"^\w*Error: \[Errno 27\] File too large"),
         f"wrote a file larger than {value('fsize_limit_mb')} MiB (the limit)"),
        (re.compile(r"^\w*Error: \[Errno 28\] No space left"),
         f"filled its disk space ({value('work_size_mb')} MiB, /tmp "
         f"{value('tmp_size_mb')} MiB: the limit)"),
        (re.compile(r"^(ConnectionRefusedError|\w*Error: \[Errno (101|111)\]|gaierror)"),
         "tried to use the network (grading has none)"),
    ]


def _failure_reasons(notebook: Path, limits: list[tuple[re.Pattern, str]] = ()) -> list[str]:
    """From the autograded copy: 'test_x: ErrorName: message' for each graded cell that
    raised, and 'cell x: ...' for errors, tripped limits and cut output in other cells.
    A tripped sandbox limit (``limits``, from ``_limit_words``) is said in plain words."""
    reasons = []
    for k, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] != "code":
            continue
        graded = meta.get("grade") and not meta.get("solution")
        label = meta["grade_id"] if graded else f"cell {meta.get('grade_id', f'#{k + 1}')}"
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and "[output cut:" in str(out.get("text")):
                reasons.append(f"{label}: output cut (more than the allowed size)")
            if out.get("output_type") == "error":
                ename, evalue = out.get("ename", "Error"), (out.get("evalue") or "").strip()
                if ename == "NotImplementedError" and not evalue:
                    evalue = "not answered yet"
                message = f"{ename}: {evalue}".splitlines()[0][:200]
                message = next((words for pattern, words in limits if pattern.match(message)),
                               message)
                reasons.append(f"{label}: {message}")
    return reasons


def _source_key(work: Path, name: str) -> str:
    """A digest of everything the release of ``name`` is generated from."""
    digest = hashlib.sha256(f"nbgrader {nbgrader_version}".encode())
    for path in [work / CONFIG_FILE, *sorted((work / "source" / name).rglob("*"))]:
        if path.is_file():
            digest.update(str(path.relative_to(work)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _generate_once(work: Path, name: str) -> None:
    """nbgrader's generate_assignment (the release copy, the gradebook's cells), skipped when
    the source and config are those of the last run and the gradebook still knows them."""
    stamp = work / "release" / name / RELEASED_FROM
    key = _source_key(work, name)
    if stamp.is_file() and stamp.read_text() == key:
        with Gradebook(gradebook_url(work), "sit471") as gb:
            try:
                known = len(gb.find_assignment(name).notebooks)
            except MissingEntry:
                known = 0
        if known == len(list((work / "release" / name).glob("*.ipynb"))) > 0:
            return
    generated = run_step(work, "generate_assignment", name)
    if not generated["success"]:
        raise CourseError(f"cannot prepare {name} for grading: {failure_reason(generated)}")
    stamp.write_text(key)


def _prepare(
    course_root: Path, name: str, submissions: Path, out: Path, regexp: str,
    due: datetime | None, db_url: str | None = None,
) -> tuple[Path, list[str], dict[str, list[str]], dict[str, list[str]]]:
    """Grading copy, collected and repaired submissions, a gradebook ready for them.

    Returns the grading root, the student ids, report notes and integrity flags.
    """
    work = make_work_root(course_root, out / "nbgrader", name, db_url)
    secret = work / SECRET_FILE  # the hidden tests' inputs are drawn from it (verdict.py)
    if not secret.is_file():
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_hex(32))
    db_url = gradebook_url(work)
    with gradebook_lock(db_url):  # another run may be setting up the same database
        _generate_once(work, name)
    students, notes = collect(submissions, work, name, regexp)
    if not students:
        raise CourseError(f"no submissions found in {submissions}")
    flags: dict[str, list[str]] = {}
    for sid in students:
        for released in sorted((work / "release" / name).glob("*.ipynb")):
            submitted = work / "submitted" / sid / name / released.name
            if submitted.is_file():
                flags.setdefault(sid, []).extend(scan(submitted))
                repairs = repair(submitted, released)
                notes.setdefault(sid, []).extend(repairs)
                flags[sid].extend(repairs)
    # Grading a student again starts from nothing: a new submission replaces the old one's
    # grades, autograded copy and feedback (nbgrader would keep old grades on a failure).
    with gradebook_lock(db_url), Gradebook(db_url, "sit471") as gb:
        if due is not None:
            gb.update_or_create_assignment(name, duedate=due)
        for sid in students:
            gb.update_or_create_student(sid)
            try:
                gb.remove_submission(name, sid)
            except MissingEntry:
                pass
    for sid in students:
        for stale in (work / "autograded" / sid / name, work / "feedback" / sid / name,
                      out / "feedback" / sid / name):
            if stale.exists():
                shutil.rmtree(stale)
    return work, students, notes, flags


def _run_graders(
    pool: ProcessPool, work: Path, name: str, students: list[str], progress: bool,
    sandboxed: bool = True,
) -> dict[str, str]:
    """Grade ``students`` in the pool; returns a failure reason per student that failed.

    A worker that dies (killed, crashed, out of memory) or hangs past the time limit costs
    only the student it was grading: pebble replaces it and the student is graded again on
    a fresh worker; a second failure gives that student 0 with the reason.
    """
    notebook_timeout = load_config(work).LimitedExecute.get("notebook_timeout", 300)
    limit = 2 * notebook_timeout + 120  # the kernel's own limits stop it long before
    failures: dict[str, str] = {}
    attempts = dict.fromkeys(students, 0)
    pending = {}
    # the last student of each worker needs no kernel after theirs
    last = set(students[-getattr(pool, "jobs", 1):])

    def submit(sid: str) -> None:
        attempts[sid] += 1
        future = pool.schedule(_grade_student, timeout=limit, args=(
            str(work), name, sid, sandboxed, attempts[sid] > 1 or sid not in last))
        pending[future] = sid

    for sid in students:
        submit(sid)
    done = 0
    while pending:
        finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in finished:
            sid = pending.pop(future)
            try:
                _, error = future.result()
            except Exception as exc:  # the worker died or hung: a fresh worker tries again
                if attempts[sid] < 2:
                    submit(sid)
                    continue
                error = f"the grading process failed twice ({_worker_failure(exc, limit)})"
            done += 1
            if error:
                failures[sid] = error
            if progress:
                print_progress(name, done, len(students), sid, error, len(failures))
    return failures


def print_progress(name: str, done: int, total: int, student: str, error: str | None,
                   failures: int) -> None:
    """One line on stderr per student graded (local pool and cluster alike)."""
    print(f"[{name}] {done}/{total} graded ({student}{': ' + error if error else ''}); "
          f"failures so far: {failures}", file=sys.stderr, flush=True)


def _worker_failure(exc: BaseException, limit: float) -> str:
    if isinstance(exc, ProcessExpired):
        code = exc.exitcode
        how = f"killed by signal {-code}" if code and code < 0 else f"exit status {code}"
        return f"the worker died: {how}"
    if isinstance(exc, TimeoutError):
        return f"it took longer than {limit:g} s"
    return f"{type(exc).__name__}: {exc}"


def _backup_gradebook(work: Path) -> None:
    """Keep the gradebook as it was before this run (``gradebook.db.bak``), a consistent copy
    taken with SQLite's backup API, so that a run killed while writing loses nothing."""
    if not (work / CONFIG_FILE).is_file():
        return
    url = gradebook_url(work)
    path = Path(url.removeprefix("sqlite:///").split("?")[0]) if url.startswith(
        "sqlite:///") else None
    if path is None or not path.is_file():
        return
    tmp = path.with_name(path.name + ".bak.tmp")
    with sqlite3.connect(path) as src, sqlite3.connect(tmp) as dest:
        src.backup(dest)
    src.close()
    dest.close()
    os.replace(tmp, path.with_name(path.name + ".bak"))


def grade(
    course_root: Path,
    name: str,
    submissions: Path,
    out: Path,
    jobs: int | None = None,
    regexp: str = DEFAULT_ZIP_REGEXP,
    progress: bool = True,
    due: datetime | None = None,
    sandbox: bool = True,
    pool: ProcessPool | None = None,
    db: str | None = None,
    cluster: str | None = None,
) -> GradeReport:
    """Grade every submission of ``name`` found in ``submissions``; results go to ``out``.

    ``pool``: grading workers from :func:`autograde.workers.start_pool` (default: a new
    pool of ``jobs`` workers for this call). ``db``: the gradebook's SQLAlchemy URL
    (default: the course config's, else ``OUT/nbgrader/gradebook.db``). ``cluster``: the
    address of a Dask scheduler (``tcp://HOST:PORT``): each student is graded by a task on
    its workers (``autograde/cluster.py``) instead of in a local pool.

    Each kernel runs in the sandbox (``autograde/sandbox.py``); where it cannot be had this
    refuses (``CourseError``) unless ``sandbox`` is False (``sit471 grade --no-sandbox``).
    """
    check_assignment(course_root, name)
    if sandbox and not cluster and (reason := kernel_sandbox.unavailable_reason()):
        raise CourseError(f"cannot sandbox the students' kernels: {reason}; "
                          f"{kernel_sandbox.ADVICE}")
    if not sandbox:
        print("sit471 grade: --no-sandbox: student code runs unconfined, as you, with your "
              "files and network", file=sys.stderr, flush=True)
    if cluster:
        from autograde.cluster import connect

        runner = connect(cluster, sandbox)  # the workers' sandbox is checked before anything
    elif pool is not None:
        runner = nullcontext(pool)  # a given pool is the caller's
    else:
        # workers start, import nbgrader and start their first kernel while we prepare
        runner = start_pool(jobs, warm=(course_root, name, sandbox))
    mark("main: imported")
    with runner as workers:
        _backup_gradebook(out / "nbgrader")
        work, students, notes, flags = _prepare(course_root, name, submissions, out, regexp, due,
                                                db)
        mark("main: prepared")
        # A submission without any of the assignment's notebooks scores 0 with the note
        # from collect(); nbgrader is not asked to grade it.
        expected = [p.name for p in (work / "release" / name).glob("*.ipynb")]
        gradable = [s for s in students
                    if any((work / "submitted" / s / name / nb).is_file() for nb in expected)]
        if cluster:
            from autograde.cluster import run_on_cluster

            failures = run_on_cluster(workers, work, name, gradable, progress, sandbox)
        else:
            failures = _run_graders(workers, work, name, gradable, progress, sandbox)

    mark("main: all graded")
    db_url = gradebook_url(work)
    report = _collect_results(work, name, students, db_url)
    for result in report.students:
        result.flags = flags.get(result.student, [])
        result.reasons = notes.get(result.student, []) + (
            [f"grading failed: {failures[result.student]}"] if result.student in failures else []
        ) + result.reasons
    _write_outputs(work, out, name, report, db_url)
    mark("main: outputs written")
    return report


def late_score(score: float, penalty: float) -> float:
    """The score after a late penalty, never below 0 (as nbgrader's export counts it)."""
    return max(0.0, score - penalty)


def _collect_results(work: Path, name: str, students: list[str], db_url: str) -> GradeReport:
    source = sorted((work / "source" / name).glob("*.ipynb"))
    cells = [c for nb in source for c in _grade_cells(nb)]
    tests = [(grade_id, points) for grade_id, points, _ in cells]
    manual = [grade_id for grade_id, _, auto in cells if not auto]
    results = []
    limits = _limit_words(work)
    with Gradebook(db_url, "sit471") as gb:
        for sid in students:
            result = StudentResult(sid, max_score=sum(p for _, p in tests))
            try:
                submission = gb.find_submission(name, sid)
            except MissingEntry:
                results.append(result)
                continue
            penalty = float(submission.late_submission_penalty or 0)
            result.score = late_score(float(submission.score), penalty)
            if penalty or submission.total_seconds_late > 0:
                hours = submission.total_seconds_late / 3600
                result.reasons.append(f"late by {hours:.1f} h: {_num(penalty)} points deducted")
            for notebook in submission.notebooks:
                for g in notebook.grades:
                    result.points[g.name] = float(g.score)
                autograded = work / "autograded" / sid / name / f"{notebook.name}.ipynb"
                if autograded.is_file():
                    result.reasons += _failure_reasons(autograded, limits)
            results.append(result)
    return GradeReport(name, tests, results, manual)


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file, so a killed run never leaves half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_points(points: Path, name: str, rows: list[dict]) -> None:
    """Replace ``name``'s rows of ``points.csv``, keeping every other assignment's. Holds an
    exclusive lock from read to replace, so two runs into one folder never lose rows."""
    with open(points.with_name(points.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = []
        if points.exists():
            with points.open(newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if r["assignment"] != name]
        tmp = points.with_name(f"{points.name}.{os.getpid()}.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["assignment", "student_id", "test", "points",
                                         "max_points"])
            writer.writeheader()
            writer.writerows(kept + rows)
        os.replace(tmp, points)


def _write_outputs(work: Path, out: Path, name: str, report: GradeReport, db_url: str) -> None:
    with Gradebook(db_url, "sit471") as gb:
        exporter = CsvExportPlugin()
        exporter.to = str(out / "grades.csv.tmp")
        exporter.export(gb)
    os.replace(out / "grades.csv.tmp", out / "grades.csv")

    write_points(out / "points.csv", name, [
        {"assignment": name, "student_id": s.student, "test": t, "points": s.points.get(t, 0.0),
         "max_points": p}
        for s in report.students for t, p in report.tests
    ])

    lines = [f"{name}: {len(report.students)} submissions"]
    for s in report.students:
        lines.append(f"{s.student}: {_num(s.score)} / {_num(s.max_score)}")
        lines += [f"    {r}" for r in s.reasons]
    _write_atomic(out / f"report-{name}.txt", "\n".join(lines) + "\n")

    _write_atomic(out / f"summary-{name}.txt", report.summary())

    flagged = [s for s in report.students if s.flags]
    lines = [f"{name}: {len(flagged)} of {len(report.students)} submissions to review"]
    for s in flagged:
        lines.append(f"{s.student}:")
        lines += [f"    {f}" for f in s.flags]
    _write_atomic(out / f"integrity-{name}.txt", "\n".join(lines) + "\n")

    for s in report.students:
        src = work / "feedback" / s.student / name
        dest = out / "feedback" / s.student / name
        if src.is_dir():
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src, dest)
