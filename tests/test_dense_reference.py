"""sit471.reference.dense checked against outside references: torch's interpolate,
conv_transpose2d and adaptive_avg_pool2d, hand-computed confusion matrices, brute-force
loops and numerical sums of Gaussians."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_sweep import Case, torch_mismatches

from sit471.reference.dense import (
    PyramidPooling,
    bilinear_kernel,
    confusion_matrix,
    density_map,
    depth_metrics,
    iou_from_confusion,
    pixel_accuracy,
    scale_invariant_loss,
)


def test_confusion_matrix_by_hand():
    target = np.array([[0, 0, 1], [2, 255, 1]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    conf = confusion_matrix(pred, target, 4)
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 0] = 1  # true 0 predicted 0
    expected[0, 1] = 1
    expected[1, 1] = 1
    expected[1, 2] = 1
    expected[2, 1] = 1
    np.testing.assert_array_equal(conf, expected)
    assert pixel_accuracy(conf) == pytest.approx(2 / 5)
    iou, miou = iou_from_confusion(conf)
    # class 0: tp 1, fp 0, fn 1 -> 1/2; class 1: tp 1, fp 2, fn 1 -> 1/4;
    # class 2: tp 0, fp 1, fn 1 -> 0; class 3 absent -> nan, not in the mean
    np.testing.assert_allclose(iou[:3], [0.5, 0.25, 0.0])
    assert np.isnan(iou[3])
    assert miou == pytest.approx((0.5 + 0.25 + 0.0) / 3)


def test_confusion_matrix_accumulates_and_brute_force():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 5, (3, 7, 9))
    t[rng.random(t.shape) < 0.2] = 255
    p = rng.integers(0, 5, t.shape)
    total = confusion_matrix(p[:1], t[:1], 5) + confusion_matrix(p[1:], t[1:], 5)
    brute = np.zeros((5, 5), dtype=int)
    for a, b in zip(t.ravel(), p.ravel(), strict=True):
        if a != 255:
            brute[a, b] += 1
    np.testing.assert_array_equal(total, brute)
    np.testing.assert_array_equal(confusion_matrix(p, t, 5), brute)
    # sklearn agrees
    from sklearn.metrics import confusion_matrix as sk_cm
    keep = t.ravel() != 255
    np.testing.assert_array_equal(brute, sk_cm(t.ravel()[keep], p.ravel()[keep], labels=range(5)))
    iou, miou = iou_from_confusion(brute)
    from sklearn.metrics import jaccard_score
    np.testing.assert_allclose(iou, jaccard_score(t.ravel()[keep], p.ravel()[keep],
                                                  average=None, labels=range(5)))


def test_all_ignored_and_errors():
    t = np.full((4, 4), 255)
    conf = confusion_matrix(np.zeros((4, 4), int), t, 3)
    assert conf.sum() == 0
    assert np.isnan(pixel_accuracy(conf))
    iou, miou = iou_from_confusion(conf)
    assert np.isnan(iou).all() and np.isnan(miou)
    with pytest.raises(ValueError):
        confusion_matrix(np.zeros(3, int), np.zeros(4, int), 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([5]), np.array([0]), 3)


BILINEAR_CASES = [Case("up", ((2, 3, 6, 5),), {"s": 2}), Case("up", ((2, 3, 6, 5),), {"s": 4}),
                  Case("up", ((1, 1, 4, 7),), {"s": 2}, seed=1),
                  Case("up", ((3, 2, 5, 5),), {"s": 4}, seed=2)]


@pytest.mark.parametrize("case", BILINEAR_CASES, ids=str)
def test_bilinear_kernel_matches_interpolate(case):
    s, channels = case.params["s"], case.shapes[0][1]
    w = bilinear_kernel(channels, channels, 2 * s)
    assert w.shape == (channels, channels, 2 * s, 2 * s)
    # away from the border (where interpolate clamps), identical: values and gradients
    b = s

    def up(x):
        return F.conv_transpose2d(x, w.to(x.dtype), stride=s, padding=s // 2)[..., b:-b, b:-b]

    def interpolate(x):
        y = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        return y[..., b:-b, b:-b]

    assert torch_mismatches(up, interpolate, case.inputs(), ["dx"], seed=case.seed) == []
    # off-diagonal channel pairs are zero, and the 1-D filter for k=4 is (1, 3, 3, 1) / 4
    if channels > 1:
        assert w[0, 1].abs().sum() == 0
    if s == 2:
        f = torch.tensor([0.25, 0.75, 0.75, 0.25])
        torch.testing.assert_close(w[-1, -1], f[:, None] * f[None, :])


def test_bilinear_kernel_odd():
    w = bilinear_kernel(1, 1, 3)
    f = torch.tensor([0.5, 1.0, 0.5])
    torch.testing.assert_close(w[0, 0], f[:, None] * f[None, :])


def test_pyramid_pooling_against_independent_version():
    torch.manual_seed(1)
    x = torch.randn(2, 8, 12, 12)
    ppm = PyramidPooling(8)
    out = ppm(x)
    assert out.shape == (2, 8 + 4 * 2, 12, 12)
    torch.testing.assert_close(out[:, :8], x)
    for i, b in enumerate((1, 2, 3, 6)):
        conv = ppm.branches[i]
        # pooling by hand: 12 / b blocks
        k = 12 // b
        pooled = x.reshape(2, 8, b, k, b, k).mean(dim=(3, 5))
        torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(x, b))
        y = torch.relu(torch.einsum("oc,nchw->nohw", conv.weight[:, :, 0, 0], pooled)
                       + conv.bias[None, :, None, None])
        ref = F.interpolate(y, size=(12, 12), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out[:, 8 + 2 * i: 10 + 2 * i], ref)
    # bin 1 branch is constant over the image
    assert torch.allclose(out[:, 8:10], out[:, 8:10, :1, :1].expand(-1, -1, 12, 12))
    # odd sizes work
    assert ppm(torch.randn(1, 8, 7, 11)).shape == (1, 16, 7, 11)


@pytest.mark.parametrize("case", [Case("si", ((3, 5, 6),) * 2), Case("si", ((1, 4, 3),) * 2),
                                  Case("si", ((2, 1, 5, 7),) * 2, seed=1)], ids=str)
def test_scale_invariant_loss_without_invariance_is_mse(case):
    """lam = 0: L2 on log depth, torch's mse_loss (every image has the same pixel count)."""
    assert torch_mismatches(lambda p, t: scale_invariant_loss(p, t, lam=0.0), F.mse_loss,
                            case.inputs(), ["dpred", "dtarget"]) == []


