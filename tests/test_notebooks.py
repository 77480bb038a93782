"""Notebooks keep their promises: lint, source passes, release fails only on its stubs."""

from __future__ import annotations

import re
import shutil

import nbformat
import pytest
from conftest import COURSE, REPO, SOURCE_NOTEBOOKS, errors, execute, mistake_kernel, nbgrader_meta
from nbgrader.nbgraderformat import MetadataValidator
from test_demo import autograded, demo_group, graded_demo

RELEASE_NOTEBOOKS = [COURSE / "release" / p.parent.name / p.name for p in SOURCE_NOTEBOOKS]
SOLUTION_NOTEBOOKS = [REPO / "solutions" / p.parent.name / p.name for p in SOURCE_NOTEBOOKS]
ALL_COMMITTED = SOURCE_NOTEBOOKS + RELEASE_NOTEBOOKS + SOLUTION_NOTEBOOKS


def _ids(paths):
    return [str(p.relative_to(REPO)) for p in paths]


@pytest.mark.parametrize("path", SOURCE_NOTEBOOKS, ids=_ids(SOURCE_NOTEBOOKS))
def test_lint_source_notebook(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    MetadataValidator().validate_nb(nb)
    ids = [nbgrader_meta(c)["grade_id"] for c in nb.cells if nbgrader_meta(c)]
    assert len(ids) == len(set(ids)), "grade ids must be unique"
    for grade_id in ids:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", grade_id), f"grade id {grade_id!r} not descriptive"
        assert not re.fullmatch(r"cell-[0-9a-f]+", grade_id)
    cells = nb.cells
    for k, cell in enumerate(cells):
        meta = nbgrader_meta(cell)
        if meta.get("solution") and cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
            nxt = next((c for c in cells[k + 1 :] if c.cell_type == "code"), None)
            assert nxt is not None and nbgrader_meta(nxt).get("grade"), (
                f"answer {meta['grade_id']} must be followed by a graded test cell"
            )
            assert nbgrader_meta(nxt).get("points", 0) > 0
            assert nbgrader_meta(nxt).get("locked")
        if meta.get("grade") and cell.cell_type == "code":
            assert cell.source.lstrip().startswith('"""'), (
                f"{meta['grade_id']}: start with a docstring"
            )
            hidden = cell.source.count("### BEGIN HIDDEN TESTS")
            assert hidden == 1 == cell.source.count("### END HIDDEN TESTS"), meta["grade_id"]
            visible = cell.source.split("### BEGIN HIDDEN TESTS")[0]
            assert "sit471.reference" not in visible, "visible tests must not use the reference"
        if "sit471.reference" in cell.source:
            assert meta.get("grade"), "only hidden tests may import the reference"


@pytest.mark.parametrize("path", ALL_COMMITTED, ids=_ids(ALL_COMMITTED))
def test_committed_notebooks_have_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, nbgrader_meta(cell)


@pytest.mark.parametrize("path", RELEASE_NOTEBOOKS, ids=_ids(RELEASE_NOTEBOOKS))
def test_release_holds_no_answers_or_hidden_tests(path):
    text = path.read_text()
    for forbidden in (
        "### BEGIN SOLUTION",
        "### BEGIN HIDDEN TESTS",
        "sit471.reference",
        "sit471 import reference",
    ):
        assert forbidden not in text, f"{forbidden!r} in {path.name}"
    nb = nbformat.read(path, as_version=4)
    stubs = [c for c in nb.cells if nbgrader_meta(c).get("solution") and c.cell_type == "code"]
    assert stubs and all("raise NotImplementedError()" in c.source for c in stubs)


@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=_ids(SOLUTION_NOTEBOOKS))
def test_solutions_hold_answers_but_no_hidden_tests(path):
    text = path.read_text()
    assert "### BEGIN HIDDEN TESTS" not in text and "sit471.reference" not in text
    nb = nbformat.read(path, as_version=4)
    answers = [c for c in nb.cells if nbgrader_meta(c).get("solution") and c.cell_type == "code"]
    assert answers and not any("raise NotImplementedError()" in c.source for c in answers)


def _copy_folder(path, tmp_path):
    """Run notebooks in a copy of their folder: whatever they write stays out of the repo."""
    dest = tmp_path / path.parent.name
    shutil.copytree(path.parent, dest)
    return dest / path.name


# Run first, in the kernel of a notebook's student-mode run below. 04's quick experiment
# (27 trainings: about 30 s on two cores, timed by benchmarks/notebook_times.py) trains here
# at one seed and 20 steps: the code path is the one students run, its size the benchmark's.
# Each: (code, the cell id whose output shows it took effect, that output).
PRELUDES = {"transfer.ipynb": ("import sit471.transfer as _t\n"
                               "_t.QUICK.update(seeds=1, max_steps=20)\n"
                               "del _t", "quick_run", "9 trainings in")}


@pytest.mark.parametrize("path", SOURCE_NOTEBOOKS, ids=_ids(SOURCE_NOTEBOOKS))
def test_source_notebook_runs_and_passes_every_test(path, tmp_path):
    path = _copy_folder(path, tmp_path)
    nb = nbformat.read(path, as_version=4)
    prelude, shown_in, shown = PRELUDES.get(path.name, ("", None, None))
    if prelude:
        nb.cells.insert(0, nbformat.v4.new_code_cell(prelude))
    # as a student runs it: explorations included, so a cell may take minutes beside another
    # test worker
    nb = execute(nb, path.parent, grading=False, timeout=300)
    for cell in nb.cells:
        assert not errors(cell), (nbgrader_meta(cell).get("grade_id"), errors(cell))
        if shown_in and nbgrader_meta(cell).get("grade_id") == shown_in:
            assert shown in "".join(o.get("text", "") for o in cell.outputs), cell.outputs


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xdist_group(demo_group(p.parent.name)), id=i)
    for p, i in zip(RELEASE_NOTEBOOKS, _ids(RELEASE_NOTEBOOKS), strict=True)])
