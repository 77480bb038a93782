"""Where the course lives, and running one nbgrader step in this process.

A course root is a folder with ``nbgrader_config.py`` and ``source/<assignment>/``. The
repository's root is ``course/``; grading works in a copy of it under the output folder, so
the instructor's tree never gains a gradebook or student files.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

CONFIG_FILE = "nbgrader_config.py"
#: nbgrader's converter for each step (imported when first run: nbgrader takes a second to
#: import, and `sit471 grade` starts its workers first)
STEPS = {
    "generate_assignment": "GenerateAssignment",
    "generate_solution": "GenerateSolution",
    "autograde": "Autograde",
    "generate_feedback": "GenerateFeedback",
}


#: Never part of an assignment: editor and Python caches, and the TensorBoard runs a
#: notebook writes when an instructor executes it in place.
SOURCE_IGNORE = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "runs", ".*")


@event.listens_for(Engine, "connect")
def _sqlite_without_fsync_per_commit(dbapi_connection, _record) -> None:
    """SQLite gradebooks in WAL mode with synchronous=NORMAL: nbgrader commits once per
    cell, and each commit would otherwise wait for the disk (about 30 ms; 70 cells take 2 s).
    WAL stays consistent after a crash (a power cut can lose the last commits, never corrupt
    the file), and `sit471 grade` keeps gradebook.db.bak from before each run."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


class CourseError(Exception):
    """Grading or releasing cannot run at all (the message is shown to the user as is)."""


def find_course_root(start: Path | None = None) -> Path:
    """The course root: $SIT471_COURSE, else ``course/`` in the current folder or a parent."""
    if env := os.environ.get("SIT471_COURSE"):
        root = Path(env)
        if not (root / CONFIG_FILE).is_file():
            raise CourseError(f"SIT471_COURSE={env} has no {CONFIG_FILE}")
        return root.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        for candidate in (folder / "course", folder):
            if (candidate / CONFIG_FILE).is_file() and (candidate / "source").is_dir():
                return candidate
    raise CourseError(
        "no course found: run from the repository (which has course/nbgrader_config.py), "
        "pass --course DIR, or set SIT471_COURSE"
    )


def assignments(root: Path) -> list[str]:
    """Names of the assignments in ``root/source``, in course order."""
    return sorted(p.name for p in (root / "source").iterdir() if p.is_dir() and p.name[0] != ".")


def check_assignment(root: Path, name: str) -> None:
    if name not in assignments(root):
        known = ", ".join(assignments(root)) or "none"
        raise CourseError(f"no assignment {name!r} in {root / 'source'} (known: {known})")


def load_config(root: Path) -> Config:
    """The course's nbgrader configuration, with the root set to ``root``."""
    try:
        config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    except Exception as exc:  # any error in the instructor's config file
        raise CourseError(f"cannot load {root / CONFIG_FILE}: {type(exc).__name__}: {exc}") from exc
    config.CourseDirectory.root = str(root)
    return config


def alembic_head() -> str:
    """nbgrader's latest gradebook migration, read from its migration scripts in this process
    (about 0.1 s). nbgrader's own ``get_alembic_version`` runs ``alembic heads`` as a
    subprocess, which imports nbgrader again: about 4 s whenever a gradebook is created."""
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    return ScriptDirectory(ALEMBIC_DIR).get_current_head()


def use_in_process_alembic() -> None:
    """Make nbgrader stamp a new gradebook with :func:`alembic_head` (the same revision it
    would find by itself; tests/test_autograde_units.py compares them)."""
    import nbgrader.api

    nbgrader.api.get_alembic_version = alembic_head


