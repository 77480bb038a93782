"""Assignment 04 (transfer learning): common mistakes are caught with a message that names them;
the helpers of sit471.transfer work; the notebook quotes the cached experiment it ships with.

Each mistake is put into one answer of the source notebook (in a kernel that has run the
notebook, figure and exploration cells left out), and the test cell that must catch it has to
fail with a message that names the mistake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import matplotlib
import nbformat
import numpy as np
import pytest
from conftest import (
    COURSE,
    MistakeKernel,
    hidden_cases,
    mistake_kernel,
    mistake_tests,
    nbgrader_meta,
)

matplotlib.use("Agg")

FOLDER = COURSE / "source" / "04_transfer"
NOTEBOOK = FOLDER / "transfer.ipynb"
SKIPPED = {"filters_fig", "maps_fig", "rgb_check", "quick_run", "experiment"}  # draw or explore
LAST_TEST = "test_adapt_in_channels"

# (answer cell, text in its solution, replacement, test cell that must fail, message pattern)
MISTAKES_04 = [
    (
        "freeze",
        "for p in module.parameters():\n        p.requires_grad_(False)",
        "for name, p in module.named_parameters():\n"
        "        if name.endswith('weight'):\n            p.requires_grad_(False)",
        "test_freeze",
        r"still trainable.*must cover biases",
    ),
    (
        "freeze",
        "for p in module.parameters():\n        p.requires_grad_(False)",
        "for m in module.modules():\n        if isinstance(m, (nn.Conv2d, nn.Linear)):\n"
        "            for p in m.parameters():\n                p.requires_grad_(False)",
        "test_freeze",
        r"BatchNorm layer's parameters",
    ),
    (
        "count_trainable",
        "for p in module.parameters() if p.requires_grad)",
        "for p in module.parameters())",
        "test_count_trainable",
        "count only the parameters with requires_grad",
    ),
    (
        "count_trainable",
        "sum(p.numel() for p",
        "sum(1 for p",
        "test_count_trainable",
        "number of parameter tensors",
    ),
    (
        "replace_head",
        "parent_name, _, child = name.rpartition(\".\")\n"
        "    parent = model.get_submodule(parent_name)\n"
        "    old = getattr(parent, child)\n"
        "    setattr(parent, child, new_module)",
        "old = model.get_submodule(name)\n    setattr(model, name, new_module)",
        "test_replace_head",
        r"setattr\(model, 'classifier.head', new\) adds an attribute",
    ),
    (
        "replace_head",
        "if name not in names:",
        "if False:",
        "test_replace_head",
        "raised AttributeError.*raise a ValueError that names the missing submodule",
    ),
    (
        "finetune_param_groups",
        '"lr": bias_mult * base_lr}',
        '"lr": weight_mult * base_lr}',
        "test_finetune_param_groups",
        r"classifier.head.bias has lr 0.1, expected 0.2: new biases get bias_mult \(20x\)",
    ),
    (
        "finetune_param_groups",
        "if p.requires_grad and id(p) not in new_ids]",
        "if p.requires_grad]",
        "test_finetune_param_groups",
        "appears in two groups .* leave the new module's parameters out of the pretrained",
    ),
    (
        "finetune_param_groups",
        "if p.requires_grad and id(p) not in new_ids]",
        "if id(p) not in new_ids]",
        "test_finetune_param_groups",
        "with net.features frozen: frozen parameters must be left out",
    ),
    (
        "finetune_param_groups",
        "if not any(module is m for m in inside):",
        "if False:",
        "test_finetune_param_groups",
        "not part of the model should raise ValueError",
    ),
    (
        "approach1",
        "model = freeze(copy.deepcopy(pretrained))",
        "model = freeze(pretrained)",
        "test_approach1",
        r"changed the network it was given: work on copy.deepcopy\(pretrained\)",
    ),
    (
        "approach1",
        "model = freeze(copy.deepcopy(pretrained))",
        "model = copy.deepcopy(pretrained)",
        "test_approach1",
        "only the new head should be trainable.*Freeze everything first",
    ),
    (
        "approach1",
        "torch.optim.SGD(groups, lr=base_lr, momentum=0.9)",
        "torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=base_lr, "
        "momentum=0.9)",
        "test_approach1",
        r"expected 10x and 20x base_lr .* build the optimizer from finetune_param_groups",
    ),
    (
        "approach2",
        "torch.optim.SGD(groups, lr=base_lr, momentum=0.9)",
        "torch.optim.SGD(model.parameters(), lr=base_lr, momentum=0.9)",
        "test_approach2",
        r"one learning rate \(0.005\) for every parameter: the groups never reached it",
    ),
    (
        "approach2",
        "model = unfreeze(copy.deepcopy(pretrained))",
        "model = copy.deepcopy(pretrained)",
        "test_approach2",
        r"every parameter should be trainable \(unfreeze the copy\)",
    ),
    (
        "approach2",
        "model = unfreeze(copy.deepcopy(pretrained))",
        "model = unfreeze(pretrained)",
        "test_approach2",
        "approach2 changed the network it was given",
    ),
    (
        "adapt_in_channels",
        "new_w = torch.cat([w, extra], dim=1) * (C / in_channels)",
        "new_w = torch.cat([w, extra], dim=1)",
        "test_adapt_in_channels",
        "kept but not rescaled: multiply all slices by C / in_channels",
    ),
    (
        "adapt_in_channels",
        "new.bias.copy_(conv.bias)",
        "pass",
        "test_adapt_in_channels",
        "copy the bias unchanged",
    ),
    (
        "adapt_in_channels",
        "extra = w.mean(dim=1, keepdim=True).repeat(1, in_channels - C, 1, 1)",
        "extra = torch.zeros_like(w[:, :1]).repeat(1, in_channels - C, 1, 1)",
        "test_adapt_in_channels",
        "should hold the mean of the pretrained slices",
    ),
    (
        "adapt_in_channels",
        " + w[:, in_channels:].sum(dim=1, keepdim=True) / in_channels",
        "",
        "test_adapt_in_channels",
        "adapting to 1 channel should give the sum of the pretrained slices",
    ),
    (
        "approach1",
        "head = nn.Linear(model.classifier.head.in_features, num_classes)",
        "head = nn.Linear(model.classifier.head.in_features, "
        "model.classifier.head.out_features)",
        "test_approach1",
        r"should be a new nn.Linear\(64, 10\), got Linear\(in_features=64, out_features=256",
    ),
]


# Mistakes that pass the visible tests: only the grader's half, on other shapes and values
# (nested submodules, deeper dotted names, another number of classes, dilation), finds them.
GRADER_ONLY_04 = [
    (
        "freeze",
        "for p in module.parameters():\n        p.requires_grad_(False)",
        "for m in module.children():\n        for p in m.parameters(recurse=False):\n"
        "            p.requires_grad_(False)",
        "test_freeze",
        r"^GraderVerdict: after freeze\(net\['1.1'\]\) 2 parameters are still trainable.*"
        r"loop over module.parameters\(\)",
    ),
    (
        "replace_head",
        "parent = model.get_submodule(parent_name)",
        "parent = getattr(model, parent_name) if parent_name else model",
        "test_replace_head",
        r"^GraderVerdict: replace_head\(model, '0.1.1', new\) raised AttributeError.*"
        r"nested deeper",
    ),
    (
        "finetune_param_groups",
        'if name.rpartition(".")[2] == "bias":',
        'if name == "bias":',
        "test_finetune_param_groups",
        r"^GraderVerdict: 4.0.bias has lr [\d.e-]+, expected [\d.e-]+: new biases get bias_mult",
    ),
    (
        "adapt_in_channels",
        "padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None)",
        "padding=conv.padding, bias=conv.bias is not None)",
        "test_adapt_in_channels",
        r"^GraderVerdict: copy the settings \(kernel_size, stride, padding, dilation, groups\)",
    ),
]
MISTAKES_04 += GRADER_ONLY_04


def _grade_id(cell: nbformat.NotebookNode) -> str:
    return nbgrader_meta(cell).get("grade_id", "")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[MistakeKernel]:
    tmp = tmp_path_factory.mktemp("nb04")
    with mistake_kernel(NOTEBOOK, LAST_TEST, SKIPPED, tmp) as k:
        k.folder = tmp / FOLDER.name  # where the grader's inputs are
        yield k


# the common-mistake tests, the same for every assignment (conftest.mistake_tests)
globals().update(mistake_tests(NOTEBOOK, MISTAKES_04, GRADER_ONLY_04, grader_alone=False))


def test_every_test_passes_on_other_grading_runs(kernel):
    """Fresh inputs (other seeds): the reference answers pass every time, the thresholds of
    the trained approaches included."""
    for seed in (1, 2, 3):
        kernel.tests, kernel.cases, _ = hidden_cases(FOLDER.name, kernel.folder, seed)
        try:
            for test_id in kernel.tests.grade_ids:
                assert not kernel.run(kernel.cells[test_id].source, test_id), (seed, test_id)
        finally:
            kernel.tests, kernel.cases, _ = hidden_cases(FOLDER.name, kernel.folder)


def test_hidden_inputs_differ_between_runs():
    from autograde.verdict import hidden_tests

    tests = hidden_tests(FOLDER.name)
    assert tests.grade_ids == sorted(
        nbgrader_meta(c)["grade_id"] for c in nbformat.read(NOTEBOOK, as_version=4).cells
        if nbgrader_meta(c).get("grade") and c.cell_type == "code")
    a, b = tests.make_cases(1), tests.make_cases(2)
    assert not np.array_equal(a["test_adapt_in_channels"][0]["w"],
                              b["test_adapt_in_channels"][0]["w"])
    assert a["test_approach1"][0]["seed"] != b["test_approach1"][0]["seed"]


def test_prediction_is_a_manually_graded_markdown_cell_before_the_quick_run():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ids = [_grade_id(c) for c in nb.cells]
    cell = nb.cells[ids.index("prediction")]
    meta = nbgrader_meta(cell)
    assert cell.cell_type == "markdown" and meta["solution"] and meta["grade"]
    assert meta["points"] == 1
    assert ids.index("prediction") < ids.index("quick_run") < ids.index("experiment")
    quick = nb.cells[ids.index("quick_run")].source
    assert "if GRADING" in quick and "quick_sweep(approach1, approach2" in quick


def test_interpretation_is_a_hand_graded_question_between_the_sweep_and_its_discussion():
    """The student reads the full sweep before the notebook's own discussion of it; the release
    leaves the example answer out."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ids = [_grade_id(c) for c in nb.cells]
    cell = nb.cells[ids.index("interpretation")]
    meta = nbgrader_meta(cell)
    assert cell.cell_type == "markdown" and meta["solution"] and meta["grade"]
    assert meta["points"] == 2 and not meta.get("locked")
    assert ids.index("experiment") < ids.index("interpretation") < ids.index("findings_md")
    release = nbformat.read(COURSE / "release" / FOLDER.name / NOTEBOOK.name, as_version=4)
    stub = next(c for c in release.cells if _grade_id(c) == "interpretation")
    assert stub.source.strip() == "YOUR ANSWER HERE"


