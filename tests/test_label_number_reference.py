"""sit471.reference.label_number checked against hand-computed cases, brute force and numerical
integration (torchvision is not available, so IoU and NMS are checked against independent
pixel-counting / plain-Python versions and their defining properties)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_sweep import Case, torch_mismatches

from sit471.reference.label_number import (
    RegressionHead,
    bin_centers,
    box_iou,
    detection_loss,
    expected_value,
    nms,
    regression_loss,
    verify,
)


def test_regression_head_and_loss():
    torch.manual_seed(0)
    head = RegressionHead(7)
    x = torch.randn(5, 7)
    out = head(x)
    assert out.shape == (5,)
    torch.testing.assert_close(out, x @ head.linear.weight[0] + head.linear.bias)
    pred, target = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.0, 2.0, 1.0])
    assert regression_loss(pred, target, "l2").item() == pytest.approx(10 / 3)
    assert regression_loss(pred, target, "l1").item() == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match="broadcast"):
        regression_loss(pred[:, None], target)
    with pytest.raises(ValueError, match="kind"):
        regression_loss(pred, target, "huber")


@pytest.mark.parametrize("case", [Case(kind, ((n,), (n,)), seed=n) for kind in ("l2", "l1")
                                  for n in (1, 3, 17)], ids=str)
def test_regression_loss_matches_torch(case):
    theirs = {"l2": F.mse_loss, "l1": F.l1_loss}[case.op]
    assert torch_mismatches(lambda p, t: regression_loss(p, t, case.op), theirs,
                            case.inputs(), ["dpred", "dtarget"]) == []


def test_bin_centers():
    torch.testing.assert_close(bin_centers(0, 10, 5), torch.tensor([1.0, 3.0, 5.0, 7.0, 9.0]))
    assert bin_centers(20, 80, 1).tolist() == [50.0]
    with pytest.raises(ValueError):
        bin_centers(5, 5, 3)


def test_expected_value_matches_numerical_integration():
    # A softmax over fine bins of a Gaussian's log-density is a discretised Gaussian: its
    # expected value tends to the integral of x p(x) dx, i.e. the mean.
    low, high, k = -10.0, 10.0, 2000
    centers = bin_centers(low, high, k).double()
    for mu, sigma in [(0.0, 1.0), (2.5, 0.7), (-3.0, 2.0)]:
        logits = (-0.5 * ((centers - mu) / sigma) ** 2)[None]
        xs = np.linspace(low, high, 200001)
        p = np.exp(-0.5 * ((xs - mu) / sigma) ** 2)
        mean = np.trapezoid(xs * p, xs) / np.trapezoid(p, xs)
        assert expected_value(logits, centers).item() == pytest.approx(mean, abs=1e-6)
    # equal logits: the mean of the centres; one huge logit: that centre
    c = torch.tensor([1.0, 2.0, 6.0])
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 100.0, 0.0]])
    torch.testing.assert_close(expected_value(logits, c), torch.tensor([3.0, 2.0]))
    with pytest.raises(ValueError):
        expected_value(torch.zeros(2, 3), torch.zeros(4))


def _pixel_iou(a, b):
    """IoU by counting pixels of integer boxes on a grid (an independent computation)."""
    grid = np.zeros((2, 20, 20), bool)
    for g, (x1, y1, x2, y2) in zip(grid, (a, b), strict=True):
        g[y1:y2, x1:x2] = True
    union = (grid[0] | grid[1]).sum()
    return (grid[0] & grid[1]).sum() / union if union else 0.0


def test_box_iou_hand_cases_and_pixel_counting():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 4.0, 2.0], [5, 5, 6, 6], [0, 0, 2, 2],
                      [0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 0.0, 0.0, 1.0, 0.25]]))
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 20, size=(60, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)  # (x1, y1, x2, y2)
    got = box_iou(torch.tensor(boxes), torch.tensor(boxes[::-1].copy()))
    want = np.array([[_pixel_iou(p, q) for q in boxes[::-1]] for p in boxes])
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    assert box_iou(torch.zeros(0, 4), torch.tensor(boxes)).shape == (0, 60)
    assert box_iou(torch.tensor(boxes), torch.zeros(0, 4)).shape == (60, 0)


def test_box_iou_errors():
    with pytest.raises(ValueError, match="negative size"):
        box_iou(torch.tensor([[2.0, 0, 1, 1]]), torch.tensor([[0.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(torch.zeros(3), torch.zeros(2, 4))


def _brute_nms(boxes, scores, thr, labels=None):
    """NMS as its definition: a box is kept iff no kept box of higher rank overlaps it."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= thr or (labels is not None and labels[i] != labels[j])
               for j in kept):
            kept.append(i)
    return kept


