"""Broken and hostile submissions: each costs its author points with a stated reason, and
never another student's grade. One batch, graded once with tight limits."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import COURSE, shared

from autograde.demo import write_submissions
from autograde.grade import grade

NAME = "01_backprop"
NOTEBOOK = "backprop.ipynb"
LIMITS = """
c.Execute.timeout = 5
c.LimitedExecute.notebook_timeout = 20
c.LimitedExecute.max_output_bytes = 100_000
c.LimitedKernelManager.memory_limit_mb = 1024
"""


def _cell(nb, grade_id):
    return next(
        c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id
    )


def _append(grade_id, code):
    def change(nb):
        cell = _cell(nb, grade_id)
        cell["source"] = "".join(cell["source"]) + "\n" + code

    return change


def _delete(nb):
    nb["cells"].remove(_cell(nb, "test_cost"))


def _duplicate(nb):
    i = nb["cells"].index(_cell(nb, "test_forward"))
    nb["cells"].insert(i, json.loads(json.dumps(nb["cells"][i])))


def _edit(nb):
    _cell(nb, "test_train")["source"] = "pass"


def _reorder(nb):
    """Move the cost exercise and its test to the end of the notebook."""
    for gid in ("cost", "test_cost"):
        cell = _cell(nb, gid)
        nb["cells"].remove(cell)
        nb["cells"].append(cell)


def _slow(nb):
    """Seven answers sleeping 3 s each: 21 s, beyond the notebook's 20 s, while each cell
    stays 2 s within the 5 s cell limit (4 s left too little margin on a loaded machine)."""
    for gid in (
        "sigmoid",
        "sigmoid_prime",
        "forward",
        "cost",
        "backward_output",
        "backward_hidden",
        "backward",
    ):
        _append(gid, "import time\ntime.sleep(3)")(nb)


HOSTILE = {
    "loop": _append("cost", "while True:\n    pass"),
    "exit": _append("cost", "import os\nos._exit(1)"),
    "segfault": _append("cost", "import ctypes\nctypes.string_at(0)"),
    "membomb": _append("cost", "hog = bytearray(8 * 1024 ** 3)"),
    "printbomb": _append("cost", "for _ in range(100000):\n    print('x' * 1000)"),
    "deleted": _delete,
    "duplicated": _duplicate,
    "edited": _edit,
    "reordered": _reorder,
    # named to be graded first (students go in name order): its 21 s of sleep then overlap
    # the other students' grading instead of ending the batch on one worker
    "asleep": _slow,
    "fakeeq": _append(
        "cost",
        "class _Any(float):\n    def __eq__(self, other):\n        return True\n"
        "cost = lambda y, y_hat: _Any(0.0)",
    ),
    "refimport": _append("cost", "from sit471.reference.backprop import cost  # noqa"),
    # relative paths from nbgrader's autograded/<student>/<assignment>/ to the grading tree
    "vandal": _append(
        "cost",
        "for p in ['../../../gradebook.db', '../../../source/01_backprop/backprop.ipynb',\n"
        "          '../../../submitted/reference/01_backprop/backprop.ipynb']:\n"
        "    try:\n        open(p, 'w').write('gone')\n    except OSError:\n        pass\n"
        "open('left_behind.txt', 'w').write('x')",
    ),
    "patcher": _append(
        "cost", "import sit471.checks\nsit471.checks.check_scalar = lambda *a, **k: None"
    ),
}


@pytest.fixture(scope="session")
def batch(tmp_path_factory):
    return shared(tmp_path_factory, "hostile", _grade_batch)


def _grade_batch(tmp):
    course = tmp / "course"
    shutil.copytree(COURSE / "source", course / "source")
    config = (COURSE / "nbgrader_config.py").read_text() + LIMITS
    (course / "nbgrader_config.py").write_text(config)
    subs = tmp / "subs"
    write_submissions(COURSE, NAME, subs)
    reference = json.loads((subs / "reference" / NOTEBOOK).read_text())
    for student, change in HOSTILE.items():
        nb = json.loads(json.dumps(reference))
        change(nb)
        (subs / student).mkdir()
        (subs / student / NOTEBOOK).write_text(json.dumps(nb))
    (subs / "reference2" / "data" / "nested").mkdir(parents=True)  # extra and nested files
    shutil.copy2(subs / "reference" / NOTEBOOK, subs / "reference2" / NOTEBOOK)
    (subs / "reference2" / "data" / "nested" / "notes.txt").write_text("my notes")
    (subs / "reference2" / "scratch.py").write_text("print('hi')")
    for variant in ("blank", "partial", "broken"):
        shutil.rmtree(subs / variant)
    out = tmp / "out"
    report = grade(course, NAME, subs, out, jobs=2, progress=False)
    return {s.student: s for s in report.students}, out


def _has(lines, text):
    return any(text in line for line in lines)


def test_correct_submissions_keep_full_marks(batch):
    students, _ = batch
    assert students["reference"].score == students["reference2"].score == 15
    assert students["reference"].reasons == []


def test_infinite_loop_is_interrupted_and_the_rest_graded(batch):
    s = batch[0]["loop"]
    assert s.score == 15  # the function was defined before the loop
    assert _has(s.reasons, "cell cost: CellTimeoutError: the cell ran longer than its time limit")


@pytest.mark.parametrize("student", ["exit", "segfault"])
def test_killed_kernel_costs_only_what_follows(batch, student):
    s = batch[0][student]
    assert s.points["test_sigmoid"] == 1 and s.points["test_forward"] == 2
    assert s.points["test_cost"] == 0
    assert _has(s.reasons, "cell cost: DeadKernelError: the kernel died")


def test_memory_bomb_fails_inside_the_kernel(batch):
    s = batch[0]["membomb"]
    assert s.score == 15 and _has(s.reasons, "cell cost: MemoryError")


def test_output_bomb_is_cut(batch):
    students, out = batch
    assert _has(students["printbomb"].reasons, "output cut")
    graded = out / "nbgrader" / "autograded" / "printbomb" / NAME / NOTEBOOK
    assert graded.stat().st_size < 1_000_000


def test_notebook_time_limit_stops_the_remaining_cells(batch):
    s = batch[0]["asleep"]
    assert s.points["test_sigmoid"] == 1
    assert s.points["test_train"] == 0
    assert _has(s.reasons, "NotebookTimeoutError: not run: the notebook used up its 20 s")


@pytest.mark.parametrize(
    "student,note",
    [
        ("deleted", "cell test_cost was deleted: restored from the source"),
        ("duplicated", "cell test_forward was duplicated: the first copy is graded"),
        ("edited", "locked cell test_train was edited: restored from the source"),
    ],
)
def test_damaged_structure_is_repaired_and_reported(batch, student, note):
    students, out = batch
    assert students[student].score == 15
    assert note in students[student].reasons and note in students[student].flags
    assert note in (out / f"integrity-{NAME}.txt").read_text()


@pytest.mark.parametrize(
    "student,flag",
    [
        ("fakeeq", "overrides equality"),
        ("refimport", "imports the reference answers"),
        ("patcher", "reassigns test helpers"),
        ("exit", "runs commands or low-level code"),
    ],
)
def test_integrity_report_flags_suspicious_code(batch, student, flag):
    students, out = batch
    assert _has(students[student].flags, flag)
    assert not students["reference"].flags
    assert flag in (out / f"integrity-{NAME}.txt").read_text()


def test_code_that_writes_around_it_cannot_reach_the_grading_tree(batch):
    students, out = batch
    assert students["vandal"].score == 15
    assert students["reference"].score == students["reference2"].score == 15
    work = out / "nbgrader"
    assert (work / "gradebook.db").read_bytes()[:15] == b"SQLite format 3"
    for notebook in work.rglob("*.ipynb"):
        assert notebook.read_text() != "gone", notebook
    assert not list(work.rglob("left_behind.txt"))


def test_reordered_cells_are_graded_where_they_stand(batch):
    s = batch[0]["reordered"]
    # the tests between the old and new place of `cost` that need it fail; cost's own passes
    assert s.points["test_cost"] == 1
    assert s.points["test_sigmoid"] == 1 and s.points["test_forward"] == 2
    assert s.points["test_train"] == 0 and _has(s.reasons, "NameError: name 'cost'")


def test_equality_fakes_do_not_pass(batch):
    assert batch[0]["fakeeq"].points["test_cost"] == 0
