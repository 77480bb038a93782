"""Assignment 02 (02_training): common mistakes are caught by the named test with a helpful
message, the written answer is a manually graded cell, and the notebook keeps its time budget.

The notebook runs once, as autograding runs it (with the grader's inputs for the hidden tests
and the grader's verdict on every test cell), in one kernel per test worker: conftest's
``mistake_kernel``. Each mistake of the table ``MISTAKES_02`` redefines one answer with the
mistake, runs that exercise's test cell (visible tests in the kernel, then the grader's verdict
on the results its hidden half sent), and restores the right answer, so the cases are
independent and take a fraction of a second each. ``GRADER_ONLY_02`` are mistakes the visible
tests miss: only the grader's half, on its own inputs, catches them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import nbformat
import pytest
from conftest import COURSE, MistakeKernel, mistake_kernel, mistake_tests, nbgrader_meta

from autograde.demo import build_submission
from autograde.release import release

NAME = "02_training"
SOURCE = COURSE / "source" / NAME / "training.ipynb"
BUDGET_S = 45.0
LAST_TEST = "test_best_epoch"
# whole answers, replaced by a mistaken one in some rows of the table
ITERATIONS = ("full, rest = divmod(n, batch_size)\n"
              "    return full if drop_last or rest == 0 else full + 1")
SUGGEST = """lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    candidates = np.flatnonzero(np.isfinite(losses))
    best = candidates[np.argmin(losses[candidates])]
    return float(lrs[best] / 10)"""

# (answer cell, text in its solution, replacement, test cell that must fail, message pattern)
MISTAKES_02 = [
    ("iterations_per_epoch", ITERATIONS, "return n // batch_size", "test_iterations_per_epoch",
     r"iterations_per_epoch\(10, 3\) is wrong; it looks like it was rounded down"),
    ("iterations_per_epoch", ITERATIONS, "return -(-n // batch_size)",
     "test_iterations_per_epoch", r"drop_last was ignored"),
    ("iterations_per_epoch", ITERATIONS, "import math\n    return math.ceil(n / batch_size) * 1.0",
     "test_iterations_per_epoch", r"whole number \(int\), got float"),
    ("minibatches", "rng.permutation(n) if shuffle", "rng.integers(0, n, size=n) if shuffle",
     "test_minibatches", r"an index appears twice in one epoch .*rng\.permutation"),
    ("minibatches", "rng.permutation(n) if shuffle",
     "np.random.default_rng(0).permutation(n) if shuffle", "test_minibatches",
     r"two epochs visited the examples in the same order"),
    ("minibatches", "rng.permutation(n) if shuffle", "np.random.permutation(n) if shuffle",
     "test_minibatches", r"same seed gave different mini-batches"),
    ("minibatches", "count = iterations_per_epoch(n, batch_size, drop_last)",
     "count = n // batch_size", "test_minibatches", r"make 4 mini-batches \(3, 3, 3 and 1\)"),
    ("sgd_epoch", "W -= lr * dW", "W += lr * dW", "test_sgd_epoch",
     r"W after one full-batch step is wrong; it looks like the step went uphill"),
    ("sgd_epoch", "W, b = W.copy(), b.copy()", "W, b = W, b", "test_sgd_epoch",
     r"sgd_epoch changed the caller.s W or b: start from copies"),
    ("sgd_epoch", "losses.append(loss)", "losses.append(softmax_loss(W, b, X[idx], y[idx])[0])",
     "test_sgd_epoch", r"recorded after the step"),
    ("sgd_epoch", "b -= lr * db", "pass", "test_sgd_epoch", r"b was not updated"),
    ("smooth", "out[t] = last / (1 - weight ** k)", "out[t] = last", "test_smooth",
     r"the de-biasing is missing"),
    ("smooth", "        if finite[t]:\n", "        k += not finite[t]\n        if finite[t]:\n",
     "test_smooth", r"the NaN was counted: it must change neither m nor k"),
    ("smooth", "        if finite[t]:\n", "        if True:\n", "test_smooth",
     r"the NaN must not enter the average"),
    ("smooth", "    if finite.any() and np.all(y[finite] == y[finite][0]):\n        return out\n",
     "", "test_smooth", r"a constant series must come back exactly as it is"),
    ("suggest_lr", "return float(lrs[best] / 10)", "return float(lrs[best])", "test_suggest_lr",
     r"backs off by a factor of 10"),
    ("suggest_lr", SUGGEST, "return float(np.asarray(lrs)[np.argmin(losses)] / 10)",
     "test_suggest_lr", r"a NaN loss was taken as the minimum"),
    ("best_epoch", "if patience is not None and waited >= patience:", "if False:",
     "test_best_epoch", r"patience=2\) is wrong; it looks like training went on too long"),
    ("best_epoch", "waited >= patience", "waited > patience", "test_best_epoch",
     r"patience=2\) is wrong; .*stopping one epoch late"),
    ("best_epoch", "waited >= patience", "waited >= patience - 1", "test_best_epoch",
     r"patience=3\) .* stopped one epoch too early"),
    ("best_epoch", "loss < best", "loss <= best", "test_best_epoch",
     r"a tie was taken as an improvement"),
]

# Mistakes that pass every visible test: the grader's half catches them on its own inputs.
GRADER_ONLY_02 = [
    ("iterations_per_epoch", ITERATIONS,
     "import math\n    return math.ceil(n / batch_size) if not drop_last else n // batch_size",
     "test_iterations_per_epoch",
     r"^GraderVerdict: iterations_per_epoch\(\d+, \d+, drop_last=False\) is wrong; it looks "
     r"like n / batch_size was used: a float, inexact for large n"),
    ("minibatches", "rng.permutation(n) if shuffle", "rng.choice(n, size=n, replace=False) if "
     "shuffle", "test_minibatches",
     r"^GraderVerdict: batch 0 of epoch 0 is wrong .*draw the order with rng\.permutation\(n\)"),
    ("sgd_epoch", "minibatches(len(X), batch_size, rng)",
     "minibatches(len(X), batch_size, rng, shuffle=False)", "test_sgd_epoch",
     r"^GraderVerdict: losses for n=\d+, .* it looks like the examples were not shuffled"),
    ("smooth", "finite = np.isfinite(y)", "finite = ~np.isnan(y)", "test_smooth",
     r"^GraderVerdict: smooth of \d+ values with weight .* has NaN or infinity where the input "
     r"is finite"),
    ("suggest_lr", SUGGEST, "return float(np.asarray(lrs)[np.nanargmin(losses)] / 10)",
     "test_suggest_lr",
     r"^GraderVerdict: suggest_lr on a curve of 60 points is wrong; it looks like an infinite "
     r"loss was taken as the minimum"),
    ("best_epoch", "best, best_i, waited = loss, i, 0", "best, best_i = loss, i",
     "test_best_epoch",
     r"^GraderVerdict: best_epoch on a curve of \d+ epochs, patience \d+ is wrong; it looks "
     r"like the count of epochs without improvement was not reset"),
]
MISTAKES_02 += GRADER_ONLY_02


def _grade_id(cell: nbformat.NotebookNode) -> str:
    return nbgrader_meta(cell).get("grade_id", "")


@pytest.fixture(scope="module")
def timed_kernel(tmp_path_factory) -> Iterator[tuple[MistakeKernel, float]]:
    """The source notebook executed as autograding runs it (up to its last graded test), in a
    copy of its folder, with the grader's inputs and verdicts; its kernel stays up."""
    start = time.perf_counter()
    with mistake_kernel(SOURCE, LAST_TEST, set(), tmp_path_factory.mktemp("nb02")) as k:
        yield k, time.perf_counter() - start


