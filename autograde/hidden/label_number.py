"""Hidden tests of assignment 05 (image -> label, image -> number), decided by the grader.

Each test draws its inputs from the run's generator; the notebook's probe calls the student's
functions on them (as torch tensors) and returns the outputs; the check compares them with
``sit471.reference.label_number``. The checks also cover what the visible tests check (output shapes
and dtypes, gradients, ``ValueError`` on bad input, the head's parameters), so a kernel that
skips its visible tests gains nothing. ``RegressionHead`` is a structure: the probe builds it
with a seed from the case and sends a description (parameter names, shapes, requires_grad), its
outputs on the grader's features and the weights its forward pass implies; the grader rebuilds
the reference head and compares.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from autograde.hidden import not_raised
from autograde.verdict import HiddenTests
from sit471.checks import check_array, check_scalar
from sit471.reference import label_number as ref

hidden = HiddenTests()


def _t(value) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value))


def _raised_check(got: dict, why: str, because: str = "") -> None:
    """The case should have raised ValueError; ``got`` is the probe's report."""
    raised = got.get("raised")
    if raised == "ValueError":
        return
    if raised is None:
        raise AssertionError(f"{why} should raise ValueError{because}")
    raise AssertionError(f"{why} raised {raised}; raise ValueError")


# ----------------------------------------------------------------------------- RegressionHead


@hidden.cases("test_regression_head")
def _(rng):
    return [dict(seed=int(rng.integers(2**31)), z=rng.normal(size=(n, f)).astype(np.float32))
            for f, n in [(1, 3), (17, 1), (128, 40)]]


@hidden.check("test_regression_head")
def _(case, got):
    z = case["z"]
    n, f = z.shape
    assert got["module"], "RegressionHead should be an nn.Module"
    torch.manual_seed(case["seed"])
    head = ref.RegressionHead(f)  # the same architecture, rebuilt here
    want = sum(p.numel() for p in head.parameters())
    count = sum(int(np.prod(s)) for s in got["shapes"])
    assert count == want, (f"RegressionHead({f}) has {count} parameters, expected {want}: one "
                           "weight per feature and a bias")
    frozen = [name for name, t in zip(got["names"], got["trainable"], strict=True) if not t]
    assert not frozen, (f"RegressionHead({f}): {frozen} do not require grad; every parameter "
                        "should be trainable")
    not_raised(got, f"RegressionHead({f}) on features of shape ({n}, {f})")
    shape = tuple(np.shape(got["out"]))
    if shape == (n, 1):
        raise AssertionError(f"the head returned shape ({n}, 1); return (N,) (squeeze the last "
                             "dimension): (N, 1) predictions minus (N,) targets broadcast")
    if n == 1 and shape != (1,):
        raise AssertionError(f"for one example the head returned shape {shape}, expected (1,): "
                             "squeeze only the last dimension (squeeze(-1))")
    assert shape == (n,), f"the head returned shape {shape} for {n} examples, expected ({n},)"
    w, b = np.asarray(got["w"], dtype=np.float32), np.asarray(got["b"], dtype=np.float32)
    if b.shape != (1,):
        raise AssertionError(f"for one example the head returned shape {b.shape}, expected (1,): "
                             "squeeze only the last dimension (squeeze(-1))")
    assert w.shape == (f,) and b.shape == (1,), "the head should be affine: one output per row"
    with torch.no_grad():  # the reference head with the weights the student's head implies
        head.linear.weight.copy_(torch.as_tensor(w)[None])
        head.linear.bias.copy_(torch.as_tensor(b))
        expected = head(torch.as_tensor(z)).numpy()
    check_array(got["out"], expected, f"head(z) for z ({n}, {f})", rtol=1e-5, atol=1e-5)
    assert all(got["grad"]), "every parameter should get a gradient"


# ----------------------------------------------------------------------------- regression_loss


