"""Assignment 03 (CNNs from scratch): common mistakes are caught with a message that names them,
each costs only its own exercise's points, and the helpers of sit471.cnn and sit471.checks work.

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
from conftest import COURSE, MistakeKernel, errors, mistake_kernel, mistake_tests, nbgrader_meta
from test_demo import autograded, demo_group, graded_demo
from test_layers_reference import Case, torch_mismatches

from autograde.hidden.cnn_layers import CONV_BACKWARD, CONV_FAST, CONV_NAIVE, POOL, SOFTMAX
from autograde.verdict import hidden_tests
from sit471.channel import encode

matplotlib.use("Agg")

NOTEBOOK = COURSE / "source" / "03_cnn_layers" / "cnn_layers.ipynb"
# cells that only draw or explore: not needed by any test cell
SKIPPED = {"data", "speed", "receptive_check"} | {  # and every figure
    gid for c in nbformat.read(NOTEBOOK, as_version=4).cells
    if (gid := nbgrader_meta(c).get("grade_id", "")).endswith("_fig")
}
LAST_TEST = "test_cnn_loss"  # the training test is not needed for the mistakes below

# (answer cell, text in its solution, replacement, test cell that must fail, message pattern)
MISTAKES_03 = [
    (
        "conv_output_size",
        "span = side + 2 * pad - k",
        "span = side + pad - k",
        "test_conv_output_size",
        "padding is added on both sides",
    ),
    (
        "conv_output_size",
        "if span < 0 or span % stride != 0:",
        "if span < 0:",
        "test_conv_output_size",
        "should raise ValueError",
    ),
    (
        "conv_forward_naive",
        "np.sum(window * w[f])",
        "np.sum(window * w[f, :, ::-1, ::-1])",
        "test_conv_forward_naive",
        "the kernel was flipped",
    ),
    (
        "conv_forward_naive",
        "np.sum(window * w[f])",
        "np.sum(window[0] * w[f, 0])",
        "test_conv_forward_naive",
        "only the first input channel was used",
    ),
    (
        "conv_forward_naive",
        "np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))",
        "np.pad(x, pad)",
        "test_conv_forward_naive",
        r"Pad only the spatial axes",
    ),
    (
        "conv_forward_naive",
        "np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))",
        "x",
        "test_conv_forward_naive",
        "pad x before slicing the windows",
    ),
    (
        "conv_forward_naive",
        "np.sum(window * w[f]) + b[f]",
        "np.sum(window * w[f])",
        "test_conv_forward_naive",
        "the bias is missing",
    ),
    (
        "im2col",
        "return cols.reshape(C * HH * WW, N * H_out * W_out)",
        "return cols.reshape(C * HH * WW, N * H_out * W_out).T",
        "test_im2col",
        "looks transposed",
    ),
    (
        "im2col",
        "cols[:, i, j] = seen.transpose(1, 0, 2, 3)",
        "cols[:, i, j] = seen.transpose(1, 0, 2, 3)[:, :, ::-1]",
        "test_im2col",
        r"im2col of a 3x4 image with a 2x2 window is wrong",
    ),
    (
        "im2col",
        "return cols.reshape(C * HH * WW, N * H_out * W_out)",
        "return cols.transpose(1, 2, 0, 3, 4, 5).reshape(C * HH * WW, N * H_out * W_out)",
        "test_im2col",
        "the channel must come first",
    ),
    (
        "im2col",
        "return cols.reshape(C * HH * WW, N * H_out * W_out)",
        "return cols.transpose(0, 1, 2, 4, 5, 3).reshape(C * HH * WW, N * H_out * W_out)",
        "test_im2col",
        "the example must come first",
    ),
    (
        "conv_forward",
        "out = out.reshape(F, N, H_out, W_out).transpose(1, 0, 2, 3)",
        "out = out.reshape(N, F, H_out, W_out)",
        "test_conv_forward",
        "without swapping the axes",
    ),
    (
        "conv_backward",
        "w[:, :, i, j])",
        "w[:, :, HH - 1 - i, WW - 1 - j])",
        "test_conv_backward",
        "not rotated by 180 degrees",
    ),
    (
        "conv_backward",
        "dx = dx_pad[:, :, pad:pad + H, pad:pad + W]",
        "dx = dx_pad[:, :, pad:-pad, pad:-pad]",
        "test_conv_backward",
        r"dx is empty .* \[pad:pad \+ H\]",
    ),
    (
        "conv_backward",
        "dx = dx_pad[:, :, pad:pad + H, pad:pad + W]",
        "dx = dx_pad",
        "test_conv_backward",
        "shape of the padded input",
    ),
    (
        "conv_backward",
        "dx_pad[:, :, rows, cols] +=",
        "dx_pad[:, :, rows, cols] =",
        "test_conv_backward",
        "dx for a 3x3 image.* is wrong",
    ),
    (
        "conv_backward",
        "db = dout.sum(axis=(0, 2, 3))",
        "db = dout.mean(axis=(0, 2, 3))",
        "test_conv_backward",
        "db was averaged instead of summed",
    ),
    (
        "relu",
        "return dout * (x > 0)",
        "return dout * (x >= 0)",
        "test_relu",
        "slope at x = 0 should be 0",
    ),
    (
        "maxpool_forward",
        "out[:, :, r, c] = window.max(axis=(2, 3))",
        "out[:, :, r, c] = window.max(axis=(1, 2, 3))[:, None]",
        "test_maxpool_forward",
        "each channel is pooled on its own",
    ),
    (
        "maxpool_backward",
        "dx[n, ch, r * stride + i, c * stride + j] += dout[:, :, r, c]",
        "dx[:, :, r * stride:r * stride + size, c * stride:c * stride + size] += "
        "dout[:, :, r, c, None, None] / size**2",
        "test_maxpool_backward",
        "spread evenly over each window",
    ),
    (
        "maxpool_backward",
        "dx[n, ch, r * stride + i, c * stride + j] += dout[:, :, r, c]",
        "dx[n, ch, r * stride + i, c * stride + j] = dout[:, :, r, c]",
        "test_maxpool_backward",
        r"add the gradients \(\+=\) instead of overwriting",
    ),
    (
        "affine_forward",
        "out = x.reshape(x.shape[0], -1) @ w + b",
        "out = x.reshape(x.shape[0], -1) @ w",
        "test_affine_forward",
        "the bias is missing",
    ),
    (
        "affine_forward",
        "out = x.reshape(x.shape[0], -1) @ w + b",
        "out = x.reshape(-1, x.shape[0]).T @ w + b",
        "test_affine_forward",
        "affine_forward of 2 examples of shape",
    ),
    (
        "affine_backward",
        "dx = (dout @ w.T).reshape(x.shape)",
        "dx = dout @ w.T",
        "test_affine_backward",
        r"has the shape \(3, 8\) of the flattened x: reshape it back to x.shape",
    ),
    (
        "affine_backward",
        "dw = x.reshape(x.shape[0], -1).T @ dout",
        "dw = dout.T @ x.reshape(x.shape[0], -1)",
        "test_affine_backward",
        "dw .* looks transposed",
    ),
    (
        "softmax_cross_entropy",
        "loss = -log_probs[rows, y].mean()",
        "loss = -log_probs[rows, y].sum()",
        "test_softmax_cross_entropy",
        "summed over the batch instead of averaged",
    ),
    (
        "softmax_cross_entropy",
        "return float(loss), dscores / N",
        "return float(loss), dscores",
        "test_softmax_cross_entropy",
        "dscores was not divided by N",
    ),
    (
        "softmax_cross_entropy",
        "shifted = scores - scores.max(axis=1, keepdims=True)",
        "shifted = scores",
        "test_softmax_cross_entropy",
        "overflows for scores of 1000",
    ),
    (
        "cnn_loss",
        "dh = relu_backward(da, relu_cache)",
        "dh = da",
        "test_cnn_loss",
        r"never called relu_backward: the ReLU's backward pass is missing",
    ),
    (
        "cnn_loss",
        "return scores\n",
        "return softmax_cross_entropy(scores, np.zeros(len(x), dtype=int))[1]\n",
        "test_cnn_loss",
        r"without labels should return the scores",
    ),
    (
        "cnn_loss",
        "stride=1, pad=1)",
        "stride=1)",
        "test_cnn_loss",
        r"called conv_forward with pad = 0; it should be 1",
    ),
    (
        "cnn_loss",
        "maxpool_forward(a, size=2, stride=2)",
        "maxpool_forward(h, size=2, stride=2)",
        "test_cnn_loss",
        r"called maxpool_forward with x = conv_forward's output; it should be relu_forward's",
    ),
    (
        "cnn_loss",
        "da = maxpool_backward(dp, pool_cache)",
        "da = maxpool_backward(dp, relu_cache)",
        "test_cnn_loss",
        r"called maxpool_backward with cache = the cache of relu_forward; it should be the "
        r"cache of maxpool_forward",
    ),
    (
        "cnn_loss",
        '"w2": dw2, "b2": db2}',
        '"w2": dw2, "b2": db2 / len(x)}',
        "test_cnn_loss",
        r"grads\['b2'\] should be affine_backward's db",
    ),
    # caught only by the grader's half: the visible tests use other strides and shapes
    (
        "im2col",
        "seen = xp[:, :, i:i + stride * H_out:stride, j:j + stride * W_out:stride]",
        "seen = xp[:, :, i:i + H_out, j:j + W_out]",
        "test_im2col",
        r"GraderVerdict: im2col of x 2x3x7x6, 3x2 window, stride 2, pad 1 is wrong; "
        r"it looks like the stride was ignored",
    ),
    (
        "maxpool_forward",
        "H_out = conv_output_size(H, size, stride)\n    W_out = conv_output_size(W, size, stride)",
        "H_out, W_out = H // stride, W // stride",
        "test_maxpool_forward",
        r"GraderVerdict: out for x 2x2x5x9, size 3, stride 1 has shape \(2, 2, 5, 9\), "
        r"expected \(2, 2, 3, 7\)",
    ),
]


def _grade_id(cell: nbformat.NotebookNode) -> str:
    return nbgrader_meta(cell).get("grade_id", "")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[MistakeKernel]:
    with mistake_kernel(NOTEBOOK, LAST_TEST, SKIPPED, tmp_path_factory.mktemp("nb03")) as k:
        yield k


# the common-mistake tests, the same for every assignment (conftest.mistake_tests)
globals().update(mistake_tests(NOTEBOOK, MISTAKES_03, grader_alone=False))


# ------------------------------------------------------------------- one mistake, one exercise

# A mistake in one layer costs that layer's test only: the backward tests check against PyTorch's
# forward pass (not the student's), conv_forward's against PyTorch's conv2d (not the student's
# conv_forward_naive), and cnn_loss runs with stand-ins for the layers, in the visible half and
# in the grader's. Before that, conv_forward's mistake below cost 8 of 30 points (its own test,
# cnn_loss and the training test), relu_backward's 5, conv_forward_naive's 9, maxpool_forward's
# 8, affine_forward's 6 and softmax_cross_entropy's 8. (im2col's mistakes still cost
# conv_forward's points too: exercise 4 is a convolution *through your im2col*.)
ONE_EXERCISE = [
    ("conv_forward", "out = out.reshape(F, N, H_out, W_out).transpose(1, 0, 2, 3)",
     "out = out.reshape(N, F, H_out, W_out)", "test_conv_forward"),
    ("relu", "return dout * (x > 0)", "return dout * np.maximum(x, 0)", "test_relu"),
    ("relu", "return np.maximum(x, 0), x", "return np.abs(x), x", "test_relu"),
    ("conv_forward_naive", "np.sum(window * w[f])", "np.sum(window * w[f, :, ::-1, ::-1])",
     "test_conv_forward_naive"),
    ("maxpool_forward", "out[:, :, r, c] = window.max(axis=(2, 3))",
     "out[:, :, r, c] = window.mean(axis=(2, 3))", "test_maxpool_forward"),
    ("affine_forward", "out = x.reshape(x.shape[0], -1) @ w + b",
     "out = x.reshape(x.shape[0], -1) @ w", "test_affine_forward"),
    ("softmax_cross_entropy", "return float(loss), dscores / N", "return float(loss), dscores",
     "test_softmax_cross_entropy"),
    ("conv_backward", "db = dout.sum(axis=(0, 2, 3))", "db = dout.mean(axis=(0, 2, 3))",
     "test_conv_backward"),
]


@pytest.mark.parametrize("mistake", ONE_EXERCISE,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(ONE_EXERCISE)])
def test_one_mistake_costs_only_its_own_exercises_points(kernel, mistake):
    """Every graded cell (visible tests, then the grader's verdict) with one mistake in: only
    the mistaken exercise's test fails."""
    meta = {gid: nbgrader_meta(cell) for gid, cell in kernel.cells.items()}
    graded = [gid for gid, m in meta.items() if m.get("grade")]
    failing = kernel.failing_tests(mistake, graded)
    lost = sum(meta[gid]["points"] for gid in failing)
    print(f"{mistake[0]} with {mistake[2]!r}: {lost} of {sum(meta[g]['points'] for g in graded)} "
          f"points lost, in {sorted(failing)}")
    assert set(failing) == {mistake[3]}, failing
    assert lost == meta[mistake[3]]["points"]


def test_training_is_not_graded_and_skipped_while_grading():
    """Training depends on every layer, so it would charge each layer's mistake again: it is a
    locked cell without points, skipped while grading (which saves its second of run time)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if _grade_id(c) == "train_digits")
    assert not nbgrader_meta(cell)["grade"] and nbgrader_meta(cell)["locked"]
    assert cell.source.startswith("if GRADING:")
    assert "train_sgd(cnn_loss" in cell.source


# ----------------------------------------------------------------------------- the grader's half

# Mistakes the grader must catch on its own, with the visible tests skipped (as a kernel that
# rewrites its cells could): only the hidden half of the test cell is run.
GRADER_ALONE = [
    ("conv_output_size", "if span < 0 or span % stride != 0:", "if span < 0:",
     "test_conv_output_size", "should raise ValueError"),
    ("conv_output_size", "return span // stride + 1", "return span / stride + 1",
     "test_conv_output_size", "should be an int"),
    ("conv_output_size", "span = side + 2 * pad - k", "span = side + pad - k",
     "test_conv_output_size", "padding is added on both sides"),
    ("conv_forward_naive", "return out, (x, w, b, stride, pad)", "return out, (x, w, b)",
     "test_conv_forward_naive", r"the cache for .* should be the tuple \(x, w, b, stride, pad\)"),
    ("conv_forward_naive", "np.sum(window * w[f]) + b[f]", "np.sum(window * w[f])",
     "test_conv_forward_naive", "the bias is missing"),
    ("conv_forward_naive", "np.sum(window * w[f])", "np.sum(window[0] * w[f, 0])",
     "test_conv_forward_naive", "only the first input channel was used"),
    ("conv_forward_naive", "np.sum(window * w[f])", "np.sum(window * w[f, :, ::-1, ::-1])",
     "test_conv_forward_naive", "the kernel was flipped"),
    ("im2col", "return cols.reshape(C * HH * WW, N * H_out * W_out)",
     "return cols.transpose(1, 2, 0, 3, 4, 5).reshape(C * HH * WW, N * H_out * W_out)",
     "test_im2col", "the channel must come first"),
    ("conv_forward", "out = out.reshape(F, N, H_out, W_out).transpose(1, 0, 2, 3)",
     "out = out.reshape(N, F, H_out, W_out)", "test_conv_forward", "without swapping the axes"),
    ("conv_backward", "w[:, :, i, j])", "w[:, :, HH - 1 - i, WW - 1 - j])",
     "test_conv_backward", "not rotated by 180 degrees"),
    ("conv_backward", "dx = dx_pad[:, :, pad:pad + H, pad:pad + W]",
     "dx = dx_pad[:, :, pad:-pad, pad:-pad]", "test_conv_backward",
     r"dx is empty .* \[pad:pad \+ H\]"),
    ("conv_backward", "db = dout.sum(axis=(0, 2, 3))", "db = dout.mean(axis=(0, 2, 3))",
     "test_conv_backward", "db was averaged instead of summed"),
    ("relu", "return dout * (x > 0)", "return dout * (x >= 0)", "test_relu",
     "slope at x = 0 should be 0"),
    ("relu", "return np.maximum(x, 0), x", "return np.maximum(x, 0), np.maximum(x, 0)",
     "test_relu", r"the cache of relu_forward .* is wrong"),
    ("maxpool_forward", "out[:, :, r, c] = window.max(axis=(2, 3))",
     "out[:, :, r, c] = window.max(axis=(1, 2, 3))[:, None]", "test_maxpool_forward",
     "the channels were pooled together"),
    ("maxpool_backward", "dx[n, ch, r * stride + i, c * stride + j] += dout[:, :, r, c]",
     "dx[:, :, r * stride:r * stride + size, c * stride:c * stride + size] += "
     "dout[:, :, r, c, None, None] / size**2", "test_maxpool_backward", "spread evenly"),
    ("maxpool_backward", "dx[n, ch, r * stride + i, c * stride + j] += dout[:, :, r, c]",
     "dx[n, ch, r * stride + i, c * stride + j] = dout[:, :, r, c]", "test_maxpool_backward",
     r"add the gradients \(\+=\) instead of overwriting"),
    ("affine_forward", "out = x.reshape(x.shape[0], -1) @ w + b",
     "out = x.reshape(x.shape[0], -1) @ w", "test_affine_forward", "the bias is missing"),
    ("affine_forward", "return out, (x, w, b)", "return out, (x.reshape(len(x), -1), w, b)",
     "test_affine_forward", r"cache\[0\] for .* \(should be x\)"),
    ("affine_backward", "db = dout.sum(axis=0)", "db = dout.mean(axis=0)",
     "test_affine_backward", "db was averaged"),
    ("softmax_cross_entropy", "loss = -log_probs[rows, y].mean()",
     "loss = -log_probs[rows, y].sum()", "test_softmax_cross_entropy",
     "summed instead of averaged"),
    ("softmax_cross_entropy", "return float(loss), dscores / N", "return float(loss), dscores",
     "test_softmax_cross_entropy", "dscores was not divided by N"),
    ("softmax_cross_entropy", "shifted = scores - scores.max(axis=1, keepdims=True)",
     "shifted = scores", "test_softmax_cross_entropy", "overflows for scores of size"),
    ("cnn_loss", "dh = relu_backward(da, relu_cache)", "dh = da", "test_cnn_loss",
     r"never called relu_backward: the ReLU's backward pass is missing .*\(N=\d"),
    ("cnn_loss", "stride=1, pad=1)", "stride=1)", "test_cnn_loss",
     r"called conv_forward with pad = 0; it should be 1 \(N="),
]


@pytest.mark.parametrize(
    "mistake", GRADER_ALONE, ids=[f"{m[0]}-{i}" for i, m in enumerate(GRADER_ALONE)]
)
def test_the_grader_alone_catches_common_mistakes(kernel, mistake):
    test_id = mistake[3]
    assert not kernel.run(kernel.half(test_id, "hidden"), test_id), (
        "the correct answer fails the grader")
    print(f"{mistake[0]} with {mistake[2]!r} -> {kernel.check_mistake(mistake, 'hidden')}")


def test_every_hidden_test_has_a_grader_half_and_fresh_inputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    graded = {_grade_id(c) for c in nb.cells if nbgrader_meta(c).get("grade")}
    tests = hidden_tests("03_cnn_layers")
    assert set(tests.checkers) == graded == set(tests.makers)
    one, two = tests.make_cases(1), tests.make_cases(2)
    for gid in graded:
        assert json.dumps(encode(one[gid])) != json.dumps(encode(two[gid])), gid
        assert json.dumps(encode(one[gid])) == json.dumps(encode(tests.make_cases(1)[gid]))
    assert "sit471.reference" not in NOTEBOOK.read_text()


@pytest.mark.xdist_group(demo_group("03_cnn_layers"))
def test_source_notebook_passes_the_graders_verdicts(tmp_path_factory):
    """The demo's "reference" student (the source's answers in the release), as autograding
    ran it in tests/test_demo.py's batch: no cell shows an error, so every visible test and
    every verdict passes. (Its time: benchmarks/notebook_times.py, with the 45 s budget.)"""
    _, out = graded_demo(tmp_path_factory, "03_cnn_layers")
    nb = autograded(out, "reference", "03_cnn_layers", NOTEBOOK.name)
    graded = [c for c in nb.cells if nbgrader_meta(c).get("grade")]
    assert graded and all(c.get("execution_count") for c in graded), "it did not run"
    for cell in nb.cells:
        assert not errors(cell), (nbgrader_meta(cell).get("grade_id"), errors(cell))


# ----------------------------------------------------------------------------- hidden-test shapes

# The shapes of the hidden tests (in the grader's module). The reference, which grades against
# them, must agree with torch on every one of them to 1e-10 in float64.
HIDDEN_CONV = sorted(set(CONV_NAIVE + CONV_FAST + CONV_BACKWARD))  # (N, C, H, W, F, HH, WW, s, p)
HIDDEN_POOL = POOL  # ((N, C, H, W), size, stride)
HIDDEN_SOFTMAX = SOFTMAX  # (N, K)


def _hidden_cases() -> list[Case]:
    cases = []
    for N, C, H, W, F, HH, WW, stride, pad in HIDDEN_CONV:
        for layer in ("conv", "conv_naive"):
            shapes = ((N, C, H, W), (F, C, HH, WW), (F,))
            cases.append(Case(layer, shapes, {"stride": stride, "pad": pad}))
    cases += [Case("maxpool", (x,), {"size": k, "stride": s}) for x, k, s in HIDDEN_POOL]
    cases += [Case("softmax_ce", ((N, K),), seed=7) for N, K in HIDDEN_SOFTMAX]
    return cases


@pytest.mark.parametrize("case", _hidden_cases(), ids=str)
def test_reference_matches_torch_on_hidden_test_cases(case):
    assert torch_mismatches(case) == []  # tolerance 1e-10 relative to the largest torch value


# ----------------------------------------------------------------------------- sit471.cnn


def _namespace_with_cnn_loss(body: str) -> dict:
    """A namespace (like a notebook's) holding a cnn_loss with the given body."""
    namespace: dict = {"np": np}
    exec(f"def cnn_loss(params, x, y=None):\n{body}", namespace)  # noqa: S102
    return namespace


def test_stand_ins_compute_nothing_and_are_removed_afterwards():
    from sit471.cnn import check_cnn_wiring, run_with_stand_ins, stand_in_values

    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(size=(2, 1, 3, 3)), "b1": np.zeros(2),
              "w2": rng.normal(size=(8, 3)), "b2": np.zeros(3)}
    x, y = rng.normal(size=(3, 1, 4, 4)), np.array([0, 1, 2])
    values = stand_in_values(params, x, seed=1)
    namespace = _namespace_with_cnn_loss("    return conv_forward(x, params['w1'], params['b1'], "
                                         "pad=1)[0]\n")
    namespace["relu_forward"] = 1.5  # the student's own, put back afterwards
    result, calls = run_with_stand_ins(namespace["cnn_loss"], params, x, None, values)
    assert np.array_equal(result, values["h"]) and result is not values["h"]  # a copy
    assert calls["conv_forward"][0][3:] == [1, 1] and calls["relu_forward"] == []
    assert namespace["relu_forward"] == 1.5 and "conv_forward" not in namespace
    with pytest.raises(AssertionError, match="cnn_loss never called relu_forward"):
        check_cnn_wiring(result, calls, params, x, None, values)
    broken = _namespace_with_cnn_loss("    raise ValueError('a bug')\n")
    with pytest.raises(ValueError, match="a bug"):
        run_with_stand_ins(broken["cnn_loss"], params, x, y, values)
    assert "conv_forward" not in broken and "relu_backward" not in broken
    with pytest.raises(TypeError, match="defined in the notebook"):
        run_with_stand_ins(np.sum, params, x, y, values)


