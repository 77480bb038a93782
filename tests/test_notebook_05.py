"""Assignment 05 (image -> label, image -> number, several outputs): common mistakes are caught
with a message that names them; the generators and helpers of sit471.label_number work; the
notebook quotes the cached experiment it ships with.

Each mistake is put into one answer of the source notebook (in a kernel that has run the
notebook, figure and exploration cells left out), and the test cell that must catch it has to
fail with a message that names the mistake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import torch
from conftest import (
    COURSE,
    MistakeKernel,
    assert_quoted,
    mistake_kernel,
    mistake_tests,
    nbgrader_meta,
)

matplotlib.use("Agg")

FOLDER = COURSE / "source" / "05_label_number"
NOTEBOOK = FOLDER / "label_number.ipynb"
SKIPPED = {"samples_fig", "faces_fig", "number_demo", "crowds_fig", "objects_fig", "multi_fig",
           "experiment", "verification_fig", "age_fig", "detection_fig"}  # draw or explore only
QUESTIONS = ("verification", "age", "detection")  # after their figures: hand-graded answers
AFTER_FINDINGS = ("labels", "counting", "localisation")  # questions on results without a figure
LAST_TEST = "test_nms"

# (answer cell, text in its solution, replacement, test cell that must fail, message pattern)
MISTAKES_05 = [
    ("regression_head", "self.linear(features).squeeze(-1)", "self.linear(features)",
     "test_regression_head", r"returned shape \(5, 1\); return \(N,\)"),
    ("regression_head", "self.linear(features).squeeze(-1)", "self.linear(features).squeeze()",
     "test_regression_head", r"squeeze only the last dimension"),
    ("regression_head", "nn.Linear(in_features, 1)", "nn.Linear(in_features, 1, bias=False)",
     "test_regression_head", "expected 7: one weight per feature and a bias"),
    ("regression_loss",
     'if kind == "l2":\n        return (diff ** 2).mean()\n    if kind == "l1":\n'
     "        return diff.abs().mean()",
     'if kind == "l2":\n        return diff.abs().mean()\n    if kind == "l1":\n'
     "        return (diff ** 2).mean()",
     "test_regression_loss", r"looks like the L1 loss: 'l2' is the mean of the SQUARED"),
    ("regression_loss", "return (diff ** 2).mean()", "return (diff ** 2).sum()",
     "test_regression_loss", r"looks like a sum: average over the examples"),
    ("regression_loss", "if pred.shape != target.shape:", "if False:",
     "test_regression_loss", r"\(3, 1\) against target \(3,\) should raise ValueError"),
    ("verify", "<= threshold", "> threshold", "test_verify", "every decision is inverted"),
    ("verify", "e1 = F.normalize(emb1, dim=1)\n    e2 = F.normalize(emb2, dim=1)",
     "e1, e2 = emb1, emb2", "test_verify", "scale each embedding to unit length"),
    ("verify", "<= threshold", "< threshold", "test_verify", "use <=, not <"),
    ("expected_value", "low + (torch.arange(n_bins, dtype=torch.float32) + 0.5) * width",
     "torch.linspace(low, high, n_bins)", "test_expected_value",
     r"the bin EDGES from low to high \(linspace\)"),
    ("expected_value", "low + (torch.arange(n_bins, dtype=torch.float32) + 0.5) * width",
     "low + torch.arange(n_bins, dtype=torch.float32) * width", "test_expected_value",
     "left edges of the bins: add half a bin width"),
    ("expected_value", "torch.softmax(logits, dim=1)", "torch.softmax(logits, dim=0)",
     "test_expected_value", r"softmax taken over the examples \(dim=0\)"),
    ("expected_value", "return probs @ bin_centers.to(logits.dtype)",
     "return bin_centers[probs.argmax(dim=1)]", "test_expected_value",
     r"centre of the most likely bin \(argmax\)"),
    ("box_iou", "wh = (right_bottom - left_top).clamp(min=0)", "wh = right_bottom - left_top",
     "test_box_iou", "boxes far apart have IoU 0, got 0.0588: clamp"),
    ("box_iou", "wh = (right_bottom - left_top).clamp(min=0)",
     "wh = (right_bottom - left_top).abs()", "test_box_iou", "boxes far apart have IoU 0"),
    ("box_iou", "if bool(((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any()):", "if False:",
     "test_box_iou", r"a box with x2 < x1 should raise ValueError"),
    ("detection_loss", "(pred[..., 1:5][mask] - boxes[mask]).abs().mean()",
     "(pred[..., 1:5] - boxes).abs().mean()", "test_detection_loss",
     "box loss averaged over ALL cells"),
    ("detection_loss", "return obj_loss + box_weight * box_loss + class_weight * class_loss",
     "return obj_loss + box_loss + class_loss", "test_detection_loss",
     "weights were not applied"),
    ("detection_loss", "return obj_loss + box_weight * box_loss + class_weight * class_loss",
     "return obj_loss + class_weight * box_loss + box_weight * class_loss",
     "test_detection_loss", "the weights swapped"),
    ("detection_loss", "\n    if not bool(mask.any()):\n        return obj_loss", "",
     "test_detection_loss", "with no object anywhere the loss should be finite"),
    ("nms", "suppress &= labels == labels[i]", "pass", "test_nms",
     "only boxes of the SAME label suppress each other"),
    ("nms", "torch.argsort(-scores, stable=True)", "torch.argsort(scores, stable=True)",
     "test_nms", "LOWEST scores came first"),
    ("nms", "iou[i] > iou_threshold", "iou[i] >= iou_threshold", "test_nms",
     "touching boxes have IoU 0, which is not greater than a threshold of 0"),
    ("nms", "torch.argsort(-scores, stable=True)", "torch.argsort(-scores)", "test_nms",
     "lower index first"),
    # caught by the grader's half only: right on the visible tests' shapes and values
    ("regression_head", "nn.Linear(in_features, 1)", "nn.Linear(6, 1)", "test_regression_head",
     r"RegressionHead\(1\) has 7 parameters, expected 2"),
    ("regression_loss", "diff = pred - target", "diff = (pred - target).float()",
     "test_regression_loss", r"is off by .*computed in float32"),
    ("expected_value", "width = (high - low) / n_bins", "width = (high - low) // n_bins",
     "test_expected_value", r"bin_centers\(.*the bin width rounded down \(//\)"),
    ("box_iou", "area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])",
     "area1 = (boxes1[:, 2] - boxes1[:, 0]) ** 2", "test_box_iou",
     "the area of boxes1 from the width alone"),
]
GRADER_ONLY = MISTAKES_05[-4:]


def _grade_id(cell: nbformat.NotebookNode) -> str:
    return nbgrader_meta(cell).get("grade_id", "")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[MistakeKernel]:
    with mistake_kernel(NOTEBOOK, LAST_TEST, SKIPPED, tmp_path_factory.mktemp("nb05")) as k:
        yield k


# the common-mistake tests, the same for every assignment (conftest.mistake_tests)
globals().update(mistake_tests(NOTEBOOK, MISTAKES_05, GRADER_ONLY))


def test_each_measured_result_is_followed_by_a_hand_graded_question():
    """Every experiment whose text claims a difference ends with a question: a markdown cell a
    person grades (points, an example answer in the source, YOUR ANSWER HERE in the release)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ids = [_grade_id(c) for c in nb.cells]
    release = nbformat.read(COURSE / "release" / FOLDER.name / NOTEBOOK.name, as_version=4)
    released = {_grade_id(c): c for c in release.cells}
    placed = [(name, "experiment", f"{name}_fig") for name in QUESTIONS] + [
        (name, "findings_md", "findings_md") for name in AFTER_FINDINGS]
    for name, start, before in placed:
        question, answer = ids.index(f"{name}_question"), ids.index(f"{name}_answer")
        assert ids.index(start) <= ids.index(before) < question < answer == question + 1, name
        meta = nbgrader_meta(nb.cells[answer])
        assert nb.cells[answer].cell_type == "markdown" and meta["grade"] and meta["solution"]
        assert meta["points"] == 1 and "example of an answer" in nb.cells[answer].source
        assert released[f"{name}_answer"].source.strip() == "YOUR ANSWER HERE", name