class SchemaCheckedOnce:
    """``jsonschema.validate`` for nbgrader, checking each schema only once.

    nbgrader validates each cell's metadata with ``jsonschema.validate``, which first checks
    the schema itself against its meta-schema: every time, for the same schema. That was
    about a fifth of the grading worker's CPU time in an autograde step of 01 (0.28 -> 0.22
    s). Here the verdict on the metadata is still jsonschema's (its validator for the schema,
    its ``best_match`` error).
    """

    def __init__(self) -> None:
        self._validators: dict[str, object] = {}

    def validate(self, instance: object, schema: dict) -> None:
        import jsonschema

        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            validator = self._validators[key] = cls(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
        if error is not None:
            raise error


def use_schema_checked_once() -> None:
    """Make nbgrader's metadata validation use :class:`SchemaCheckedOnce`."""
    from nbgrader.nbgraderformat import common

    if not isinstance(common.jsonschema, SchemaCheckedOnce):
        common.jsonschema = SchemaCheckedOnce()


def run_step(root: Path, step: str, assignment: str, student: str | None = None) -> dict:
    """Run one nbgrader step in this process; returns nbgrader's {success, log, error} dict."""
    from nbgrader import converters
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    use_in_process_alembic()
    use_schema_checked_once()
    config = load_config(root)
    coursedir = CourseDirectory(config=config)
    if coursedir.db_url.startswith("sqlite:") and "?" not in coursedir.db_url:
        # parallel graders share the file: wait for a lock instead of failing after 5 s
        coursedir.db_url += "?timeout=60"
    coursedir.assignment_id = assignment
    if student is not None:
        coursedir.student_id = student
    app = getattr(converters, STEPS[step])(coursedir=coursedir, config=config)
    app.log.setLevel(logging.WARNING)
    app.force = True
    if step == "generate_assignment":
        app.create_assignment = True
    if step == "autograde":
        app.create_student = True
    return capture_log(app)


def failure_reason(result: dict) -> str:
    """The most telling line of a failed step's log: the innermost exception, short."""
    log = result.get("log", "") + "\n" + result.get("error", "")
    for line in reversed(log.splitlines()):
        match = _EXCEPTION_LINE.match(line)
        if match and "Please see the" not in line:
            return f"{match['name']}: {match['message']}"[:300]
    for line in reversed(log.splitlines()):
        if line.startswith("[ERROR]") and "Please see the" not in line:
            return line.removeprefix("[ERROR] ")[:300]
    return "nbgrader failed without a message"


_EXCEPTION_LINE = re.compile(r"^\s*(?:[\w]+\.)*(?P<name>\w*(?:Error|Exception)): (?P<message>.+)$")


def make_work_root(
    course_root: Path, work_root: Path, assignment: str, db_url: str | None = None
) -> Path:
    """A grading copy of the course: its config and the assignment's source, nothing else.

    The copy's source is replaced on every call (so grading always uses the current
    source); its gradebook and earlier results are kept. ``db_url`` (``sit471 grade --db``):
    the gradebook's SQLAlchemy URL, written into the copy's config (readable by its owner
    only, since a URL may hold a password), so every nbgrader step run there uses it.
    """
    work_root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(course_root / CONFIG_FILE, work_root / CONFIG_FILE)
    if db_url:
        set_db_url(work_root, db_url)
    dest = work_root / "source" / assignment
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(course_root / "source" / assignment, dest, ignore=SOURCE_IGNORE)
    return work_root


def set_db_url(root: Path, db_url: str) -> None:
    """Point the course copy at ``root`` to the gradebook ``db_url``: a line at the end of
    its config (which wins over any earlier setting), replacing one set before."""
    config = root / CONFIG_FILE
    text = config.read_text().split(_DB_URL_MARK)[0]
    config.write_text(f"{text}{_DB_URL_MARK}c.CourseDirectory.db_url = {db_url!r}\n")
    config.chmod(0o600)


_DB_URL_MARK = "\n# the gradebook, set by sit471 grade\n"


def gradebook_url(root: Path) -> str:
    """The SQLAlchemy URL of the gradebook the course copy at ``root`` uses."""
    from nbgrader.coursedir import CourseDirectory

    return CourseDirectory(config=load_config(root)).db_url


@contextmanager
def gradebook_lock(db_url: str) -> Iterator[None]:
    """Only one grading run at a time sets up its part of the gradebook (tables, course,
    students): two runs into one database would otherwise both create a missing table or
    student, and one would fail. PostgreSQL: a session advisory lock; SQLite: a lock file
    beside the database; other databases: none."""
    if db_url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        engine = create_engine(db_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
        finally:
            engine.dispose()
    elif db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///").split("?")[0])
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    else:
        yield


#: the advisory lock's number in PostgreSQL (any fixed 64-bit integer: "sit471")
_LOCK_KEY = int.from_bytes(b"sit471", "big")
