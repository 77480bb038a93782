"""Checks of the NumPy reference CNN layers (sit471.reference.layers) against torch, in float64."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
import torch_sweep
from torch_sweep import Case, mismatches, results

from sit471.reference import layers as L

TOL = 1e-10


# ----------------------------------------------------------------------------- the torch helper


@dataclass(frozen=True)
class Layer:
    forward: Callable
    backward: Callable | None  # None: the forward already returns (loss, dscores)
    torch_fn: Callable
    grad_names: tuple[str, ...]


LAYERS = {
    "conv": Layer(L.conv_forward, L.conv_backward, TF.conv2d, ("dx", "dw", "db")),
    "conv_naive": Layer(L.conv_forward_naive, L.conv_backward, TF.conv2d, ("dx", "dw", "db")),
    "maxpool": Layer(L.maxpool_forward, L.maxpool_backward, TF.max_pool2d, ("dx",)),
    "relu": Layer(L.relu_forward, L.relu_backward, TF.relu, ("dx",)),
    "affine": Layer(
        L.affine_forward,
        L.affine_backward,
        lambda x, w, b: TF.linear(x.flatten(1), w.T, b),
        ("dx", "dw", "db"),
    ),
    "softmax_ce": Layer(L.softmax_cross_entropy, None, TF.cross_entropy, ("dscores",)),
}
TORCH_KWARGS = {"pad": "padding", "size": "kernel_size"}  # our argument names -> torch's


def torch_mismatches(
    case: Case, forward: Callable | None = None, backward: Callable | None = None
) -> list[str]:
    """Run ``case`` through our layer (or the given forward/backward) and through torch.

    Returns the names ("out", "dx", "dw", ...) of results that disagree (torch_sweep's rule,
    tolerance TOL); an empty list means agreement.
    """
    layer = LAYERS[case.op]
    forward = forward or layer.forward
    backward = backward or layer.backward
    rng = np.random.default_rng(case.seed)
    inputs: list[Any] = case.inputs(rng)
    if case.op == "softmax_ce":  # labels are the second input
        inputs.append(rng.integers(0, case.shapes[0][1], size=case.shapes[0][0]))
    grads = [layer.grad_names[k] if a.dtype == np.float64 else None for k, a in enumerate(inputs)]
    torch_inputs = [a.copy() for a in inputs]  # as they were before our layer ran

    if backward is None:
        out, dscores = forward(*inputs, **case.params)
        ours, dout = dict(zip(("out", *layer.grad_names), (out, dscores), strict=True)), None
    else:
        out, cache = forward(*inputs, **case.params)
        dout = rng.standard_normal(np.shape(out))
        found = backward(dout, cache)
        found = found if isinstance(found, tuple) else (found,)
        ours = {"out": out, **dict(zip(layer.grad_names, found, strict=True))}
    torch_params = {TORCH_KWARGS.get(k, k): v for k, v in case.params.items()}
    expected = results(partial(layer.torch_fn, **torch_params), torch_inputs, grads, dout=dout)
    return mismatches(ours, expected, TOL)


def _fitting_side(out: int, k: int, stride: int, pad: int) -> int:
    """The input side that gives ``out`` outputs, growing ``out`` until that side is >= 1."""
    while (out - 1) * stride + k - 2 * pad < 1:
        out += 1
    return (out - 1) * stride + k - 2 * pad


def _random_conv_cases(n: int) -> list[Case]:
    """Random shapes that fit: strides 1-3, pads 0-2, kernels 1-5 (mostly non-square)."""
    cases = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        N, C, F, HH, WW, H_out, W_out = (int(v) for v in rng.integers(1, 6, size=7))
        stride, pad = int(rng.integers(1, 4)), int(rng.integers(0, 3))
        H, W = _fitting_side(H_out, HH, stride, pad), _fitting_side(W_out, WW, stride, pad)
        shapes = ((N, C, H, W), (F, C, HH, WW), (F,))
        cases.append(Case("conv", shapes, {"stride": stride, "pad": pad}, seed))
    return cases


CONV_CASES = [
    Case("conv", ((1, 1, 5, 5), (1, 1, 3, 3), (1,))),  # N = 1, C = 1
    Case("conv", ((1, 1, 7, 6), (2, 1, 3, 2), (2,)), {"stride": 2, "pad": 1}),
    Case("conv", ((2, 3, 7, 6), (4, 3, 2, 4), (4,)), {"stride": 3, "pad": 2}),
    Case("conv", ((3, 2, 4, 5), (3, 2, 1, 1), (3,)), {"stride": 1, "pad": 2}),
    Case("conv", ((2, 3, 9, 9), (2, 3, 5, 3), (2,)), {"stride": 2, "pad": 0}),
    *_random_conv_cases(20),
]
MAXPOOL_CASES = [
    Case("maxpool", ((1, 1, 4, 4),), {"size": 2, "stride": 2}),  # N = 1, C = 1
    Case("maxpool", ((2, 3, 7, 7),), {"size": 3, "stride": 2}),  # overlapping windows
    Case("maxpool", ((2, 2, 5, 9),), {"size": 3, "stride": 1}),
    Case("maxpool", ((1, 4, 6, 9),), {"size": 3, "stride": 3}),
    Case("maxpool", ((3, 1, 7, 4),), {"size": 1, "stride": 3}),
    Case("maxpool", ((2, 2, 8, 8),), {"size": 4, "stride": 2}),
]
OTHER_CASES = [
    Case("relu", ((2, 3, 4, 5),)),
    Case("relu", ((7,),)),
    Case("affine", ((4, 6), (6, 3), (3,))),
    Case("affine", ((1, 2, 3, 4), (24, 5), (5,))),
    Case("affine", ((3, 1, 5), (5, 1), (1,))),
    Case("softmax_ce", ((5, 4),)),
    Case("softmax_ce", ((1, 10),)),
    Case("softmax_ce", ((8, 2),), seed=3),
]
ALL_CASES = (
    CONV_CASES
    + [Case("conv_naive", c.shapes, c.params, c.seed) for c in CONV_CASES]
    + MAXPOOL_CASES
    + OTHER_CASES
)


@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_matches_torch(case: Case) -> None:
    assert torch_mismatches(case) == []


# ----------------------------------------------------------------------------- the helper can fail


def _forward_keeping_w(x, w, b, stride, pad):
    out, cache = L.conv_forward(x, w, b, stride, pad)
    return out, (cache, w, pad)


def _backward_by_full_conv(flip: bool) -> Callable:
    """dx as the textbook 'full convolution of dout with the flipped kernel' (stride 1)."""

    def backward(dout, my_cache):
        cache, w, pad = my_cache
        _, dw, db = L.conv_backward(dout, cache)
        w_t = w.transpose(1, 0, 2, 3)  # (C, F, K, K)
        if flip:
            w_t = w_t[:, :, ::-1, ::-1]
        dx, _ = L.conv_forward(dout, w_t, np.zeros(w.shape[1]), stride=1, pad=w.shape[2] - 1 - pad)
        return dx, dw, db

    return backward


def _maxpool_backward_spread_evenly(dout, my_cache):
    """Wrong: every pixel of a window gets an equal share (that is average pooling)."""
    (N, C, H, W), size, stride = my_cache
    dx = np.zeros((N, C, H, W))
    for r in range(dout.shape[2]):
        for c in range(dout.shape[3]):
            window = np.s_[:, :, r * stride : r * stride + size, c * stride : c * stride + size]
            dx[window] += dout[:, :, r, c, None, None] / size**2
    return dx


FLIP_CASES = [
    Case("conv", ((2, 3, 6, 6), (4, 3, 3, 3), (4,)), {"stride": 1, "pad": 0}),
    Case("conv", ((1, 2, 5, 5), (3, 2, 3, 3), (3,)), {"stride": 1, "pad": 1}),
]


@pytest.mark.parametrize("case", FLIP_CASES, ids=str)
def test_helper_catches_conv_backward_without_flip(case: Case) -> None:
    assert torch_mismatches(case, _forward_keeping_w, _backward_by_full_conv(flip=True)) == []
    assert torch_mismatches(case, _forward_keeping_w, _backward_by_full_conv(flip=False)) == ["dx"]


def test_helper_catches_maxpool_backward_spreading_evenly() -> None:
    def forward(x, size, stride):
        return L.maxpool_forward(x, size, stride)[0], (x.shape, size, stride)

    for case in MAXPOOL_CASES:
        found = torch_mismatches(case, forward, _maxpool_backward_spread_evenly)
        assert found == (["dx"] if case.params["size"] > 1 else []), case


def test_helper_catches_true_convolution_and_wrong_shape() -> None:
    case = CONV_CASES[1]

    def flipped_forward(x, w, b, stride, pad):  # convolution instead of cross-correlation
        return L.conv_forward(x, w[:, :, ::-1, ::-1], b, stride, pad)

    assert "out" in torch_mismatches(case, flipped_forward)

    def transposed_backward(dout, cache):
        dx, dw, db = L.conv_backward(dout, cache)
        return dx.swapaxes(2, 3), dw, db

    assert torch_mismatches(case, backward=transposed_backward) == ["dx"]


def test_sweep_helper_names_what_a_wrong_torch_version_spoils() -> None:
    inputs = Case("mse", ((4, 3), (4, 3))).inputs()
    grads = ["dp", "dt"]

    def same(p, t):
        return ((p - t) ** 2).mean()

    def no_grad_through_p(p, t):
        return ((p.detach() - t) ** 2).mean() + 0 * p.sum()

    def per_column(p, t):
        return ((p - t) ** 2).mean(0)

    assert torch_sweep.torch_mismatches(same, TF.mse_loss, inputs, grads) == []
    assert torch_sweep.torch_mismatches(no_grad_through_p, TF.mse_loss, inputs, grads) == ["dp"]
    assert torch_sweep.torch_mismatches(per_column, TF.mse_loss, inputs, grads) == [
        "out", "dp", "dt"]


# ----------------------------------------------------------------------------- naive vs im2col


@pytest.mark.parametrize("case", CONV_CASES[:8], ids=str)
def test_naive_and_im2col_agree_and_backward_takes_both_caches(case: Case) -> None:
    rng = np.random.default_rng(case.seed)
    x, w, b = (rng.standard_normal(s) for s in case.shapes)
    out_naive, cache_naive = L.conv_forward_naive(x, w, b, **case.params)
    out_fast, cache_fast = L.conv_forward(x, w, b, **case.params)
    np.testing.assert_allclose(out_naive, out_fast, rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out_fast.shape)
    for g_naive, g_fast in zip(
        L.conv_backward(dout, cache_naive), L.conv_backward(dout, cache_fast), strict=True
    ):
        np.testing.assert_allclose(g_naive, g_fast, rtol=1e-12, atol=1e-12)


def test_defaults() -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 6))
    w, b = np.ones((5, 3, 1, 1)), np.zeros(5)
    assert L.conv_forward(x, w, b)[0].shape == (2, 5, 4, 6)  # stride 1, pad 0
    assert L.conv_forward_naive(x, w, b)[0].shape == (2, 5, 4, 6)
    assert L.maxpool_forward(x)[0].shape == (2, 3, 2, 3)  # size 2, stride 2


# ----------------------------------------------------------------------------- numerical gradients


def numerical_gradient(f: Callable[[], float], a: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Centred differences of the scalar f() with respect to a (changed in place, then restored)."""
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        plus = f()
        a[i] = old - eps
        minus = f()
        a[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def distinct_values(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.01 apart, so no max-pool window has a tie within +-eps."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0


GRAD_CHECKS = {
    "conv": (
        lambda rng: [rng.standard_normal(s) for s in ((2, 3, 5, 6), (4, 3, 3, 2), (4,))],
        lambda x, w, b: L.conv_forward(x, w, b, stride=2, pad=1),
        L.conv_backward,
    ),
    "conv_naive": (
        lambda rng: [rng.standard_normal(s) for s in ((1, 2, 4, 4), (3, 2, 2, 3), (3,))],
        lambda x, w, b: L.conv_forward_naive(x, w, b, stride=1, pad=2),
        L.conv_backward,
    ),
    "maxpool": (
        lambda rng: [distinct_values(rng, (2, 3, 7, 7))],
        lambda x: L.maxpool_forward(x, size=3, stride=2),
        L.maxpool_backward,
    ),
    "relu": (
        lambda rng: [distinct_values(rng, (3, 4, 5)) + 0.005],  # no value near 0
        L.relu_forward,
        L.relu_backward,
    ),
    "affine": (
        lambda rng: [rng.standard_normal(s) for s in ((3, 2, 4), (8, 5), (5,))],
        L.affine_forward,
        L.affine_backward,
    ),
}


@pytest.mark.parametrize("name", GRAD_CHECKS)
def test_numerical_gradient(name: str) -> None:
    make_inputs, forward, backward = GRAD_CHECKS[name]
    rng = np.random.default_rng(1)
    inputs = make_inputs(rng)
    out, cache = forward(*inputs)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for a, grad in zip(inputs, grads, strict=True):
        numeric = numerical_gradient(lambda: float(np.sum(forward(*inputs)[0] * dout)), a)
        assert relative_error(grad, numeric) < 1e-7


def test_numerical_gradient_softmax_cross_entropy() -> None:
    rng = np.random.default_rng(2)
    scores, y = rng.standard_normal((6, 5)) * 3, rng.integers(0, 5, size=6)
    _, dscores = L.softmax_cross_entropy(scores, y)
    numeric = numerical_gradient(lambda: L.softmax_cross_entropy(scores, y)[0], scores)
    assert relative_error(dscores, numeric) < 1e-7


def test_softmax_cross_entropy_is_stable_for_huge_scores() -> None:
    scores = np.array([[1000.0, 0.0, -1000.0], [5000.0, 5000.0, 0.0]])
    loss, dscores = L.softmax_cross_entropy(scores, np.array([0, 2]))
    assert np.isfinite(loss) and np.all(np.isfinite(dscores))
    assert loss == pytest.approx((0.0 + 5000.0 + np.log(2)) / 2)


def test_relu_gradient_at_zero_is_zero_like_torch() -> None:
    x = np.array([-1.0, 0.0, 2.0])
    t = torch.tensor(x, requires_grad=True)
    TF.relu(t).backward(torch.ones(3))
    np.testing.assert_array_equal(L.relu_backward(np.ones(3), L.relu_forward(x)[1]), t.grad)


# ----------------------------------------------------------------------------- max-pool overlap


def test_overlapping_maxpool_windows_add_up() -> None:
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0  # the max of all four 3x3 windows (stride 2)
    out, cache = L.maxpool_forward(x, size=3, stride=2)
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = L.maxpool_backward(dout, cache)
    assert dx[0, 0, 2, 2] == 10.0 and np.count_nonzero(dx) == 1
    t = torch.tensor(x, requires_grad=True)
    TF.max_pool2d(t, kernel_size=3, stride=2).backward(torch.from_numpy(dout))
    np.testing.assert_array_equal(dx, t.grad.numpy())


# ----------------------------------------------------------------------------- im2col / col2im


def test_im2col_shape_of_alexnet_first_layer() -> None:
    cols = L.im2col(np.zeros((1, 3, 227, 227)), 11, 11, stride=4, pad=0)
    assert cols.shape == (363, 3025)  # 3*11*11 rows, 55*55 windows


@pytest.mark.parametrize(
    ("x_shape", "HH", "WW", "stride", "pad"),
    [((2, 3, 7, 7), 3, 3, 2, 1), ((1, 2, 6, 5), 2, 3, 1, 0), ((3, 1, 8, 8), 4, 2, 2, 2)],
)
def test_col2im_is_the_adjoint_of_im2col(x_shape, HH, WW, stride, pad) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape)
    cols = L.im2col(x, HH, WW, stride, pad)
    c = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, c)
    rhs = np.vdot(x, L.col2im(c, x_shape, HH, WW, stride, pad))
    assert lhs == pytest.approx(rhs, rel=1e-12)


