"""Hidden tests of assignment 09 (several heads, parts, volumes, dissection, locally connected
layers), decided by the grader.

Each test draws its inputs from the run's generator; the notebook's probe runs the student's
function on them and returns the outputs (losses with their gradients, so an answer that
breaks autograd fails here too); the check compares them with ``sit471.reference.parsing``,
which tests/ holds to torch and to loops. A wrong answer is named where a likely mistake
explains it: each mistake is recomputed here on the same inputs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from autograde.hidden import not_raised
from autograde.verdict import HiddenTests
from sit471.checks import check_array, check_scalar
from sit471.reference import parsing as ref

hidden = HiddenTests()


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a))


# ------------------------------------------------------------------------------ joint loss

@hidden.cases("test_joint_loss")
def _(rng):
    cases = []
    for n, c, h, w, s in [(2, 4, 5, 6, 2), (3, 3, 4, 4, 3), (1, 5, 7, 3, 2), (4, 2, 2, 2, 4)]:
        labels = rng.integers(0, c, (n, h, w))
        labels[rng.random(labels.shape) < 0.3] = 255
        labels.reshape(-1)[0] = 0  # at least one pixel counts
        cases.append(dict(pixel_logits=rng.normal(size=(n, c, h, w)) * 2, pixel_labels=labels,
                          scene_logits=rng.normal(size=(n, s)) * 2,
                          scene_labels=rng.integers(0, s, n),
                          scene_weight=float(rng.choice([0.0, 0.1, 1.0, rng.uniform(2, 9)]))))
    return cases


def _joint_mistakes(pix, lab, scene, kind, w) -> dict:
    keep = lab != 255
    ce = F.cross_entropy(pix, torch.where(keep, lab, 0), reduction="none")
    scene_ce = F.cross_entropy(scene, kind)
    pixel = F.cross_entropy(pix, lab, ignore_index=255)
    return {"the ignored pixels were counted in the mean: average over the pixels that are not "
            "255 only": float((ce * keep).mean() + w * scene_ce),
            "the weight multiplies the pixel loss instead of the scene loss":
                float(w * pixel + scene_ce),
            "the weight is missing: pixel + scene_weight * scene": float(pixel + scene_ce),
            "sums instead of means": float(F.cross_entropy(pix, lab, ignore_index=255,
                                                           reduction="sum")
                                           + w * F.cross_entropy(scene, kind, reduction="sum"))}


@hidden.check("test_joint_loss")
def _(case, got):
    pix = _t(case["pixel_logits"]).double().requires_grad_()
    scene = _t(case["scene_logits"]).double().requires_grad_()
    lab, kind, w = _t(case["pixel_labels"]).long(), _t(case["scene_labels"]).long(), \
        case["scene_weight"]
    where = (f"joint_loss(pixels {tuple(pix.shape)}, scene {tuple(scene.shape)}, "
             f"weight {w:g})")
    not_raised(got, where)
    want = ref.joint_loss(pix, lab, scene, kind, w)
    want.backward()
    check_scalar(got["loss"], float(want.detach()), where, rtol=1e-6,
                 mistakes=_joint_mistakes(pix.detach(), lab, scene.detach(), kind, w))
    check_array(got["grad_pixel"], pix.grad.numpy(), f"the gradient of {where} with respect "
                "to the pixel logits (build the loss from torch operations)", rtol=1e-5,
                atol=1e-9)
    check_array(got["grad_scene"], scene.grad.numpy(), f"the gradient of {where} with respect "
                "to the scene logits", rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------------------ mean IoU

@hidden.cases("test_mean_iou")
def _(rng):
    cases = []
    for shape, c in [((3, 8, 8), 4), ((50,), 3), ((2, 6, 5), 6), ((4, 4), 2)]:
        target = rng.integers(0, c, shape)
        target[rng.random(shape) < 0.2] = 255
        cases.append(dict(pred=rng.integers(0, c, shape), target=target, num_classes=c))
    # a class in neither (left out of the mean), a class only predicted (IoU 0, counted)
    c = int(rng.integers(5, 8))
    target = rng.integers(0, 3, (3, 7, 7))
    pred = np.where(rng.random(target.shape) < 0.7, target, 3)
    target[rng.random(target.shape) < 0.1] = 255
    cases.append(dict(pred=pred, target=target, num_classes=c))
    # 255 predicted where the target is ignored: those pixels are left out
    target = rng.integers(0, 3, (2, 5, 5))
    target[:, 0] = 255
    cases.append(dict(pred=np.where(target == 255, 1, target), target=target, num_classes=3))
    return cases


def _miou(pred, target, c, *, ignore=True, absent=None, per_image=False, union_from_target=False):
    if per_image:
        return float(np.nanmean([_miou(p, t, c, ignore=ignore) for p, t in
                                 zip(pred, target, strict=True)]))
    pred, target = pred.ravel(), target.ravel()
    if ignore:
        keep = target != 255
        pred, target = pred[keep], target[keep]
    ious = []
    for k in range(c):
        union = np.sum((pred == k) | (target == k))
        if union_from_target and not np.any(target == k):
            continue
        if union:
            ious.append(np.sum((pred == k) & (target == k)) / union)
        elif absent is not None:
            ious.append(absent)
    return float(np.mean(ious)) if ious else float("nan")


@hidden.check("test_mean_iou")
def _(case, got):
    pred, target, c = case["pred"], case["target"], case["num_classes"]
    where = f"mean_iou(pred {pred.shape}, {c} classes)"
    not_raised(got, where)
    mistakes = {"pixels whose target is 255 were counted: leave them out first":
                _miou(pred, target, c, ignore=False),
                "classes that occur nowhere counted as IoU 0: average over the classes whose "
                "union is not empty": _miou(pred, target, c, absent=0.0),
                "classes that occur nowhere counted as IoU 1": _miou(pred, target, c, absent=1.0),
                "a class that is only predicted was left out (its IoU is 0 and counts)":
                _miou(pred, target, c, union_from_target=True)}
    if pred.ndim == 3:
        mistakes["the mean over images of per-image mIoU: accumulate over the whole data set"] = \
            _miou(pred, target, c, per_image=True)
    check_scalar(got["miou"], ref.mean_iou(pred, target, c), where, rtol=1e-9,
                 mistakes={k: v for k, v in mistakes.items() if np.isfinite(v)})


# ------------------------------------------------------------------------------ part consistency

@hidden.cases("test_part_consistency")
def _(rng):
    cases = []
    for shape in [(3, 9, 9), (40,), (2, 5, 6)]:
        cases.append(dict(part_pred=rng.integers(0, 5, shape),
                          object_pred=rng.integers(0, 3, shape),
                          part_to_object=np.array([0, 1, 1, 2, 2])))
    owner = np.array([0, 1, 1, 1, 2, 3, 3])  # 7 parts of 3 objects
    part = rng.integers(0, 7, (4, 6, 6))
    obj = np.where(rng.random(part.shape) < 0.8, owner[part], rng.integers(0, 4, part.shape))
    cases.append(dict(part_pred=part, object_pred=obj, part_to_object=owner))
    cases.append(dict(part_pred=np.zeros((2, 4, 4), np.int64),
                      object_pred=rng.integers(0, 3, (2, 4, 4)),
                      part_to_object=np.array([0, 1, 2])))
    return cases


def _part_mistakes(part, obj, owner) -> dict:
    """What part_consistency gives after each likely mistake, on the same inputs."""
    return {"the background (part 0) was counted: only pixels with a part count":
            float((owner[part] == obj).mean()),
            "the part label was compared with the object label itself: map it through "
            "part_to_object first": float((part == obj)[part > 0].mean()) if (part > 0).any()
            else 1.0}


@hidden.check("test_part_consistency")
def _(case, got):
    part, owner = case["part_pred"], case["part_to_object"]
    where = f"part_consistency(parts {part.shape}, {len(owner)} part classes)"
    not_raised(got, where)
    want = ref.part_consistency(**case)
    mistakes = _part_mistakes(part, case["object_pred"], owner)
    check_scalar(got["consistency"], want, where, rtol=1e-9,
                 mistakes={k: v for k, v in mistakes.items() if abs(v - want) > 1e-12})


# ------------------------------------------------------------------------------ Dice

@hidden.cases("test_dice")
def _(rng):
    cases = []
    for shape, p in [((3, 6, 7, 8), 0.1), ((2, 16, 16), 0.02), ((5, 30), 0.3), ((1, 4, 4, 4), 0.5)]:
        cases.append(dict(pred=rng.random(shape) < p, target=rng.random(shape) < p))
    pred, target = rng.random((4, 5, 5, 5)) < 0.1, rng.random((4, 5, 5, 5)) < 0.1
    pred[0], target[0] = False, False   # both empty
    pred[1] = False                      # nothing found
    target[2] = False                    # only false positives
    cases.append(dict(pred=pred, target=target))
    return cases


@hidden.check("test_dice")
def _(case, got):
    pred, target = case["pred"].astype(bool), case["target"].astype(bool)
    where = f"dice of {len(pred)} volumes {pred.shape[1:]}"
    not_raised(got, where)
    want = ref.dice(pred, target)
    d = np.asarray(got["dice"], dtype=float)
    if d.size == 1 and len(pred) > 1:
        raise AssertionError(f"{where} gave one number: return one Dice per volume, shape (N,)")
    a, b = pred.reshape(len(pred), -1), target.reshape(len(pred), -1)
    inter, union = (a & b).sum(1), (a | b).sum(1)
    empty = (a.sum(1) + b.sum(1)) == 0
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    if d.shape == want.shape and not np.isfinite(d).all():
        raise AssertionError(f"{where} has NaN: a volume where both masks are empty has Dice 1")
    check_array(d, want, where, rtol=1e-9, mistakes={
        "the IoU |A and B| / |A or B| was computed: Dice is 2 |A and B| / (|A| + |B|)": iou,
        "a volume where both masks are empty should have Dice 1, not 0":
            np.where(empty, 0.0, want)})


# ------------------------------------------------------------------------------ soft Dice

@hidden.cases("test_soft_dice_loss")
def _(rng):
    cases = []
    for shape, p in [((2, 1, 4, 5, 6), 0.1), ((3, 1, 8, 8), 0.05), ((1, 1, 3, 3, 3), 0.3),
                     ((4, 2, 5), 0.2)]:
        cases.append(dict(logits=rng.normal(size=shape) * 2,
                          target=(rng.random(shape) < p).astype(float),
                          eps=float(rng.choice([1.0, 0.5, float(rng.uniform(1e-3, 2))]))))
    target = np.zeros((2, 1, 4, 4, 4))
    cases.append(dict(logits=rng.normal(size=target.shape), target=target, eps=1.0))
    return cases


def _soft_dice_mistakes(logits, target, eps) -> dict:
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    z = logits.flatten(1)

    def per(pv, num_eps=eps, den_eps=eps, square=False):
        den = (pv ** 2).sum(1) + (t ** 2).sum(1) if square else pv.sum(1) + t.sum(1)
        return (2 * (pv * t).sum(1) + num_eps) / (den + den_eps)

    batch = (2 * (p * t).sum() + eps) / (p.sum() + t.sum() + eps)
    return {"the logits were used without the sigmoid": float((1 - per(z)).mean()),
            "the Dice of the whole batch: average the per-volume losses":
                float(1 - batch),
            "Dice itself was returned: the loss is 1 - Dice": float(per(p).mean()),
            "eps only in the denominator: add it to 2 sum(p t) as well":
                float((1 - per(p, num_eps=0.0)).mean()),
            "squares p ** 2 and t ** 2 in the denominator: use sum(p) + sum(t)":
                float((1 - per(p, square=True)).mean())}


@hidden.check("test_soft_dice_loss")
def _(case, got):
    logits = _t(case["logits"]).double().requires_grad_()
    target, eps = _t(case["target"]).double(), case["eps"]
    where = f"soft_dice_loss(logits {tuple(logits.shape)}, eps {eps:g})"
    not_raised(got, where)
    want = ref.soft_dice_loss(logits, target, eps)
    want.backward()
    check_scalar(got["loss"], float(want.detach()), where, rtol=1e-6,
                 mistakes=_soft_dice_mistakes(logits.detach(), target, eps))
    check_array(got["grad"], logits.grad.numpy(), f"the gradient of {where} (build the loss "
                "from torch operations so that it can be trained)", rtol=1e-5, atol=1e-10)


# ------------------------------------------------------------------------------ slice-wise

@hidden.cases("test_slicewise")
def _(rng):
    cases = []
    for n, c, d, h, w, o, pad in [(2, 2, 3, 6, 7, 3, 1), (1, 1, 5, 4, 4, 2, 0),
                                  (3, 3, 2, 5, 6, 1, 1), (2, 2, 4, 4, 4, 4, 0)]:
        cases.append(dict(x=rng.normal(size=(n, c, d, h, w)),
                          weight=rng.normal(size=(o, c, 3, 3)), bias=rng.normal(size=o),
                          padding=pad))
    return cases


@hidden.check("test_slicewise")
def _(case, got):
    x, wt, b, pad = _t(case["x"]).double(), _t(case["weight"]).double(), \
        _t(case["bias"]).double(), case["padding"]
    where = (f"slicewise(conv2d {wt.shape[1]} -> {wt.shape[0]} channels, padding {pad}) on x "
             f"{tuple(x.shape)}")
    not_raised(got, where)
    net = torch.nn.Conv2d(wt.shape[1], wt.shape[0], 3, padding=pad).double()
    with torch.no_grad():
        net.weight.copy_(wt)
        net.bias.copy_(b)
        want = ref.slicewise(net, x)
        n, c, d, h, w = x.shape
        flat = net(x.permute(0, 2, 1, 3, 4).reshape(n * d, c, h, w))
        no_permute_back = flat.reshape(n, d, *flat.shape[1:])
        mistakes = {"the output was reshaped to (N, C', D, H, W) straight from (N * D, ...): "
                    "reshape to (N, D, C', H, W), then move D behind C'":
                    flat.reshape(n, flat.shape[1], d, *flat.shape[2:]).numpy()}
        if c > 1:
            mixed = net(x.reshape(n * d, c, h, w))
            mistakes["x was reshaped to (N * D, C, H, W) without moving D next to N first: "
                     "the slices mix channels and depths"] = (
                mixed.reshape(n, d, *mixed.shape[1:]).permute(0, 2, 1, 3, 4).numpy())
    out = np.asarray(got["out"], dtype=float)
    if out.shape == tuple(no_permute_back.shape) and out.shape != tuple(want.shape):
        raise AssertionError(f"{where} has shape {out.shape} (N, D, C', H, W): the channels "
                             "come before the depth, (N, C', D, H', W')")
    check_array(out, want.numpy(), where, rtol=1e-6, atol=1e-9, mistakes=mistakes)


# ------------------------------------------------------------------------------ lesions

@hidden.cases("test_lesion_detection_rate")
def _(rng):
    cases = []
    for n, shape, k in [(3, (6, 6, 6), 3), (2, (10, 10), 4), (4, (5, 5, 5), 2)]:
        lesions = np.zeros((n, *shape), np.int64)
        for v in range(n):
            for j in range(1, int(rng.integers(0, k + 1)) + 1):
                lesions[v][rng.random(shape) < 0.04] = j
        pred = rng.random(lesions.shape) < 0.05
        pred |= (lesions > 0) & (rng.random(lesions.shape) < 0.3)
        cases.append(dict(pred=pred, lesions=lesions))
    # the same lesion numbers in every volume; one found in volume 0 only
    lesions = np.zeros((3, 4, 4, 4), np.int64)
    lesions[:, 0, 0, :2] = 1
    lesions[:, 3, 3, 2:] = 2
    pred = np.zeros(lesions.shape, bool)
    pred[0, 0, 0, 0] = True
    cases.append(dict(pred=pred, lesions=lesions))
    cases.append(dict(pred=rng.random((2, 4, 4)) < 0.5, lesions=np.zeros((2, 4, 4), np.int64)))
    return cases


@hidden.check("test_lesion_detection_rate")
def _(case, got):
    pred, lesions = case["pred"].astype(bool), case["lesions"]
    where = f"lesion_detection_rate on {len(pred)} volumes"
    not_raised(got, where)
    want = np.array(ref.lesion_detection_rate(pred, lesions), dtype=float)
    counted = np.asarray(got["counts"], dtype=float)
    merged_ids = np.unique(lesions[lesions > 0])
    merged = [len(np.unique(lesions[pred & (lesions > 0)])), len(merged_ids)]
    whole = sum(int(all(p[les == j].all() for j in [j])) for p, les in zip(pred, lesions,
                                                                            strict=True)
                for j in np.unique(les[les > 0]))
    check_array(counted, want, f"(detected, total) of {where}", mistakes={
        "lesion numbers were counted over all volumes at once: number 1 in one volume is "
        "not number 1 in another; count per volume": merged,
        "voxels were counted: count lesions (detected, total)":
            [int((pred & (lesions > 0)).sum()), int((lesions > 0).sum())],
        "a lesion counted only when all its voxels were found (one voxel is enough)":
            [whole, want[1]]})


# ------------------------------------------------------------------------------ dissection

@hidden.cases("test_dissect")
def _(rng):
    cases = []
    for n, k, c, h, big, top in [(6, 3, 2, 4, 8, 0.05), (5, 4, 3, 3, 9, 0.1),
                                 (8, 2, 2, 4, 12, 0.005), (4, 3, 4, 5, 10, 0.02)]:
        acts = np.maximum(rng.normal(size=(n, k, h, h)), 0) ** 2
        masks = rng.random((n, c, big, big)) < 0.2
        cases.append(dict(activations=acts, masks=masks, top=top))
    return cases


def _dissect_variant(acts, masks, top, *, where="raw", mode="bilinear", align=False,
                     per_image=False, quantile=None):
    acts = torch.as_tensor(acts, dtype=torch.float64)
    masks = torch.as_tensor(masks).bool()
    k = acts.shape[1]
    kw = {"align_corners": align} if mode == "bilinear" else {}
    up = F.interpolate(acts, size=masks.shape[-2:], mode=mode, **kw)
    q = 1 - top if quantile is None else quantile
    source = acts if where == "raw" else up
    if where == "all units":
        t = torch.quantile(acts.reshape(-1), q).expand(k)
    else:
        t = torch.quantile(source.transpose(0, 1).reshape(k, -1), q, dim=1)
    on = (up > t[None, :, None, None]).flatten(2).double()
    m = masks.flatten(2).double()
    inter = torch.einsum("nkp,ncp->nkc", on, m)
    union = on.sum(2)[:, :, None] + m.sum(2)[:, None, :] - inter
    if per_image:
        return torch.where(union > 0, inter / union.clamp(min=1), 0.0).mean(0).numpy()
    i, u = inter.sum(0), union.sum(0)
    return torch.where(u > 0, i / u.clamp(min=1), 0.0).numpy()


@hidden.check("test_dissect")
def _(case, got):
    acts, masks, top = case["activations"], case["masks"], case["top"]
    where = f"dissect(activations {acts.shape}, masks {masks.shape}, top {top:g})"
    not_raised(got, where)
    want = ref.dissect(acts, masks, top)
    iou = np.asarray(got["iou"], dtype=float)
    if iou.shape == want.shape[::-1] and want.shape[0] != want.shape[1]:
        raise AssertionError(f"{where} has shape {iou.shape}: (units, concepts) = {want.shape}")
    check_array(iou, want, where, rtol=1e-6, atol=1e-9, mistakes={
        "the threshold was taken from the upsampled maps: take T_k from the activations "
        "themselves": _dissect_variant(acts, masks, top, where="upsampled"),
        "the threshold is the top quantile itself: T_k is the (1 - top) quantile":
            _dissect_variant(acts, masks, top, quantile=top),
        "one threshold for all units: T_k is per unit": _dissect_variant(acts, masks, top,
                                                                         where="all units"),
        "the IoU was averaged over images: sum intersections and unions over the data set":
            _dissect_variant(acts, masks, top, per_image=True),
        "nearest upsampling: use bilinear": _dissect_variant(acts, masks, top, mode="nearest"),
        "align_corners=True: use align_corners=False": _dissect_variant(acts, masks, top,
                                                                        align=True)})


# ------------------------------------------------------------------------------ locally connected

@hidden.cases("test_locally_connected")
def _(rng):
    cases = []
    for n, c, o, h, w, k, s in [(2, 3, 4, 7, 5, 3, 1), (1, 2, 3, 9, 6, 3, 2),
                                (3, 1, 2, 6, 8, 2, 2), (2, 2, 5, 5, 5, 5, 1)]:
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        cases.append(dict(x=rng.normal(size=(n, c, h, w)),
                          weight=rng.normal(size=(oh * ow, o, c * k * k)),
                          bias=rng.normal(size=(oh * ow, o)), kernel_size=k, stride=s))
    return cases


@hidden.check("test_locally_connected")
def _(case, got):
    x = _t(case["x"]).double().requires_grad_()
    wt = _t(case["weight"]).double().requires_grad_()
    b = _t(case["bias"]).double()
    k, s = case["kernel_size"], case["stride"]
    where = (f"locally_connected(x {tuple(x.shape)}, k {k}, stride {s})")
    not_raised(got, where)
    want = ref.locally_connected(x, wt, b, k, s)
    want.sum().backward()
    n, _, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    with torch.no_grad():
        cols = F.unfold(x, k, stride=s)
        col_major = wt.reshape(oh, ow, *wt.shape[1:]).transpose(0, 1).reshape(wt.shape)
        mistakes = {
            "the positions were numbered column by column: position (i, j) is i * OW + j":
                ref.locally_connected(x, col_major, b.reshape(oh, ow, -1).transpose(0, 1)
                                      .reshape(b.shape), k, s).numpy(),
            "the weights of position 0 were used everywhere (that is a convolution)":
                ref.locally_connected(x, wt[:1].expand_as(wt), b[:1].expand_as(b), k, s).numpy(),
            "the bias was left out": torch.einsum("nql,loq->nol", cols, wt)
                .reshape(n, -1, oh, ow).numpy()}
    out = np.asarray(got["out"], dtype=float)
    o = wt.shape[1]
    if out.shape == (n, oh, ow, o) and (oh, ow) != (ow, o):
        raise AssertionError(f"{where} has shape {out.shape} (N, OH, OW, O): the channels come "
                             "first, (N, O, OH, OW)")
    check_array(out, want.detach().numpy(), where, rtol=1e-6, atol=1e-9, mistakes=mistakes)
    check_array(got["grad_weight"], wt.grad.numpy(), f"the gradient of sum({where}) with "
                "respect to the weights (use torch operations: F.unfold, einsum or matmul)",
                rtol=1e-6, atol=1e-9)