# ----------------------------------------------------------------------------- the experiment


def _sweep() -> dict:
    return json.loads((FOLDER / "sweep.json").read_text())


def test_cached_experiment_has_the_documented_format_and_enough_seeds():
    from sit471.transfer import METHODS, SHIFTS, SIZES, TARGET_PER_CLASS

    results = _sweep()
    runs = results["runs"]
    assert {"seeds", "lrs", "max_steps", "cells", "seconds"} <= set(results["settings"])
    keys = {"shift", "per_class", "method", "seed", "val_accuracy", "test_accuracy"}
    assert all(keys <= set(r) for r in runs)
    assert {r["method"] for r in runs} == set(METHODS)
    assert {r["shift"] for r in runs} == set(SHIFTS)
    cells = {(s, None if n == TARGET_PER_CLASS["train"] else n) for s in SHIFTS for n in SIZES[s]}
    for shift, n in cells:
        for m in METHODS:
            seeds = sorted(r["seed"] for r in runs
                           if (r["shift"], r["per_class"], r["method"]) == (shift, n, m))
            assert len(seeds) >= 10 and seeds == sorted(set(seeds)), (shift, n, m, seeds)
    assert all(0 <= r["test_accuracy"] <= 1 and 0 <= r["val_accuracy"] <= 1 for r in runs)
    for r in runs:  # the rate was chosen from the method's grid
        assert r["lr"] in results["settings"]["lrs"][r["method"]]


