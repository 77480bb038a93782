"""Grading on a Dask distributed cluster (`sit471 grade … --cluster tcp://HOST:PORT`).

One task per student. The grader and the workers share no folder: everything travels as
data.

* The grader sends each worker, once per batch, the *bundle*: the grading copy's config,
  the assignment's source and release, the grading secret, and a small SQLite gradebook
  that knows the assignment (nbgrader's ``generate_assignment`` run once in a scratch
  course ``OUT/nbgrader/cluster/NAME``, kept while the source is unchanged). Each task adds
  one student's submitted files.
* The worker builds a private course in a temporary folder, grades the student there
  exactly as a local worker does (``autograde.grade._grade_student``: nbgrader autograde in
  the sandbox, the grader-side verdicts, then generate_feedback), and returns the
  autograded notebook, the feedback, the log and the student's rows of its private
  gradebook (timestamp, scores, comments, late penalty) as plain data. Then it deletes the
  folder: a task changes nothing outside it, so running it twice is harmless.
* The grader alone writes its gradebook (SQLite or PostgreSQL) — the returned rows through
  nbgrader's Gradebook API, one commit per student — and its output folder.

A worker lost mid-task (killed, machine gone) costs nothing: the scheduler gives its task
to another worker, and a task that raised is tried again (``RETRIES``). A worker grades one
submission at a time (nbgrader and the sandbox keep per-process state); run more worker
processes (``dask worker --nworkers N --nthreads 1``) to grade more at once.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.exc import SAWarning

from autograde.course import CONFIG_FILE, CourseError, gradebook_url, make_work_root, run_step

#: a task that raised on its worker is tried this many more times (a lost worker's task
#: is rescheduled by the scheduler itself, up to its ``allowed-failures``)
RETRIES = 2
#: seconds to wait for the scheduler, and for its first worker
CONNECT_TIMEOUT = 30

_ONE_AT_A_TIME = threading.Lock()


def code_digest() -> str:
    """A digest of the grading code and the course library (autograde/, sit471/): workers
    must grade with the grader's version, or the verdicts could differ."""
    import hashlib

    import autograde
    import sit471

    digest = hashlib.sha256()
    for package in (autograde, sit471):
        base = Path(package.__file__).parent
        for path in sorted(base.rglob("*.py")):
            digest.update(str(path.relative_to(base.parent)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _worker_ready() -> tuple[str | None, str]:
    """On a worker: import what grading needs; returns why its kernels cannot be sandboxed
    (None: they can) and its :func:`code_digest`."""
    import autograde.grade  # noqa: F401
    from autograde import sandbox

    return sandbox.unavailable_reason(), code_digest()


@contextmanager
def connect(address: str, sandboxed: bool = True) -> Iterator[object]:
    """A ``distributed.Client`` of the scheduler at ``address``, once it has a worker ready
    to grade (sandbox available there, unless ``sandboxed`` is False)."""
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise CourseError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except TimeoutError:
            raise CourseError(f"the Dask scheduler at {address} has no worker "
                              f"(waited {CONNECT_TIMEOUT} s)") from None
        ours = code_digest()
        for worker, (reason, digest) in sorted(client.run(_worker_ready).items()):
            if digest != ours:
                raise CourseError(f"worker {worker} has another version of the course's "
                                  "grading code (autograde/, sit471/): install this one there")
            if sandboxed and reason:
                from autograde.sandbox import ADVICE

                raise CourseError(f"cannot sandbox the students' kernels on worker "
                                  f"{worker}: {reason}; {ADVICE}")
        yield client
    finally:
        client.close()


def _read_tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by path relative to it."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _write_tree(folder: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = folder / relative
        if not path.resolve().is_relative_to(folder.resolve()):
            raise ValueError(f"path outside its folder: {relative}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _private_config(root: Path) -> None:
    """The course copy at ``root`` uses its own SQLite gradebook, whatever the grader's is."""
    from autograde.course import set_db_url

    set_db_url(root, f"sqlite:///{(root / 'gradebook.db').resolve()}")


def _snapshot(work: Path, name: str) -> Path:
    """The scratch course whose gradebook knows ``name`` (and nothing else), made again only
    when the assignment's source or the config changed."""
    from autograde.grade import RELEASED_FROM, _source_key

    snap = work / "cluster" / name
    key = _source_key(work, name)
    stamp = snap / RELEASED_FROM
    if stamp.is_file() and stamp.read_text() == key:
        return snap
    if snap.exists():
        shutil.rmtree(snap)
    make_work_root(work, snap, name)
    _private_config(snap)
    generated = run_step(snap, "generate_assignment", name)
    if not generated["success"]:
        from autograde.course import failure_reason

        raise CourseError(f"cannot prepare {name} for the cluster: {failure_reason(generated)}")
    stamp.write_text(key)
    return snap


def bundle(work: Path, name: str) -> dict[str, bytes]:
    """What every task of this batch needs: config, source, release, secret, and the
    snapshot gradebook with this batch's due date (all as bytes, by relative path)."""
    import sqlite3

    from nbgrader.api import Gradebook

    from autograde.grade import SECRET_FILE

    snap = _snapshot(work, name)
    with Gradebook(gradebook_url(work), "sit471") as gb:
        due = gb.find_assignment(name).duedate
    with Gradebook(gradebook_url(snap), "sit471") as gb:
        gb.update_or_create_assignment(name, duedate=due)
    files = {CONFIG_FILE: (snap / CONFIG_FILE).read_bytes(),  # not the grader's database
             SECRET_FILE: (work / SECRET_FILE).read_bytes()}
    for top in ("source", "release"):
        files.update({f"{top}/{name}/{k}": v for k, v in _read_tree(snap / top / name).items()})
    # a consistent copy (the live file is in WAL mode and may have pages in its -wal file)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "gradebook.db"
        with sqlite3.connect(snap / "gradebook.db") as src, sqlite3.connect(copy) as dest:
            src.backup(dest)
        src.close()
        dest.close()
        files["gradebook.db"] = copy.read_bytes()
    return files


def _submission_rows(root: Path, name: str, student: str) -> dict | None:
    """The student's rows of the gradebook at ``root`` as plain data (None: no submission)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(gradebook_url(root), "sit471") as gb:
        try:
            submission = gb.find_submission(name, student)
        except MissingEntry:
            return None
        return {
            "timestamp": submission.timestamp,
            "notebooks": {
                nb.name: {
                    "flagged": nb.flagged,
                    "late_submission_penalty": nb.late_submission_penalty,
                    "grades": {g.name: {k: getattr(g, k) for k in GRADE_COLUMNS}
                               for g in nb.grades},
                    "comments": {c.name: {k: getattr(c, k) for k in COMMENT_COLUMNS}
                                 for c in nb.comments},
                }
                for nb in submission.notebooks
            },
        }


GRADE_COLUMNS = ("auto_score", "manual_score", "extra_credit", "needs_manual_grade")
COMMENT_COLUMNS = ("auto_comment", "manual_comment")


def grade_task(shared: dict[str, bytes], name: str, student: str, files: dict[str, bytes],
               sandboxed: bool = True) -> dict:
    """On a worker: grade one student in a private course; returns the results as data.

    ``shared``: :func:`bundle`; ``files``: the student's submitted folder. Returns
    ``{"error": reason or None, "rows": _submission_rows(...), "autograded": {path: bytes},
    "feedback": {path: bytes}, "log": text}``.
    """
    from autograde.grade import _grade_student

    with _ONE_AT_A_TIME, tempfile.TemporaryDirectory(prefix="sit471-grade-") as tmp:
        root = Path(tmp)
        _write_tree(root, shared)
        _private_config(root)
        _write_tree(root / "submitted" / student / name, files)
        _, error = _grade_student(str(root), name, student, sandboxed, warm_next=True)
        log = root / "logs" / f"{student}.log"
        return {
            "error": error,
            "rows": _submission_rows(root, name, student),
            "autograded": _read_tree(root / "autograded" / student / name),
            "feedback": _read_tree(root / "feedback" / student / name),
            "log": log.read_text(errors="replace") if log.is_file() else "",
        }


def warm_task(shared: dict[str, bytes], name: str, sandboxed: bool = True) -> None:
    """On a worker, before its first student: start its first kernel for ``name`` (a warm
    kernel, ``autograde/kernels.py``; each task then starts the next while it writes its
    feedback, so a worker keeps one ready between batches too)."""
    from autograde.grade import prestart
    from autograde.kernels import worker_setup

    with _ONE_AT_A_TIME, tempfile.TemporaryDirectory(prefix="sit471-warm-task-") as tmp:
        root = Path(tmp)
        _write_tree(root, {k: v for k, v in shared.items() if k != "gradebook.db"})
        _private_config(root)
        worker_setup(sandboxed)
        prestart(root, name)


def save_result(gb, work: Path, name: str, student: str, result: dict) -> None:
    """In the grader: write one task's result into the gradebook ``gb`` and the grading copy
    (autograded notebook, feedback, log), where the local path would have them."""
    _write_tree(work / "autograded" / student / name, result["autograded"])
    _write_tree(work / "feedback" / student / name, result["feedback"])
    (work / "logs").mkdir(exist_ok=True)
    with (work / "logs" / f"{student}.log").open("a") as log:
        log.write(result["log"])
    rows = result["rows"]
    if rows is None:  # nbgrader made no submission (e.g. the notebook is not JSON)
        return
    extra = {"timestamp": rows["timestamp"]} if rows["timestamp"] is not None else {}
    with warnings.catch_warnings():  # nbgrader's own autoflush warnings, as in local workers
        warnings.simplefilter("ignore", SAWarning)
        submission = gb.update_or_create_submission(name, student, **extra)
    for notebook in submission.notebooks:
        saved = rows["notebooks"][notebook.name]
        notebook.flagged = saved["flagged"]
        notebook.late_submission_penalty = saved["late_submission_penalty"]
        for grade in notebook.grades:
            for column, value in saved["grades"][grade.name].items():
                setattr(grade, column, value)
        for comment in notebook.comments:
            for column, value in saved["comments"][comment.name].items():
                setattr(comment, column, value)
    gb.db.commit()


def run_on_cluster(client, work: Path, name: str, students: list[str], progress: bool,
                   sandboxed: bool = True) -> dict[str, str]:
    """Grade ``students`` on the cluster of ``client``; returns a failure reason per student
    that failed (as ``autograde.grade._run_graders`` does locally)."""
    from distributed import as_completed
    from nbgrader.api import Gradebook

    from autograde.grade import print_progress

    shared = client.scatter(bundle(work, name), broadcast=True, hash=False)
    run = secrets.token_hex(4)  # keys unique to this run: no result of an earlier run is reused
    warm = [client.submit(warm_task, shared, name, sandboxed, pure=False,  # held, or
                          key=f"sit471-warm-{name}-{k}-{run}",          # never run
                          workers=[worker], allow_other_workers=False)
            for k, worker in enumerate(client.scheduler_info()["workers"])]
    futures = {}
    for sid in students:
        files = _read_tree(work / "submitted" / sid / name)
        future = client.submit(grade_task, shared, name, sid, files, sandboxed,
                               key=f"sit471-{name}-{sid}-{run}", retries=RETRIES, pure=False)
        futures[future] = sid
    failures: dict[str, str] = {}
    with Gradebook(gradebook_url(work), "sit471") as gb:
        for done, future in enumerate(as_completed(futures, loop=client.loop), start=1):
            sid = futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # raised RETRIES + 1 times, or its workers kept dying
                error = f"grading failed on the cluster: {type(exc).__name__}: {exc}"[:300]
            else:
                save_result(gb, work, name, sid, result)
                error = result["error"]
            future.release()
            if error:
                failures[sid] = error
            if progress:
                print_progress(name, done, len(students), sid, error, len(failures))
    client.cancel(warm)  # done long ago, unless its worker was lost
    return failures
