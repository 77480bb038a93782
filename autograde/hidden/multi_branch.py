"""Hidden tests of assignment 07 (multi-channel input, multi-branch networks), decided by
the grader.

Each test draws its inputs from the run's generator; the notebook's probe calls the student's
functions on them and returns the outputs (and what the visible tests check besides: the
input left untouched, the dtype, ValueError on bad input); the check compares them with
``sit471.reference.multi`` in the grader's process. ``cross_modal_forward`` gets modules
built from a seed in the case: the probe and :func:`_cross_modal_parts` build the same ones.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from autograde.verdict import HiddenTests
from sit471.checks import check_array
from sit471.multi import encoder
from sit471.reference import multi as ref

hidden = HiddenTests()


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a))


def _shape(a) -> tuple[int, ...]:
    return tuple(int(s) for s in np.shape(a))


def _raises(got_raised: list, bad: list, describe) -> None:
    """The probe's exception names for the bad inputs: each must be ValueError."""
    assert isinstance(got_raised, list) and len(got_raised) == len(bad), (
        "the results for the bad inputs are missing")
    for name, item in zip(got_raised, bad, strict=True):
        if name != "ValueError":
            what = "nothing was raised" if name is None else f"got {name}"
            raise AssertionError(f"{describe(item)} should raise ValueError ({what})")


# ----------------------------------------------------------------------------- band_ablation


def _ablation(predict, x: torch.Tensor, y: torch.Tensor, fill: str = "mean",
              flip: bool = False) -> np.ndarray:
    """band_ablation, right (fill="mean") or with a common mistake."""
    def acc(images):
        return float((predict(images).argmax(dim=1) == y).float().mean())

    base, drops = acc(x), []
    for c in range(x.shape[1]):
        ab = x.clone()
        if fill == "own":
            ab[:, c] = x[:, c].mean((1, 2), keepdim=True)
        else:
            ab[:, c] = x[:, c].mean() if fill == "mean" else 0.0
        drops.append(acc(ab) - base if flip else base - acc(ab))
    return np.array(drops, dtype=np.float32)


@hidden.cases("test_band_ablation")
def _(rng):
    cases = []
    for n, c, h, w, k in [(80, 5, 3, 2, 4), (50, 4, 2, 5, 3)]:
        offset = rng.uniform(0.5, 3.0, c)  # far from 0: setting a band to 0 is not its mean
        x = rng.normal(size=(n, c, h, w)) + offset[:, None, None]
        weights = rng.normal(size=(c, k))
        bias = -offset @ weights  # a linear classifier of the bands' means, centred
        y = (x.mean((2, 3)) @ weights + bias).argmax(1)
        noisy = rng.random(n) < 0.15
        y[noisy] = rng.integers(0, k, int(noisy.sum()))
        cases.append(dict(x=x, y=y, w=weights, b=bias, bad=[[5, c, 4], [5, c - 1, 3, 3]]))
    return cases


@hidden.check("test_band_ablation")
def _(case, got):
    x, y, w, b = _t(case["x"]), _t(case["y"]), _t(case["w"]), _t(case["b"])
    where = f"x {tuple(x.shape)}"
    if _shape(got["x_after"]) != tuple(x.shape) or not np.array_equal(got["x_after"], case["x"]):
        raise AssertionError(f"band_ablation changed x: ablate a copy (x.clone()); {where}")

    def predict(images):
        return images.mean((2, 3)) @ w + b

    with torch.no_grad():
        expected = ref.band_ablation(predict, x, y).numpy()
        mistakes = {"band set to 0 instead of its mean over all images and pixels":
                    _ablation(predict, x, y, "zero"),
                    "each image's own mean (keeps the information): take the mean over ALL "
                    "images and pixels": _ablation(predict, x, y, "own"),
                    "the ablated accuracy minus the full accuracy: return full - ablated":
                    _ablation(predict, x, y, flip=True)}
    check_array(got["drop"], expected, f"drops for {where}", atol=1e-6, mistakes=mistakes)
    _raises(got["raised"], case["bad"],
            lambda s: f"x {tuple(s)} with y (4,)")


