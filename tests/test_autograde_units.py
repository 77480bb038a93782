"""Unit tests for autograde's pure parts, on hand-made notebook JSON and fake paths.

No nbgrader step, kernel or sandbox runs here (those are in test_grading*.py,
test_hostile.py and test_sandbox.py): the whole file takes a few seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from autograde import sandbox
from autograde.course import CourseError, failure_reason
from autograde.grade import _failure_reasons
from autograde.integrity import scan
from autograde.late import PercentPerDay
from autograde.sanitize import repair
from autograde.submissions import DEFAULT_ZIP_REGEXP, collect

# --- hand-made notebooks -------------------------------------------------------------------


def cell(source, gid=None, *, kind="code", locked=False, grade=False, solution=False,
         points=0, outputs=()):
    meta = {}
    if gid is not None:
        meta["nbgrader"] = {"grade_id": gid, "locked": locked, "grade": grade,
                            "solution": solution, "schema_version": 3}
        if grade:
            meta["nbgrader"]["points"] = points
    c = {"cell_type": kind, "metadata": meta, "source": source}
    if kind == "code":
        c["outputs"] = list(outputs)
        c["execution_count"] = None
    return c


def notebook(*cells) -> dict:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def write(path: Path, nb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nb if isinstance(nb, str) else json.dumps(nb))
    return path


def gids(path: Path) -> list[str | None]:
    return [c["metadata"].get("nbgrader", {}).get("grade_id")
            for c in json.loads(path.read_text())["cells"]]


def released() -> dict:
    """intro, answer, test_answer (locked, 2 points), helper (locked), answer2, test_answer2."""
    return notebook(
        cell("# Exercise", "intro", kind="markdown", locked=True),
        cell("def f(x):\n    raise NotImplementedError()", "answer", solution=True),
        cell("assert f(1) == 2", "test_answer", locked=True, grade=True, points=2),
        cell("import numpy as np", "helper", locked=True),
        cell("def g(x):\n    raise NotImplementedError()", "answer2", solution=True),
        cell("assert g(1) == 3", "test_answer2", locked=True, grade=True, points=1),
    )


ORDER = ["intro", "answer", "test_answer", "helper", "answer2", "test_answer2"]


@pytest.fixture
def release(tmp_path) -> Path:
    return write(tmp_path / "release.ipynb", released())


def submitted(tmp_path: Path, cells: list[dict]) -> Path:
    return write(tmp_path / "sub" / "nb.ipynb", notebook(*cells))


# --- autograde.sanitize.repair -------------------------------------------------------------


def test_repair_leaves_an_intact_submission_untouched(tmp_path, release):
    cells = released()["cells"]
    cells[1]["source"] = "def f(x):\n    return 2 * x"  # an answer, not a locked cell
    path = submitted(tmp_path, cells)
    before = path.read_bytes()
    assert repair(path, release) == []
    assert path.read_bytes() == before


def test_repair_keeps_the_first_copy_of_a_duplicated_cell(tmp_path, release):
    cells = released()["cells"]
    first = dict(cells[1], source="def f(x):\n    return 2 * x")
    second = dict(cells[1], source="def f(x):\n    return 0")
    path = submitted(tmp_path, [cells[0], first, second, *cells[2:]])
    assert repair(path, release) == ["cell answer was duplicated: the first copy is graded"]
    assert gids(path) == ORDER
    assert json.loads(path.read_text())["cells"][1]["source"] == first["source"]


def test_repair_puts_a_deleted_test_cell_back_after_its_predecessor(tmp_path, release):
    cells = [c for c in released()["cells"] if c["metadata"]["nbgrader"]["grade_id"]
             != "test_answer"]
    path = submitted(tmp_path, cells)
    assert repair(path, release) == ["cell test_answer was deleted: restored from the source"]
    assert gids(path) == ORDER
    restored = json.loads(path.read_text())["cells"][2]
    assert restored["source"] == "assert f(1) == 2"
    assert restored["metadata"]["nbgrader"]["points"] == 2


def test_repair_restores_several_deleted_cells_in_release_order(tmp_path, release):
    # the answer cell stays; intro (first cell), test_answer and helper (neighbours) go
    cells = [c for c in released()["cells"] if c["metadata"]["nbgrader"]["grade_id"]
             in ("answer", "answer2", "test_answer2")]
    path = submitted(tmp_path, cells)
    notes = repair(path, release)
    assert notes == [f"cell {g} was deleted: restored from the source"
                     for g in ("intro", "test_answer", "helper")]
    assert gids(path) == ORDER


def test_repair_does_not_restore_a_deleted_answer_cell(tmp_path, release):
    """Answer cells are neither locked nor graded: a deleted one stays deleted."""
    cells = [c for c in released()["cells"] if c["metadata"]["nbgrader"]["grade_id"]
             != "answer2"]
    path = submitted(tmp_path, cells)
    assert repair(path, release) == []
    assert gids(path) == [g for g in ORDER if g != "answer2"]


def test_repair_notes_an_edited_locked_cell_without_rewriting(tmp_path, release):
    cells = released()["cells"]
    cells[2]["source"] = "assert True"
    cells[3]["source"] = ["import numpy ", "as np"]  # the same text as a list: not an edit
    path = submitted(tmp_path, cells)
    before = path.read_bytes()
    assert repair(path, release) == ["locked cell test_answer was edited: restored from the source"]
    assert path.read_bytes() == before  # nbgrader restores the text from the gradebook


@pytest.mark.parametrize("text", ["{not json", '{"cells": 3}', '{"metadata": {}}', "[]"])
def test_repair_leaves_what_is_not_a_notebook_to_nbgrader(tmp_path, release, text):
    path = write(tmp_path / "sub" / "nb.ipynb", text)
    assert repair(path, release) == []
    assert path.read_text() == text


# --- autograde.integrity.scan --------------------------------------------------------------


@pytest.mark.parametrize("source, what, matched", [
    ("from sit471.reference.backprop import forward", "imports the reference answers",
     "sit471.reference"),
    ("from sit471 import reference", "imports the reference answers",
     "from sit471 import reference"),
    ("check_array = lambda *a, **k: None", "reassigns test helpers", "check_array ="),
    ("sit471.checks.relative_error = abs", "reassigns test helpers",
     "sit471.checks.relative_error ="),
    ("setattr(checks, 'check_scalar', print)", "reassigns test helpers", "setattr("),
    ("np.testing.assert_allclose = print", "reassigns NumPy functions",
     "np.testing.assert_allclose ="),
    ("np.allclose = lambda *a: True", "reassigns NumPy functions", "np.allclose ="),
    ("import builtins", "touches builtins", "builtins"),
    ("class A:\n    def __eq__(self, o):\n        return True", "overrides equality",
     "def __eq__"),
    ("open('/etc/passwd').read()", "accesses files outside the submission", "open('/"),
    ("Path('../other').read_text()", "accesses files outside the submission", "Path('.."),
    ("os.remove(p)", "accesses files outside the submission", "os.remove"),
    ("shutil.rmtree('x')", "accesses files outside the submission", "shutil."),
    ("import subprocess", "runs commands or low-level code", "subprocess"),
    ("os.system('ls')", "runs commands or low-level code", "os.system"),
    ("import ctypes", "runs commands or low-level code", "ctypes"),
    ("db = 'gradebook.db'", "mentions grading files", "gradebook"),
])
def test_scan_flags_each_pattern(tmp_path, source, what, matched):
    path = write(tmp_path / "nb.ipynb", notebook(cell(source, "answer", solution=True)))
    assert scan(path) == [f"cell answer: {what} ({matched})"]


@pytest.mark.parametrize("source", [
    "if np.allclose(a, b) == True:\n    pass",   # comparison, not assignment
    "x = check_array(a, b)",                      # calling a helper
    "open('results.json')",                        # a file beside the notebook
    "y = np.exp(-z)",
])
def test_scan_passes_ordinary_code(tmp_path, source):
    path = write(tmp_path / "nb.ipynb", notebook(cell(source, "answer", solution=True)))
    assert scan(path) == []


def test_scan_reads_only_code_the_student_wrote(tmp_path):
    nb = notebook(
        cell("import subprocess", "test_answer", locked=True, grade=True),  # restored anyway
        cell("gradebook, subprocess", "notes", kind="markdown"),
        cell(["import ", "subprocess"]),  # no nbgrader metadata: numbered, list source
        cell("x = 1\nimport builtins, ctypes", "answer", solution=True),
    )
    path = write(tmp_path / "nb.ipynb", nb)
    assert scan(path) == [
        "cell #3: runs commands or low-level code (subprocess)",
        "cell answer: touches builtins (builtins)",
        "cell answer: runs commands or low-level code (ctypes)",
    ]


def test_scan_cuts_the_matched_text_and_skips_broken_json(tmp_path):
    source = "np.testing.assert_allclose_but_with_a_much_longer_name = print"
    path = write(tmp_path / "nb.ipynb", notebook(cell(source, "answer", solution=True)))
    assert scan(path) == [
        "cell answer: reassigns NumPy functions (np.testing.assert_allclose_but_with_a_mu)"]
    assert scan(write(tmp_path / "bad.ipynb", "{oops")) == []


# --- autograde.submissions: collect and notebook matching ----------------------------------

NAME = "01_backprop"


@pytest.fixture
def work(tmp_path) -> Path:
    root = tmp_path / "work"
    write(root / "release" / NAME / "backprop.ipynb", notebook())
    return root


def test_collect_reads_both_folder_layouts_and_copies_only_the_submission(tmp_path, work):
    src = tmp_path / "in"
    write(src / "alice" / "backprop.ipynb", notebook(cell("a = 1")))
    write(src / "bob" / NAME / "backprop.ipynb", notebook(cell("b = 2")))
    write(src / "bob" / NAME / "helper.py", "x = 1")
    write(src / "bob" / NAME / ".secret", "hidden")
    write(src / "bob" / NAME / "__pycache__" / "m.pyc", "")
    write(src / "bob" / NAME / "runs" / "events", "")
    (src / "bob" / NAME / "link.ipynb").symlink_to(src / "alice" / "backprop.ipynb")
    write(src / ".hidden_student" / "backprop.ipynb", notebook())
    before = sorted(str(p) for p in src.rglob("*"))

    students, notes = collect(src, work, NAME)

    assert students == ["alice", "bob"]
    assert notes == {}
    submitted = work / "submitted"
    assert json.loads((submitted / "alice" / NAME / "backprop.ipynb").read_text())[
        "cells"][0]["source"] == "a = 1"
    assert sorted(p.name for p in (submitted / "bob" / NAME).iterdir()) == [
        "backprop.ipynb", "helper.py"]
    assert sorted(str(p) for p in src.rglob("*")) == before  # the input is only read


def test_collect_skips_folders_that_are_not_student_ids(tmp_path, work, capsys):
    src = tmp_path / "in"
    for sid in ("j.doe@uni", "s123_4", "bad name", "-rf"):
        write(src / sid / "backprop.ipynb", notebook())
    write(src / "stray.ipynb", notebook())  # a file at the top: not a student
    students, _ = collect(src, work, NAME)
    assert students == ["j.doe@uni", "s123_4"]
    err = capsys.readouterr().err
    assert "skipped folder 'bad name': not a valid student id" in err
    assert "skipped folder '-rf'" in err


def test_collect_grades_a_lone_notebook_under_another_name(tmp_path, work):
    src = tmp_path / "in"
    write(src / "carol" / "backprop (1).ipynb", notebook(cell("c = 3")))
    students, notes = collect(src, work, NAME)
    assert students == ["carol"]
    assert notes == {"carol": ["notebook backprop (1).ipynb graded as backprop.ipynb (renamed)"]}
    folder = work / "submitted" / "carol" / NAME
    assert [p.name for p in folder.iterdir()] == ["backprop.ipynb"]
    assert (src / "carol" / "backprop (1).ipynb").is_file()  # renamed in the copy only


def test_collect_notes_missing_notebooks(tmp_path, work):
    write(work / "release" / NAME / "extra.ipynb", notebook())
    src = tmp_path / "in"
    write(src / "dave" / "a.ipynb", notebook())
    write(src / "dave" / "b.ipynb", notebook())
    write(src / "erin" / "notes.txt", "no notebook")
    _, notes = collect(src, work, NAME)
    assert notes == {
        "dave": ["notebook backprop.ipynb not found in the submission (found: a.ipynb, b.ipynb)",
                 "notebook extra.ipynb not found in the submission (found: a.ipynb, b.ipynb)"],
        "erin": ["notebook backprop.ipynb not found in the submission",
                 "notebook extra.ipynb not found in the submission"],
    }


def test_collect_replaces_an_earlier_copy_of_the_same_student(tmp_path, work):
    src = tmp_path / "in"
    write(src / "alice" / "backprop.ipynb", notebook())
    write(src / "alice" / "old.py", "")
    collect(src, work, NAME)
    (src / "alice" / "old.py").unlink()
    collect(src, work, NAME)
    assert [p.name for p in (work / "submitted" / "alice" / NAME).iterdir()] == [
        "backprop.ipynb"]


def test_collect_refuses_what_it_cannot_read(tmp_path, work):
    with pytest.raises(CourseError, match="submissions not found"):
        collect(tmp_path / "nowhere", work, NAME)
    with pytest.raises(CourseError, match="must be a folder or a .zip file"):
        collect(write(tmp_path / "subs.tar", "x"), work, NAME)


@pytest.mark.parametrize("name, path, student, file_id", [
    ("01_backprop", "01_backprop_jdoe_attempt_2026-03-01-10-00-00_backprop.ipynb",
     "jdoe", "backprop.ipynb"),
    ("01_backprop", "01_backprop_j_doe_attempt_2026-03-01-10-00-00_backprop.ipynb",
     "j_doe", "backprop.ipynb"),
    ("05_label_number", "05_label_number_s_12_3_attempt_2026-03-01-10-00-00_label_number.ipynb",
     "s_12_3", "label_number.ipynb"),
])
def test_zip_names_with_underscores_give_student_and_notebook(name, path, student, file_id):
    regexp = DEFAULT_ZIP_REGEXP.replace("{name}", re.escape(name))
    match = re.match(regexp, f"/tmp/downloaded/{name}/extracted/{path}")
    assert match is not None
    assert (match["student_id"], match["file_id"]) == (student, file_id)
    assert match["timestamp"] == "2026-03-01-10-00-00"


@pytest.mark.parametrize("path", [
    "/x/02_training_jdoe_attempt_2026-03-01-10-00-00_backprop.ipynb",  # another assignment
    "/x/01_backprop_jdoe_2026-03-01_backprop.ipynb",                    # no _attempt_
    "/x/01Xbackprop_jdoe_attempt_2026-03-01-10-00-00_backprop.ipynb",  # the name is escaped
])
def test_zip_names_of_other_shapes_do_not_match(path):
    assert re.match(DEFAULT_ZIP_REGEXP.replace("{name}", re.escape(NAME)), path) is None


# --- autograde.late.PercentPerDay ----------------------------------------------------------

DAY = 86400


@pytest.mark.parametrize("seconds_late, penalty", [
    (-5.0, None), (0.0, None),         # on time: no penalty at all
    (1.0, 1.0), (DAY, 1.0),            # any part of the first day: 10 %
    (DAY + 1, 2.0), (3.5 * DAY, 4.0),  # each started day
    (9 * DAY + 1, 10.0), (30 * DAY, 10.0),  # never more than the score
])
def test_late_penalty_per_started_day(seconds_late, penalty):
    plugin = PercentPerDay()
    assert plugin.late_submission_penalty("s", 10.0, seconds_late) == penalty


def test_late_penalty_follows_the_configured_rate_and_a_zero_score():
    plugin = PercentPerDay(percent_per_day=25.0)
    assert plugin.late_submission_penalty("s", 8.0, 2 * DAY) == pytest.approx(4.0)
    assert plugin.late_submission_penalty("s", 8.0, 10 * DAY) == 8.0
    assert plugin.late_submission_penalty("s", 0.0, DAY) == 0.0


# --- failure reasons -----------------------------------------------------------------------

TRACEBACK = """[INFO] Converting notebook
Traceback (most recent call last):
  File "x.py", line 3, in <module>