def test_notebook_quotes_the_cached_experiment():
    from sit471.transfer import format_table

    text = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells)
    for row in format_table(_sweep()).splitlines()[2:]:
        assert row in text, f"the notebook does not quote the cached result {row}"


def test_target_and_source_data():
    from sit471.transfer import SHIFTS, shift_images, source_data, target_data

    src = source_data(parts=("val",))
    assert set(np.unique(src["y_val"])) == set(range(256)) and src["x_val"].dtype == np.float32
    assert src["x_val"].shape == (1280, 1, 28, 28)
    small = target_data(per_class=5, seed=3)
    assert np.bincount(small["y_train"]).tolist() == [5] * 10
    assert np.array_equal(small["x_train"], target_data(per_class=5, seed=3)["x_train"])
    full, checker = target_data(), target_data(shift="checker")
    np.testing.assert_allclose(checker["x_test"], shift_images(full["x_test"], "checker"))
    np.testing.assert_allclose(shift_images(checker["x_test"], "checker"), full["x_test"],
                               atol=1e-6)  # the checkerboard is its own inverse
    assert len(full["y_test"]) == 1000 and SHIFTS == ("none", "checker")
    with pytest.raises(ValueError, match="shift"):
        target_data(shift="rotate")
    with pytest.raises(ValueError, match="per_class"):
        target_data(per_class=10_000)