# ----------------------------------------------------------------------------- late_fusion


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@hidden.cases("test_late_fusion")
def _(rng):
    cases = []
    for s, n, k, weighted in [(3, 9, 6, False), (3, 5, 4, True), (2, 7, 3, True),
                              (1, 4, 5, False)]:
        zs = [rng.normal(scale=4, size=(n, k)) for _ in range(s)]
        weights = None
        if weighted:
            weights = [float(v) for v in rng.uniform(0.1, 2.0, s)]
            weights[int(rng.integers(s))] = 0.0
        cases.append(dict(zs=zs, weights=weights, bad=[]))
    cases[0]["bad"] = [[[], None], [[[n, k], [n, k - 1]], None], [[[n, k]] * 2, [1.0, -1.0]],
                       [[[n, k]] * 2, [1.0, 1.0, 1.0]]]
    return cases


@hidden.check("test_late_fusion")
def _(case, got):
    zs, weights = [np.asarray(z, dtype=np.float64) for z in case["zs"]], case["weights"]
    s, (n, k) = len(zs), zs[0].shape
    w = np.ones(s) if weights is None else np.asarray(weights, dtype=np.float64)
    wn = w / w.sum()
    probs = [_softmax(z, 1) for z in zs]
    expected = ref.late_fusion([_t(z) for z in zs], weights=weights).numpy()
    mean_logits = sum(wi * z for wi, z in zip(wn, zs, strict=True))
    mistakes = {"the softmax of the averaged LOGITS: fuse after the softmax, average the "
                "probabilities": _softmax(mean_logits, 1),
                "the averaged logits without any softmax": mean_logits,
                "the softmax taken over the examples (dim=0) instead of the classes (dim=1)":
                sum(wi * _softmax(z, 0) for wi, z in zip(wn, zs, strict=True))}
    if weights is None:
        mistakes["a sum of the probabilities: divide by the number of streams (or the "
                 "weights' sum)"] = sum(probs)
    else:
        mistakes["weights that were not divided by their sum"] = sum(
            wi * p for wi, p in zip(w, probs, strict=True))
        mistakes["the weights applied to the wrong streams"] = sum(
            wi * p for wi, p in zip(wn[::-1], probs, strict=True))
    what = f"{s} streams ({n}, {k})" + ("" if weights is None else
                                        f", weights {[round(v, 2) for v in weights]}")
    check_array(got["p"], expected, f"late_fusion of {what}", atol=1e-5, mistakes=mistakes)

    def describe(item):
        shapes, wts = item
        return f"late_fusion of streams {[tuple(sh) for sh in shapes]}, weights {wts}"

    _raises(got["raised"], case["bad"], describe)


# ----------------------------------------------------------------------------- motion_field


def _motion_variant(f0: torch.Tensor, f1: torch.Tensor, window: int,
                    frame0_gradients: bool = False) -> np.ndarray:
    """Lucas-Kanade as the reference computes it, with the gradients of frame0 alone."""
    f0, f1 = f0.double(), f1.double()
    ix, iy = ref._gradients(f0 if frame0_gradients else (f0 + f1) / 2)
    it = f1 - f0
    m = ref._window_mean
    sxx, syy, sxy = m(ix * ix, window), m(iy * iy, window), m(ix * iy, window)
    sxt, syt = m(ix * it, window), m(iy * it, window)
    det = sxx * syy - sxy * sxy
    ok = det > 1e-6
    safe = torch.where(ok, det, torch.ones_like(det))
    u = torch.where(ok, (-syy * sxt + sxy * syt) / safe, torch.zeros_like(det))
    v = torch.where(ok, (sxy * sxt - sxx * syt) / safe, torch.zeros_like(det))
    return torch.stack([u, v], dim=-3).numpy()


def _picture(dx: float, dy: float, size: int = 24) -> np.ndarray:
    yy, xx = np.meshgrid(np.arange(float(size)), np.arange(float(size)), indexing="ij")
    return (np.exp(-((xx - 11 - dx) ** 2 + (yy - 12 - dy) ** 2) / 25)
            + 0.5 * np.exp(-((xx - 15 - dx) ** 2 + (yy - 8 - dy) ** 2) / 8)).astype(np.float32)