@hidden.cases("test_regression_loss")
def _(rng):
    cases = []
    for n in [1, 7, 100]:
        pred, target = rng.normal(size=n) * 5, rng.normal(size=n) * 5
        m = int(rng.integers(1, n)) if n > 1 else 2
        bad = [(pred[:, None], target), (pred, rng.normal(size=m))][len(cases) % 2]
        cases.append(dict(pred=pred, target=target, bad_pred=bad[0], bad_target=bad[1]))
    cases.append(dict(pred=cases[2]["pred"], target=cases[2]["target"],
                      bad_pred=cases[2]["pred"], bad_target=cases[2]["target"][:1]))
    return cases


def _loss_check(value, expected: float, name: str, mistakes: dict[str, float]) -> None:
    """check_scalar at rtol 1e-9; an answer only float32-close says it lost precision."""
    try:
        check_scalar(value, expected, name, rtol=1e-9, mistakes=mistakes)
    except AssertionError:
        got = np.asarray(value, dtype=float).reshape(-1)
        if got.size == 1 and np.isclose(got[0], expected, rtol=1e-5, atol=0):
            raise AssertionError(f"{name} is off by {abs(got[0] / expected - 1):.1e} (relative): "
                                 "computed in float32? keep the inputs' dtype (float64 here)"
                                 ) from None
        raise


@hidden.check("test_regression_loss")
def _(case, got):
    pred = torch.tensor(case["pred"], requires_grad=True)
    target = torch.tensor(case["target"])
    n = pred.numel()
    on = f"on {n} example" + ("s" if n != 1 else "")
    l2 = float(ref.regression_loss(pred, target, "l2").detach())
    l1_t = ref.regression_loss(pred, target, "l1")
    l1 = float(l1_t.detach())
    l1_t.backward()
    _loss_check(got["l2"], l2, f"regression_loss(kind='l2') {on}",
                {"the L1 loss: 'l2' is the mean of the SQUARED differences": l1,
                 "a sum: average over the examples (mean)": l2 * n})
    _loss_check(got["l1"], l1, f"regression_loss(kind='l1') {on}",
                {"the L2 loss: 'l1' is the mean of the ABSOLUTE differences": l2,
                 "a sum: average over the examples (mean)": l1 * n})
    _loss_check(got["default"], l2, f"regression_loss with the default kind {on}",
                {"the L1 loss: the default kind is 'l2'": l1})
    assert got["grad"] is not None, "no gradient reached pred: use torch operations throughout"
    check_array(got["grad"], pred.grad.numpy(), f"the gradient of the L1 loss {on}",
                rtol=1e-6)
    bad_p, bad_t = np.shape(case["bad_pred"]), np.shape(case["bad_target"])
    _raised_check({"raised": got["raised_shape"]}, f"pred {bad_p} against target {bad_t}",
                  " (it would broadcast silently)")
    _raised_check({"raised": got["raised_kind"]}, "kind='l3'")


# ----------------------------------------------------------------------------- verify


@hidden.cases("test_verify")
def _(rng):
    cases = []
    for n, d in [(1, 3), (50, 16), (200, 128)]:
        a = rng.normal(size=(n, d)).astype(np.float32)
        b = rng.normal(size=(n, d)).astype(np.float32)
        half = n // 2  # same direction, other length, a little noise: the same identity
        b[:half] = a[:half] * rng.uniform(0.2, 5) + 0.05 * rng.normal(size=(half, d))
        thresholds = [float(rng.uniform(lo, hi)) for lo, hi in [(0.05, 0.3), (0.5, 0.9),
                                                                 (1.1, 1.5)]]
        cases.append(dict(emb1=a, emb2=b, thresholds=thresholds))
    a = rng.normal(size=(8, 5)).astype(np.float32)  # the same direction exactly: distance 0
    b = np.concatenate([a[:4] * 2.0 ** rng.integers(-2, 4, (4, 1)), rng.normal(size=(4, 5))])
    cases.append(dict(emb1=a, emb2=b.astype(np.float32),
                      thresholds=[0.0, float(rng.uniform(0.05, 0.3)), 1.0]))
    return cases


