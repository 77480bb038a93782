"""Assignment 06 (image -> label image): common mistakes are caught with a message that names
them; the generators and models of sit471.dense work; the notebook quotes the cached experiment
it ships with.

Each mistake is put into one answer of the source notebook (in a kernel that has run the
notebook, figure and exploration cells left out, see conftest.mistake_kernel), and the test
cell that must catch it has to fail with a message that names the mistake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

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

FOLDER = COURSE / "source" / "06_dense"
NOTEBOOK = FOLDER / "dense.ipynb"
SKIPPED = {"shapes_fig", "upsample_fig", "parsing_fig", "depth_fig", "density_fig",
           "experiment", "parsing_fig_results", "crowds_fig_results"}  # draw or explore only
QUESTIONS = ("shapes", "parsing", "depth", "crowds")  # after the experiment: hand-graded
LAST_TEST = "test_density_map"

# (answer cell, text in its solution, replacement, test cell that must fail, message pattern)
MISTAKES_06 = [
    ("confusion_matrix", "counts.reshape(num_classes, num_classes)",
     "counts.reshape(num_classes, num_classes).T", "test_confusion_matrix",
     "transposed: rows must be the TRUE class"),
    ("confusion_matrix", "    pred, target = pred[keep], target[keep]\n", "",
     "test_confusion_matrix", "ignore_index \\(255\\) BEFORE counting"),
    ("confusion_matrix", "keep = target != ignore_index", "keep = pred != ignore_index",
     "test_confusion_matrix", r"ignore_index \(255\)"),
    ("confusion_matrix", 'raise ValueError("pred and target must have the same shape")', "pass",
     "test_confusion_matrix", r"should raise ValueError"),
    ("iou_from_confusion", "union = conf.sum(axis=0) + conf.sum(axis=1) - tp",
     "union = conf.sum(axis=1)", "test_iou", "that is the recall"),
    ("iou_from_confusion", "union = conf.sum(axis=0) + conf.sum(axis=1) - tp",
     "union = conf.sum(axis=0)", "test_iou", "that is the precision"),
    ("iou_from_confusion", "union = conf.sum(axis=0) + conf.sum(axis=1) - tp",
     "union = conf.sum(axis=0) + conf.sum(axis=1)", "test_iou", "counts TP twice"),
    ("iou_from_confusion", "iou = np.full(len(tp), np.nan)", "iou = np.zeros(len(tp))",
     "test_iou", "its IoU should be nan"),
    ("iou_from_confusion", "float(np.nanmean(iou))", "float(np.nan_to_num(iou).mean())",
     "test_iou", "absent class counted as IoU 0"),
    ("bilinear_kernel", "centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5",
     "centre = factor - 1", "test_bilinear_kernel", "centre f - 0.5 for even k"),
    ("bilinear_kernel",
     "for c in range(min(in_channels, out_channels)):\n        weight[c, c] = filt",
     "weight[:] = filt", "test_bilinear_kernel", "pairs of different channels get zeros"),
    ("pyramid_pooling", "nn.Conv2d(in_channels, in_channels // 4, 1)",
     "nn.Conv2d(in_channels, in_channels, 1)", "test_pyramid_pooling", r"\(C // 4, C, 1, 1\)"),
    ("pyramid_pooling", 'mode="bilinear", align_corners=False', 'mode="nearest"',
     "test_pyramid_pooling", "nearest upsampling"),
    ("pyramid_pooling", "outs = [x]", "outs = []", "test_pyramid_pooling",
     "the input's 8 channels and 4 branches"),
    ("pyramid_pooling", "torch.cat(outs, dim=1)", "torch.cat(outs[1:] + outs[:1], dim=1)",
     "test_pyramid_pooling", r"the first C output channels \(the input itself\)"),
    ("pyramid_pooling", "y = F.relu(conv(F.adaptive_avg_pool2d(x, b)))",
     "y = conv(F.adaptive_avg_pool2d(x, b))", "test_pyramid_pooling",
     "apply a ReLU after the 1x1 convolution"),
    ("scale_invariant_loss", "- lam * d.mean(dim=1) ** 2", "- lam * (d ** 2).mean(dim=1)",
     "test_scale_invariant_loss", "SQUARED MEAN of d"),
    ("scale_invariant_loss", "- lam * d.mean(dim=1) ** 2", "+ lam * d.mean(dim=1) ** 2",
     "test_scale_invariant_loss", "added instead of subtracted"),
    ("scale_invariant_loss", "- lam * d.mean(dim=1) ** 2", "- lam * d.mean(dim=1)",
     "test_scale_invariant_loss", "missing the square of the mean"),
    ("scale_invariant_loss", "d = (pred_log - target_log).reshape(pred_log.shape[0], -1)",
     "d = (pred_log - target_log).reshape(1, -1)", "test_scale_invariant_loss",
     "over ALL pixels of the batch, not per image"),
    ("depth_metrics", "np.abs(p - t) / t", "np.abs(p - t) / p", "test_depth_metrics",
     "divides by the TRUE depth"),
    ("depth_metrics", '"rmse": float(np.sqrt(np.mean((p - t) ** 2)))',
     '"rmse": float(np.mean((p - t) ** 2))', "test_depth_metrics", "missing the square root"),
    ("depth_metrics", "ratio = np.maximum(p / t, t / p)", "ratio = p / t",
     "test_depth_metrics", "only pred / target checked"),
    ("depth_metrics", "valid = target > 0", "valid = target >= 0", "test_depth_metrics",
     "target 0|NaN or infinity"),
    ("density_map", "(cols - x) ** 2 + (rows - y) ** 2", "(rows - x) ** 2 + (cols - y) ** 2",
     "test_density_map", r"a point is \(x, y\) = \(column, row\)"),
    ("density_map", "out += g / g.sum()", "out += g", "test_density_map",
     "not normalised"),
    ("density_map", "out += g / g.sum()", "out += g / (2 * np.pi * sigma ** 2)",
     "test_density_map", "normalised by the full Gaussian"),
    ("density_map", "(2 * sigma ** 2)", "(2 * sigma)", "test_density_map",
     "sigma used as the variance"),
    ("density_map", "if -0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5:", "if True:",
     "test_density_map", "points outside the image counted"),
]

# Mistakes the visible tests cannot see (they use 255, square 12 x 12 inputs, 8 channels, equal
# in and out channels, 3-D depth maps): only the grader's inputs catch them, with its message.
MISTAKES_06_GRADER = [
    ("confusion_matrix", "keep = target != ignore_index", "keep = target != 255",
     "test_confusion_matrix", r"^GraderVerdict: .*use the ignore_index argument, not 255"),
    ("confusion_matrix", "keep = target != ignore_index",
     "keep = (target != ignore_index) & (pred != ignore_index)", "test_confusion_matrix",
     r"^GraderVerdict: .*PREDICTED \d+ were left out too"),
    ("bilinear_kernel", "range(min(in_channels, out_channels))", "range(in_channels)",
     "test_bilinear_kernel", r"^GraderVerdict: on the grader's inputs your code raised IndexError"),
    ("pyramid_pooling", "nn.Conv2d(in_channels, in_channels // 4, 1)",
     "nn.Conv2d(in_channels, 2, 1)", "test_pyramid_pooling",
     r"^GraderVerdict: weight \(2, 16, 1, 1\).*\(C // 4, C, 1, 1\)"),
    ("pyramid_pooling", "F.adaptive_avg_pool2d(x, b)", "F.avg_pool2d(x, h // b)",
     "test_pyramid_pooling",
     r"^GraderVerdict: (.*pooled with a fixed kernel|on the grader's inputs your code raised)"),
    ("scale_invariant_loss", ".reshape(pred_log.shape[0], -1)", ".flatten(1, 2)",
     "test_scale_invariant_loss", r"^GraderVerdict: scale_invariant_loss on \(4, 1, 7, 3\)"),
]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[MistakeKernel]:
    with mistake_kernel(NOTEBOOK, LAST_TEST, SKIPPED, tmp_path_factory.mktemp("nb06")) as k:
        yield k


# the common-mistake tests, the same for every assignment (conftest.mistake_tests)
globals().update(mistake_tests(NOTEBOOK, MISTAKES_06 + MISTAKES_06_GRADER, MISTAKES_06_GRADER,
                               grader_alone=False))


def test_each_measured_result_is_followed_by_a_hand_graded_question():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ids = [nbgrader_meta(c).get("grade_id", "") for c in nb.cells]
    release = nbformat.read(COURSE / "release" / FOLDER.name / NOTEBOOK.name, as_version=4)
    released = {nbgrader_meta(c).get("grade_id", ""): c for c in release.cells}
    for name in QUESTIONS:
        question, answer = ids.index(f"{name}_question"), ids.index(f"{name}_answer")
        assert ids.index("experiment") < question < answer == question + 1, name
        meta = nbgrader_meta(nb.cells[answer])
        assert nb.cells[answer].cell_type == "markdown" and meta["grade"] and meta["solution"]
        assert meta["points"] == 1 and "example of an answer" in nb.cells[answer].source
        assert released[f"{name}_answer"].source.strip() == "YOUR ANSWER HERE", name


def test_the_prose_leaves_the_counting_trick_to_the_student():
    """The confusion matrix's exercise gives a hint, not the code (issue 20)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "bincount" not in prose and "target * num_classes" not in prose