@hidden.cases("test_motion_field")
def _(rng):
    level = float(rng.uniform(0.2, 0.8))
    flat = np.full((3, 2, 6, 7), level)
    cases = [dict(f0=flat, f1=flat + float(rng.uniform(0.05, 0.3)), window=3,
                  bad=[[[3, 6, 7], [3, 6, 6], 5], [[3, 6, 7], [3, 6, 7], 4],
                       [[3, 6, 7], [3, 6, 7], 0]])]
    for shape, window in [((2, 9, 11), 3), ((3, 8, 7), 5), ((10, 12), 7)]:
        f0 = rng.random(shape)
        cases.append(dict(f0=f0, f1=f0 + 0.1 * rng.random(shape), window=window, bad=[]))
    c0 = rng.random((4, 5)).astype(np.float32)
    cases.append(dict(f0=c0, f1=np.roll(c0, 1, axis=1), window=5, bad=[]))
    dx, dy = rng.uniform(-0.4, 0.4, 2)
    cases.append(dict(f0=_picture(0, 0), f1=_picture(dx, dy), window=5, bad=[]))
    return cases


@hidden.check("test_motion_field")
def _(case, got):
    f0, f1, window = _t(case["f0"]), _t(case["f1"]), case["window"]
    flow = got["flow"]
    expected = ref.motion_field(f0, f1, window=window)
    flat = bool((f0 == f0.flatten()[0]).all())
    where = f"frames {tuple(f0.shape)} {str(f0.dtype)[6:]}, window {window}"
    if _shape(flow) != tuple(expected.shape):
        raise AssertionError(f"frames {tuple(f0.shape)} give a motion field "
                             f"{tuple(expected.shape)}, got {_shape(flow)}")
    if not isinstance(flow, np.ndarray) or not np.isfinite(flow).all():
        raise AssertionError(f"NaN or inf in {'a flat region' if flat else 'the motion'} "
                             f"({where}): where D <= eps return 0")
    want = str(expected.dtype)[6:]
    if flow.dtype != np.dtype(want):
        raise AssertionError(f"return the frames' dtype ({want}), got {flow.dtype} ({where})")
    if flat and np.abs(flow).max() > 0:
        raise AssertionError(f"{where}: a flat region has no visible motion: return 0 where "
                             "D <= eps")
    e = expected.double().numpy()
    check_array(flow, e, f"motion_field on {where}", atol=1e-6 if want == "float64" else 1e-5,
                mistakes={"u and v are swapped (or x and y): channel 0 is u, the motion "
                          "along the WIDTH (last axis)": e[..., ::-1, :, :],
                          "the gradients of frame0 alone: take Ix, Iy on the mean of the two "
                          "frames": _motion_variant(f0, f1, window, frame0_gradients=True)})

    def describe(item):
        s0, s1, win = item
        return f"motion_field of frames {tuple(s0)}, {tuple(s1)}, window {win}"

    _raises(got["raised"], case["bad"], describe)


# ----------------------------------------------------------------------------- Lab

_D50 = (0.96422, 1.0, 0.82521)
_KNOWN = np.array([[1.0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5],
                   [0.002, 0.001, 0.003]])


