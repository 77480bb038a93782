"""Bringing submissions into a grading copy of the course as ``submitted/<student>/<NAME>/``.

Two inputs are accepted:

* a folder with one sub-folder per student, holding the notebook either directly
  (``<student>/<notebook>.ipynb``) or in an assignment folder (``<student>/<NAME>/…``);
* a zip downloaded from an LMS, collected by nbgrader's ``zip_collect`` with a regular
  expression that finds the student id and the notebook name in each file name.

The input is only read, never changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from autograde.course import CONFIG_FILE, CourseError

#: For LMS downloads named like ``01_backprop_j_doe_attempt_2026-03-01-10-00-00_backprop.ipynb``
#: (nbgrader's documented layout); ``{name}`` is replaced by the assignment's name. The
#: student id is everything between the assignment name and ``_attempt_``.
DEFAULT_ZIP_REGEXP = (
    r".*/{name}_(?P<student_id>[^/]+?)_attempt_(?P<timestamp>[0-9\-]+)_(?P<file_id>[^/]+)$"
)
_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


def _ignore(folder: str, names: list[str]) -> set[str]:
    """Hidden files, caches, TensorBoard runs and symbolic links are not copied (a link
    could point at another student's work)."""
    return {n for n in names if n.startswith(".") or n in ("__pycache__", "runs")
            or Path(folder, n).is_symlink()}


def check_source(source: Path) -> None:
    """Raise CourseError unless ``source`` is a folder or a .zip file."""
    if not source.exists():
        raise CourseError(f"submissions not found: {source}")
    if source.is_file() and source.suffix.lower() != ".zip":
        raise CourseError(f"submissions must be a folder or a .zip file, got {source}")


def collect(
    source: Path, work_root: Path, name: str, regexp: str = DEFAULT_ZIP_REGEXP
) -> tuple[list[str], dict[str, list[str]]]:
    """Copy submissions into ``work_root/submitted``.

    Returns the student ids found and, per student, notes for the report (for example a
    notebook that is missing). Raises CourseError when the input cannot be read at all.
    """
    check_source(source)
    if source.is_file():
        # collected into a folder of its own: only this zip's students are graded, never
        # a student left in submitted/ by an earlier run
        source = _collect_zip(source, work_root, name, regexp)
    expected = sorted(p.name for p in (work_root / "release" / name).glob("*.ipynb"))
    students: list[str] = []
    notes: dict[str, list[str]] = {}
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        sid = folder.name
        if sid.startswith("."):
            continue
        if not _STUDENT_ID.match(sid):
            print(f"skipped folder {folder.name!r}: not a valid student id", file=sys.stderr)
            continue
        base = folder / name if (folder / name).is_dir() else folder
        dest = work_root / "submitted" / sid / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(base, dest, ignore=_ignore)
        students.append(sid)
        notes[sid] = _match_notebooks(dest, expected)
    return students, {sid: lines for sid, lines in notes.items() if lines}


def _match_notebooks(folder: Path, expected: list[str]) -> list[str]:
    """Report missing notebooks; grade a lone renamed notebook under the expected name.

    Works on the grading copy only. Returns notes for the report.
    """
    missing = [nb for nb in expected if not (folder / nb).is_file()]
    extra = sorted(p.name for p in folder.glob("*.ipynb") if p.name not in expected)
    if len(missing) == 1 and len(extra) == 1:
        (folder / extra[0]).rename(folder / missing[0])
        return [f"notebook {extra[0]} graded as {missing[0]} (renamed)"]
    return [
        f"notebook {nb} not found in the submission"
        + (f" (found: {', '.join(extra)})" if extra else "")
        for nb in missing
    ]


def _collect_zip(archive: Path, work_root: Path, name: str, regexp: str) -> Path:
    """Run nbgrader zip_collect on one LMS zip, in a scratch course of its own (under
    ``downloaded/``, made anew each time); returns its folder of submissions."""
    scratch = work_root / "downloaded" / name
    if scratch.exists():
        shutil.rmtree(scratch)
    downloaded = scratch / "downloaded" / name / "archive"
    downloaded.mkdir(parents=True)
    shutil.copy2(work_root / CONFIG_FILE, scratch / CONFIG_FILE)
    shutil.copy2(archive, downloaded / archive.name)
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", "zip_collect", name, "--force",
         "--FileNameCollectorPlugin.named_regexp=" + regexp.replace("{name}", re.escape(name))],
        cwd=scratch, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CourseError(f"could not collect submissions from {archive.name}: {last}")
    if not (scratch / "submitted").is_dir():
        raise CourseError(
            f"no notebook in {archive.name} matched the file-name pattern {regexp!r} "
            "(set --regexp to match your LMS's names)"
        )
    return scratch / "submitted"