# ----------------------------------------------------------------------------- the experiment


def test_cached_results_are_complete_and_quoted_by_the_notebook():
    from sit471.dense import format_results

    results = json.loads((FOLDER / "results.json").read_text())
    assert results["settings"]["scale"] == 1.0 and len(results["settings"]["seeds"]) >= 3
    for key in ("shapes", "parsing", "depth", "crowds"):
        assert key in results, key
    p = results["parsing"]
    assert set(p["models"]) == {"fcn", "ppm", "global_only", "local_only"}
    assert p["parameters"]["ppm"] == p["parameters"]["local_only"] == p["parameters"][
        "global_only"] > p["parameters"]["fcn"]
    assert p["ppm"]["mean_iou"]["mean"] > p["local_only"]["mean_iou"]["mean"]
    assert (results["shapes"]["bilinear_init"]["mean_iou"]["mean"]
            > results["shapes"]["random_init"]["mean_iou"]["mean"])
    assert_quoted(NOTEBOOK, format_results(results), min_rows=20)


def test_05_and_06_quote_one_direct_regression_baseline():
    """06's count regressor is 05's experiment: the same function, data, loss and budget, so the
    same numbers in both cached results."""
    r05 = json.loads((COURSE / "source" / "05_label_number" / "results.json").read_text())
    r06 = json.loads((FOLDER / "results.json").read_text())
    assert r06["crowds"]["regression"] == r05["counting"]["errors"]
    assert r06["settings"]["seeds"] == r05["settings"]["seeds"]
    assert r06["crowds"]["train"] == r05["counting"]["train"]
    assert r06["crowds"]["epochs"] == r05["counting"]["epochs"]