@hidden.check("test_verify")
def _(case, got):
    a, b = _t(case["emb1"]), _t(case["emb2"])
    n, d = a.shape
    distance = (F.normalize(a, dim=1) - F.normalize(b, dim=1)).norm(dim=1).numpy()
    raw = (a - b).norm(dim=1).numpy()
    assert len(got["same"]) == len(case["thresholds"])
    for t, same in zip(case["thresholds"], got["same"], strict=True):
        same = np.asarray(same)
        assert same.dtype == bool, f"verify should return a bool tensor, got dtype {same.dtype}"
        assert same.shape == (n,), (f"verify returned shape {same.shape} for {n} pairs, "
                                    f"expected ({n},)")
        want = ref.verify(a, b, t).numpy()
        # pairs within rounding of the threshold may go either way; distance 0 is exact
        clear = (np.abs(distance - t) > 1e-6) | ((distance == 0) & (t == 0))
        wrong = (same != want) & clear
        if not wrong.any():
            continue
        where = f"{int(wrong.sum())} of {n} decisions wrong (threshold {t:.2f}, D={d})"
        if ((same == ~want) | ~clear).all():
            raise AssertionError(f"verify: {where}; every decision is inverted: a SMALL distance "
                                 "means the same identity (accept distance <= threshold)")
        if t == 0 and (same == (distance < t)).all():
            raise AssertionError(f"verify: {where}; identical directions have distance 0, which "
                                 "is <= a threshold of 0 (use <=, not <)")
        if (same == (raw <= t)).all():
            raise AssertionError(f"verify: {where}; the raw embeddings were compared: scale each "
                                 "embedding to unit length before the distance")
        i = int(np.flatnonzero(wrong)[0])
        raise AssertionError(f"verify: {where}; pair {i} at distance {distance[i]:.3f} gave "
                             f"{bool(same[i])}")
    _raised_check({"raised": got["raised"]},
                  f"embeddings of different shapes, ({n}, {d}) and ({n - 1}, {d}),")


# ----------------------------------------------------------------------------- bins


@hidden.cases("test_expected_value")
def _(rng):
    cases = []
    for n_bins, (n, k) in zip([5, 7, 60, 1], [(1, 1), (1, 4), (30, 12), (5, 100)], strict=True):
        low = float(rng.uniform(-50, 50))
        logits = (rng.normal(size=(n, k)) * 3).astype(np.float32)
        centres = (rng.normal(size=k) * 10).astype(np.float32)
        cases.append(dict(low=low, high=low + float(rng.uniform(0.5, 100)), n_bins=n_bins,
                          logits=logits, centres=centres, bad_centres=np.zeros(k + 1, np.float32)))
    return cases