def test_directional_derivatives_agree_with_torch_autograd_and_catch_wrong_gradients():
    import torch

    from sit471.checks import check_directional_derivatives

    rng = np.random.default_rng(3)
    a, c = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    f = lambda: float(np.sum(np.tanh(a) * c) + np.sum(a**3) / 3)  # noqa: E731
    t = torch.tensor(a, requires_grad=True)
    (torch.tanh(t) * torch.from_numpy(c)).sum().add((t**3).sum() / 3).backward()
    right, before = t.grad.numpy(), a.copy()
    assert check_directional_derivatives(right, f, a, "g") < 1e-8
    assert np.array_equal(a, before), "a must be restored"
    off = right.copy()
    off[1, 2, 3] += 1e-3  # one entry of sixty off by 0.1 %
    with pytest.raises(AssertionError, match="disagrees with the numerical derivative"):
        check_directional_derivatives(off, f, a, "g")
    with pytest.raises(AssertionError, match="wrong sign"):
        check_directional_derivatives(-right, f, a, "g")
    with pytest.raises(AssertionError, match=r"has shape \(60,\), expected \(3, 4, 5\)"):
        check_directional_derivatives(right.ravel(), f, a, "g")

    def failing():
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        check_directional_derivatives(right, failing, a, "g")
    assert np.array_equal(a, before), "a must be restored when f raises"


