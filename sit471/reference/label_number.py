"""Reference answers for assignment 05: one backbone, different heads, several outputs.

    RegressionHead(in_features)            features (N, F) -> one number per image (N,)
    regression_loss(pred, target, kind)    mean squared ("l2") or mean absolute ("l1") error
    bin_centers(low, high, n_bins)         the middle of each of n_bins equal bins (n_bins,)
    expected_value(logits, bin_centers)    sum_k softmax(logits)_k * centre_k        (N,)
    box_iou(boxes1, boxes2)                intersection over union of every pair    (N, M)
    detection_loss(pred, obj, boxes, labels, box_weight, class_weight)
                                           objectness + box + class loss of a grid detector
    nms(boxes, scores, iou_threshold, labels=None)
                                           indices of the boxes kept, highest score first
    verify(emb1, emb2, threshold)          same identity <=> distance of the unit-length
                                           embeddings <= threshold                    (N,) bool

Boxes are (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2 (corners, in pixels or any unit).
Inputs of the wrong shape or boxes of negative size raise ValueError.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RegressionHead(nn.Module):
    """A linear layer from F features to one number: (N, F) -> (N,) (not (N, 1))."""

    def __init__(self, in_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features).squeeze(-1)


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Mean of (pred - target)^2 ("l2") or of |pred - target| ("l1"); pred, target (N,)."""
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but target {tuple(target.shape)}: "
                         "they must match (a (N, 1) prediction against (N,) targets would "
                         "broadcast to (N, N))")
    diff = pred - target.to(pred.dtype)
    if kind == "l2":
        return (diff ** 2).mean()
    if kind == "l1":
        return diff.abs().mean()
    raise ValueError(f"kind must be 'l2' or 'l1', got {kind!r}")


def bin_centers(low: float, high: float, n_bins: int) -> torch.Tensor:
    """Centres of n_bins equal bins that split [low, high]: low + (k + 0.5) * width, float32."""
    if n_bins < 1 or not high > low:
        raise ValueError(f"need n_bins >= 1 and high > low, got {n_bins}, [{low}, {high}]")
    width = (high - low) / n_bins
    return low + (torch.arange(n_bins, dtype=torch.float32) + 0.5) * width


def expected_value(logits: torch.Tensor, bin_centers: torch.Tensor) -> torch.Tensor:
    """The mean of the predicted distribution over bins: softmax(logits) @ centres.

    logits (N, K), bin_centers (K,) -> (N,). Differentiable.
    """
    logits = torch.as_tensor(logits)
    centers = torch.as_tensor(bin_centers, dtype=logits.dtype)
    if logits.ndim != 2 or centers.ndim != 1 or logits.shape[1] != centers.shape[0]:
        raise ValueError(f"logits must be (N, K) and bin_centers (K,), got {tuple(logits.shape)} "
                         f"and {tuple(centers.shape)}")
    return torch.softmax(logits, dim=1) @ centers


