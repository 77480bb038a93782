"""Assignment 09 (parsing, parts, volumes, dissection, locally connected layers): common mistakes
are caught with a message that names them; the notebook quotes the cached experiment.

Each mistake is put into one answer of the source notebook (in a kernel that has run the
notebook, figure and exploration cells left out), and the test cell that must catch it has to
fail with a message that names the mistake — with the visible tests, and with the grader's
half alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import nbformat
import pytest
from conftest import COURSE, MistakeKernel, mistake_kernel, mistake_tests, nbgrader_meta

FOLDER = COURSE / "source" / "09_parsing"
NOTEBOOK = FOLDER / "parsing.ipynb"
SKIPPED = {"scenes_fig", "parts_fig", "volume_fig", "concepts_fig", "faces_fig", "experiment",
           "figures", "budgets", "lc_params"}
LAST_TEST = "test_locally_connected"
LESION_LOOP = """    for p, les in zip(pred, lesions):
        total += len(np.unique(les[les > 0]))
        detected += len(np.unique(les[p & (les > 0)]))
"""
LESION_POOLED = """    total = len(np.unique(lesions[lesions > 0]))
    detected = len(np.unique(lesions[pred & (lesions > 0)]))
"""
SLICE_BACK = """    out = out.reshape(n, d, *out.shape[1:])
    return out.permute(0, 2, 1, 3, 4)"""
EINSUM = 'torch.einsum("nql,loq->nol", cols, weight)'

# (answer cell, text in its solution, replacement, test cell that must fail, message pattern)
MISTAKES_09 = [
    ("joint_loss", "return pixel + scene_weight * scene", "return scene_weight * pixel + scene",
     "test_joint_loss", "the weight multiplies the pixel loss"),
    ("joint_loss", "return pixel + scene_weight * scene", "return pixel + scene",
     "test_joint_loss", "scene_weight is missing"),
    ("joint_loss", ", ignore_index=255)", ")", "test_joint_loss",
     r"failed on label 255 .* must be left out"),
    ("joint_loss", "pixel = F.cross_entropy(pixel_logits, pixel_labels, ignore_index=255)",
     "pixel = F.cross_entropy(pixel_logits, torch.where(pixel_labels == 255, 0, pixel_labels))",
     "test_joint_loss", "the ignored pixels .*255.* were counted"),
    ("mean_iou", "    pred, target = pred[keep], target[keep]\n", "", "test_mean_iou",
     "the pixels whose target is 255 were counted"),
    ("mean_iou", "if union > 0:", "if np.any(target == c):", "test_mean_iou",
     r"class 1 only predicted: IoU 0, counted"),
    ("part_consistency", "has_part = part_pred > 0", "has_part = part_pred >= 0",
     "test_part_consistency", r"the background pixel \(part 0\) was counted"),
    ("part_consistency", "owner = np.asarray(part_to_object)[part_pred[has_part]]",
     "owner = part_pred[has_part]", "test_part_consistency",
     "map each part to its object with part_to_object"),
    ("part_consistency", "return 1.0", "return 0.0", "test_part_consistency",
     "with no part pixels"),
    ("dice", "np.maximum(total, 1), 1.0)", "np.maximum(total, 1), 0.0)", "test_dice",
     "Dice 1"),
    ("dice", "total = a.sum(axis=1) + b.sum(axis=1)", "total = 2 * (a | b).sum(axis=1)",
     "test_dice", "that is the IoU"),
    ("soft_dice_loss", "p = torch.sigmoid(logits).flatten(1)", "p = logits.flatten(1)",
     "test_soft_dice_loss", "apply torch.sigmoid first"),
    ("soft_dice_loss", "return (1 - score).mean()", "return score.mean()",
     "test_soft_dice_loss", "the loss is 1 - soft Dice"),
    ("soft_dice_loss", "(2 * (p * t).sum(1) + eps)", "(2 * (p * t).sum(1))",
     "test_soft_dice_loss", r"add eps to 2 sum\(p t\) AND"),
    ("soft_dice_loss", "flatten(1)\n    t = target.to(p.dtype).flatten(1)",
     "reshape(1, -1)\n    t = target.to(p.dtype).reshape(1, -1)",
     "test_soft_dice_loss", "the Dice of the whole batch"),
    ("slicewise", "slices = x.permute(0, 2, 1, 3, 4).reshape(n * d, c, h, w)",
     "slices = x.reshape(n * d, c, h, w)", "test_slicewise", "the slices were mixed up"),
    ("slicewise", SLICE_BACK, "    return out.reshape(n, d, *out.shape[1:])", "test_slicewise",
     r"\(N, D, C', H', W'\): put the channels in front"),
    ("slicewise", SLICE_BACK, "    return out.reshape(n, out.shape[1], d, *out.shape[2:])",
     "test_slicewise", "the slices were mixed up"),
    ("lesion_detection_rate", LESION_LOOP, LESION_POOLED, "test_lesion_detection_rate",
     "the lesion numbers were pooled over all volumes"),
    ("lesion_detection_rate", "total += len(np.unique(les[les > 0]))",
     "total += int((les > 0).sum())", "test_lesion_detection_rate", "voxels were counted"),
    ("dissect", "1 - top, dim=1)", "top, dim=1)", "test_dissect",
     r"T_k is the \(1 - top\) quantile"),
    ("dissect", 'mode="bilinear", align_corners=False)', 'mode="bilinear", align_corners=True)',
     "test_dissect", "dissect of the hand-worked case"),
    ("locally_connected", EINSUM, 'torch.einsum("nql,oq->nol", cols, weight[0])',
     "test_locally_connected", "each position must use its own weights"),
    ("locally_connected", "return out.reshape(n, weight.shape[1], oh, ow)",
     "return out.reshape(n, weight.shape[1], ow, oh).transpose(2, 3)",
     "test_locally_connected", "numbered column by column"),
    ("locally_connected", " + bias.T ", " ", "test_locally_connected",
     "missing its bias"),
]

# Mistakes that the visible tests miss: only the grader's half, on this run's inputs, catches
# them (and names them).
GRADER_ONLY_09 = [
    ("dissect", "thresholds = torch.quantile(acts.transpose(0, 1).reshape(k, -1), 1 - top, dim=1)",
     "thresholds = torch.quantile(acts.reshape(-1), 1 - top).repeat(k)", "test_dissect",
     "one threshold for all units"),
    ("dissect", 'mode="bilinear", align_corners=False)', 'mode="nearest")', "test_dissect",
     "nearest upsampling: use bilinear"),
    ("mean_iou", "pred = np.asarray(pred).ravel()\n    target = np.asarray(target).ravel()",
     "pred, target = np.asarray(pred), np.asarray(target)\n    if pred.ndim == 3:\n"
     "        return float(np.mean([mean_iou(p, t, num_classes) for p, t in zip(pred, target)]))"
     "\n    pred, target = pred.ravel(), target.ravel()",
     "test_mean_iou", "the mean over images of per-image mIoU"),
]
MISTAKES_09 += GRADER_ONLY_09


def _grade_id(cell: nbformat.NotebookNode) -> str:
    return nbgrader_meta(cell).get("grade_id", "")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[MistakeKernel]:
    with mistake_kernel(NOTEBOOK, LAST_TEST, SKIPPED, tmp_path_factory.mktemp("nb09")) as k:
        yield k


# the common-mistake tests, the same for every assignment (conftest.mistake_tests)
globals().update(mistake_tests(NOTEBOOK, MISTAKES_09, GRADER_ONLY_09))


# ----------------------------------------------------------------------------- the experiment

def test_cached_experiment_is_complete_and_quoted_by_the_notebook():
    from sit471.parsing import SEEDS, format_results

    results = json.loads((FOLDER / "results.json").read_text())
    assert results["settings"]["seeds"] == list(SEEDS) and len(SEEDS) >= 3
    assert results["settings"]["scale"] == 1.0
    for runs in results["two_heads"].values():
        assert len(runs) == len(SEEDS)
    assert set(results["figures"]) == {"parts", "volumes", "dissection"}
    text = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells)
    for row in format_results(results).splitlines():
        if row.startswith("| ") and "---" not in row and ":" not in row.split("|")[1]:
            assert row in text, f"the notebook does not quote the cached result {row}"


def test_cached_settings_were_chosen_on_validation_data():
    """Each experiment's learning rate and epochs: the best validation score of its grid, on
    data drawn with other seeds than the training and test data, and the test runs used them."""
    from sit471.parsing import GRID, TEST_SEEDS, VALIDATION_SEEDS

    results = json.loads((FOLDER / "results.json").read_text())
    tuning = results["tuning"]
    assert set(tuning) == set(GRID)
    for name, (rates, counts) in GRID.items():
        scores = tuning[name]["scores"]
        assert set(scores) == {f"{lr:g}/{e}" for lr in rates for e in counts}
        lr, e = max(scores, key=scores.get).split("/")
        assert tuning[name]["chosen"] == [float(lr), int(e)]
        assert results["settings"]["chosen"][name] == tuning[name]["chosen"]
    assert not set(VALIDATION_SEEDS.values()) & set(TEST_SEEDS.values())
    assert not set(VALIDATION_SEEDS.values()) & {11, 21, 31, 41, 51}  # the training draws


def test_tune_picks_the_best_validation_score(monkeypatch):
    """tune() trains each experiment at every learning rate of the grid, scores it on the
    validation draw after each epoch count, and keeps the best (higher is better)."""
    from sit471 import parsing

    calls = []

    def fake(tools, scale, epochs, seeds, lr, eval_seed, at):
        calls.append((lr, epochs, eval_seed, at))
        return {"trained": [{"by_epoch": {str(e): {"shape_accuracy": lr * e} for e in at}}]}

    monkeypatch.setitem(parsing.EXPERIMENTS, "dissection", fake)
    out = parsing.tune({}, log=lambda s: None, grid={"dissection": ((1.0, 3.0), (2, 4))})
    assert calls == [(1.0, 4, parsing.VALIDATION_SEEDS["dissection"], (2, 4)),
                     (3.0, 4, parsing.VALIDATION_SEEDS["dissection"], (2, 4))]
    assert out["dissection"]["chosen"] == [3.0, 4]
    assert out["dissection"]["scores"] == {"1/2": 2.0, "1/4": 4.0, "3/2": 6.0, "3/4": 12.0}


def test_each_experiment_is_followed_by_a_hand_graded_question():
    """After the results, one question per experiment: a markdown cell a person grades (1 point,
    an example answer in the source, YOUR ANSWER HERE in the release)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ids = [_grade_id(c) for c in nb.cells]
    release = nbformat.read(COURSE / "release" / NOTEBOOK.parent.name / NOTEBOOK.name,
                            as_version=4)
    released = {_grade_id(c): c for c in release.cells}
    for name in ("two_heads", "parts", "volumes", "dissection", "faces"):
        question, answer = ids.index(f"{name}_question"), ids.index(f"{name}_answer")
        assert ids.index("findings_md") < question < answer == question + 1, name
        meta = nbgrader_meta(nb.cells[answer])
        assert nb.cells[answer].cell_type == "markdown" and meta["grade"] and meta["solution"]
        assert meta["points"] == 1 and "example of an answer" in nb.cells[answer].source
        assert released[f"{name}_answer"].source.strip() == "YOUR ANSWER HERE", name


def test_the_claimed_differences_carry_their_paired_95_percent_intervals():
    """Each claimed difference of the findings, paired by seed, with the t-interval scipy
    computes; the findings show the table the cached results give."""
    from scipy import stats

    from sit471.parsing import format_differences, paired_differences

    results = json.loads((FOLDER / "results.json").read_text())
    rows = paired_differences(results)
    assert len(rows) == 10
    runs = results["parts"]
    d = [a["part_miou"] - b["part_miou"] for a, b in
         zip(runs["context"], runs["local patch"], strict=True)]
    low, high = stats.t.interval(0.95, len(d) - 1, loc=sum(d) / len(d), scale=stats.sem(d))
    (row,) = [r for r in rows if r[1] == "context − local patch: part mIoU"]
    assert row[2] == pytest.approx((low + high) / 2)
    assert row[3] == pytest.approx((high - low) / 2, rel=1e-3)  # t to 3 decimals (4.303)
    assert row[4:] == (sum(x > 0 for x in d), 3)
    findings = "".join(next(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells
                            if c.source.startswith("## What the experiments found")))
    assert "\n".join(format_differences(results)) in findings