def test_receptive_fields_follow_the_recurrence():
    from sit471.cnn import receptive_fields

    stack = [("conv", 3, 1), ("pool", 2, 2), ("conv", 3, 1), ("pool", 2, 2), ("conv", 3, 1)]
    assert [(size, jump) for _, size, jump in receptive_fields(stack)] == [
        (3, 1),
        (4, 2),
        (8, 2),
        (10, 4),
        (18, 4),
    ]
    assert receptive_fields([("conv 11 / 4", 11, 4)]) == [("conv 11 / 4", 11, 4)]


def test_figure_helpers_draw_without_error():
    import matplotlib.pyplot as plt

    from sit471.cnn import (
        show_images,
        show_receptive_fields,
        show_sliding_window,
        show_training,
    )

    rng = np.random.default_rng(0)
    fig = show_images(rng.normal(size=(5, 3, 3)), titles=list("abcde"), ncols=3, symmetric=True)
    assert len([ax for ax in fig.axes if ax.images]) == 5 and len(fig.axes) == 6
    show_images(np.zeros((2, 4, 4)), shared=False)  # constant images: no division by zero
    with pytest.raises(ValueError, match=r"\(M, h, w\)"):
        show_images(np.zeros((4, 4)))
    show_sliding_window(side=5, k=3, stride=2, pad=1, positions=[(0, 0), (1, 2)])
    show_receptive_fields([("conv", 3, 1), ("pool", 2, 2)], side=8)
    show_training(
        {"loss": list(np.linspace(2, 0.1, 50)), "train_acc": [0.5, 0.9], "val_acc": [0.4, 0.8]}
    )
    show_training({"loss": [1.0]})
    plt.close("all")