def test_experiment_runs_at_a_small_scale():
    import sit471.reference.dense as ref
    from sit471.dense import format_results, run_experiments
    from sit471.reference.label_number import RegressionHead, regression_loss

    tools = {name: getattr(ref, name) for name in (
        "confusion_matrix", "iou_from_confusion", "pixel_accuracy", "bilinear_kernel",
        "PyramidPooling", "scale_invariant_loss", "depth_metrics", "density_map")}
    res = run_experiments(tools, log=lambda s: None, scale=0.011, seeds=(0,))
    assert "direct regression" not in format_results(res)  # no head given: no count regressor
    res = run_experiments({**tools, "RegressionHead": RegressionHead,
                           "regression_loss": regression_loss}, log=lambda s: None,
                          scale=0.011, seeds=(0,))
    assert format_results(res).count("direct regression (05)") == 4
    json.dumps(res)
    with pytest.raises(KeyError, match="PyramidPooling"):
        run_experiments({k: v for k, v in tools.items() if k != "PyramidPooling"})
    with pytest.raises(TypeError, match="density_map must be"):
        run_experiments({**tools, "density_map": 3})


# ----------------------------------------------------------------------------- the library


def test_generators_are_seeded_and_well_formed():
    from sit471.dense import crowds, depth_scenes, parsing_scenes, shapes_scenes
    from sit471.reference.dense import density_map

    s = shapes_scenes(20, seed=3)
    assert s["x"].shape == (20, 1, 32, 32) and s["x"].dtype == np.float32
    assert s["labels"].shape == (20, 32, 32) and s["labels"].dtype == np.int64
    assert set(np.unique(s["labels"])) <= {0, 1, 2, 3, 255}
    assert np.array_equal(s["x"], shapes_scenes(20, seed=3)["x"])
    assert not np.array_equal(s["x"], shapes_scenes(20, seed=4)["x"])
    p = parsing_scenes(40, seed=1)
    for k in range(40):
        labels = set(np.unique(p["labels"][k]))
        stripes = 1 + int(p["kind"][k])
        assert labels == {0, stripes, 3}, (k, labels)
        # the patches keep >= 9 px away from the bar that tells the scene kind
        assert (p["labels"][k][:12] == 0).all() and (p["labels"][k][:, :12] == 0).all()
    d = depth_scenes(10, seed=2)
    assert (d["depth"] > 0).all() and d["depth"].shape == (10, 32, 32)
    # the hidden scale: depth / scale is the scene's own geometry
    assert ((d["depth"] / d["scale"][:, None, None]).max() <= 30.0 + 1e-4)
    c = crowds(5, seed=2, density_map=density_map)
    np.testing.assert_allclose(c["density"].sum((1, 2)), c["count"], atol=1e-3)