def _lab_variant(rgb: np.ndarray, gamma: bool = True, white=ref.WHITE_D65,
                 transposed: bool = True, linear_part: bool = True) -> np.ndarray:
    """rgb_to_lab as the reference computes it, or with one of the common mistakes."""
    c = np.clip(np.asarray(rgb, dtype=np.float64), 0, 1)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) if gamma else c
    m = np.array(ref.RGB_TO_XYZ)
    t = (lin @ (m.T if transposed else m)) / np.array(white)
    d = 6 / 29
    f = np.cbrt(t) if not linear_part else np.where(
        t > d ** 3, np.cbrt(np.maximum(t, d ** 3)), t / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def _rgb_gamma22(lab: np.ndarray) -> np.ndarray:
    """lab_to_rgb with the upper part of the sRGB gamma as lin ** (1 / 2.2)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    d = 6 / 29
    t = np.where(f > d, f ** 3, 3 * d * d * (f - 4 / 29)) * np.array(ref.WHITE_D65)
    lin = np.clip(t @ np.linalg.inv(np.array(ref.RGB_TO_XYZ)).T, 0, 1)
    return np.clip(np.where(lin <= 0.0031308, 12.92 * lin, lin ** (1 / 2.2)), 0, 1)


@hidden.cases("test_lab")
def _(rng):
    cases = []
    for shape, lab_n in [((21, 3), 30), ((3, 2, 4, 3), 12)]:
        lab = np.stack([rng.uniform(0, 100, lab_n), rng.uniform(-100, 100, lab_n),
                        rng.uniform(-100, 100, lab_n)], axis=-1)
        cases.append(dict(rgb=rng.random(shape), known=_KNOWN, lab=lab,
                          rgb32=rng.random((2, 4, 3)).astype(np.float32), bad=[]))
    cases[0]["bad"] = [["rgb_to_lab", np.full((2, 3), float(rng.uniform(1.5, 255)))],
                       ["rgb_to_lab", rng.random((3, 4))],
                       ["lab_to_rgb", np.array([float(rng.uniform(101, 150)), 0.0, 0.0])],
                       ["lab_to_rgb", np.zeros((2, 2))]]
    return cases


@hidden.check("test_lab")
def _(case, got):
    rgb, lab = np.asarray(case["rgb"]), np.asarray(case["lab"])

    def mistakes(x):
        return {"the sRGB gamma was not undone": _lab_variant(x, gamma=False),
                "X, Y, Z not divided by the D65 white point (0.95047, 1, 1.08883)":
                _lab_variant(x, white=(1.0, 1.0, 1.0)),
                "the D50 white point: divide by D65 (0.95047, 1, 1.08883)":
                _lab_variant(x, white=_D50),
                "lin @ RGB_TO_XYZ: the matrix must be transposed (lin @ M.T)":
                _lab_variant(x, transposed=False),
                "the cube root near 0: use t / (3 delta^2) + 4/29 below delta^3":
                _lab_variant(x, linear_part=False)}

    known = got["known"]
    if _shape(known) != _KNOWN.shape:
        raise AssertionError(f"{len(_KNOWN)} colours (7, 3) give Lab (7, 3), got {_shape(known)}")
    known = np.asarray(known, dtype=np.float64)
    if abs(known[5, 0] - 76.0693) < 0.05:
        raise AssertionError("grey 0.5 gives L 76.07 instead of 53.39: the sRGB gamma was not "
                             "undone (linearise first: ((c + 0.055) / 1.055) ** 2.4)")
    if known[1, 0] < -1:
        raise AssertionError(f"black gives L = {known[1, 0]:.2f} instead of 0: near 0 use "
                             "the straight line t / (3 delta^2) + 4/29, not the cube root")
    if abs(known[0, 1]) > 0.5 or abs(known[0, 2]) > 0.5:
        raise AssertionError(f"white (1, 1, 1) should have a = b = 0, got a {known[0, 1]:.2f}"
                             f", b {known[0, 2]:.2f}: divide X, Y, Z by the D65 white point "
                             "(0.95047, 1, 1.08883)")
    check_array(known, ref.rgb_to_lab(_t(_KNOWN)).numpy(), "rgb_to_lab of white, black, red, "
                "green, blue, grey 0.5, a very dark colour", atol=1e-8, mistakes=mistakes(_KNOWN))
    lab_got = got["lab"]
    if _shape(lab_got) != rgb.shape:
        raise AssertionError(f"colours {rgb.shape} give Lab {rgb.shape}, got {_shape(lab_got)}")
    check_array(lab_got, ref.rgb_to_lab(_t(rgb)).numpy(), f"rgb_to_lab of colours {rgb.shape}",
                atol=1e-8, mistakes=mistakes(rgb))
    lab32 = got["lab32"]
    if not isinstance(lab32, np.ndarray) or lab32.dtype != np.float32:
        raise AssertionError(f"keep the input's dtype: float32 colours give float32 Lab, got "
                             f"{getattr(lab32, 'dtype', type(lab32).__name__)}")
    check_array(lab32, ref.rgb_to_lab(_t(case["rgb32"])).numpy(), "rgb_to_lab of float32 "
                "colours", atol=1e-3)
    if isinstance(got["back"], str):
        raise AssertionError(f"x {rgb.shape}: lab_to_rgb(rgb_to_lab(x)) raised {got['back']}")
    check_array(got["back"], rgb, f"x {rgb.shape}: lab_to_rgb(rgb_to_lab(x))", atol=1e-6,
                mistakes={"the sRGB gamma re-applied as lin ** (1 / 2.2): use 12.92 c below "
                          "0.0031308, else 1.055 c^(1/2.4) - 0.055": _rgb_gamma22(
                              ref.rgb_to_lab(_t(rgb)).numpy())})
    rgb_got = np.asarray(got["rgb"], dtype=np.float64)
    if rgb_got.shape == lab.shape and (rgb_got.min() < 0 or rgb_got.max() > 1):
        raise AssertionError(f"lab_to_rgb gave values in [{rgb_got.min():.3g}, "
                             f"{rgb_got.max():.3g}]: colours outside the sRGB gamut must be "
                             "clipped to [0, 1]")
    check_array(rgb_got, ref.lab_to_rgb(_t(lab)).numpy(), f"lab_to_rgb of random Lab {lab.shape}"
                " (many outside the gamut)", atol=1e-6,
                mistakes={"the sRGB gamma re-applied as lin ** (1 / 2.2)": _rgb_gamma22(lab)})

    def describe(item):
        name, a = item
        a = np.asarray(a)
        return f"{name} of shape {a.shape} with values up to {a.max():g}"

    _raises(got["raised"], case["bad"], describe)


# ----------------------------------------------------------------------------- quantize


def _cells(ab: np.ndarray, grid: float, rounding: bool = False, clamp: bool = True):
    n = int(round(2 * ref.AB_RANGE / grid))
    q = (ab + ref.AB_RANGE) / grid
    cell = np.round(q) if rounding else np.floor(q)
    return (np.clip(cell, 0, n - 1) if clamp else cell).astype(np.int64), n


@hidden.cases("test_quantize")
def _(rng):
    grids = [10.0] + [float(g) for g in rng.choice([5.0, 22.0, 20.0, 11.0, 4.0, 44.0], 2,
                                                    replace=False)]
    cases = []
    for grid in grids:
        n = int(round(220 / grid))
        ab = rng.uniform(-130, 130, (4, 6, 2))
        ab[0, :3] = (rng.integers(0, n, (3, 2)) * grid - 110.0)  # on the cells' edges
        cases.append(dict(ab=ab, grid=grid, index=rng.integers(0, n * n, 9), bad=[]))
    cases[0]["bad"] = [["quantize_ab", np.zeros(4), 10.0],
                       ["quantize_ab", np.zeros((4, 2)), float(rng.choice([7.0, 3.0, 0.0]))],
                       ["dequantize_ab", np.array([484]), 10.0],
                       ["dequantize_ab", np.array([-int(rng.integers(1, 5))]), 10.0]]
    return cases


@hidden.check("test_quantize")
def _(case, got):
    ab, grid, index = np.asarray(case["ab"]), case["grid"], np.asarray(case["index"])
    idx = got["index"]
    if _shape(idx) != ab.shape[:-1]:
        raise AssertionError(f"pairs {ab.shape} give indices {ab.shape[:-1]}, got {_shape(idx)}")
    if not isinstance(idx, np.ndarray) or idx.dtype.kind not in "iu":
        raise AssertionError(f"indices are integers (torch.long), got "
                             f"{getattr(idx, 'dtype', type(idx).__name__)}")
    cell, n = _cells(ab, grid)
    rcell, _ = _cells(ab, grid, rounding=True)
    ucell, _ = _cells(ab, grid, clamp=False)
    check_array(idx, ref.quantize_ab(_t(ab), grid=grid).numpy(), f"quantize_ab with grid {grid:g}"
                f" ({n} cells per axis)",
                mistakes={"rounding instead of floor: use floor, not round (rounding is off by "
                          "half a cell)": rcell[..., 0] * n + rcell[..., 1],
                          "a and b are swapped in the index: index = i_a * n + j_b":
                          cell[..., 1] * n + cell[..., 0],
                          "cells not clamped to 0..n-1: an index outside the grid for "
                          "|a| or |b| >= 110":
                          ucell[..., 0] * n + ucell[..., 1]})
    centres = ref.dequantize_ab(_t(index), grid=grid).numpy()
    lower = -ref.AB_RANGE + np.stack([index // n, index % n], -1) * grid
    check_array(got["centre"], centres, f"dequantize_ab with grid {grid:g}", atol=1e-5,
                mistakes={"the LOWER corner of the cell: add half a cell (grid / 2) to get its "
                          "centre": lower, "a and b are swapped": centres[..., ::-1]})
    check_array(got["again"], index, f"quantize_ab(dequantize_ab(k)) with grid {grid:g} "
                "(it must be k)")

    def describe(item):
        name, a, g = item
        return f"{name}({np.asarray(a).tolist()}, grid={g:g})"

    _raises(got["raised"], case["bad"], describe)


# ----------------------------------------------------------------------------- cross-modal


def _cross_modal_parts(seed: int, c: int, d: int, h: int, k: int) -> dict[str, nn.Module]:
    """The modules the probe builds (same seed, same order): two encoders, shared, head."""
    torch.manual_seed(seed)
    return {"image": encoder(c, d), "sketch": encoder(1, d),
            "shared": nn.Sequential(nn.Linear(d, h), nn.Tanh()), "head": nn.Linear(h, k)}


@hidden.cases("test_cross_modal_forward")
def _(rng):
    cases = []
    for modality in ("image", "sketch"):
        c, d, h, k = (int(rng.choice([2, 3, 5])), int(rng.choice([8, 12])),
                      int(rng.integers(5, 10)), int(rng.integers(2, 5)))
        n = int(rng.integers(3, 7))
        x = rng.normal(size=(n, c if modality == "image" else 1, 16, 16)).astype(np.float32)
        cases.append(dict(seed=int(rng.integers(2 ** 31)), sizes=[c, d, h, k], x=x,
                          modality=modality, unknown=str(rng.choice(["audio", "depth", "text"]))))
    return cases


@hidden.check("test_cross_modal_forward")
def _(case, got):
    c, d, h, k = case["sizes"]
    parts = _cross_modal_parts(case["seed"], c, d, h, k)
    x, modality = _t(case["x"]), case["modality"]
    with torch.no_grad():
        want_e, want_z = (t.numpy() for t in ref.cross_modal_forward(
            x, modality, {m: parts[m] for m in ("image", "sketch")}, parts["shared"],
            parts["head"]))
    out = got["out"]
    assert isinstance(out, list) and len(out) == 2, "return the pair (embedding, logits)"
    e, z = out
    assert not (_shape(e) == want_z.shape and _shape(z) == want_e.shape), (
        "the pair is in the wrong order: return (embedding, logits)")
    where = f"{modality} x {tuple(x.shape)}"
    if _shape(e) != want_e.shape or _shape(z) != want_z.shape:
        raise AssertionError(f"embedding {want_e.shape} and logits {want_z.shape} expected for "
                             f"{where}, got {_shape(e)}, {_shape(z)}")
    skipped = "the shared layers were skipped: embedding = shared(encoders[modality](x))"
    with torch.no_grad():
        unshared = parts[modality](x)
        no_shared = ({skipped: parts["head"](unshared).numpy()} if d == h else {})
    check_array(z, want_z, f"the logits for {where}", atol=1e-6, mistakes=no_shared)
    check_array(e, want_e, f"the embedding for {where} (after the SHARED layers, before the "
                "head)", atol=1e-6, mistakes={skipped: unshared.numpy()} if d == h else None)
    grads = got["grads"]
    other = "sketch" if modality == "image" else "image"
    if not grads.get(modality) or grads.get(other):
        raise AssertionError(f"only the encoder of the given modality ({modality}) should be "
                             "used")
    if not grads.get("shared"):
        raise AssertionError("the shared layers were not used for the embedding")
    if got["raised"] == "KeyError":
        raise AssertionError(f"modality {case['unknown']!r} without an encoder should raise "
                             "ValueError (naming the known modalities), not KeyError")
    if got["raised"] != "ValueError":
        raise AssertionError(f"modality {case['unknown']!r} without an encoder should raise "
                             "ValueError")
    if "image" not in got["message"] or "sketch" not in got["message"]:
        raise AssertionError("the ValueError for an unknown modality should name the known "
                             "modalities")

