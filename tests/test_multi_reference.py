"""The reference answers of assignment 07 against outside references: published CIELAB values
of known colours, round trips, torch's softmax, and synthetic translations for optical flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_sweep import Case, torch_mismatches

from sit471.reference.multi import (
    band_ablation,
    cross_modal_forward,
    dequantize_ab,
    lab_to_rgb,
    late_fusion,
    motion_field,
    quantize_ab,
    rgb_to_lab,
)

# sRGB (D65) -> CIELAB, published values (e.g. Bruce Lindbloom's calculator, to 2 decimals)
KNOWN_LAB = [
    ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),
    ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
    ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
    ((1.0, 1.0, 0.0), (97.14, -21.55, 94.48)),
    ((0.0, 1.0, 1.0), (91.11, -48.09, -14.13)),
    ((1.0, 0.0, 1.0), (60.32, 98.23, -60.82)),
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((128 / 255, 128 / 255, 128 / 255), (53.59, 0.0, 0.0)),
]


@pytest.mark.parametrize(("rgb", "lab"), KNOWN_LAB)
def test_rgb_to_lab_known_colours(rgb, lab):
    got = rgb_to_lab(torch.tensor(rgb, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), lab, atol=0.01)
    back = lab_to_rgb(torch.tensor(lab, dtype=torch.float64))
    np.testing.assert_allclose(back.numpy(), rgb, atol=1e-3)  # 2-decimal Lab


def test_lab_round_trip_and_shapes():
    rgb = torch.rand(4, 5, 6, 3, generator=torch.Generator().manual_seed(0))
    lab = rgb_to_lab(rgb)
    assert lab.shape == rgb.shape and lab.dtype == torch.float32
    np.testing.assert_allclose(lab_to_rgb(lab).numpy(), rgb.numpy(), atol=1e-4)
    assert (lab[..., 0] >= 0).all() and (lab[..., 0] <= 100).all()
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        rgb_to_lab(torch.rand(3, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rgb_to_lab(torch.full((2, 3), 255.0))
    with pytest.raises(ValueError, match="L values"):
        lab_to_rgb(torch.tensor([150.0, 0, 0]))


def test_lab_matches_scikit_image_formula_by_hand():
    # the CIE 1976 formulas written independently in numpy
    rgb = np.random.default_rng(1).uniform(0, 1, (50, 3))
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    lab = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)
    np.testing.assert_allclose(rgb_to_lab(torch.tensor(rgb)).numpy(), lab, atol=1e-6)


FUSION_CASES = [Case("fusion", ((7, 5),) * 2), Case("fusion", ((7, 5),) * 3, {"w": (1, 2, 1)}),
                Case("fusion", ((1, 3),) * 2, {"w": (3, 1)}, seed=1),
                Case("fusion", ((16, 10),) * 4, seed=2)]


@pytest.mark.parametrize("case", FUSION_CASES, ids=str)
def test_late_fusion_matches_weighted_torch_softmaxes(case):
    weights = case.params.get("w", (1,) * len(case.shapes))

    def theirs(*logits):
        return sum(w * z.softmax(1) for w, z in zip(weights, logits, strict=True)) / sum(weights)

    def ours(*logits):
        return late_fusion(list(logits), weights=case.params.get("w"))

    grads = [f"dlogits{k}" for k in range(len(case.shapes))]
    assert torch_mismatches(ours, theirs, case.inputs(), grads, seed=case.seed) == []


def test_late_fusion_is_the_mean_of_torch_softmaxes():
    g = torch.Generator().manual_seed(2)
    a, b, c = (torch.randn(7, 5, generator=g) for _ in range(3))
    w = late_fusion([a, b, c], weights=[1, 2, 1])
    np.testing.assert_allclose(w.sum(1).numpy(), 1, atol=1e-6)
    # not the softmax of the mean logits
    assert not torch.allclose(late_fusion([a, b]), ((a + b) / 2).softmax(1), atol=1e-3)
    with pytest.raises(ValueError):
        late_fusion([a, torch.randn(7, 4)])
    with pytest.raises(ValueError):
        late_fusion([])


def _blob(shift_x: float, shift_y: float, size: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64),
                            torch.arange(size, dtype=torch.float64), indexing="ij")
    return (torch.exp(-((xx - 15 - shift_x) ** 2 + (yy - 16 - shift_y) ** 2) / 30)
            + 0.5 * torch.exp(-((xx - 20 - shift_x) ** 2 + (yy - 11 - shift_y) ** 2) / 10))


@pytest.mark.parametrize(("dx", "dy"), [(0.5, 0.0), (0.0, -0.5), (0.3, 0.4), (-0.6, 0.2)])
def test_motion_field_recovers_a_small_translation(dx, dy):
    flow = motion_field(_blob(0, 0), _blob(dx, dy), window=5)
    assert flow.shape == (2, 32, 32)
    # where the image has texture, LK recovers the shift
    centre = flow[:, 10:22, 10:22].reshape(2, -1).median(dim=1).values
    np.testing.assert_allclose(centre.numpy(), [dx, dy], atol=0.05)


def test_motion_field_flat_and_batched():
    flat = torch.full((2, 3, 8, 9), 0.5)
    flow = motion_field(flat, flat + 0.1)
    assert flow.shape == (2, 3, 2, 8, 9) and flow.abs().max() == 0
    with pytest.raises(ValueError, match="odd"):
        motion_field(flat, flat, window=4)
    with pytest.raises(ValueError, match="same shape"):
        motion_field(flat, flat[..., 1:])


def test_quantize_dequantize():
    ab = torch.tensor([[-110.0, -110.0], [0.0, 0.0], [109.9, -0.1], [5.0, 14.99], [300, -300]])
    idx = quantize_ab(ab)
    assert idx.tolist() == [0, 11 * 22 + 11, 21 * 22 + 10, 11 * 22 + 12, 21 * 22 + 0]
    centres = dequantize_ab(idx)
    assert centres[1].tolist() == [5.0, 5.0]
    assert centres[0].tolist() == [-105.0, -105.0]
    # every point is within half a cell of its centre; centres map to themselves
    pts = torch.rand(200, 2, generator=torch.Generator().manual_seed(3)) * 219.9 - 110
    assert (dequantize_ab(quantize_ab(pts)) - pts).abs().max() <= 5 + 1e-4
    grid = torch.arange(22 * 22)
    assert torch.equal(quantize_ab(dequantize_ab(grid)), grid)
    assert quantize_ab(torch.zeros(3, 4, 2), grid=20).shape == (3, 4)
    with pytest.raises(ValueError):
        dequantize_ab(torch.tensor([484]))
    with pytest.raises(ValueError):
        quantize_ab(torch.zeros(3))


def test_cross_modal_forward_and_band_ablation():
    torch.manual_seed(0)
    enc = {"image": torch.nn.Linear(4, 3), "text": torch.nn.Linear(6, 3)}
    shared, head = torch.nn.Linear(3, 2), torch.nn.Linear(2, 5)
    e, z = cross_modal_forward(torch.randn(8, 6), "text", enc, shared, head)
    assert e.shape == (8, 2) and z.shape == (8, 5)
    with pytest.raises(ValueError, match="known"):
        cross_modal_forward(torch.randn(8, 6), "audio", enc, shared, head)
    # a classifier that only looks at band 1
    x = torch.randn(100, 3, 2, 2, generator=torch.Generator().manual_seed(4))
    y = (x[:, 1].mean((1, 2)) > 0).long()

    def predict(images):
        s = images[:, 1].mean((1, 2))
        return torch.stack([-s, s], 1)

    drop = band_ablation(predict, x, y)
    assert drop.shape == (3,) and drop[0] == 0 and drop[2] == 0 and drop[1] > 0.3