# ----------------------------------------------------------------------------- the experiment


def test_cached_results_are_complete_and_quoted_by_the_notebook():
    from sit471.label_number import format_results

    results = json.loads((FOLDER / "results.json").read_text())
    assert results["settings"]["scale"] == 1.0 and len(results["settings"]["seeds"]) >= 3
    for key in ("labels", "faces", "age", "counting", "localisation", "detection"):
        assert key in results, key
    v = results["faces"]["verification"]
    assert 0.5 < v["trained"]["random"]["accuracy"]["mean"] <= 1
    # the claims of the findings: the trained embedding beats both baselines on hard pairs,
    # and NMS removes duplicates (the detector proposes several boxes per object)
    for baseline in ("untrained", "pixels"):
        assert v["trained"]["hard"]["accuracy"]["mean"] > v[baseline]["hard"]["accuracy"]["mean"]
    det = results["detection"]
    assert det["cells_per_object"] == 4
    assert det["after_nms"]["fp"]["mean"] < 0.5 * det["before_nms"]["fp"]["mean"]
    assert results["age"]["mae_l1"]["mean"] < results["age"]["mae_predict_mean"]
    assert_quoted(NOTEBOOK, format_results(results), min_rows=20)


def test_runner_checks_its_inputs_before_training():
    from sit471.label_number import detection, run_experiments
    from sit471.reference.experiments import tools

    answers = tools("label_number")
    with pytest.raises(KeyError, match="verify"):
        run_experiments({k: v for k, v in answers.items() if k != "verify"}, log=None)
    with pytest.raises(TypeError, match="nms must be the notebook's function"):
        run_experiments({**answers, "nms": None}, log=None)
    with pytest.raises(ValueError, match="seeds"):
        detection(answers["box_iou"], answers["detection_loss"], answers["nms"], seeds=())
    with pytest.raises(ValueError, match="scale"):
        run_experiments(answers, scale=0)