KeyError: 'cells'

During handling of the above exception, another exception occurred:

nbconvert.preprocessors.execute.CellExecutionError: An error occurred while executing
[ERROR] There was an error processing assignment: /work/submitted
[ERROR] Please see the error log (.nbgrader.log) for more information.
"""


@pytest.mark.parametrize("result, reason", [
    ({"log": TRACEBACK}, "CellExecutionError: An error occurred while executing"),
    ({"log": "[INFO] x\nValueError: first\n  TimeoutError: innermost"},
     "TimeoutError: innermost"),
    ({"log": "[INFO] ok", "error": "RuntimeError: Kernel died"}, "RuntimeError: Kernel died"),
    ({"log": "[ERROR] No notebooks were matched by 'x.ipynb'\n"
             "[ERROR] Please see the error log"}, "No notebooks were matched by 'x.ipynb'"),
    ({"log": "Exception: Please see the log"}, "nbgrader failed without a message"),
    ({"log": "[INFO] nothing useful"}, "nbgrader failed without a message"),
    ({}, "nbgrader failed without a message"),
])
def test_failure_reason_picks_the_innermost_error(result, reason):
    assert failure_reason(result) == reason


def test_failure_reason_is_short():
    assert failure_reason({"log": "ValueError: " + "x" * 1000}) == ("ValueError: " + "x" * 1000)[
        :300]


def error(ename, evalue):
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def stream(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def test_failure_reasons_name_each_graded_cell_and_other_cells(tmp_path):
    nb = notebook(
        cell("intro", "intro", kind="markdown"),
        cell("def f(): ...", "answer", solution=True,
             outputs=[error("NameError", "name 'np' is not defined")]),
        cell("assert f() == 2", "test_answer", locked=True, grade=True, points=2,
             outputs=[error("AssertionError", "f(1) is wrong: got 3, expected 2\nmore")]),
        cell("raise NotImplementedError()", "test_stub", locked=True, grade=True, points=1,
             outputs=[error("NotImplementedError", "")]),
        cell("print('x' * 10**9)", outputs=[stream("xxx\n[output cut: 1000000 bytes]")]),
        cell("ok", "test_ok", locked=True, grade=True, points=1, outputs=[stream("fine\n")]),
        cell("manual", "essay", grade=True, solution=True, outputs=[error("SyntaxError", "x")]),
    )
    path = write(tmp_path / "nb.ipynb", nb)
    assert _failure_reasons(path) == [
        "cell answer: NameError: name 'np' is not defined",
        "test_answer: AssertionError: f(1) is wrong: got 3, expected 2",
        "test_stub: NotImplementedError: not answered yet",
        "cell #5: output cut (more than the allowed size)",
        "cell essay: SyntaxError: x",
    ]


def test_failure_reasons_say_a_tripped_limit_in_plain_words(tmp_path):
    limits = [(re.compile(r"^MemoryError"), "used more than 2048 MiB (the limit)")]
    nb = notebook(
        cell("x", "test_big", locked=True, grade=True, points=1,
             outputs=[error("MemoryError", "")]),
        cell("y", "test_long", locked=True, grade=True, points=1,
             outputs=[error("ValueError", "v" * 500)]),
    )
    path = write(tmp_path / "nb.ipynb", nb)
    assert _failure_reasons(path, limits) == [
        "test_big: used more than 2048 MiB (the limit)",
        "test_long: " + ("ValueError: " + "v" * 500)[:200],
    ]


# --- autograde.sandbox: the command line, on fake paths ------------------------------------

SCRATCH = "/fake/scratch"
IPC = "/fake/ipc"
KERNEL = ["python", "-m", "ipykernel_launcher", "-f", "/fake/ipc/kernel.json"]


def build(**kw) -> list[str]:
    args = {"scratch": SCRATCH, "ipc_dir": IPC, "env": {}, "limits": sandbox.Limits(),
            "uid": None, **kw}
    return sandbox.build_command(KERNEL, **args)


def pairs(cmd: list[str], op: str) -> list[tuple[str, str]]:
    return [(cmd[k + 1], cmd[k + 2]) for k, x in enumerate(cmd) if x == op]


def test_sandbox_command_binds_the_submission_launcher_and_sockets(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: f"/fake/bin/{name}")
    cmd = build()
    assert cmd[:3] == ["/fake/bin/bwrap", "--die-with-parent", "--new-session"]
    for ns in sandbox.NAMESPACES + ["--unshare-user", "--clearenv"]:
        assert ns in cmd
    assert (SCRATCH, sandbox.SUBMISSION) in pairs(cmd, "--ro-bind")
    launcher = str(Path(sandbox.__file__).with_name("kernel.py"))
    assert (launcher, sandbox.LAUNCHER) in pairs(cmd, "--ro-bind")
    assert (IPC, IPC) in pairs(cmd, "--bind")
    assert pairs(cmd, "--bind") == [(IPC, IPC)]  # the only writable bind
    assert cmd[-len(KERNEL) - 1:] == ["--", *KERNEL]


def test_sandbox_command_sizes_its_tmpfs_and_passes_limits_and_uid():
    limits = sandbox.Limits(memory_mb=512, nproc=32, fsize_mb=8, cpu_s=60, work_mb=16,
                            tmp_mb=4)
    cmd = build(limits=limits, uid=61007)
    assert "--unshare-user" not in cmd  # root grader: the launcher drops to the pool uid
    k = cmd.index("--tmpfs")
    assert cmd[k - 1:k + 2] == [str(4 << 20), "--tmpfs", "/tmp"]
    assert cmd[k + 1:k + 5] == ["/tmp", "--size", str(16 << 20), "--tmpfs"]
    settings = json.loads(cmd[cmd.index("--sandbox") + 1])
    assert settings["uid"] == 61007
    assert settings["limits"] == {"memory_mb": 512, "nproc": 32, "fsize_mb": 8, "cpu_s": 60,
                                  "work_mb": 16, "tmp_mb": 4}
    assert settings["submission"] == sandbox.SUBMISSION and settings["workdir"] == sandbox.WORKDIR


def test_sandbox_command_hides_the_reference_unless_told_not_to():
    package = sandbox._package_dir("sit471")
    hidden = str(package / "reference")
    cmd = build()
    assert (str(package), str(package)) in pairs(cmd, "--ro-bind")
    assert hidden in [cmd[k + 1] for k, x in enumerate(cmd) if x == "--tmpfs"]
    remounted = [cmd[k + 1] for k, x in enumerate(cmd) if x == "--remount-ro"]
    assert hidden in remounted
    # ipykernel's debugger (debugpy) is covered too: grading never uses it
    assert str(sandbox._package_dir("debugpy")) in remounted
    cmd = build(hide_reference=False)
    assert hidden not in cmd
    # the repository itself (course/source holds hidden tests) is never bound
    repo = str(package.parent)
    assert repo not in [src for src, _ in pairs(cmd, "--ro-bind") + pairs(cmd, "--bind")]


def test_sandbox_environment_is_a_whitelist():
    env = {"OMP_NUM_THREADS": "1", "NBGRADER_EXECUTION": "autograde", "HOME": "/root",
           "AWS_SECRET_ACCESS_KEY": "x", "SIT471_CASES": SCRATCH + "/cases/c.json"}
    out = sandbox.sandbox_env(env, SCRATCH)
    assert out["OMP_NUM_THREADS"] == "1" and out["NBGRADER_EXECUTION"] == "autograde"
    assert out["HOME"] == sandbox.HOME and out["LANG"] == "C.UTF-8"
    assert out["SIT471_CASES"] == sandbox.WORKDIR + "/cases/c.json"
    assert "AWS_SECRET_ACCESS_KEY" not in out
    assert set(out) == {"OMP_NUM_THREADS", "NBGRADER_EXECUTION", "LANG", "PATH", "HOME",
                        "IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR", "SIT471_CASES"}
    # cases outside the scratch folder cannot be reached from the kernel: not passed on
    assert "SIT471_CASES" not in sandbox.sandbox_env({"SIT471_CASES": "/etc/c.json"}, SCRATCH)
    # the environment goes in after --clearenv, one --setenv per variable
    cmd = build(env=env)
    setenv = [(cmd[k + 1], cmd[k + 2]) for k, x in enumerate(cmd) if x == "--setenv"]
    assert dict(setenv) == out
    assert cmd.index("--clearenv") < cmd.index("--setenv")


def test_sandbox_makes_the_folders_above_each_mount_walkable():
    ops = ["--ro-bind", "/src/a", "/opt/py/lib", "--tmpfs", "/tmp/x/y",
           "--symlink", "usr/lib", "/lib", "--bind", "/q", "/opt/py/sock", "--proc", "/proc"]
    assert sandbox._parent_dirs(ops) == [
        "--perms", "0755", "--dir", "/opt",
        "--perms", "0755", "--dir", "/opt/py",
        "--perms", "0755", "--dir", "/tmp/x",
    ]


# --- gradebook outputs -------------------------------------------------------------------

def test_a_late_score_never_goes_below_zero():
    from autograde.grade import late_score

    assert late_score(10.0, 3.0) == 7.0
    assert late_score(2.0, 5.0) == 0.0


def _write_many(points, name, n, go=None):
    from autograde.grade import write_points

    if go is not None:
        go.wait(10)
    for k in range(n):
        write_points(points, name, [{"assignment": name, "student_id": f"s{k}", "test": "t",
                                     "points": 1, "max_points": 1}])


def test_points_csv_is_rewritten_under_a_lock(tmp_path):
    """A run rewriting points.csv waits while another holds the lock (the read-modify-write
    of one run can then never drop the rows another run has just written)."""
    import csv
    import fcntl
    import multiprocessing

    points = tmp_path / "points.csv"
    _write_many(points, "a", 1)
    context = multiprocessing.get_context("fork")
    go = context.Event()
    writer = context.Process(target=_write_many, args=(points, "b", 1, go))
    writer.start()  # before the lock is taken: a forked child must not inherit it
    with open(points.with_name("points.csv.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run is in the middle of its rewrite
        go.set()
        writer.join(1.0)
        assert writer.is_alive(), "points.csv was rewritten while another run held the lock"
    writer.join(10)
    assert writer.exitcode == 0
    with points.open(newline="") as fh:
        assert {r["assignment"] for r in csv.DictReader(fh)} == {"a", "b"}


# -- the notebook's time budget ----------------------------------------------------------


@pytest.mark.parametrize("left", [0.3, 1.5, 2.9])
def test_a_cell_stopped_for_the_notebook_budget_stops_at_or_after_the_deadline(left):
    """A cell that would run into the notebook's deadline gets a timeout that ends no earlier
    than it, so the cells after it see the budget used up (a timeout rounded down let them
    run in the second left: a slow notebook then kept its last tests' points)."""
    import time

    from autograde.execute import LimitedExecute

    executor = LimitedExecute(timeout=5)
    executor._deadline = time.monotonic() + left
    timeout = executor._get_timeout(nbformat.v4.new_code_cell("pass"))
    assert left <= timeout <= 5


def test_matplotlib_font_list_is_built_once_and_is_optional(tmp_path, monkeypatch):
    """Built into the grader's cache folder the first time; then found there without building
    again; where it cannot be built, kernels start without it (matplotlib scans the fonts
    itself then) instead of failing."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sandbox.matplotlib_cache.cache_clear()
    try:
        folder = sandbox.matplotlib_cache()
        assert folder is not None and folder.parent == tmp_path / "cache" / "sit471"
        assert [p.name for p in folder.iterdir()] == [
            p.name for p in folder.glob("fontlist-*.json")]
        cmd = build()
        assert (str(folder), sandbox.MPL_CACHE) in pairs(cmd, "--ro-bind")
        settings = json.loads(cmd[cmd.index("--sandbox") + 1])
        assert settings["caches"] == {sandbox.MPL_CACHE: sandbox.HOME + "/.config/matplotlib"}

        def no_build(*args, **kw):
            raise AssertionError("built again")

        monkeypatch.setattr(sandbox.subprocess, "run", no_build)
        sandbox.matplotlib_cache.cache_clear()
        assert sandbox.matplotlib_cache() == folder
        (tmp_path / "blocked").write_text("a file where the cache folder would go")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocked"))
        sandbox.matplotlib_cache.cache_clear()
        assert sandbox.matplotlib_cache() is None
        cmd = build()
        assert sandbox.MPL_CACHE not in cmd
        assert json.loads(cmd[cmd.index("--sandbox") + 1])["caches"] == {}
    finally:
        sandbox.matplotlib_cache.cache_clear()


# --- the kernel client's handshake (kernels.PromptKernelClient) ----------------------------


class _FakeChannel:
    """Answers get_msg from a script (a message, or Empty), recording the timeouts for
    which it had nothing; jupyter_client's own client then waits on an empty IOPub."""

    def __init__(self, script):
        self.script, self.empty_waits, self.sent = list(script), [], []

    def send(self, msg):
        self.sent.append(msg["header"]["msg_type"])

    async def get_msg(self, timeout=None):
        from queue import Empty
        if self.script and self.script[0] is not Empty:
            return self.script.pop(0)
        if self.script:
            self.script.pop(0)
        self.empty_waits.append(timeout)
        raise Empty


def _handshake(shell_script, iopub_script):
    import asyncio

    from autograde.kernels import PromptKernelClient

    client = PromptKernelClient()
    client._shell_channel = shell = _FakeChannel(shell_script)
    client._iopub_channel = iopub = _FakeChannel(iopub_script)
    asyncio.run(client.wait_for_ready(timeout=5))
    return shell, iopub


REPLY = {"msg_type": "kernel_info_reply", "content": {"protocol_version": "5.4"},
         "parent_header": {}}
IOPUB = [{"msg_type": t, "content": {}, "parent_header": {}} for t in
         ("iopub_welcome", "status", "status")]


def test_the_kernel_client_is_ready_without_waiting_for_iopub_to_fall_quiet():
    shell, iopub = _handshake([REPLY], IOPUB)
    # jupyter_client's client waits 0.2 s on the empty IOPub at the end: [0.2] here
    assert iopub.empty_waits == [0], iopub.empty_waits
    assert shell.sent == ["kernel_info_request"]
    assert iopub.script == []  # the handshake's messages already there are read


def test_the_kernel_client_asks_again_until_iopub_is_connected():
    from queue import Empty

    shell, iopub = _handshake([REPLY, REPLY], [Empty, *IOPUB])
    assert shell.sent == ["kernel_info_request"] * 2
    assert iopub.empty_waits == [0.2, 0]


# --- the kernel manager's stop (kernels.PromptKernelManager) --------------------------------


def _waits_until_dead(monkeypatch, checks_alive):
    """The sleeps of PromptKernelManager's wait for a kernel seen alive ``checks_alive``
    times; jupyter_client's own sleeps 0.1 s each time."""
    import asyncio

    from autograde.kernels import PromptKernelManager

    km = PromptKernelManager()
    answers = [True] * checks_alive + [False]

    async def alive():
        return answers.pop(0)

    sleeps = []

    async def sleep(delay):
        sleeps.append(delay)

    monkeypatch.setattr(km, "_async_is_alive", alive)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    asyncio.run(km._async_wait())
    assert answers == []  # it waited until the kernel was gone
    return sleeps


def test_a_stopped_kernel_is_seen_gone_within_milliseconds(monkeypatch):
    assert _waits_until_dead(monkeypatch, 0) == []
    assert _waits_until_dead(monkeypatch, 2) == [0.001, 0.002]


def test_a_kernel_slow_to_die_is_checked_no_more_often_than_jupyter_client_does(monkeypatch):
    sleeps = _waits_until_dead(monkeypatch, 12)
    assert sleeps[:3] == [0.001, 0.002, 0.004]
    assert max(sleeps) == 0.1 and sleeps[-3:] == [0.1, 0.1, 0.1]


def test_closing_the_control_socket_of_a_gone_kernel_waits_for_nothing(tmp_path):
    """An interrupt sent to a kernel that died before reading it: jupyter_client closed the
    socket with its linger (0.1 s; a minute here), and the context's end waited that long."""
    import threading

    import zmq

    from autograde.kernels import PromptKernelManager

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.linger = 60_000
    socket.connect(f"ipc://{tmp_path}/nobody-listens")
    socket.send(b"interrupt_request")
    km = PromptKernelManager()
    km._control_socket = socket
    km._close_control_socket()
    assert km._control_socket is None and socket.closed
    ended = threading.Thread(target=context.term, daemon=True)
    ended.start()
    ended.join(timeout=20)
    assert not ended.is_alive(), "the context waited to deliver to a kernel that is gone"


# --- nbgrader's metadata validation (course.SchemaCheckedOnce) ------------------------------


def test_nbgrader_checks_its_metadata_schema_once_and_judges_metadata_as_jsonschema_does(
        monkeypatch):
    import jsonschema
    from nbgrader.nbgraderformat import MetadataValidator, common

    from autograde.course import SchemaCheckedOnce, use_schema_checked_once

    monkeypatch.setattr(common, "jsonschema", jsonschema)
    use_schema_checked_once()
    assert isinstance(common.jsonschema, SchemaCheckedOnce)
    checks = []
    monkeypatch.setattr(jsonschema.Draft4Validator, "check_schema",
                        classmethod(lambda cls, schema: checks.append(1)))
    validator = MetadataValidator()
    good = nbformat.from_dict(cell("x = 1", "answer", solution=True, grade=True, points=2))
    bad = nbformat.from_dict(cell("x = 1", "answer", solution=True, grade=True, points=2))
    bad.metadata.nbgrader.points = "two"
    for _ in range(3):
        validator.validate_cell(good)
    with pytest.raises(jsonschema.ValidationError) as ours:
        validator.validate_cell(bad)
    assert len(checks) == 1  # jsonschema.validate checks the schema at every call: 4 here
    with pytest.raises(jsonschema.ValidationError) as theirs:
        jsonschema.validate(bad.metadata.nbgrader, validator.schema)
    assert str(ours.value) == str(theirs.value)