def test_release_notebook_fails_only_on_its_stubs(path, tmp_path_factory):
    """The release as autograding runs it: the demo's "blank" student hands it in untouched
    (tests/test_demo.py grades that batch once for the session)."""
    _, out = graded_demo(tmp_path_factory, path.parent.name)
    nb = autograded(out, "blank", path.parent.name, path.name)
    assert any(c.get("execution_count") for c in nb.cells), "the notebook did not run"
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        found = errors(cell)
        if meta.get("grade") and cell.cell_type == "code":
            assert len(found) == 1 and found[0].startswith("NotImplementedError"), (
                meta["grade_id"],
                found,
            )
        else:
            assert not found, (meta.get("grade_id"), found)


# Common mistakes in assignment 01 and the test that must catch each, with its message.
MISTAKES_01 = [
    (
        "sigmoid",
        "e = np.exp(-np.abs(z))\n    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))",
        "return 1 / (1 + np.exp(-z))",
        "test_sigmoid",
        "sigmoid overflows for z = -1000",
    ),
    (
        "sigmoid_prime",
        "s = sigmoid(z)\n    return s * (1.0 - s)",
        "return sigmoid(z)",
        "test_sigmoid_prime",
        r"sigmoid_prime\(0\) is wrong",
    ),
    ("sigmoid_prime", "return s * (1.0 - s)", "return s * s", "test_sigmoid_prime",
     r"^AssertionError: sigmoid_prime\(z\) is wrong; it looks like s \* s: the factor"),
    ("sigmoid_prime", "return s * (1.0 - s)", "return s * (1.0 + s)", "test_sigmoid_prime",
     r"sigmoid_prime\(0\) is wrong; it looks like s \* \(1 \+ s\), not s \* \(1 - s\)"),
    ("sigmoid_prime", "return s * (1.0 - s)", "return sigmoid(-z) ** 2", "test_sigmoid_prime",
     r"it looks like the sign of z is flipped"),
    ("sigmoid_prime", "return s * (1.0 - s)", "return s * (1.0 - s) + 1e-3 * (z > 2.5)",
     "test_sigmoid_prime", r"sigmoid_prime\(z\) is wrong: at z = 6 got 0.00346"),
    ("forward", "z2 = X @ W1", "z2 = X @ W1 + 0.1", "test_forward", "z2 is wrong"),
    (
        "cost",
        "return float(0.5 * np.sum((y - y_hat) ** 2))",
        "return float(np.mean((y - y_hat) ** 2) / 2)",
        "test_cost",
        "it looks like the mean was taken",
    ),
    (
        "backward_output",
        "delta3 = -(y - y_hat) * sigmoid_prime(z3)",
        "delta3 = -(y - y_hat)",
        "test_backward_output",
        r"delta3 is wrong; it looks like the factor f'\(z3\)",
    ),
    (
        "backward_output",
        "dJdW2 = a2.T @ delta3",
        "dJdW2 = (delta3.T @ a2)",
        "test_backward_output",
        "dJdW2 looks transposed",
    ),
    (
        "backward_hidden",
        "delta2 = (delta3 @ W2.T) * sigmoid_prime(z2)",
        "delta2 = (delta3 @ W2.T) * sigmoid(z2)",
        "test_backward_hidden",
        r"delta2 is wrong",
    ),
    (
        "backward_hidden",
        "delta2 = (delta3 @ W2.T) * sigmoid_prime(z2)",
        "delta2 = -(delta3 @ W2.T) * sigmoid_prime(z2)",
        "test_backward_hidden",
        "delta2 has the wrong sign",
    ),
    (
        "numerical_gradient",
        "f_minus = f(W.copy())",
        "f_minus = f_plus - 2 * eps * 0",
        "test_numerical_gradient",
        "numerical gradient",
    ),
    ("train", "W2 -= lr * dJdW2", "W2 += lr * dJdW2", "test_train", "2e-3|W2|history"),
]


@pytest.fixture(scope="module")
def kernel_01(tmp_path_factory):
    """One kernel that has run 01's source notebook (figures left out) as autograding runs
    it; each mistake is put into its answer there in turn (conftest.MistakeKernel)."""
    skipped = {"sigmoid_fig", "gradcheck_fig", "train_fig", "explore"}
    with mistake_kernel(COURSE / "source" / "01_backprop" / "backprop.ipynb", "test_train",
                        skipped, tmp_path_factory.mktemp("nb01")) as kernel:
        yield kernel


@pytest.mark.parametrize(
    "mistake", MISTAKES_01, ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES_01)]
)
def test_assignment_01_catches_common_mistakes(mistake, kernel_01):
    """The test cell fails with the mistake's message (visible tests, then the grader's
    verdict on its inputs), and passes again once the answer is right again."""
    print(f"{mistake[0]} with {mistake[2]!r} -> {kernel_01.check_mistake(mistake)}")
    assert not kernel_01.run(kernel_01.cells[mistake[3]].source, mistake[3])