def test_the_library_leaves_verification_to_the_student():
    """sit471.label_number never computes verify's answer (the distance of unit-length
    embeddings): the ROC and the accuracies come from the verify it is given."""
    import sit471.label_number as lib
    from sit471.label_number import THRESHOLDS, roc

    source = Path(lib.__file__).read_text()
    assert "normalize" not in source and ".norm(" not in source and "linalg" not in source
    calls = []

    def always_same(e1, e2, t):
        calls.append(t)
        return torch.ones(len(e1), dtype=torch.bool)

    r = roc(always_same, torch.zeros(4, 2), torch.zeros(4, 2), np.array([1, 0, 1, 0], bool))
    assert len(calls) == len(THRESHOLDS) and (r["tpr"] == 1).all() and (r["fpr"] == 1).all()
    assert (r["accuracy"] == 0.5).all()


# ----------------------------------------------------------------------------- the library


def test_generators_are_seeded_and_well_formed():
    from sit471.label_number import (
        ARRANGEMENTS,
        SHAPES,
        crowds,
        faces,
        multi_objects,
        objects,
        scenes,
    )

    o = objects(20, seed=3)
    assert o["x"].shape == (20, 1, 32, 32) and o["x"].dtype == np.float32
    assert 0 <= o["x"].min() and o["x"].max() <= 1
    assert np.array_equal(o["x"], objects(20, seed=3)["x"])
    assert not np.array_equal(o["x"], objects(20, seed=4)["x"])
    assert set(o["label"]) <= set(range(len(SHAPES)))
    np.testing.assert_allclose(o["box"][:, 2] - o["box"][:, 0], 2 * o["size"], rtol=1e-5)
    assert (o["box"] >= -1e-4).all() and (o["box"] <= 32 + 1e-4).all()
    s = scenes(40, seed=1)
    assert set(s["label"]) == set(range(len(ARRANGEMENTS)))
    f = faces(3, 4, seed=0, first_identity=10)
    assert f["identity"].tolist() == [10] * 4 + [11] * 4 + [12] * 4
    assert ((20 <= f["age"]) & (f["age"] <= 80)).all()
    # the same identity looks alike, with the same pose/lighting/expression
    from sit471.label_number import draw_face
    a = draw_face(1, 40, rng=np.random.default_rng(1))
    same = draw_face(1, 40, rng=np.random.default_rng(2))
    other = draw_face(2, 40, rng=np.random.default_rng(2))
    assert np.abs(a - same).mean() < np.abs(a - other).mean()
    c = crowds(10, seed=2)
    assert [len(p) for p in c["positions"]] == c["count"].astype(int).tolist()
    m = multi_objects(10, seed=2)
    assert all(len(b) == len(lab) <= 4 for b, lab in zip(m["boxes"], m["labels"], strict=True))


def test_grid_targets_decode_round_trip():
    from sit471.label_number import decode_grid, grid_targets, multi_objects

    m = multi_objects(6, seed=5)
    t = grid_targets(m["boxes"], m["labels"])
    assert t["obj"].sum() == sum(len(b) for b in m["boxes"])
    pred = torch.full((6, 4, 4, 8), -20.0)
    pred[..., 0] = torch.where(t["obj"] > 0, 20.0, -20.0)
    pred[..., 1:5] = t["boxes"]
    pred[..., 5:] = torch.nn.functional.one_hot(t["labels"], 3) * 40 - 20
    for d, b, lab in zip(decode_grid(pred), m["boxes"], m["labels"], strict=True):
        order = np.lexsort((b[:, 1], b[:, 0]))
        got = d["boxes"].numpy()
        got_order = np.lexsort((got[:, 1], got[:, 0]))
        np.testing.assert_allclose(got[got_order], b[order], atol=1e-4)
        assert d["labels"].numpy()[got_order].tolist() == lab[order].tolist()


