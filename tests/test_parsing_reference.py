"""sit471.reference.parsing (assignment 09) against torch and independent computations:
conv3d and conv2d for the slice-wise wrapper, unfold-free loops and conv2d for the locally
connected layer, autograd and a hand count for the losses, brute-force loops for Dice, lesions,
mIoU and dissection; and the data generators' promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sit471.reference import parsing as ref

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------ losses

def test_joint_loss_is_pixel_ce_plus_weighted_scene_ce():
    torch.manual_seed(0)
    pix = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    labels = torch.randint(0, 4, (3, 5, 6))
    labels[0, :2] = 255
    scene, kind = torch.randn(3, 2, dtype=torch.float64), torch.tensor([0, 1, 1])
    # by hand: -log softmax at the label, averaged over the pixels that are not 255
    logp = torch.log_softmax(pix, 1)
    keep = labels != 255
    picked = logp.permute(0, 2, 3, 1)[keep].gather(1, labels[keep][:, None])
    pixel = -picked.mean()
    scene_ce = -torch.log_softmax(scene, 1)[torch.arange(3), kind].mean()
    for w in (0.0, 0.3, 10.0):
        got = ref.joint_loss(pix, labels, scene, kind, w)
        assert torch.allclose(got, pixel + w * scene_ce)


def test_soft_dice_loss_matches_a_hand_computation_and_its_gradient():
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(2, 1, 4, 5, 6) < 0.2).double()
    p = torch.sigmoid(logits.detach()).numpy().reshape(2, -1)
    t = target.numpy().reshape(2, -1)
    want = np.mean([1 - (2 * (pi * ti).sum() + 1) / (pi.sum() + ti.sum() + 1)
                    for pi, ti in zip(p, t, strict=True)])
    assert np.isclose(float(ref.soft_dice_loss(logits.detach(), target)), want)
    assert torch.autograd.gradcheck(lambda z: ref.soft_dice_loss(z, target, eps=0.5), (logits,))
    perfect = torch.where(target > 0, 40.0, -40.0).double()
    assert float(ref.soft_dice_loss(perfect, target)) < 1e-9


def test_dice_by_brute_force():
    pred = RNG.random((5, 4, 6, 7)) < 0.3
    target = RNG.random((5, 4, 6, 7)) < 0.2
    pred[3], target[3] = False, False      # both empty: 1
    pred[4] = False                        # nothing predicted: 0
    want = []
    for p, t in zip(pred, target, strict=True):
        a = {i for i, v in enumerate(p.ravel()) if v}
        b = {i for i, v in enumerate(t.ravel()) if v}
        want.append(1.0 if not a and not b else 2 * len(a & b) / (len(a) + len(b)))
    assert np.allclose(ref.dice(pred, target), want)
    assert ref.dice(pred, target)[3] == 1.0 and ref.dice(pred, target)[4] == 0.0


# ------------------------------------------------------------------------------ slice-wise

@pytest.mark.parametrize("shape", [(2, 1, 5, 8, 9), (1, 3, 1, 6, 6), (3, 2, 4, 5, 7)])
def test_slicewise_equals_conv3d_with_a_flat_kernel_and_a_loop(shape):
    torch.manual_seed(2)
    c = shape[1]
    conv = torch.nn.Conv2d(c, 4, 3, padding=1).double()
    x = torch.randn(*shape, dtype=torch.float64)
    got = ref.slicewise(conv, x)
    loop = torch.stack([conv(x[:, :, d]) for d in range(shape[2])], 2)
    assert torch.allclose(got, loop)
    # the same thing as a 3-D convolution whose kernel is 1 deep
    w3 = conv.weight[:, :, None]
    assert torch.allclose(got, F.conv3d(x, w3, conv.bias, padding=(0, 1, 1)))


# ------------------------------------------------------------------------------ lesions

def _components_by_flood_fill(mask: np.ndarray) -> list[set]:
    seen, comps = np.zeros_like(mask, bool), []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        stack, comp = [start], set()
        seen[start] = True
        while stack:
            v = stack.pop()
            comp.add(v)
            for axis in range(mask.ndim):
                for step in (-1, 1):
                    w = list(v)
                    w[axis] += step
                    w = tuple(w)
                    if all(0 <= w[a] < mask.shape[a] for a in range(mask.ndim)) and mask[w] \
                            and not seen[w]:
                        seen[w] = True
                        stack.append(w)
        comps.append(comp)
    return comps


def test_lesion_detection_rate_against_flood_fill_on_generated_volumes():
    from sit471.volumes import brain_volumes

    data = brain_volumes(3, seed=5)
    pred = np.zeros_like(data["target"])
    pred[0] = data["lesions"][0] == 1      # one lesion of volume 0, whole
    pred[1][tuple(np.argwhere(data["lesions"][1] == 2)[0])] = True  # one voxel of lesion 2
    pred[2][data["brain"][2] & ~data["target"][2]] = True  # only false positives
    found, total = ref.lesion_detection_rate(pred, data["lesions"])
    comps = [c for v in data["target"] for c in _components_by_flood_fill(v)]
    assert total == len(comps) == sum(len(np.unique(v[v > 0])) for v in data["lesions"])
    hits = sum(any(pred[n][tuple(np.array(list(c)).T)].any() for c in
                   _components_by_flood_fill(data["target"][n])) for n in range(3))
    assert found == hits == 2


# ------------------------------------------------------------------------------ parts, mIoU

def test_part_consistency_by_counting():
    part = np.array([[0, 1, 2], [3, 4, 4]])
    obj = np.array([[2, 1, 2], [2, 1, 0]])
    owner = np.array([0, 1, 1, 2, 2])
    # pixels with a part: 1->1 ok, 2->1 vs 2 no, 3->2 ok, 4->2 vs 1 no, 4->2 vs 0 no
    assert ref.part_consistency(part, obj, owner) == pytest.approx(2 / 5)
    assert ref.part_consistency(np.zeros((2, 2), int), obj[:, :2], owner) == 1.0


def test_mean_iou_against_a_confusion_matrix():
    from sit471.reference.dense import confusion_matrix, iou_from_confusion

    pred = RNG.integers(0, 5, (4, 9, 9))
    target = RNG.integers(0, 4, (4, 9, 9))
    target[0, :3] = 255
    _, miou = iou_from_confusion(confusion_matrix(pred, target, 5))
    assert ref.mean_iou(pred, target, 5) == pytest.approx(miou)


# ------------------------------------------------------------------------------ dissection

def test_dissect_against_numpy_loops():
    torch.manual_seed(3)
    acts = torch.rand(6, 3, 4, 4, dtype=torch.float64) ** 3
    masks = torch.rand(6, 2, 8, 8) < 0.3
    top = 0.05
    got = ref.dissect(acts, masks, top)
    a = acts.numpy()
    want = np.zeros((3, 2))
    for k in range(3):
        t = np.quantile(a[:, k].ravel(), 1 - top)
        for c in range(2):
            inter = union = 0
            for n in range(6):
                up = F.interpolate(acts[n:n + 1, k:k + 1], size=(8, 8), mode="bilinear",
                                   align_corners=False)[0, 0].numpy()
                m, lab = up > t, masks[n, c].numpy()
                inter += (m & lab).sum()
                union += (m | lab).sum()
            want[k, c] = inter / union
    assert got.shape == (3, 2) and np.allclose(got, want)
    # about `top` of the raw activations lie above the threshold
    t = torch.quantile(acts[:, 0].reshape(-1), 1 - top)
    assert abs(float((acts[:, 0] > t).double().mean()) - top) < 0.02


def test_dissect_finds_a_unit_that_copies_a_concept():
    masks = torch.zeros(10, 2, 8, 8, dtype=torch.bool)
    for n in range(10):
        masks[n, 0, n % 4: n % 4 + 2, 2:4] = True
    acts = torch.cat([masks[:, :1].double(), torch.rand(10, 1, 8, 8, dtype=torch.float64)], 1)
    iou = ref.dissect(acts, masks, top=masks[:, 0].double().mean().item())
    assert iou[0, 0] > 0.9 and iou[1, 0] < 0.3


# ------------------------------------------------------------------------------ locally connected

def _lc_loop(x, w, b, k, s):
    n, c, h, wd = x.shape
    oh, ow = (h - k) // s + 1, (wd - k) // s + 1
    out = torch.zeros(n, w.shape[1], oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * s:i * s + k, j * s:j * s + k].reshape(n, -1)
            out[:, :, i, j] = patch @ w[i * ow + j].T + b[i * ow + j]
    return out


@pytest.mark.parametrize("n,c,o,h,w,k,s", [(2, 3, 4, 7, 7, 3, 1), (1, 1, 2, 8, 6, 2, 2),
                                           (3, 2, 5, 9, 10, 3, 2), (2, 4, 1, 5, 5, 5, 1)])
def test_locally_connected_against_loops_and_conv2d(n, c, o, h, w, k, s):
    torch.manual_seed(4)
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    weight = torch.randn(oh * ow, o, c * k * k, dtype=torch.float64)
    bias = torch.randn(oh * ow, o, dtype=torch.float64)
    got = ref.locally_connected(x, weight, bias, k, s)
    assert got.shape == (n, o, oh, ow)
    assert torch.allclose(got, _lc_loop(x, weight, bias, k, s))
    # shared weights: a convolution
    cw, cb = torch.randn(o, c, k, k, dtype=torch.float64), torch.randn(o, dtype=torch.float64)
    shared = ref.locally_connected(x, cw.reshape(1, o, -1).expand(oh * ow, o, -1).contiguous(),
                                   cb.expand(oh * ow, o).contiguous(), k, s)
    assert torch.allclose(shared, F.conv2d(x, cw, cb, stride=s))


def test_locally_connected_gradients():
    torch.manual_seed(5)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 3, 18, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: ref.locally_connected(a, b, c, 3, 1),
                                    (x, weight, bias))


# ------------------------------------------------------------------------------ generators

def test_generators_keep_their_promises():
    from sit471 import parsing, units
    from sit471.volumes import Net2D, Net3D, brain_volumes, n_parameters

    vol = brain_volumes(6, seed=1)
    assert vol["x"].shape == (6, 1, 32, 32, 32) and 0.004 < vol["target"].mean() < 0.02
    assert ((vol["lesions"] > 0) == vol["target"]).all() and (vol["target"] <= vol["brain"]).all()
    assert abs(n_parameters(Net3D()) - n_parameters(Net2D())) < 0.05 * n_parameters(Net3D())
    a, b = brain_volumes(2, seed=3), brain_volumes(2, seed=3)
    assert np.array_equal(a["x"], b["x"])

    parts = parsing.part_scenes(20, seed=2)
    owner = parsing.PART_TO_OBJECT[parts["parts"]]
    assert (owner == parts["objects"]).all()
    assert set(np.unique(parts["parts"])) == {0, 1, 2, 3, 4}

    concepts = units.concept_scenes(20, seed=3)
    assert concepts["masks"].shape == (20, 5, 32, 32)
    assert (concepts["masks"].sum(1) <= 1).all()  # concepts never overlap
    assert (concepts["present"] == concepts["masks"][:, :4].any((2, 3))).all()

    faces = units.face_sets(3, 2, seed=4, shift=4)
    assert faces["x"].shape == (6, 1, 32, 32) and list(faces["identity"]) == [0, 0, 1, 1, 2, 2]
