"""Assignment 03 (CNNs from scratch): common mistakes are caught with a message that names them,
and the figure helpers of sit471.cnn work.

Each mistake is put into one answer of the source notebook (in a kernel that has run the
notebook, figure and exploration cells left out), and the test cell that must catch it has to
fail with a message that names the mistake.
"""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib
import nbformat
import numpy as np
import pytest
from conftest import COURSE, MistakeKernel, mistake_kernel, nbgrader_meta
from test_layers_reference import Case, torch_mismatches

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
        r"right values but shape \(3, 8\), expected \(3, 2, 4\)",
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
        r"grads\['w1'\] disagrees with the numerical gradient",
    ),
    (
        "cnn_loss",
        "return scores\n",
        "return softmax_cross_entropy(scores, np.zeros(len(x), dtype=int))[1]\n",
        "test_cnn_loss",
        r"scores with w2 = 0, b2 = \[1, 2, 3\]",
    ),
]


def _grade_id(cell: nbformat.NotebookNode) -> str:
    return nbgrader_meta(cell).get("grade_id", "")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[MistakeKernel]:
    with mistake_kernel(NOTEBOOK, LAST_TEST, SKIPPED, tmp_path_factory.mktemp("nb03")) as k:
        yield k


@pytest.mark.parametrize(
    "mistake", MISTAKES_03, ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES_03)]
)
def test_assignment_03_catches_common_mistakes(kernel, mistake):
    print(f"{mistake[0]} with {mistake[2]!r} -> {kernel.check_mistake(mistake)}")


def test_every_test_passes_again_after_the_mistakes(kernel):
    for test_id in sorted({m[3] for m in MISTAKES_03}):
        assert not kernel.run(kernel.cells[test_id].source), test_id


def test_mistake_table_covers_every_exercise():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    answers = {_grade_id(c) for c in nb.cells if nbgrader_meta(c).get("solution")}
    assert answers == {m[0] for m in MISTAKES_03}


# ----------------------------------------------------------------------------- hidden-test shapes

# The cases of the notebook's hidden tests (each must appear literally in the notebook, so the
# two lists cannot drift apart). The reference, which grades against them, must agree with
# torch on every one of them to 1e-10 in float64.
HIDDEN_CONV = [  # (N, C, H, W, F, HH, WW, stride, pad)
    (1, 1, 5, 5, 1, 3, 3, 1, 0),
    (2, 3, 7, 6, 4, 3, 2, 2, 1),
    (1, 2, 7, 6, 3, 2, 4, 3, 2),
    (3, 1, 4, 5, 2, 1, 1, 1, 2),
    (2, 2, 9, 9, 2, 5, 3, 2, 0),
    (1, 3, 4, 4, 5, 4, 4, 1, 0),
    (4, 3, 8, 8, 6, 3, 3, 1, 1),
    (2, 3, 6, 6, 4, 3, 3, 1, 1),
]
HIDDEN_POOL = [  # ((N, C, H, W), size, stride)
    ((1, 1, 4, 4), 2, 2),
    ((2, 3, 7, 7), 3, 2),
    ((2, 2, 5, 9), 3, 1),
    ((1, 4, 6, 9), 3, 3),
    ((3, 1, 7, 4), 1, 3),
    ((2, 2, 8, 8), 4, 2),
]
HIDDEN_SOFTMAX = [(1, 10), (5, 4), (8, 2), (32, 10)]  # (N, K)


def _hidden_cases() -> list[Case]:
    cases = []
    for N, C, H, W, F, HH, WW, stride, pad in HIDDEN_CONV:
        for layer in ("conv", "conv_naive"):
            shapes = ((N, C, H, W), (F, C, HH, WW), (F,))
            cases.append(Case(layer, shapes, {"stride": stride, "pad": pad}))
    cases += [Case("maxpool", (x,), {"size": k, "stride": s}) for x, k, s in HIDDEN_POOL]
    cases += [Case("softmax_ce", ((N, K),), seed=7) for N, K in HIDDEN_SOFTMAX]
    return cases


def test_hidden_test_cases_are_the_notebooks():
    text = NOTEBOOK.read_text()
    for case in HIDDEN_CONV + HIDDEN_POOL + HIDDEN_SOFTMAX:
        assert str(case) in text, f"{case} is not a hidden-test case of {NOTEBOOK.name}"


@pytest.mark.parametrize("case", _hidden_cases(), ids=str)
def test_reference_matches_torch_on_hidden_test_cases(case):
    assert torch_mismatches(case) == []  # tolerance 1e-10 relative to the largest torch value


# ----------------------------------------------------------------------------- sit471.cnn


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