def test_detection_counts_and_roc():
    from sit471.label_number import detection_counts, roc
    from sit471.reference.label_number import box_iou, verify

    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)]
    labels = [np.array([0, 1])]
    preds = [{"boxes": torch.tensor([[0, 0, 10, 10], [1, 0, 10, 10], [20, 20, 30, 30.0]]),
              "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 2])}]
    assert detection_counts(preds, truth, labels, box_iou) == {"tp": 1, "fp": 2, "fn": 1}
    # with the reference verify, the ROC equals one computed from the distances directly
    g = torch.Generator().manual_seed(0)
    e1, e2 = torch.randn(60, 5, generator=g), torch.randn(60, 5, generator=g)
    same = np.arange(60) % 2 == 0
    e2[same] = e1[same] + 0.3 * torch.randn(30, 5, generator=g)
    r = roc(verify, e1, e2, same)
    u = lambda e: e.numpy() / np.linalg.norm(e.numpy(), axis=1, keepdims=True)  # noqa: E731
    dist = np.linalg.norm(u(e1) - u(e2), axis=1)
    for k in (0, 100, 200, 300):
        t = r["thresholds"][k]
        assert r["tpr"][k] == (dist[same] <= t).mean() and r["fpr"][k] == (dist[~same] <= t).mean()
    assert r["accuracy"].max() > 0.9 and r["tpr"][-1] == 1 and r["fpr"][0] == 0


def test_hard_negative_pairs_share_pose_and_lighting():
    from sit471.label_number import faces, pairs

    f = faces(20, 8, seed=3)
    alike = np.stack([f["pose"], f["light"]], 1)
    i, j, same = pairs(f["identity"], 50, seed=1, alike=alike)
    assert same.sum() == 50 and (~same).sum() == 50
    assert (f["identity"][i] == f["identity"][j]).tolist() == same.tolist()
    assert (np.abs(alike[i[~same]] - alike[j[~same]]) < 0.2).all()
    i0, j0, s0 = pairs(f["identity"], 50, seed=1)  # random pairs: their poses differ widely
    assert np.abs(alike[i0[~s0]] - alike[j0[~s0]]).max() > 0.5


def test_several_responsible_cells_give_duplicates_that_nms_removes():
    from sit471.label_number import decode_grid, grid_targets, multi_objects
    from sit471.reference.label_number import nms

    m = multi_objects(30, seed=5)
    one = grid_targets(m["boxes"], m["labels"])
    four = grid_targets(m["boxes"], m["labels"], cells_per_object=4)
    n_objects = sum(len(b) for b in m["boxes"])
    assert one["obj"].sum() == n_objects < four["obj"].sum() <= 4 * n_objects
    assert (four["obj"] >= one["obj"]).all()  # the centre's own cell stays responsible
    pred = torch.full((30, 4, 4, 8), -20.0)
    pred[..., 0] = torch.where(four["obj"] > 0, 20.0, -20.0)
    pred[..., 1:5] = four["boxes"]
    pred[..., 5:] = torch.nn.functional.one_hot(four["labels"], 3) * 40 - 20
    raw = decode_grid(pred)
    assert sum(len(d["boxes"]) for d in raw) == int(four["obj"].sum())
    kept = [nms(d["boxes"], d["scores"], 0.5, d["labels"]) for d in raw]
    assert sum(len(k) for k in kept) == n_objects  # one box per object after NMS
    with pytest.raises(ValueError, match="cells_per_object"):
        grid_targets(m["boxes"], m["labels"], cells_per_object=2)


def test_fit_trains_and_restores_threads():
    import torch.nn.functional as F

    from sit471.label_number import Net, fit, objects

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # not the loop's 1 thread, so that the restore shows
    try:
        d = objects(64, seed=0)
        x, y = torch.as_tensor(d["x"]), torch.as_tensor(d["label"])
        torch.manual_seed(0)
        net = Net(torch.nn.Linear(128, 3))
        losses = fit(net, lambda m, i: F.cross_entropy(m(x[i]), y[i]), len(x), epochs=3)
        assert len(losses) == 3 and torch.get_num_threads() == 2
        assert net.embed(x[:2]).shape == (2, 128)
    finally:
        torch.set_num_threads(before)