@hidden.check("test_expected_value")
def _(case, got):
    low, high, k = case["low"], case["high"], case["n_bins"]
    width = (high - low) / k
    dtype = np.asarray(got["centres"]).dtype
    assert dtype == np.float32, (f"bin_centers({low:.2f}, {high:.2f}, {k}) has dtype {dtype}, "
                                 "expected float32")
    check_array(got["centres"], ref.bin_centers(low, high, k).numpy(),
                f"bin_centers({low:.2f}, {high:.2f}, {k})", rtol=1e-5, atol=1e-5,
                mistakes={"the bin EDGES from low to high (linspace): the centres are half a bin "
                          "inside": np.linspace(low, high, k),
                          "the left edges of the bins: add half a bin width":
                          low + np.arange(k) * width,
                          "the bin width rounded down (//): use / for the width":
                          low + (np.arange(k) + 0.5) * ((high - low) // k)})
    logits = torch.tensor(case["logits"], requires_grad=True)
    centres = _t(case["centres"])
    ev = ref.expected_value(logits, centres)
    ev.sum().backward()
    n, nk = logits.shape
    probs = torch.softmax(logits.detach(), dim=1)
    check_array(got["ev"], ev.detach().numpy(), f"expected_value for logits ({n}, {nk})",
                rtol=1e-5, atol=1e-5,
                mistakes={"the centre of the most likely bin (argmax): take the expected value":
                          centres[probs.argmax(dim=1)].numpy(),
                          "the softmax taken over the examples (dim=0), not over the bins (dim=1)":
                          (torch.softmax(logits.detach(), 0) * centres).sum(1).numpy()})
    assert got["grad"] is not None, (
        "expected_value should be differentiable (use torch operations, not argmax)")
    check_array(got["grad"], logits.grad.numpy(), f"the gradient of expected_value ({n}, {nk})",
                rtol=1e-4, atol=1e-5)
    _raised_check({"raised": got["raised"]}, f"logits ({n}, {nk}) with {nk + 1} bin centres")


# ----------------------------------------------------------------------------- box_iou


def _random_boxes(rng, n: int) -> np.ndarray:
    xy = rng.uniform(0, 20, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(0, 9, (n, 2))], 1)


def _iou_variant(b1: torch.Tensor, b2: torch.Tensor, *, plus: float = 0.0, clamp: bool = True,
                 absolute: bool = False, square: tuple[bool, bool] = (False, False)) -> np.ndarray:
    """The IoU as a common mistake computes it (for the messages)."""
    def area(b, sq):
        w = b[:, 2] - b[:, 0] + plus
        return w * w if sq else w * (b[:, 3] - b[:, 1] + plus)
    wh = torch.minimum(b1[:, None, 2:], b2[None, :, 2:]) - torch.maximum(b1[:, None, :2],
                                                                         b2[None, :, :2]) + plus
    wh = wh.abs() if absolute else wh.clamp(min=0) if clamp else wh
    inter = wh[..., 0] * wh[..., 1]
    union = area(b1, square[0])[:, None] + area(b2, square[1])[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union)).numpy()


def _what_is_bad(b: np.ndarray, name: str) -> str:
    if b.ndim != 2 or b.shape[1] != 4:
        return f"{name} of shape {b.shape}"
    return "a box with x2 < x1" if (b[:, 2] < b[:, 0]).any() else "a box with y2 < y1"


@hidden.cases("test_box_iou")
def _(rng):
    cases = [dict(boxes1=_random_boxes(rng, n), boxes2=_random_boxes(rng, m))
             for n, m in [(1, 1), (7, 3), (40, 55)]]
    grid = rng.integers(0, 6, (30, 2)).astype(float)  # many touching / shared edges, empty boxes
    grid = np.concatenate([grid, grid + rng.integers(0, 4, (30, 2))], 1)
    cases.append(dict(boxes1=grid, boxes2=grid))
    cases.append(dict(boxes1=np.zeros((0, 4)), boxes2=_random_boxes(rng, 5)))
    cases.append(dict(boxes1=_random_boxes(rng, 3), boxes2=np.zeros((0, 4))))
    flipped_x, flipped_y = _random_boxes(rng, 4), _random_boxes(rng, 4)
    i, j = int(rng.integers(4)), int(rng.integers(4))
    flipped_x[i, [0, 2]] = flipped_x[i, [2, 0]] + [0.5, 0]
    flipped_y[j, [1, 3]] = flipped_y[j, [3, 1]] + [0.5, 0]
    cases += [dict(boxes1=flipped_x, boxes2=_random_boxes(rng, 2)),
              dict(boxes1=_random_boxes(rng, 2), boxes2=flipped_y),
              dict(boxes1=np.zeros(4), boxes2=_random_boxes(rng, 2)),
              dict(boxes1=_random_boxes(rng, 2), boxes2=np.zeros((2, 5)))]
    return cases


@hidden.check("test_box_iou")
def _(case, got):
    b1, b2 = np.asarray(case["boxes1"]), np.asarray(case["boxes2"])
    t1, t2 = torch.as_tensor(b1), torch.as_tensor(b2)
    try:
        want = ref.box_iou(t1, t2).numpy()
    except ValueError:
        why = _what_is_bad(b1, "boxes1") if _is_bad(b1) else _what_is_bad(b2, "boxes2")
        _raised_check(got, f"box_iou: {why}")
        return
    n, m = len(b1), len(b2)
    what = f"box_iou of ({n}, 4) and ({m}, 4) boxes"
    not_raised(got, what)
    iou = np.asarray(got["iou"], dtype=float)
    if iou.shape == want.shape and not np.isfinite(iou).all():
        raise AssertionError(f"{what} holds NaN: two empty boxes (union 0) should have IoU 0")
    mistakes = {}
    if n and m:
        mistakes = {
            "the intersection's width and height not clamped at 0 (boxes far apart overlap)":
            _iou_variant(t1, t2, clamp=False),
            "the absolute value of the intersection's sides: clamp them at 0 instead":
            _iou_variant(t1, t2, absolute=True),
            "a pixel convention (+1 on widths): a box from 0 to 2 has width 2":
            _iou_variant(t1, t2, plus=1.0),
            "the areas from the width alone: area = (x2 - x1) * (y2 - y1)":
            _iou_variant(t1, t2, square=(True, True)),
            "the area of boxes1 from the width alone: area = (x2 - x1) * (y2 - y1)":
            _iou_variant(t1, t2, square=(True, False)),
            "the area of boxes2 from the width alone: area = (x2 - x1) * (y2 - y1)":
            _iou_variant(t1, t2, square=(False, True)),
        }
    check_array(iou, want, what, rtol=1e-6, atol=1e-9, mistakes=mistakes)


def _is_bad(b: np.ndarray) -> bool:
    return b.ndim != 2 or b.shape[1] != 4 or bool(((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any())


# ----------------------------------------------------------------------------- detection_loss


@hidden.cases("test_detection_loss")
def _(rng):
    cases = []
    for n, s, c in [(1, 1, 1), (3, 4, 3), (8, 7, 5)]:
        obj = (rng.random((n, s, s)) < 0.3).astype(np.float32)
        obj.reshape(-1)[0] = 1
        cases.append(dict(pred=rng.normal(size=(n, s, s, 5 + c)).astype(np.float32), obj=obj,
                          boxes=rng.random((n, s, s, 4)).astype(np.float32),
                          labels=rng.integers(0, c, (n, s, s)),
                          box_weight=float(rng.uniform(0.5, 6)),
                          class_weight=float(rng.uniform(0.5, 3))))
    last = cases[-1]
    cases.append(dict(last, pred=last["pred"][:2, :3, :3], obj=np.zeros((2, 3, 3), np.float32),
                      boxes=last["boxes"][:2, :3, :3], labels=last["labels"][:2, :3, :3]))
    cases.append(dict(cases[1], obj=cases[1]["obj"][0]))  # obj without its batch dimension
    return cases


def _detection_variants(pred, obj, boxes, labels, bw, cw) -> dict[str, float]:
    mask = obj > 0.5
    obj_loss = F.binary_cross_entropy_with_logits(pred[..., 0], obj)
    box = (pred[..., 1:5][mask] - boxes[mask]).abs()
    cls = F.cross_entropy(pred[..., 5:][mask], labels[mask])
    every = (pred[..., 1:5] - boxes).abs().mean()
    return {k: float(v) for k, v in {
        "the box loss averaged over ALL cells: use only the cells with an object":
        obj_loss + bw * every + cw * cls,
        "the weights were not applied (box_weight * box + class_weight * class)":
        obj_loss + box.mean() + cls,
        "the weights swapped": obj_loss + cw * box.mean() + bw * cls,
        "a sum of the box errors, not the mean": obj_loss + bw * box.sum() + cw * cls,
    }.items()}


@hidden.check("test_detection_loss")
def _(case, got):
    pred = torch.tensor(case["pred"], requires_grad=True)
    obj, boxes, labels = _t(case["obj"]), _t(case["boxes"]), _t(case["labels"])
    bw, cw = case["box_weight"], case["class_weight"]
    try:
        want = ref.detection_loss(pred, obj, boxes, labels, bw, cw)
    except ValueError:
        _raised_check(got, f"obj of shape {tuple(obj.shape)} for pred {tuple(pred.shape)}")
        return
    want.backward()
    n, s, c = pred.shape[0], pred.shape[1], pred.shape[3] - 5
    what = f"detection_loss (N={n}, S={s}, C={c})"
    not_raised(got, what)
    loss = np.asarray(got["loss"], dtype=float)
    assert loss.ndim == 0, f"{what} has shape {loss.shape}: return one number (0-dimensional)"
    mask = (obj > 0.5).numpy()
    if not mask.any():
        assert np.isfinite(loss).all(), (
            "with no object anywhere the loss should be finite: the box and class terms are 0 "
            "then (do not average over zero cells)")
        what += " without objects"
        mistakes = {}
    else:
        mistakes = _detection_variants(pred.detach(), obj, boxes, labels, bw, cw)
    check_scalar(loss, float(want.detach()), what, rtol=1e-5, mistakes=mistakes)
    grad = got["grad"]
    assert grad is not None, "no gradient reached pred: use torch operations throughout"
    grad = np.asarray(grad, dtype=float)
    assert grad.shape == tuple(pred.shape), f"the gradient has shape {grad.shape}"
    assert np.abs(grad[..., 1:][~mask]).sum() < 1e-7, (
        "a cell without an object got a gradient for its box or class: mask them out")
    assert np.abs(grad[..., 0]).min() > 0, "every cell's objectness should get a gradient"
    check_array(grad, pred.grad.numpy(), f"the gradient of {what}", rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- nms


def _nms_variant(iou: np.ndarray, scores: np.ndarray, threshold: float,
                 labels: np.ndarray | None, *, descending: bool = True,
                 strict: bool = True) -> list[int]:
    """Greedy NMS as a common mistake does it (for the messages)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i] if descending else scores[i], i))
    alive = np.ones(len(scores), bool)
    keep = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(i)
        suppress = iou[i] > threshold if strict else iou[i] >= threshold
        if labels is not None:
            suppress &= labels == labels[i]
        alive &= ~suppress
    return keep


@hidden.cases("test_nms")
def _(rng):
    cases = []
    for _trial in range(25):
        n = int(rng.integers(1, 30))
        boxes = _random_boxes(rng, n)
        scores = rng.integers(0, 6, n) / 6.0  # ties on purpose
        labels = rng.integers(0, 3, n)
        threshold = float(rng.choice([0.0, 0.3, 0.5, 0.7]))
        for lab in [None, labels]:
            cases.append(dict(boxes=boxes, scores=scores, iou_threshold=threshold, labels=lab))
    cases.append(dict(boxes=np.zeros((0, 4)), scores=np.zeros(0), iou_threshold=0.5, labels=None))
    b = _random_boxes(rng, 5)
    cases.append(dict(boxes=b, scores=rng.random(4), iou_threshold=0.5, labels=None))
    cases.append(dict(boxes=b, scores=rng.random(5), iou_threshold=0.5,
                      labels=rng.integers(0, 3, 6)))
    return cases


@hidden.check("test_nms")
def _(case, got):
    boxes, scores, t = _t(case["boxes"]), _t(case["scores"]), case["iou_threshold"]
    labels = None if case["labels"] is None else _t(case["labels"])
    n = len(boxes)
    try:
        want = ref.nms(boxes, scores, t, labels).tolist()
    except ValueError:
        what = "labels" if labels is not None and labels.shape != scores.shape else "scores"
        _raised_check(got, f"nms: {n} boxes with {len(_t(case[what]))} {what}")
        return
    with_labels = "with" if labels is not None else "without"
    what = f"nms on {n} boxes (threshold {t:g}, {with_labels} labels)"
    not_raised(got, what)
    assert got["int64"], f"{what}: nms should return an int64 tensor"
    keep = np.asarray(got["keep"]).reshape(-1).tolist()
    if keep == want:
        return
    iou = ref.box_iou(boxes, boxes).numpy()
    s = scores.numpy()
    lab = None if labels is None else labels.numpy()
    hint = "wrong boxes or order (equal scores keep the lower index first: a stable sort)"
    if keep == _nms_variant(iou, s, t, lab, descending=False):
        hint = "the boxes with the LOWEST scores came first; sort by score, descending"
    elif lab is not None and keep == _nms_variant(iou, s, t, None):
        hint = "boxes of other labels were suppressed: only the SAME label suppresses"
    elif keep == _nms_variant(iou, s, t, lab, strict=False):
        hint = "IoU equal to the threshold was suppressed: remove only IoU GREATER than it"
    elif sorted(keep) == sorted(want):
        hint = ("the right boxes in the wrong order: highest score first, equal scores lower "
                "index first")
    raise AssertionError(f"{what}: {hint}; kept {keep}, expected {want}")
