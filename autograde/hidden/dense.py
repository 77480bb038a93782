"""Hidden tests of assignment 06 (image -> label image), decided by the grader.

Each test draws its inputs from the run's generator; the notebook's probe runs the student's
code on them and returns its outputs; the check compares them with ``sit471.reference.dense``
in this process. The checks also cover what the visible tests check (tensors accepted,
ValueError on mismatched shapes, the input passed through the pyramid, gradients reaching
every parameter, 0-d loss), so a kernel that skips its visible tests gains nothing.

PyramidPooling is a structure: the probe builds the student's module from the case (channels,
bins, seed), and returns its parameters by name and its output on the grader's input; the
grader loads those parameters into the reference module and compares the outputs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from autograde.verdict import HiddenTests
from sit471.checks import check_array, check_scalar
from sit471.reference import dense as ref

hidden = HiddenTests()


# ----------------------------------------------------------------------------- confusion matrix


def _labels(rng, shape, c, ignored=0.2, ignore_index=255):
    target = rng.integers(0, c, shape)
    target[rng.random(shape) < ignored] = ignore_index
    return rng.integers(0, c, shape), target


@hidden.cases("test_confusion_matrix")
def _(rng):
    cases = []
    for shape, c in [((3, 9, 7), 5), ((40,), 2), ((2, 5, 5), 7)]:
        pred, target = _labels(rng, shape, c)
        cases.append(dict(pred=pred, target=target, num_classes=c, ignore_index=255,
                          as_tensor=False))
    pred, target = _labels(rng, (2, 6, 4), 4)
    cases.append(dict(pred=pred, target=target, num_classes=4, ignore_index=255, as_tensor=True))
    cases.append(dict(pred=rng.integers(0, 3, (4, 4)), target=np.full((4, 4), 255),
                      num_classes=3, ignore_index=255, as_tensor=False))
    # another ignore label, one of the classes: pred holds it too
    c = int(rng.integers(3, 7))
    pred, target = _labels(rng, (5, 8), c, ignored=0.0)
    cases.append(dict(pred=pred, target=target, num_classes=c,
                      ignore_index=int(rng.integers(0, c)), as_tensor=False))
    h, w = (int(v) for v in rng.integers(2, 6, 2))
    cases.append(dict(pred=rng.integers(0, 3, (h, w)), target=rng.integers(0, 3, (h, w + 1)),
                      num_classes=3, ignore_index=255, as_tensor=False))
    return cases


def _counts(pred, target, c, keep):
    pred, target = pred.ravel()[keep.ravel()], target.ravel()[keep.ravel()]
    return np.bincount(target * c + pred, minlength=c * c).reshape(c, c)


@hidden.check("test_confusion_matrix")
def _(case, got):
    pred, target, c, ig = (case[k] for k in ("pred", "target", "num_classes", "ignore_index"))
    where = f"pred {pred.shape}, {c} classes, ignore_index={ig}"
    if pred.shape != target.shape:
        if got.get("raised") != "ValueError":
            how = (f"got {got['raised']}" if "raised" in got else "nothing was raised")
            raise AssertionError(f"pred {pred.shape} and target {target.shape} should raise "
                                 f"ValueError, {how}: check the shapes first")
        return
    if "raised" in got:
        raise AssertionError(f"confusion_matrix failed ({got['raised']}: {got.get('message')}) "
                             f"on {where}: leave out the pixels whose target is ignore_index "
                             "BEFORE counting")
    expected = ref.confusion_matrix(pred, target, c, ignore_index=ig)
    mistakes = {"transposed: rows must be the TRUE class, columns the prediction": expected.T}
    if ig != 255:
        mistakes[f"pixels with target {ig} were counted: use the ignore_index argument, "
                 "not 255"] = _counts(pred, target, c, target != 255)
        mistakes[f"pixels PREDICTED {ig} were left out too: leave out only those whose "
                 "TARGET is ignore_index"] = _counts(pred, target, c,
                                                     (target != ig) & (pred != ig))
    name = "confusion matrix of tensors" if case["as_tensor"] else "confusion matrix"
    check_array(got["conf"], expected, f"{name} ({where})", mistakes=mistakes)


# ----------------------------------------------------------------------------- IoU


@hidden.cases("test_iou")
def _(rng):
    cases = []
    for c in (2, 5, 9):
        conf = rng.integers(0, 20, (c, c))
        absent = int(rng.integers(0, c))
        conf[absent, :] = 0
        conf[:, absent] = 0
        cases.append(dict(conf=conf))
    cases.append(dict(conf=np.zeros((int(rng.integers(2, 6)),) * 2, dtype=np.int64)))
    return cases


@hidden.check("test_iou")
def _(case, got):
    conf = case["conf"].astype(np.float64)
    c = len(conf)
    e_iou, e_mean = ref.iou_from_confusion(conf)
    iou = np.asarray(got["iou"], dtype=np.float64)
    assert iou.shape == (c,), f"per-class IoU has shape {iou.shape}, expected ({c},)"
    absent = np.isnan(e_iou)
    if absent.all():
        assert np.isnan(iou).all() and np.isnan(np.asarray(got["mean"], dtype=float)), (
            f"with every pixel ignored (an all-zero {c}x{c} matrix) every IoU and the mean "
            "should be nan")
        assert np.isnan(np.asarray(got["accuracy"], dtype=float)), (
            f"pixel accuracy of an all-zero {c}x{c} matrix should be nan")
        return
    for k in np.flatnonzero(absent):
        if not np.isnan(iou[k]):
            raise AssertionError(f"class {k} of {c} occurs neither in target nor prediction: "
                                 f"its IoU should be nan (0 / 0, undefined), got {iou[k]}")
    if np.isnan(iou[~absent]).any():
        raise AssertionError(f"IoU is nan for a class that occurs ({c} classes): nan only for "
                             "classes absent from both target and prediction")
    tp, rows, cols = np.diag(conf), conf.sum(1), conf.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall, precision, twice = tp / rows, tp / cols, tp / (rows + cols)
    present = ~absent
    check_array(iou[present], e_iou[present], f"IoU of the {present.sum()} present classes "
                f"({c}x{c} matrix)",
                mistakes={"TP / (TP + FN): that is the recall, the union needs the false "
                          "positives too": np.nan_to_num(recall[present]),
                          "TP / (TP + FP): that is the precision, the union needs the false "
                          "negatives too": np.nan_to_num(precision[present]),
                          "the union counts TP twice (row sum + column sum without "
                          "subtracting TP)": np.nan_to_num(twice[present])})
    check_scalar(got["mean"], e_mean, f"mean IoU ({c}x{c} matrix)",
                 mistakes={"an absent class counted as IoU 0: leave nan classes out of the "
                           "mean (np.nanmean)": np.nan_to_num(e_iou).mean()})
    check_scalar(got["accuracy"], ref.pixel_accuracy(conf), f"pixel accuracy ({c}x{c} matrix)")


# ----------------------------------------------------------------------------- bilinear kernel


@hidden.cases("test_bilinear_kernel")
def _(rng):
    sizes = [int(rng.choice([4, 6, 8, 10, 12, 16])), int(rng.choice([3, 5, 7, 9])),
             int(rng.integers(2, 17)), int(rng.integers(2, 17))]
    channels = [(2, 2), (int(rng.integers(3, 6)), int(rng.integers(1, 3))),
                (int(rng.integers(1, 3)), int(rng.integers(3, 6))), (5, 5)]
    return [dict(in_channels=i, out_channels=o, kernel_size=k)
            for (i, o), k in zip(channels, sizes, strict=True)]


@hidden.check("test_bilinear_kernel")
def _(case, got):
    i, o, k = case["in_channels"], case["out_channels"], case["kernel_size"]
    name = f"bilinear_kernel({i}, {o}, {k})"
    assert got["is_tensor"], f"{name} should return a tensor"
    expected = ref.bilinear_kernel(i, o, k).numpy()
    f = (k + 1) // 2
    tent = 1 - np.abs(np.arange(k) - (f - 1)) / f
    off_centre = np.zeros_like(expected)
    for c in range(min(i, o)):
        off_centre[c, c] = np.outer(tent, tent)
    filled = np.broadcast_to(expected[0, 0], expected.shape)
    mistakes = {"pairs of different channels get zeros, only channel c -> c the tent filter":
                filled}
    if k % 2 == 0:
        mistakes["the tent is 1 - |i - centre| / f with f = ceil(k / 2) and centre f - 0.5 for "
                 "even k (not centre f - 1)"] = off_centre
    check_array(got["weight"], expected, name, rtol=1e-6, atol=1e-7, mistakes=mistakes)


# ----------------------------------------------------------------------------- pyramid pooling


@hidden.cases("test_pyramid_pooling")
def _(rng):
    cases = []
    for c, bins in [(16, (1, 2, 3, 6)), (12, (1, 4)), (32, (2,)), (int(rng.choice([20, 24])),
                                                                 (1, 3))]:
        h, w = int(rng.integers(6, 15)), int(rng.integers(6, 15))
        if h == w:
            w += 1
        cases.append(dict(in_channels=c, bins=list(bins), seed=int(rng.integers(2 ** 31)),
                          x=rng.normal(size=(2, c, h, w)).astype(np.float32)))
    return cases


def _pyramid(x, state, bins, mode="bilinear", relu=True, input_first=True, fixed=False):
    """The pyramid pooling output with the student's parameters, or one of its mistakes
    (``fixed``: average pooling with a kernel of H // b, which is a b x b grid only when
    H = W is a multiple of b)."""
    x = torch.tensor(x)
    h, w = x.shape[-2:]
    outs = []
    for i, b in enumerate(bins):
        pooled = F.avg_pool2d(x, h // b) if fixed else F.adaptive_avg_pool2d(x, b)
        y = F.conv2d(pooled, torch.tensor(state[f"branches.{i}.weight"]),
                     torch.tensor(state[f"branches.{i}.bias"]))
        y = F.relu(y) if relu else y
        kw = dict(align_corners=False) if mode == "bilinear" else {}
        outs.append(F.interpolate(y, size=(h, w), mode=mode, **kw))
    outs = [x, *outs] if input_first else [*outs, x]
    return torch.cat(outs, dim=1).numpy()


@hidden.check("test_pyramid_pooling")
def _(case, got):
    c, bins, x = case["in_channels"], tuple(case["bins"]), case["x"]
    where = f"PyramidPooling({c}, bins={bins})"
    names = got["names"]
    assert any(n.startswith("branches.") for n in names), (
        "keep the 1x1 convolutions in self.branches, an nn.ModuleList")
    assert got["branches"] == len(bins), (
        f"{got['branches']} branches, expected one per bin ({len(bins)}) for {where}")
    model = ref.PyramidPooling(c, bins)
    expected_names = list(model.state_dict())
    assert sorted(names) == sorted(expected_names), (
        f"{where} has parameters {sorted(names)[:4]}, expected {expected_names[:4]}...: keep "
        "the 1x1 convolutions in self.branches, an nn.ModuleList")
    state = dict(zip(names, got["params"], strict=True))
    for i in range(len(bins)):
        shape = tuple(np.shape(state[f"branches.{i}.weight"]))
        assert shape == (c // 4, c, 1, 1), (
            f"weight {shape} in a branch of {where}, expected (C // 4, C, 1, 1) = "
            f"({c // 4}, {c}, 1, 1)")
    model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    with torch.no_grad():
        expected = model(torch.tensor(x)).numpy()
    out = np.asarray(got["out"], dtype=np.float64)
    n, _, h, w = x.shape
    if out.shape != expected.shape:
        raise AssertionError(
            f"output shape {out.shape}, expected {expected.shape} for {where} on {(h, w)}: the "
            f"input's {c} channels and {len(bins)} branches of {c // 4}, concatenated along "
            "dim 1")
    check_array(out[:, :c], x, f"the first C = {c} output channels (the input itself)",
                mistakes={"the input was concatenated last: put it first, then the branches":
                          _pyramid(x, state, bins, input_first=False)[:, :c]})
    mistakes = {"nearest upsampling: use mode='bilinear', align_corners=False":
                _pyramid(x, state, bins, mode="nearest"),
                "branches with negative values: apply a ReLU after the 1x1 convolution":
                _pyramid(x, state, bins, relu=False)}
    try:
        mistakes["pooled with a fixed kernel: F.adaptive_avg_pool2d(x, b) gives a b x b grid "
                 "for any H, W"] = _pyramid(x, state, bins, fixed=True)
    except RuntimeError:  # that mistake fails on this input instead
        pass
    check_array(out, expected, f"{where} on an input of {(h, w)}", rtol=1e-4, atol=1e-5,
                mistakes=mistakes)
    missing = got["no_grad"]
    assert not missing, f"{missing[:3]} got no gradient: every parameter should get one"


# ----------------------------------------------------------------------------- depth loss


@hidden.cases("test_scale_invariant_loss")
def _(rng):
    return [dict(p=rng.normal(size=shape).astype(np.float32),
                 t=rng.normal(size=shape).astype(np.float32), lam=lam)
            for shape, lam in [((3, 5, 6), 0.5), ((4, 1, 7, 3), 0.5), ((1, 9, 9), 0.2),
                               ((2, 3, 3), 1.0), ((3, 4, 5), float(rng.uniform(0.1, 0.9)))]]


@hidden.check("test_scale_invariant_loss")
def _(case, got):
    p, t, lam = case["p"], case["t"], case["lam"]
    where = f"on {p.shape}, lam={lam:.3g}"
    assert got["dim"] == 0, f"scale_invariant_loss {where} should return a 0-d tensor"
    expected = float(ref.scale_invariant_loss(torch.tensor(p), torch.tensor(t), lam=lam))
    d = (p.astype(np.float64) - t).reshape(p.shape[0], -1)
    pooled = d.ravel()
    check_scalar(got["loss"], expected, f"scale_invariant_loss {where}", rtol=1e-5,
                 mistakes={"lam * mean(d^2): subtract lam times the SQUARED MEAN of d":
                           ((1 - lam) * (d ** 2).mean(1)).mean(),
                           "added instead of subtracted":
                           ((d ** 2).mean(1) + lam * d.mean(1) ** 2).mean(),
                           "mean(d) taken over ALL pixels of the batch, not per image":
                           np.mean(pooled ** 2) - lam * pooled.mean() ** 2,
                           "missing the square of the mean":
                           ((d ** 2).mean(1) - lam * d.mean(1)).mean()})
    assert got["grad"], f"scale_invariant_loss {where} should be differentiable"
    if got["mismatch"] != "ValueError":
        raise AssertionError(f"shapes {p.shape} and {p.shape[:-1] + (p.shape[-1] - 1,)} should "
                             f"raise ValueError, got {got['mismatch']}")


# ----------------------------------------------------------------------------- depth metrics


@hidden.cases("test_depth_metrics")
def _(rng):
    cases = []
    for shape, as_tensor in [((3, 8, 8), False), ((50,), False), ((2, 1, 5, 7), False),
                             ((4, 6), True)]:
        t = rng.uniform(0.5, 20, shape)
        t[rng.random(shape) < 0.1] = 0
        t.flat[0] = 0  # at least one pixel without a true depth
        p = t * np.exp(rng.normal(0, 0.3, shape)) + 0.1
        cases.append(dict(pred=p, target=t, as_tensor=as_tensor))
    return cases


@hidden.check("test_depth_metrics")
def _(case, got):
    p, t = case["pred"], case["target"]
    where = f"on {p.shape}" + (" (tensors)" if case["as_tensor"] else "")
    expected = ref.depth_metrics(p, t)
    missing = sorted(set(expected) - set(got))
    assert not missing, f"the dict lacks {missing}"
    valid = t > 0
    pv, tv = p[valid], t[valid]
    ratio = pv / tv
    mistakes = {
        "abs_rel": {"divided by the prediction: AbsRel divides by the TRUE depth":
                    np.mean(np.abs(pv - tv) / pv)},
        "rmse": {"missing the square root": np.mean((pv - tv) ** 2),
                 "the pixels with target 0 were counted": np.sqrt(np.mean((p - t) ** 2))},
        "delta1": {"only pred / target checked: use max(pred / target, target / pred)":
                   np.mean(ratio < 1.25),
                   "the pixels with target 0 were counted": np.sum(
                       np.maximum(ratio, 1 / ratio) < 1.25) / p.size}}
    for key, value in expected.items():
        got_value = np.asarray(got[key], dtype=np.float64) if got[key] is not None else None
        if key == "abs_rel" and got_value is not None and not np.isfinite(got_value).all():
            raise AssertionError(f"abs_rel {where} is {got_value}: the pixels with target 0 "
                                 "(no true depth) were not left out")
        check_scalar(got[key], value, f"{key} {where}", rtol=1e-6,
                     mistakes=mistakes.get(key))


# ----------------------------------------------------------------------------- density maps


@hidden.cases("test_density_map")
def _(rng):
    cases = []
    for shape, k, sigma in [((32, 32), 20, 1.5), ((10, 23), 7, 4.0), ((40, 9), 3, 0.7),
                            ((int(rng.integers(8, 20)), int(rng.integers(8, 20))), 5,
                             float(rng.uniform(0.8, 3.0)))]:
        cases.append(dict(points=rng.uniform(-3, max(shape) + 3, (k, 2)), shape=list(shape),
                          sigma=sigma))
    cases.append(dict(points=np.zeros((0, 2)), shape=[5, 6], sigma=1.0))
    return cases


def _density(points, shape, sigma, swap=False, norm="sum", variance=False, outside=False):
    """The density map, or one of its mistakes."""
    h, w = shape
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    out = np.zeros((h, w))
    for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        if outside or (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
            a, b = (y, x) if swap else (x, y)
            g = np.exp(-((cols - a) ** 2 + (rows - b) ** 2)
                       / (2 * (sigma if variance else sigma ** 2)))
            out += {"sum": g / max(g.sum(), 1e-300), "none": g,
                    "full": g / (2 * np.pi * sigma ** 2)}[norm]
    return out


@hidden.check("test_density_map")
def _(case, got):
    points, shape, sigma = case["points"], tuple(case["shape"]), case["sigma"]
    where = f"{len(points)} points on {shape}, sigma {sigma:.3g}"
    expected = ref.density_map(points, shape, sigma)
    args = (points, shape, sigma)
    mistakes = {"a point is (x, y) = (column, row), not (row, column)": _density(*args,
                                                                                  swap=True),
                "not normalised: divide each Gaussian by its sum": _density(*args, norm="none"),
                "normalised by the full Gaussian (1 / (2 pi sigma^2)): divide each Gaussian by "
                "its sum over the image": _density(*args, norm="full"),
                "sigma used as the variance: the exponent divides by 2 sigma^2":
                _density(*args, variance=True),
                "points outside the image counted": _density(*args, outside=True)}
    check_array(got["map"], expected, f"density_map of {where}", rtol=1e-6, atol=1e-10,
                mistakes=mistakes)
