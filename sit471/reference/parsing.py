"""Reference answers for assignment 09 (parsing with several heads, parts of objects, volumes,
network dissection, locally connected layers). Staff only: not in the student install.

tests/test_parsing_reference.py holds these to torch (``conv3d``, ``conv2d``, ``unfold``,
autograd) and to independent loops.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = 255


def joint_loss(pixel_logits: torch.Tensor, pixel_labels: torch.Tensor,
               scene_logits: torch.Tensor, scene_labels: torch.Tensor,
               scene_weight: float = 1.0) -> torch.Tensor:
    """Two heads, one loss: per-pixel cross-entropy (label 255 ignored, mean over the other
    pixels) + scene_weight * cross-entropy of the scene label.

    pixel_logits (N, C, H, W), pixel_labels (N, H, W) int64, scene_logits (N, S),
    scene_labels (N,) int64 -> a scalar tensor."""
    pixel = F.cross_entropy(pixel_logits, pixel_labels, ignore_index=IGNORE)
    scene = F.cross_entropy(scene_logits, scene_labels)
    return pixel + scene_weight * scene


def part_consistency(part_pred: np.ndarray, object_pred: np.ndarray,
                     part_to_object: np.ndarray) -> float:
    """Share of the pixels with a predicted part (part_pred > 0) whose part belongs to the
    predicted object there: part_to_object[part_pred] == object_pred. 1.0 when no pixel has
    a part. part_pred, object_pred: integer arrays of one shape; part_to_object (P,)."""
    part_pred = np.asarray(part_pred)
    object_pred = np.asarray(object_pred)
    has_part = part_pred > 0
    if not has_part.any():
        return 1.0
    owner = np.asarray(part_to_object)[part_pred[has_part]]
    return float((owner == object_pred[has_part]).mean())


def dice(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dice = 2 |A and B| / (|A| + |B|) of each volume: pred, target (N, ...) boolean (or 0/1)
    -> (N,) float; 1.0 for a volume where both are empty."""
    a = np.asarray(pred).astype(bool).reshape(len(pred), -1)
    b = np.asarray(target).astype(bool).reshape(len(target), -1)
    inter = (a & b).sum(1)
    total = a.sum(1) + b.sum(1)
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0
                   ) -> torch.Tensor:
    """1 - soft Dice, averaged over the batch: p = sigmoid(logits), per volume
    1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps). logits, target (N, ...) -> scalar."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.to(p.dtype).flatten(1)
    score = (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)
    return (1 - score).mean()


def slicewise(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D network to every slice of a volume: x (N, C, D, H, W) -> (N, C', D, H', W'),
    where net maps (B, C, H, W) -> (B, C', H', W'); slice d of the output is net(x[:, :, d])."""
    n, c, d, h, w = x.shape
    out = net(x.permute(0, 2, 1, 3, 4).reshape(n * d, c, h, w))
    return out.reshape(n, d, *out.shape[1:]).permute(0, 2, 1, 3, 4)


def lesion_detection_rate(pred: np.ndarray, lesions: np.ndarray) -> tuple[int, int]:
    """(detected, total) lesions: lesions (N, ...) int, 0 outside, 1..K the lesion number
    within its volume; a lesion counts as detected when pred (N, ...) boolean marks at least
    one of its voxels. Counted over all N volumes."""
    pred = np.asarray(pred).astype(bool)
    lesions = np.asarray(lesions)
    detected = total = 0
    for p, les in zip(pred, lesions, strict=True):
        ids = np.unique(les[les > 0])
        total += len(ids)
        detected += len(np.unique(les[p & (les > 0)]))
    return detected, total


def dissect(activations: torch.Tensor, masks: torch.Tensor, top: float = 0.005) -> np.ndarray:
    """Network dissection (Bau et al. 2017): IoU of every unit with every concept.

    activations (N, K, h, w): K units' maps over a data set of N images; masks (N, C, H, W)
    boolean concept masks. T_k is the (1 - top) quantile of unit k's activations over all
    images and positions; each map is upsampled bilinearly to (H, W) (align_corners=False)
    and binarised at a > T_k; IoU_kc = sum_n |M_k(n) and L_c(n)| / sum_n |M_k(n) or L_c(n)|
    over the whole data set. Returns (K, C) float."""
    acts = torch.as_tensor(activations, dtype=torch.float64)
    masks = torch.as_tensor(masks).bool()
    k = acts.shape[1]
    thresholds = torch.quantile(acts.transpose(0, 1).reshape(k, -1), 1 - top, dim=1)
    up = F.interpolate(acts, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    on = up > thresholds[None, :, None, None]
    on, m = on.flatten(2).double(), masks.flatten(2).double()  # (N, K, P), (N, C, P)
    inter = torch.einsum("nkp,ncp->kc", on, m)
    union = on.sum((0, 2))[:, None] + m.sum((0, 2))[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), 0.0).numpy()


def locally_connected(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      kernel_size: int, stride: int = 1) -> torch.Tensor:
    """A locally connected layer (a convolution whose weights differ at every position).

    x (N, C, H, W); weight (L, O, C * k * k) with L = OH * OW output positions (row-major),
    bias (L, O); OH = (H - k) // stride + 1 (no padding). Output (N, O, OH, OW):
    out[n, o, i, j] = sum_q weight[i * OW + j, o, q] * patch_q(n, i, j) + bias[i * OW + j, o],
    the patch flattened as F.unfold flattens it (channel, then row, then column)."""
    n, _, h, w = x.shape
    oh, ow = (h - kernel_size) // stride + 1, (w - kernel_size) // stride + 1
    cols = F.unfold(x, kernel_size, stride=stride)  # (N, C*k*k, L)
    out = torch.einsum("nql,loq->nol", cols, weight) + bias.T[None]
    return out.reshape(n, weight.shape[1], oh, ow)


def mean_iou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    """Mean IoU over a whole data set (assignment 06's rule): pixels labelled 255 in target are
    left out; IoU_c = |pred = c and target = c| / |pred = c or target = c| over all pixels;
    the mean over the classes whose union is not empty. pred, target: integer arrays of one
    shape."""
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    keep = target != IGNORE
    pred, target = pred[keep], target[keep]
    ious = []
    for c in range(num_classes):
        union = np.sum((pred == c) | (target == c))
        if union:
            ious.append(np.sum((pred == c) & (target == c)) / union)
    return float(np.mean(ious)) if ious else float("nan")
