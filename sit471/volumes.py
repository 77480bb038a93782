"""Brain-like 3-D scans with small lesions, and the two small networks of assignment 09's volume
experiment; no exercise answers in here.

:func:`brain_volumes` draws seeded volumes (N, 1, 32, 32, 32) in [0, 1]: an ellipsoid "brain"
with smooth tissue contrast, 2..5 small bright lesions (about 1 % of the voxels), and 2..3
bright *vessels*: thin tubes running straight through the brain along the depth axis. Cut
across, a vessel looks like a lesion (a small bright disc); only the slices above and below
tell them apart, which is what a 3-D network can see and a 2-D network applied slice by slice
cannot.

Models with (almost) equal parameter budgets, both a per-voxel logit (N, 1, D, H, W):

    Net3D(channels=8)    conv3d 3x3x3 (1 -> 8), ReLU, conv3d 3x3x3 dilation 2 (8 -> 8), ReLU,
                         conv3d 1x1x1 (8 -> 1): 1,969 parameters, sees 7 x 7 x 7 voxels
    Net2D(channels=14)   the same with conv2d (14 channels): 1,933 parameters, sees 7 x 7 in
                         one slice; run over a volume with a slice-wise wrapper (the exercise)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from sit471.trainer import fit_indices

SIZE = 32
_ZZ, _YY, _XX = np.mgrid[0:SIZE, 0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def brain_volumes(n: int, seed: int = 0, noise: float = 0.08) -> dict[str, np.ndarray]:
    """n volumes (n, 1, 32, 32, 32) float32 (axes: depth, height, width).

    Returns x, target (n, 32, 32, 32) bool (lesion voxels), lesions (n, 32, 32, 32) int64
    (0 outside lesions, 1..K the lesion number in its volume) and brain (n, 32, 32, 32) bool.
    Lesions: 2..5 spheres of radius 2.2..3.5 inside the brain, at least 1.5 voxels apart (one
    connected component each), intensity +0.3 over the tissue;
    vessels: tubes of radius 2.2..3.2 (a lesion's size) along the depth axis, +0.3 too.
    """
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SIZE, SIZE, SIZE), np.float32)
    lesions = np.zeros((n, SIZE, SIZE, SIZE), np.int64)
    brain = np.zeros((n, SIZE, SIZE, SIZE), bool)
    c = SIZE / 2
    for i in range(n):
        axes = rng.uniform([10, 11, 9], [12, 14, 11])
        inside = (((_ZZ - c) / axes[0]) ** 2 + ((_YY - c) / axes[1]) ** 2
                  + ((_XX - c) / axes[2]) ** 2) <= 1
        f = rng.uniform(0.15, 0.35, 3)
        phase = rng.uniform(0, 2 * np.pi, 3)
        tissue = 0.45 + 0.08 * (np.sin(f[0] * _ZZ + phase[0]) + np.sin(f[1] * _YY + phase[1])
                                + np.sin(f[2] * _XX + phase[2])) / 3
        img = np.where(inside, tissue, 0.05)
        for _ in range(int(rng.integers(2, 4))):  # vessels along depth
            r = rng.uniform(2.2, 3.2)
            vy, vx = rng.uniform(c - 6, c + 6, 2)
            tube = (((_YY - vy) ** 2 + (_XX - vx) ** 2) <= r * r) & inside
            img = np.where(tube, img + 0.3, img)
        lab = np.zeros((SIZE, SIZE, SIZE), np.int64)
        k = 0
        for _ in range(int(rng.integers(2, 6))):
            for _attempt in range(20):  # a place inside the brain, >= 1.5 voxels from other lesions
                r = rng.uniform(2.2, 3.5)
                p = c + rng.uniform(-1, 1, 3) * (axes - r - 1) * 0.7
                dist2 = (_ZZ - p[0]) ** 2 + (_YY - p[1]) ** 2 + (_XX - p[2]) ** 2
                ball = dist2 <= r * r
                if not (lab[dist2 <= (r + 1.5) ** 2] > 0).any() and inside[ball].all():
                    k += 1
                    lab[ball] = k
                    img = np.where(ball, img + 0.3, img)
                    break
        x[i, 0] = np.clip(img + noise * rng.standard_normal(img.shape), 0, 1)
        lesions[i], brain[i] = lab, inside
    return {"x": x, "target": lesions > 0, "lesions": lesions, "brain": brain}


class Net3D(nn.Module):
    """(N, 1, D, H, W) -> per-voxel logits (N, 1, D, H, W): two 3-D convolutions (the second
    dilated by 2) and a 1x1x1 classifier."""

    def __init__(self, channels: int = 8):
        super().__init__()
        c = channels
        self.body = nn.Sequential(nn.Conv3d(1, c, 3, padding=1), nn.ReLU(),
                                  nn.Conv3d(c, c, 3, padding=2, dilation=2), nn.ReLU(),
                                  nn.Conv3d(c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Net2D(nn.Module):
    """(B, 1, H, W) -> per-pixel logits (B, 1, H, W): Net3D's layers in 2-D."""

    def __init__(self, channels: int = 14):
        super().__init__()
        c = channels
        self.body = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=2, dilation=2), nn.ReLU(),
                                  nn.Conv2d(c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SliceWise(nn.Module):
    """A 2-D network run over every slice of a volume by ``slicewise(net, x)`` (the notebook's
    answer): (N, C, D, H, W) -> (N, C', D, H, W)."""

    def __init__(self, net: nn.Module, slicewise: Callable):
        super().__init__()
        self.net, self._slicewise = net, slicewise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._slicewise(self.net, x)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_volume_net(model: nn.Module, data: dict, loss: Callable, epochs: int = 12,
                     batch_size: int = 4, lr: float = 1e-2, seed: int = 0) -> list[float]:
    """Adam on loss(logits, target) over the volumes in data; seeded; one CPU thread (the
    course's one small loop, :func:`sit471.trainer.fit_indices`)."""
    x = torch.as_tensor(data["x"])
    t = torch.as_tensor(data["target"][:, None]).float()
    return fit_indices(model, lambda m, idx: loss(m(x[idx]), t[idx]), len(x), epochs=epochs,
                       batch_size=batch_size, lr=lr, seed=seed)


@torch.no_grad()
def predict_volumes(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Foreground probabilities (N, D, H, W) of model's logits."""
    model.eval()
    out = [torch.sigmoid(model(torch.as_tensor(x[s:s + 8])))[:, 0] for s in range(0, len(x), 8)]
    return torch.cat(out).numpy()