def test_fcn_shapes_bilinear_init_and_context():
    from sit471.dense import FCN
    from sit471.reference.dense import PyramidPooling, bilinear_kernel

    torch.manual_seed(0)
    net = FCN(4, upsample_init=bilinear_kernel)
    x = torch.rand(2, 1, 32, 32)
    assert net(x).shape == (2, 4, 32, 32)
    assert net(torch.rand(1, 1, 16, 24)).shape == (1, 4, 16, 24)
    torch.testing.assert_close(net.up1.weight, bilinear_kernel(4, 4, 4))
    ppm = FCN(3, context=PyramidPooling(32), context_channels=64)
    assert ppm(x).shape == (2, 3, 32, 32)
    # the plain FCN does not see far: changing the top rows leaves the bottom-right unchanged
    y = x.clone()
    y[:, :, :3] = 1.0
    with torch.no_grad():
        torch.testing.assert_close(net(x)[..., 20:, 20:], net(y)[..., 20:, 20:])
        assert not torch.allclose(ppm(x)[..., 20:, 20:], ppm(y)[..., 20:, 20:])


def test_parsing_controls_match_the_pyramid_in_parameters_not_in_context():
    """local_only (bins 8 on 8 x 8 features) has the pyramid's parameters and sees no farther
    than the plain FCN; global_only has them too and sees the whole image."""
    from sit471.dense import _PARSING_BINS, FCN, decode_labels, encode_labels, n_parameters
    from sit471.reference.dense import PyramidPooling

    x = torch.rand(2, 1, 32, 32)
    y = x.clone()
    y[:, :, :3] = 1.0
    nets = {}
    for name, bins in _PARSING_BINS.items():
        torch.manual_seed(0)
        nets[name] = FCN(4, context=PyramidPooling(32, bins), context_channels=64)
    assert len({n_parameters(n) for n in nets.values()}) == 1
    assert n_parameters(nets["ppm"]) > n_parameters(FCN(4))
    with torch.no_grad():
        torch.testing.assert_close(nets["local_only"](x)[..., 20:, 20:],
                                   nets["local_only"](y)[..., 20:, 20:])
        for name in ("ppm", "global_only"):
            assert not torch.allclose(nets[name](x)[..., 20:, 20:], nets[name](y)[..., 20:, 20:])
    labels = np.random.default_rng(0).integers(0, 4, (32, 32))
    assert np.array_equal(decode_labels(encode_labels(labels)), labels)