def test_plot_sweep_draws_every_seed():
    import matplotlib.pyplot as plt

    from sit471.transfer import plot_sweep

    results = _sweep()
    fig = plot_sweep(results)
    assert len(fig.axes) == 2
    dots = sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections
               if c.get_offsets().ndim == 2 and len(c.get_offsets()) > 1
               and type(c).__name__ == "PathCollection")
    assert dots == len(results["runs"])
    plt.close("all")


def test_quick_sweep_uses_the_functions_it_is_given(monkeypatch):
    """The student's functions are what the quick run trains (here: spies around the
    reference, on a tiny version of the quick cells), in an install without sit471.reference."""
    import sys

    from sit471 import transfer
    from sit471.reference import transfer as ref

    monkeypatch.setitem(sys.modules, "sit471.reference", None)  # as in a student install

    calls = []

    def spy(fn, name):
        def wrapped(*args):
            calls.append(name)
            return fn(*args)
        return wrapped

    monkeypatch.setitem(transfer.QUICK, "cells", (("none", 1),))
    monkeypatch.setitem(transfer.QUICK, "seeds", 1)
    monkeypatch.setitem(transfer.QUICK, "max_steps", 20)
    out = transfer.quick_sweep(spy(ref.approach1, "a1"), spy(ref.approach2, "a2"), log=lambda s: 0)
    assert sorted(calls) == ["a1", "a2"] and len(out["runs"]) == 3
