"""Reference answers for assignment 06: image -> label image (segmentation, scene parsing,
depth, crowd density).

    confusion_matrix(pred, target, num_classes, ignore_index=255)
                                    counts[t, p] of pixels with target t predicted p   (C, C)
    iou_from_confusion(conf)        per-class IoU (C,) (nan where a class is absent from both
                                    prediction and target) and their mean over the others
    pixel_accuracy(conf)            trace / total (nan when every pixel was ignored)
    bilinear_kernel(in_channels, out_channels, kernel_size)
                                    weight (in, out, k, k) of a ConvTranspose2d that upsamples
                                    each channel by bilinear interpolation
    PyramidPooling(in_channels, bins=(1, 2, 3, 6))
                                    (N, C, H, W) -> (N, C + len(bins) * (C // 4), H, W)
    scale_invariant_loss(pred_log, target_log, lam=0.5)
                                    mean(d^2) - lam * mean(d)^2, d = pred_log - target_log,
                                    per image, averaged over images
    depth_metrics(pred, target)     AbsRel, RMSE, delta1, delta2, delta3 over valid pixels
    density_map(points, shape, sigma)
                                    sum of unit-mass Gaussians, one per point inside the image

Rows of the confusion matrix are the TRUE class, columns the PREDICTED class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Counts (C, C) int64: conf[t, p] = number of pixels with target t and prediction p.

    pred, target: integer arrays of the same shape (any shape, e.g. (N, H, W)). Pixels whose
    target equals ignore_index are left out. Summing the matrices of several batches gives the
    matrix of the whole dataset."""
    pred = np.asarray(pred).astype(np.int64).ravel()
    target = np.asarray(target).astype(np.int64).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and "
                         f"{target.shape}")
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if ((target < 0) | (target >= num_classes) | (pred < 0) | (pred >= num_classes)).any():
        raise ValueError(f"labels must be in 0..{num_classes - 1} (or ignore_index in target)")
    return np.bincount(target * num_classes + pred,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(conf) -> tuple[np.ndarray, float]:
    """Per-class IoU = TP / (TP + FP + FN) (C,) and the mean over classes with TP+FP+FN > 0.

    A class that appears neither in the target nor in the prediction gets nan and does not
    count in the mean; if no class occurs at all the mean is nan."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
    mean = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    return iou, mean


def pixel_accuracy(conf) -> float:
    """Fraction of (not ignored) pixels predicted right: trace / sum; nan if the sum is 0."""
    conf = np.asarray(conf, dtype=np.float64)
    total = conf.sum()
    return float(np.trace(conf) / total) if total > 0 else float("nan")


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weight (in_channels, out_channels, k, k) for nn.ConvTranspose2d: channel i -> channel i
    gets the 2-D bilinear (tent) filter, all other pairs 0.

    With kernel_size = 2 * s, stride = s, padding = s // 2 (s even) this upsamples by s exactly
    as bilinear interpolation with align_corners=False does, away from the border."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1 = 1 - (og - center).abs() / factor
    filt = (filt1[:, None] * filt1[None, :]).float()
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    for i in range(min(in_channels, out_channels)):
        weight[i, i] = filt
    return weight


class PyramidPooling(nn.Module):
    """Pyramid pooling module (PSPNet): for each bin count b, adaptive average pooling to
    b x b, a 1x1 convolution to in_channels // 4 channels (with bias), ReLU, bilinear
    upsampling (align_corners=False) back to H x W; the input and the len(bins) branches are
    concatenated along the channels: (N, C, H, W) -> (N, C + len(bins) * (C // 4), H, W).

    Each branch is self.branches[i] = nn.Conv2d(C, C // 4, 1) (no batch norm, to keep it small).
    """

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        if in_channels < 4:
            raise ValueError("in_channels must be at least 4 (each branch has in_channels // 4)")
        self.bins = tuple(int(b) for b in bins)
        self.branches = nn.ModuleList(nn.Conv2d(in_channels, in_channels // 4, 1)
                                      for _ in self.bins)
        self.out_channels = in_channels + len(self.bins) * (in_channels // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        outs = [x]
        for b, conv in zip(self.bins, self.branches, strict=True):
            y = F.relu(conv(F.adaptive_avg_pool2d(x, b)))
            outs.append(F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False))
        return torch.cat(outs, dim=1)


def scale_invariant_loss(pred_log: torch.Tensor, target_log: torch.Tensor,
                         lam: float = 0.5, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eigen et al. (2014): with d = pred_log - target_log over the n valid pixels of ONE image,
    L = mean(d^2) - lam * mean(d)^2; returned averaged over the images.

    pred_log, target_log: (N, H, W) or (N, 1, H, W) log depths; mask (same shape, bool) marks
    valid pixels (all valid if None). lam = 0 gives L2 on log depth, lam = 1 is fully scale
    invariant."""
    pred_log, target_log = torch.as_tensor(pred_log), torch.as_tensor(target_log)
    if pred_log.shape != target_log.shape:
        raise ValueError(f"shapes differ: {tuple(pred_log.shape)} vs {tuple(target_log.shape)}")
    d = (pred_log - target_log).reshape(pred_log.shape[0], -1)
    if mask is None:
        m = torch.ones_like(d)
    else:
        m = torch.as_tensor(mask).reshape(d.shape).to(d.dtype)
    n = m.sum(1).clamp(min=1)
    mean_d = (d * m).sum(1) / n
    mean_d2 = (d * d * m).sum(1) / n
    return (mean_d2 - lam * mean_d ** 2).mean()


def depth_metrics(pred, target) -> dict[str, float]:
    """Standard depth metrics over the pixels with target > 0 (all images pooled):
    abs_rel = mean(|pred - target| / target), rmse = sqrt(mean((pred - target)^2)),
    delta1/2/3 = fraction of pixels with max(pred/target, target/pred) < 1.25, 1.25^2, 1.25^3.
    pred must be positive."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {target.shape}")
    valid = target > 0
    p, t = pred[valid], target[valid]
    if (p <= 0).any():
        raise ValueError("predicted depths must be positive")
    ratio = np.maximum(p / t, t / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - t) / t)),
        "rmse": float(np.sqrt(np.mean((p - t) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25 ** 2)),
        "delta3": float(np.mean(ratio < 1.25 ** 3)),
    }


def density_map(points, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Density map (H, W) float64: one Gaussian of standard deviation sigma (pixels) per point
    (x, y) in pixel coordinates (pixel (row i, column j) has centre (x=j, y=i)); points outside
    [-0.5, W-0.5) x [-0.5, H-0.5) are dropped. Each Gaussian is normalised over the image
    grid so it sums to exactly 1: the map sums to the number of points inside the image."""
    h, w = int(shape[0]), int(shape[1])
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = np.zeros((h, w))
    ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    for x, y in points:
        if not (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
            continue
        g = np.exp(-((ys[:, None] - y) ** 2 + (xs[None, :] - x) ** 2) / (2 * sigma ** 2))
        out += g / g.sum()
    return out