def _boxes(boxes: torch.Tensor, name: str) -> torch.Tensor:
    boxes = torch.as_tensor(boxes)
    if not boxes.is_floating_point():
        boxes = boxes.to(torch.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2), "
                         f"got {tuple(boxes.shape)}")
    if bool(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any()):
        raise ValueError(f"{name} holds a box of negative size (x2 < x1 or y2 < y1)")
    return boxes


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box in boxes1 (N, 4) with every box in boxes2 (M, 4).

    Returns (N, M). Boxes that do not overlap (or only touch) have IoU 0; two empty boxes at the
    same place have union 0 and get IoU 0.
    """
    b1, b2 = _boxes(boxes1, "boxes1"), _boxes(boxes2, "boxes2")
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    left_top = torch.maximum(b1[:, None, :2], b2[None, :, :2])
    right_bottom = torch.minimum(b1[:, None, 2:], b2[None, :, 2:])
    wh = (right_bottom - left_top).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def detection_loss(pred: torch.Tensor, obj: torch.Tensor, boxes: torch.Tensor,
                   labels: torch.Tensor, box_weight: float = 5.0,
                   class_weight: float = 1.0) -> torch.Tensor:
    """The loss of a grid detector: objectness + box_weight * box + class_weight * class.

    pred (N, S, S, 5 + C): per cell an objectness logit, a box (4 numbers), C class logits.
    obj (N, S, S) 1 where a cell holds an object's centre, else 0; boxes (N, S, S, 4) the target
    box of those cells; labels (N, S, S) its class (any value in cells without an object).

    * objectness: binary cross-entropy with logits, averaged over **all** cells;
    * box: mean absolute error over the 4 numbers of the cells **with** an object;
    * class: cross-entropy averaged over the cells **with** an object.
    The box and class terms are 0 when no cell holds an object.
    """
    if pred.ndim != 4 or pred.shape[-1] < 6:
        raise ValueError(f"pred must be (N, S, S, 5 + C) with C >= 1, got {tuple(pred.shape)}")
    if obj.shape != pred.shape[:3] or labels.shape != pred.shape[:3] \
            or boxes.shape != pred.shape[:3] + (4,):
        raise ValueError("obj and labels must be (N, S, S) and boxes (N, S, S, 4) for pred "
                         f"{tuple(pred.shape)}; got {tuple(obj.shape)}, {tuple(labels.shape)}, "
                         f"{tuple(boxes.shape)}")
    obj = obj.to(pred.dtype)
    obj_loss = F.binary_cross_entropy_with_logits(pred[..., 0], obj)
    mask = obj > 0.5
    if not bool(mask.any()):
        return obj_loss + 0.0 * pred[..., 1:].sum()
    box_loss = (pred[..., 1:5][mask] - boxes.to(pred.dtype)[mask]).abs().mean()
    class_loss = F.cross_entropy(pred[..., 5:][mask], labels[mask].long())
    return obj_loss + box_weight * box_loss + class_weight * class_loss


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
        labels: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression: the indices (int64) of the kept boxes, highest score first.

    Take the box with the highest score, keep it, drop every remaining box whose IoU with it is
    **greater than** iou_threshold, repeat. With labels (N,), only boxes of the same label
    suppress each other. Ties in score keep the lower index first.
    """
    boxes = _boxes(boxes, "boxes")
    scores = torch.as_tensor(scores)
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must be ({boxes.shape[0]},) for {boxes.shape[0]} boxes, "
                         f"got {tuple(scores.shape)}")
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.shape != scores.shape:
            raise ValueError(f"labels must have shape {tuple(scores.shape)}, "
                             f"got {tuple(labels.shape)}")
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    iou = box_iou(boxes, boxes)
    removed = [False] * len(order)
    keep: list[int] = []
    for i in order:
        if removed[i]:
            continue
        keep.append(i)
        for j in order:
            if not removed[j] and j != i and float(iou[i, j]) > iou_threshold \
                    and (labels is None or bool(labels[i] == labels[j])):
                removed[j] = True
    return torch.tensor(keep, dtype=torch.int64)


def verify(emb1: torch.Tensor, emb2: torch.Tensor, threshold: float) -> torch.Tensor:
    """Same identity or not, for each pair of rows: (N, D), (N, D) -> (N,) bool.

    Both embeddings are scaled to unit length first; a pair is the same identity when the
    Euclidean distance between them is at most threshold (small distance = similar faces).
    """
    emb1, emb2 = torch.as_tensor(emb1), torch.as_tensor(emb2)
    if emb1.ndim != 2 or emb1.shape != emb2.shape:
        raise ValueError(f"emb1 and emb2 must both be (N, D), got {tuple(emb1.shape)} and "
                         f"{tuple(emb2.shape)}")
    e1 = F.normalize(emb1.to(torch.float32), dim=1)
    e2 = F.normalize(emb2.to(torch.float32), dim=1)
    return (e1 - e2).norm(dim=1) <= threshold