@pytest.fixture(scope="module")
def kernel(timed_kernel) -> MistakeKernel:
    return timed_kernel[0]


# the common-mistake tests, the same for every assignment (conftest.mistake_tests)
globals().update(mistake_tests(SOURCE, MISTAKES_02, GRADER_ONLY_02))


def test_notebook_02_runs_within_its_budget_when_graded(timed_kernel):
    _, elapsed = timed_kernel
    print(f"02_training executed in {elapsed:.1f} s as autograding runs it")
    assert elapsed < BUDGET_S


def test_written_answer_is_a_manually_graded_markdown_cell():
    nb = nbformat.read(SOURCE, as_version=4)
    manual = [c for c in nb.cells if nbgrader_meta(c).get("grade") and c.cell_type == "markdown"]
    assert len(manual) == 1
    meta = nbgrader_meta(manual[0])
    assert meta["solution"] and not meta["task"] and not meta.get("locked") and meta["points"] == 2
    release_nb = nbformat.read(COURSE / "release" / NAME / "training.ipynb", as_version=4)
    stub = next(c for c in release_nb.cells
                if nbgrader_meta(c).get("grade_id") == meta["grade_id"])
    assert stub.source.strip() == "YOUR ANSWER HERE"
    filled = build_submission(release_nb, nb, "reference")
    answer = next(c for c in filled.cells if nbgrader_meta(c).get("grade_id") == meta["grade_id"])
    assert "epoch 13" in answer.source, "the demo's reference submission carries the model answer"


def test_tensorboard_runs_next_to_the_source_are_not_released(tmp_path):
    """Running the source notebook in place writes TensorBoard logs to runs/ next to it; a
    release must not hand those logs to students."""
    course = tmp_path / "course"
    shutil.copytree(COURSE / "source" / NAME, course / "source" / NAME,
                    ignore=shutil.ignore_patterns("runs"))
    shutil.copy2(COURSE / "nbgrader_config.py", course)
    logs = course / "source" / NAME / "runs" / "20260101-000000" / "train"
    logs.mkdir(parents=True)
    (logs / "events.out.tfevents.0.host").write_bytes(b"log")
    release(course, [NAME], solutions_root=tmp_path / "solutions")
    released = sorted(p.relative_to(course / "release" / NAME)
                      for p in (course / "release" / NAME).rglob("*") if p.is_file())
    assert [str(p) for p in released] == ["training.ipynb"]
