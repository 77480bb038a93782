"""Assignment 02 (02_training): common mistakes are caught by the named test with a helpful
message, the written answer is a manually graded cell, and the notebook keeps its time budget.

The notebook runs once, as autograding runs it, in one kernel per test worker. Each mistake then
redefines one answer with the mistake, runs that exercise's test cell, and restores the right
answer, so the cases are independent and take a fraction of a second each.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import nbformat
import pytest
from conftest import COURSE, errors, nbgrader_meta
from nbclient import NotebookClient

from autograde.demo import build_submission, solution_text
from autograde.release import release

NAME = "02_training"
SOURCE = COURSE / "source" / NAME / "training.ipynb"
BUDGET_S = 45.0

# (answer cell, text in its solution, replacement (None: the whole body after the docstring
#  becomes the text), test cell that must fail, regular expression its message must match)
MISTAKES = [
    ("iterations_per_epoch", "return n // batch_size", None, "test_iterations_per_epoch",
     r"iterations_per_epoch\(10, 3\) is wrong; it looks like it was rounded down"),
    ("iterations_per_epoch", "return -(-n // batch_size)", None, "test_iterations_per_epoch",
     r"drop_last was ignored"),
    ("iterations_per_epoch", "import math\n    return math.ceil(n / batch_size) * 1.0", None,
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
    ("suggest_lr", "return float(np.asarray(lrs)[np.argmin(losses)] / 10)", None,
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


def _cells(nb):
    return {nbgrader_meta(c)["grade_id"]: (i, c) for i, c in enumerate(nb.cells)
            if nbgrader_meta(c)}


def _mutated(source: str, old: str, new: str | None) -> str:
    source = solution_text(source)
    if new is None:  # replace the whole body after the docstring
        head = source[: source.index('"""', source.index('"""') + 3) + 3]  # def + docstring
        return head + "\n    " + old + "\n"
    assert old in source, old
    return source.replace(old, new)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """The source notebook executed top to bottom as autograding runs it, in a copy of its
    folder (whatever it writes stays out of the repository); its kernel stays up."""
    folder = tmp_path_factory.mktemp("nb02") / NAME
    shutil.copytree(SOURCE.parent, folder, ignore=shutil.ignore_patterns("runs"))
    nb = nbformat.read(folder / SOURCE.name, as_version=4)
    client = NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(folder)}})
    env = dict(os.environ, NBGRADER_EXECUTION="autograde")
    with client.setup_kernel(env=env):
        start = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
                assert not errors(cell), (nbgrader_meta(cell).get("grade_id"), errors(cell))
        elapsed = time.perf_counter() - start

        def run(source: str, index: int) -> list[str]:
            cell = nbformat.v4.new_code_cell(source)
            client.execute_cell(cell, index)
            return errors(cell)

        yield run, _cells(nb), elapsed


@pytest.mark.parametrize("mistake", MISTAKES, ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_assignment_02_catches_common_mistakes(kernel, mistake):
    run, cells, _ = kernel
    answer_id, old, new, test_id, message = mistake
    answer_index, answer = cells[answer_id]
    test_index, test = cells[test_id]
    try:
        assert not run(_mutated(answer.source, old, new), answer_index), "mutation must run"
        found = run(test.source, test_index)
    finally:
        assert not run(solution_text(answer.source), answer_index)
    assert found, f"{test_id} passed although {answer_id} has the mistake {new or old!r}"
    assert found[0].startswith("AssertionError"), found[0]
    assert re.search(message, found[0]), found[0]
    assert not run(test.source, test_index), f"{test_id} fails on the restored answer"
    print(f"{answer_id} with {new or old!r} -> {found[0]}")


def test_notebook_02_runs_within_its_budget_when_graded(kernel):
    _, _, elapsed = kernel
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