def _iou(p, q):
    w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - w * h
    return w * h / union if union > 0 else 0.0


def test_nms_hand_case_and_brute_force():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]
    assert nms(boxes, scores, 0.5, labels=torch.tensor([0, 1, 0, 0])).tolist() == [3, 1, 2]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).dtype == torch.int64
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(1, 25))
        xy = rng.uniform(0, 20, (n, 2))
        wh = rng.uniform(0, 8, (n, 2))
        b = np.concatenate([xy, xy + wh], 1)
        s = rng.permutation(n).astype(float)
        lab = rng.integers(0, 3, n)
        thr = float(rng.uniform(0.1, 0.8))
        assert nms(torch.tensor(b), torch.tensor(s), thr).tolist() == _brute_nms(b, s, thr)
        assert nms(torch.tensor(b), torch.tensor(s), thr, torch.tensor(lab)).tolist() \
            == _brute_nms(b, s, thr, lab)


def test_nms_properties():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 30, (40, 2))
    b = torch.tensor(np.concatenate([xy, xy + rng.uniform(1, 10, (40, 2))], 1))
    s = torch.tensor(rng.uniform(size=40))
    keep = nms(b, s, 0.4)
    assert torch.all(s[keep][:-1] >= s[keep][1:])  # highest score first
    iou = box_iou(b[keep], b[keep])
    assert float((iou - torch.eye(len(keep), dtype=iou.dtype)).max()) <= 0.4
    assert nms(b, s, 1.0).tolist() == torch.argsort(s, descending=True).tolist()
    same = torch.tensor([[0.0, 0, 2, 2]] * 3)
    assert nms(same, torch.tensor([0.1, 0.3, 0.2]), 0.5).tolist() == [1]
    touching = torch.tensor([[0.0, 0, 2, 2], [2.0, 0, 4, 2]])
    assert nms(touching, torch.tensor([0.1, 0.3]), 0.0).tolist() == [1, 0]
    with pytest.raises(ValueError):
        nms(b, s[:-1], 0.5)


def test_detection_loss_by_hand():
    torch.manual_seed(0)
    pred = torch.randn(2, 3, 3, 5 + 4, requires_grad=True)
    obj = torch.zeros(2, 3, 3)
    obj[0, 1, 2] = obj[1, 0, 0] = 1
    boxes = torch.rand(2, 3, 3, 4)
    labels = torch.randint(0, 4, (2, 3, 3))
    loss = detection_loss(pred, obj, boxes, labels, box_weight=2.0, class_weight=0.5)
    bce = np.mean([np.log1p(np.exp(-z)) if t else np.log1p(np.exp(z))
                   for z, t in zip(pred[..., 0].detach().numpy().ravel(), obj.numpy().ravel(),
                                   strict=True)])
    cells = [(0, 1, 2), (1, 0, 0)]
    l1 = np.mean([np.abs(pred[c][1:5].detach().numpy() - boxes[c].numpy()) for c in cells])
    ce = np.mean([-np.log(np.exp(pred[c][5:].detach().numpy())
                          / np.exp(pred[c][5:].detach().numpy()).sum())[labels[c]]
                  for c in cells])
    assert loss.item() == pytest.approx(bce + 2 * l1 + 0.5 * ce, rel=1e-5)
    loss.backward()
    assert pred.grad[0, 0, 0, 1:].abs().sum() == 0  # empty cells: only objectness learns
    empty = detection_loss(pred, torch.zeros(2, 3, 3), boxes, labels)
    assert torch.isfinite(empty)
    with pytest.raises(ValueError):
        detection_loss(pred, obj[0], boxes, labels)


def test_verify():
    e1 = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    e2 = torch.tensor([[2.0, 0.0], [0.0, 5.0], [0.1, 1.0]])
    assert verify(e1, e2, 0.5).tolist() == [True, False, True]
    assert verify(e1, e2, 1.5).tolist() == [True, True, True]
    assert verify(e1, e2, 0.0).tolist() == [True, False, False]
    with pytest.raises(ValueError):
        verify(e1, e2[:2], 0.5)
    for a, b in itertools.product(range(3), range(3)):
        assert bool(verify(e1[a:a + 1], e2[b:b + 1], 0.3)[0]) == bool(
            verify(e2[b:b + 1], e1[a:a + 1], 0.3)[0])
