"""Network dissection and locally connected layers for assignment 09: data and small networks
(no exercise answers in here).

    concept_scenes(n, seed)   2..5 small shapes (disc, square, cross, ring) on a plain or a
                              striped background, with one mask per concept (dissection)
    face_sets(...)            assignment 05's drawn faces, frontal ("aligned") or shifted by up
                              to 4 pixels ("misaligned")

Models: :class:`ShapeClassifier` (the network that is dissected), :class:`LocallyConnected`
(a layer whose forward pass is the notebook's ``locally_connected``) and :class:`FaceNet`
(a convolution or a locally connected layer on top of a small convolutional stem).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sit471 import label_number

SIZE = 32
CONCEPTS = ("disc", "square", "cross", "ring", "stripes")

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def _finish(img: np.ndarray, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    return np.clip(img + noise * rng.standard_normal(img.shape), 0, 1).astype(np.float32)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())


# ------------------------------------------------------------------------------ concepts

def _concept_mask(kind: int, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = np.abs(_XX - cx), np.abs(_YY - cy)
    if kind == 0:
        return dx ** 2 + dy ** 2 <= r * r
    if kind == 1:
        return (dx <= r * 0.85) & (dy <= r * 0.85)
    if kind == 2:
        return ((dx <= r) & (dy <= 0.9)) | ((dy <= r) & (dx <= 0.9))
    d = np.sqrt(dx ** 2 + dy ** 2)
    return (d <= r) & (d >= r - 1.3)


def concept_scenes(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n images with 2..5 small shapes (radius 2.5..4; a disc, a square, a cross or a ring, of
    random brightness) on a plain background, half of them with a striped region.
    Returns x (n, 1, 32, 32), masks (n, 5, 32, 32) bool, one per CONCEPTS entry, and present
    (n, 4) float32: which shapes occur (the labels a classifier is trained on)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    masks = np.zeros((n, len(CONCEPTS), SIZE, SIZE), bool)
    for i in range(n):
        img = np.full((SIZE, SIZE), rng.uniform(0.1, 0.3), np.float32)
        if rng.uniform() < 0.5:
            ang = rng.uniform(0, np.pi)
            stripes = np.sin((np.cos(ang) * _XX + np.sin(ang) * _YY) * 2 * np.pi / 4) > 0
            region = (_XX < rng.uniform(10, 22)) if rng.uniform() < 0.5 else (
                _YY < rng.uniform(10, 22))
            img = np.where(region & stripes, img + 0.3, img)
            masks[i, 4] = region
        for _ in range(int(rng.integers(2, 6))):
            kind = int(rng.integers(0, 4))
            r = rng.uniform(2.5, 4)
            cx, cy = rng.uniform(r, SIZE - r, 2)
            m = _concept_mask(kind, cx, cy, r)
            img = np.where(m, rng.uniform(0.55, 1.0), img)
            masks[i, :4] &= ~m
            masks[i, kind] |= m
        masks[i, 4] &= ~masks[i, :4].any(0)
        x[i, 0] = _finish(img, rng)
    present = masks[:, :4].any((2, 3)).astype(np.float32)
    return {"x": x, "masks": masks, "present": present}


# ------------------------------------------------------------------------------ faces

def face_sets(n_identities: int, per_identity: int, seed: int = 0, shift: int = 0
              ) -> dict[str, np.ndarray]:
    """per_identity frontal faces (pose 0) of each identity (assignment 05's drawing), light
    and expression varying; with shift > 0 each face is moved by a random whole number of
    pixels in [-shift, shift] along each axis (the border repeated). Returns x (N, 1, 32, 32)
    and identity (N,) int64."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_identities), per_identity)
    x = np.zeros((len(ids), 1, SIZE, SIZE), np.float32)
    for i, ident in enumerate(ids):
        face = label_number.draw_face(int(ident), pose=0.0, light=float(rng.uniform(-1, 1)),
                                      expression=float(rng.uniform(-1, 1)), rng=rng)
        if shift:
            dy, dx = rng.integers(-shift, shift + 1, 2)
            pad = np.pad(face, shift, mode="edge")
            face = pad[shift + dy:shift + dy + SIZE, shift + dx:shift + dx + SIZE]
        x[i, 0] = face
    return {"x": x, "identity": ids.astype(np.int64)}


# ------------------------------------------------------------------------------ models

class ShapeClassifier(nn.Module):
    """Which shapes does an image contain: (N, 1, 32, 32) -> 4 logits. conv1 (16, 32x32),
    pool, conv2 (32, 16x16), pool, conv3 (32 units, 8x8: the layer dissected), global average
    pooling, linear. ``features(x)`` returns conv3's activations (after ReLU)."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.body = nn.Sequential(_block(1, 16), nn.MaxPool2d(2), _block(16, 32),
                                  nn.MaxPool2d(2), _block(32, 32))
        self.head = nn.Linear(32, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


class LocallyConnected(nn.Module):
    """A locally connected layer whose forward pass is ``locally_connected`` (the notebook's
    answer): x (N, C, H, W) -> (N, O, OH, OW), weights (OH * OW, O, C k k), no padding."""

    def __init__(self, in_channels: int, out_channels: int, in_size: int, kernel_size: int,
                 stride: int, forward: Callable):
        super().__init__()
        self.k, self.stride, self._forward = kernel_size, stride, forward
        out = (in_size - kernel_size) // stride + 1
        fan_in = in_channels * kernel_size ** 2
        bound = 1 / np.sqrt(fan_in)
        self.weight = nn.Parameter(torch.empty(out * out, out_channels, fan_in).uniform_(
            -bound, bound))
        self.bias = nn.Parameter(torch.empty(out * out, out_channels).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, self.weight, self.bias, self.k, self.stride)


class FaceNet(nn.Module):
    """Identity classifier: conv 3x3 (1 -> 8) + ReLU + pool -> 16x16, then a 3x3 stride-2 layer
    (8 -> 16, no padding: 7x7 outputs) that is a convolution or a locally connected layer,
    ReLU, and a linear layer over the 16 x 7 x 7 features."""

    def __init__(self, classes: int, locally_connected: Callable | None = None):
        super().__init__()
        self.stem = nn.Sequential(_block(1, 8), nn.MaxPool2d(2))
        if locally_connected is None:
            self.layer = nn.Conv2d(8, 16, 3, stride=2)
        else:
            self.layer = LocallyConnected(8, 16, 16, 3, 2, locally_connected)
        self.head = nn.Linear(16 * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.layer(self.stem(x))).flatten(1))