def test_scale_invariant_loss():
    torch.manual_seed(2)
    p, t = torch.randn(3, 5, 6), torch.randn(3, 5, 6)
    d = (p - t).reshape(3, -1)
    ref = np.mean([(di ** 2).mean() - 0.5 * di.mean() ** 2 for di in d])
    assert scale_invariant_loss(p, t).item() == pytest.approx(float(ref), rel=1e-5)
    # lam = 1: adding a constant per image (a global scale on depth) changes nothing
    shift = torch.tensor([0.3, -1.0, 2.0])[:, None, None]
    torch.testing.assert_close(scale_invariant_loss(p + shift, t, lam=1.0),
                               scale_invariant_loss(p, t, lam=1.0))
    mask = torch.rand(3, 5, 6) > 0.3
    ref_m = np.mean([((p[i] - t[i])[mask[i]] ** 2).mean() - 0.5 * (p[i] - t[i])[mask[i]].mean()
                     ** 2 for i in range(3)])
    assert scale_invariant_loss(p, t, mask=mask).item() == pytest.approx(float(ref_m), rel=1e-5)


def test_depth_metrics():
    t = np.array([1.0, 2.0, 4.0, 0.0])
    p = np.array([1.1, 3.0, 2.0, 5.0])  # last pixel has no target: ignored
    m = depth_metrics(p, t)
    assert m["abs_rel"] == pytest.approx((0.1 + 0.5 + 0.5) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((0.01 + 1 + 4) / 3))
    assert m["delta1"] == pytest.approx(1 / 3)   # ratios 1.1, 1.5, 2
    assert m["delta2"] == pytest.approx(2 / 3)   # 1.5625
    assert m["delta3"] == pytest.approx(2 / 3)   # 1.953 < 2
    perfect = depth_metrics(t[:3], t[:3])
    assert perfect == {"abs_rel": 0.0, "rmse": 0.0, "delta1": 1.0, "delta2": 1.0, "delta3": 1.0}


def test_density_map():
    pts = np.array([[10.0, 12.0], [30.5, 5.2], [-3.0, 4.0], [5.0, 40.0]])
    d = density_map(pts, (32, 40), sigma=2.0)
    assert d.shape == (32, 40)
    assert d.sum() == pytest.approx(2.0)  # two points inside
    # an interior Gaussian matches the analytic density (sum over a wide grid is ~1)
    one = density_map([[20.0, 16.0]], (32, 40), sigma=2.0)
    ys, xs = np.mgrid[0:32, 0:40]
    g = np.exp(-((xs - 20) ** 2 + (ys - 16) ** 2) / 8) / (2 * np.pi * 4)
    np.testing.assert_allclose(one, g, rtol=1e-6, atol=1e-9)
    assert np.unravel_index(one.argmax(), one.shape) == (16, 20)
    # a point near the border still counts as one whole person
    edge = density_map([[0.0, 0.0]], (16, 16), sigma=3.0)
    assert edge.sum() == pytest.approx(1.0)
    assert density_map(np.zeros((0, 2)), (5, 6), 1.0).sum() == 0