# ----------------------------------------------------------------------------- bad arguments


def _img(*shape: int) -> np.ndarray:
    return np.zeros(shape)


BAD_CALLS = [
    (
        lambda: L.conv_forward(_img(2, 3, 5, 5), _img(4, 4, 3, 3), _img(4)),
        "x has 3 channels but w expects 4",
    ),
    (
        lambda: L.conv_forward_naive(_img(2, 3, 5, 5), _img(4, 4, 3, 3), _img(4)),
        "x has 3 channels but w expects 4",
    ),
    (
        lambda: L.conv_forward(_img(2, 3, 5, 5), _img(4, 3, 3, 3), _img(5)),
        r"b has shape \(5,\) but w has 4 filters",
    ),
    (
        lambda: L.conv_forward(_img(2, 3, 5, 5), _img(4, 3, 7, 3), _img(4)),
        r"window of 7 with stride 1 and pad 0 does not fit a side of 5",
    ),
    (
        lambda: L.conv_forward(_img(2, 3, 6, 6), _img(4, 3, 3, 3), _img(4), stride=2),
        r"window of 3 with stride 2 and pad 0 does not fit a side of 6",
    ),
    (
        lambda: L.conv_forward(_img(2, 3, 5, 5), _img(4, 3, 3, 3), _img(4), stride=0),
        "stride must be a positive integer, got 0",
    ),
    (
        lambda: L.conv_forward(_img(2, 3, 5, 5), _img(4, 3, 3, 3), _img(4), pad=-1),
        "pad must be >= 0, got -1",
    ),
    (
        lambda: L.conv_forward(_img(3, 5, 5), _img(4, 3, 3, 3), _img(4)),
        r"x must be 4-D \(N, C, H, W\), got shape \(3, 5, 5\)",
    ),
    (
        lambda: L.maxpool_forward(_img(1, 1, 5, 5), size=2, stride=2),
        "window of 2 with stride 2 and pad 0 does not fit a side of 5",
    ),
    (
        lambda: L.im2col(_img(1, 1, 4, 4), 3, 3, stride=2, pad=0),
        "window of 3 with stride 2 and pad 0 does not fit a side of 4",
    ),
    (
        lambda: L.col2im(_img(9, 5), (1, 1, 4, 4), 3, 3, stride=1, pad=0),
        r"cols has shape \(9, 5\) but x_shape \(1, 1, 4, 4\) with a 3x3 window needs \(9, 4\)",
    ),
    (
        lambda: L.affine_forward(_img(2, 3, 4), _img(10, 5), _img(5)),
        r"x has 12 features per example but w has shape \(10, 5\)",
    ),
    (
        lambda: L.affine_forward(_img(2, 3, 4), _img(12, 5), _img(4)),
        r"b has shape \(4,\) but w has 5 outputs",
    ),
    (
        lambda: L.softmax_cross_entropy(_img(2, 3), np.array([0, 3])),
        r"y has labels out of range: got 0\.\.3, scores has 3 classes",
    ),
    (
        lambda: L.softmax_cross_entropy(_img(2, 3), np.array([-1, 0])),
        "y has labels out of range: got -1..0",
    ),
    (
        lambda: L.softmax_cross_entropy(_img(2, 3), np.array([0, 1, 2])),
        r"y must be 2 integer labels, got shape \(3,\)",
    ),
    (
        lambda: L.softmax_cross_entropy(_img(2, 3), np.array([0.0, 1.0])),
        "y must be 2 integer labels, got shape .* of float64",
    ),
]


@pytest.mark.parametrize(("call", "message"), BAD_CALLS, ids=[m for _, m in BAD_CALLS])
def test_bad_arguments_raise_value_error(call: Callable, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
