"""Data, a backbone and tiny training loops for assignment 05 (no exercise answers in here).

Seeded generators of small grayscale images (N, 1, 32, 32) in [0, 1], nothing downloads:

    objects(n, seed)        one shape (circle, square, triangle) per image: label, size, box
    scenes(n, seed)         three shapes in one of four arrangements (ARRANGEMENTS: a row, a
                            column, a diagonal, or scattered at random): label
    faces(ids, per_id, seed)  parametric drawn faces: identity, age, pose, lighting, expression
    crowds(n, seed)         0..max_count blobs ("people"): count and positions
    multi_objects(n, seed)  0..4 shapes per image: boxes (k, 4) and labels (k,)

Models: :func:`backbone` (three conv-ReLU-pool blocks, 32x32 -> 64 maps of 4x4) and
:class:`Net` (backbone + a named head). :func:`fit` is a tiny training loop on one CPU thread.

Experiments, one function per section of the notebook, each over several seeds and taking the
notebook's answers it needs as arguments: :func:`label_tasks`, :func:`face_verification`,
:func:`age_regression`, :func:`count_regression` (also assignment 06's baseline),
:func:`localisation`, :func:`detection`; :func:`run_experiments` runs them all (about 20
minutes on one CPU thread). The staff make the notebook's ``results.json`` with the reference
answers, from the repository: ``python -m sit471.reference.experiments label_number``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from sit471.trainer import fit_indices
from sit471.transfer import mean_ci

SIZE = 32
SHAPES = ("circle", "square", "triangle")
ARRANGEMENTS = ("row", "column", "diagonal", "scattered")
GRID = 4  # the detector's grid: 4 x 4 cells of 8 x 8 pixels
AGE_RANGE = (20.0, 80.0)


# ----------------------------------------------------------------------------- drawing

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def _shape_mask(kind: int, cx: float, cy: float, r: float) -> np.ndarray:
    """A soft (anti-aliased) mask of a shape whose box is (cx - r, cy - r, cx + r, cy + r)."""
    dx, dy = _XX - cx, _YY - cy
    if kind == 0:
        inside = r - np.sqrt(dx ** 2 + dy ** 2)
    elif kind == 1:
        inside = r - np.maximum(np.abs(dx), np.abs(dy))
    else:  # a triangle pointing up: apex at (cx, cy - r), base from cx - r to cx + r at cy + r
        inside = np.minimum(r - dy, (dy + r) / 2 - np.abs(dx)) * 0.9
    return np.clip(inside + 0.5, 0, 1)


def _finish(img: np.ndarray, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    return np.clip(img + noise * rng.standard_normal(img.shape), 0, 1).astype(np.float32)


def objects(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n images with one shape each, at a random place and size.

    Returns x (n, 1, 32, 32), label (n,) int64 index into SHAPES, size (n,) float32 the
    shape's half-width r in pixels (3 to 11), box (n, 4) float32 (x1, y1, x2, y2) in pixels.
    """
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    label = rng.integers(0, len(SHAPES), n)
    size = rng.uniform(3, 11, n).astype(np.float32)
    box = np.zeros((n, 4), np.float32)
    for i in range(n):
        r = float(size[i])
        cx, cy = rng.uniform(r, SIZE - r, 2)
        bright = rng.uniform(0.3, 1.0)
        img = 0.1 * rng.uniform() + bright * _shape_mask(label[i], cx, cy, r)
        x[i, 0] = _finish(img, rng, noise=0.15)
        box[i] = (cx - r, cy - r, cx + r, cy + r)
    return {"x": x, "label": label.astype(np.int64), "size": size, "box": box}


def scenes(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n images of three random shapes whose *arrangement* is the label (ARRANGEMENTS):
    on a line (row, column or diagonal, with some jitter) or scattered at random.

    The same shapes can appear in any class: only how they are placed tells the classes apart.
    Returns x (n, 1, 32, 32) and label (n,) int64.
    """
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    label = rng.integers(0, len(ARRANGEMENTS), n)
    for i in range(n):
        step = rng.uniform(7, 9.5)
        r = rng.uniform(2.5, 3.5)
        cx, cy = rng.uniform(16 - 3, 16 + 3, 2)
        dirs = {0: (1.0, 0.0), 1: (0.0, 1.0), 2: (0.71, 0.71 * rng.choice([-1, 1]))}
        ux, uy = dirs.get(int(label[i]), (0.0, 0.0))
        img = np.zeros((SIZE, SIZE), np.float32)
        for k in (-1, 0, 1):
            if label[i] == 3:
                px, py = rng.uniform(4, SIZE - 4, 2)
            else:
                jx, jy = rng.normal(0, 1.2, 2)
                px, py = cx + k * step * ux + jx, cy + k * step * uy + jy
            img = np.maximum(img, _shape_mask(int(rng.integers(0, 3)), px, py, r))
        x[i, 0] = _finish(img * rng.uniform(0.4, 1.0), rng, noise=0.12)
    return {"x": x, "label": label.astype(np.int64)}


def _identity(identity: int) -> dict[str, float]:
    """The fixed facial parameters of one identity (seeded by its number)."""
    g = np.random.default_rng(10_000 + identity)
    return {"a": g.uniform(8, 11), "b": g.uniform(10.5, 13), "eye_sep": g.uniform(2.8, 5.2),
            "eye_r": g.uniform(0.9, 1.9), "eye_y": g.uniform(2.0, 4.5),
            "nose": g.uniform(1.5, 5.0), "mouth_w": g.uniform(2.5, 6.0),
            "mouth_y": g.uniform(4.5, 7.5), "hairline": g.uniform(4.0, 9.0),
            "brow": g.uniform(1.5, 3.0), "skin": g.uniform(0.45, 0.75),
            "hair": g.uniform(0.05, 0.25), "graying": g.uniform(0.5, 0.8),
            "age": g.uniform(*AGE_RANGE)}


def draw_face(identity: int, age: float | None = None, pose: float = 0.0, light: float = 0.0,
              expression: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """One face (32, 32) of an identity. age in years (None: the identity's own age); pose in
    [-1, 1] turns the head (features shift sideways); light in [-1, 1] lights from the left or
    right; expression in [-1, 1] from a frown to a smile. Older faces have lighter (gray) hair
    and more forehead lines."""
    p = _identity(identity)
    rng = rng if rng is not None else np.random.default_rng(0)
    age = p["age"] if age is None else age
    old = (age - AGE_RANGE[0]) / (AGE_RANGE[1] - AGE_RANGE[0])
    cx, cy = 16 + 1.5 * pose, 17.0
    fx = cx + 3.0 * pose  # where the features sit: turned with the head
    head = np.clip(1 - ((_XX - cx) / p["a"]) ** 2 - ((_YY - cy) / p["b"]) ** 2, 0, 1)
    head = np.clip(head * 6, 0, 1)
    img = 0.12 + (p["skin"] - 0.12) * head
    top = cy - p["b"] + p["hairline"]
    hair = head * np.clip(top - _YY, 0, 1)
    img = img * (1 - hair) + hair * (p["hair"] + p["graying"] * old)
    for k in range(int(round(1 + 3 * old))):  # forehead lines
        y = top + 1.2 + 1.1 * k
        line = np.exp(-((_YY - y) ** 2) / 0.18) * (np.abs(_XX - fx) < p["a"] * 0.5) * head
        img = img - (0.08 + 0.2 * old) * line
    ey = cy - p["eye_y"]
    for side in (-1, 1):
        ex = fx + side * p["eye_sep"]
        eye = np.clip(p["eye_r"] + 0.5 - np.sqrt((_XX - ex) ** 2 + (_YY - ey) ** 2), 0, 1)
        img = img * (1 - eye) + 0.05 * eye
        brow = np.exp(-((_YY - (ey - p["brow"])) ** 2) / 0.3) * (np.abs(_XX - ex) < 1.8)
        img = img - 0.35 * brow
    nose = np.exp(-((_XX - fx - 0.5 * pose) ** 2) / 0.3) * (_YY > cy - 1) * (_YY < cy - 1
                                                                           + p["nose"])
    img = img - 0.2 * nose
    my = cy + p["mouth_y"] - 2.0
    mouth_curve = my - expression * 1.5 * (1 - ((_XX - fx) / p["mouth_w"]) ** 2)
    mouth = np.exp(-((_YY - mouth_curve) ** 2) / 0.35) * (np.abs(_XX - fx) < p["mouth_w"])
    img = img - 0.4 * mouth
    img = img * (1 + 0.45 * light * (_XX - 16) / 16)
    return _finish(img, rng, noise=0.08)


def faces(n_identities: int, per_identity: int, seed: int = 0, first_identity: int = 0,
          ages: str = "identity") -> dict[str, np.ndarray]:
    """per_identity images of each of the identities first_identity ... + n_identities - 1.

    Pose, lighting and expression change from image to image. With ages="identity" each face
    has its identity's age +- 3 years; with ages="uniform" every image gets its own age drawn
    from AGE_RANGE (for age regression). Returns x (N, 1, 32, 32), identity (N,) int64,
    age (N,) float32, pose, light, expression (N,) float32.
    """
    rng = np.random.default_rng(seed)
    n = n_identities * per_identity
    identity = np.repeat(np.arange(first_identity, first_identity + n_identities), per_identity)
    pose, light, expr = (rng.uniform(-1, 1, n).astype(np.float32) for _ in range(3))
    if ages == "uniform":
        age = rng.uniform(*AGE_RANGE, n)
    elif ages == "identity":
        age = np.array([_identity(int(i))["age"] for i in identity]) + rng.uniform(-3, 3, n)
    else:
        raise ValueError(f"ages must be 'identity' or 'uniform', got {ages!r}")
    age = np.clip(age, *AGE_RANGE).astype(np.float32)
    x = np.stack([draw_face(int(identity[i]), float(age[i]), float(pose[i]), float(light[i]),
                            float(expr[i]), rng)[None] for i in range(n)])
    return {"x": x, "identity": identity.astype(np.int64), "age": age, "pose": pose,
            "light": light, "expression": expr}


def crowds(n: int, seed: int = 0, max_count: int = 50) -> dict:
    """n images of 0..max_count small blobs ("heads") of varying size and brightness that may
    overlap, on a cluttered background (stripes and noise). Returns x (n, 1, 32, 32), count (n,)
    float32 and positions: a list of (k, 2) arrays of (x, y) centres in pixels (assignment 06
    turns them into density maps)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    count = rng.integers(0, max_count + 1, n)
    positions = []
    for i in range(n):
        pos = rng.uniform(1.5, SIZE - 1.5, (int(count[i]), 2))
        img = 0.15 * rng.uniform() * (1 + np.sin(_XX / rng.uniform(3, 8) + rng.uniform(0, 6)))
        for px, py in pos:
            sigma = rng.uniform(0.8, 1.6)
            img = img + rng.uniform(0.3, 0.8) * np.exp(-((_XX - px) ** 2 + (_YY - py) ** 2)
                                                       / (2 * sigma ** 2))
        x[i, 0] = _finish(img, rng, noise=0.1)
        positions.append(pos.astype(np.float32))
    return {"x": x, "count": count.astype(np.float32), "positions": positions}


def multi_objects(n: int, seed: int = 0, max_objects: int = 4) -> dict:
    """n images with 0..max_objects shapes each, at most one shape centre per 8x8 grid cell.

    Returns x (n, 1, 32, 32), boxes: a list of (k, 4) float32 arrays (x1, y1, x2, y2) and
    labels: a list of (k,) int64 arrays (index into SHAPES).
    """
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    boxes, labels = [], []
    cell = SIZE // GRID
    for i in range(n):
        k = int(rng.integers(0, max_objects + 1))
        cells = rng.choice(GRID * GRID, size=k, replace=False)
        img = np.zeros((SIZE, SIZE), np.float32)
        b = np.zeros((k, 4), np.float32)
        lab = rng.integers(0, len(SHAPES), k)
        for j, c in enumerate(cells):
            r = rng.uniform(2.5, 4.5)
            cx = np.clip((c % GRID + rng.uniform(0.1, 0.9)) * cell, r, SIZE - r)
            cy = np.clip((c // GRID + rng.uniform(0.1, 0.9)) * cell, r, SIZE - r)
            img = np.maximum(img, rng.uniform(0.6, 1) * _shape_mask(int(lab[j]), cx, cy, r))
            b[j] = (cx - r, cy - r, cx + r, cy + r)
        x[i, 0] = _finish(img, rng)
        boxes.append(b)
        labels.append(lab.astype(np.int64))
    return {"x": x, "boxes": boxes, "labels": labels}


def _responsible_cells(cx: float, cy: float, grid: int, cells_per_object: int
                       ) -> list[tuple[int, int]]:
    """The cell that holds (cx, cy) first; with cells_per_object=4 also the neighbours towards
    the point's side of its cell (the 2 x 2 cells nearest to it), those inside the grid."""
    cell = SIZE / grid
    gx, gy = min(int(cx // cell), grid - 1), min(int(cy // cell), grid - 1)
    if cells_per_object == 1:
        return [(gy, gx)]
    sx = 1 if cx / cell - gx >= 0.5 else -1
    sy = 1 if cy / cell - gy >= 0.5 else -1
    return [(y, x) for y, x in ((gy, gx), (gy, gx + sx), (gy + sy, gx), (gy + sy, gx + sx))
            if 0 <= y < grid and 0 <= x < grid]


def grid_targets(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 grid: int = GRID, cells_per_object: int = 1) -> dict[str, torch.Tensor]:
    """Targets of a grid detector: the cell that holds a box's centre is responsible for it.

    With cells_per_object=4 the 2 x 2 cells nearest the centre are all responsible (each
    proposes the same box, so the trained detector proposes overlapping boxes that NMS must
    remove); a cell wanted by two objects goes to the one whose centre holds it, else to the
    nearer centre. Box numbers per cell: (centre x, centre y) relative to the cell (in [0, 1]
    for its own cell, in [-1, 2] for a neighbour) and (w, h) divided by the image size.
    Returns obj (N, g, g), boxes (N, g, g, 4), labels (N, g, g).
    """
    if cells_per_object not in (1, 4):
        raise ValueError(f"cells_per_object must be 1 or 4, got {cells_per_object}")
    n, cell = len(boxes), SIZE / grid
    obj = torch.zeros(n, grid, grid)
    tb = torch.zeros(n, grid, grid, 4)
    tl = torch.zeros(n, grid, grid, dtype=torch.int64)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        owner: dict[tuple[int, int], tuple[float, int]] = {}  # cell -> (priority, object)
        b = np.asarray(b).reshape(-1, 4)
        for k, (x1, y1, x2, y2) in enumerate(b):
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            for rank, (y, x) in enumerate(_responsible_cells(cx, cy, grid, cells_per_object)):
                d = -1.0 if rank == 0 else float(np.hypot(cx - (x + 0.5) * cell,
                                                          cy - (y + 0.5) * cell))
                if (y, x) not in owner or d < owner[y, x][0]:
                    owner[y, x] = (d, k)
        for (y, x), (_, k) in owner.items():
            x1, y1, x2, y2 = b[k]
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            obj[i, y, x] = 1
            tb[i, y, x] = torch.tensor([cx / cell - x, cy / cell - y, (x2 - x1) / SIZE,
                                        (y2 - y1) / SIZE])
            tl[i, y, x] = int(np.asarray(lab)[k])
    return {"obj": obj, "boxes": tb, "labels": tl}


def decode_grid(pred: torch.Tensor, score_threshold: float = 0.5) -> list[dict[str, torch.Tensor]]:
    """Turn grid predictions (N, g, g, 5 + C) into per-image candidate boxes (before NMS):
    a list of dicts with boxes (k, 4) in pixels, scores (k,) = sigmoid(objectness) times the
    class probability, and labels (k,), for the cells whose score is above score_threshold."""
    n, g = pred.shape[0], pred.shape[1]
    cell = SIZE / g
    gy, gx = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    out = []
    for i in range(n):
        p = pred[i].detach()
        prob = torch.softmax(p[..., 5:], dim=-1)
        cls_p, cls = prob.max(dim=-1)
        score = torch.sigmoid(p[..., 0]) * cls_p
        cx, cy = (gx + p[..., 1]) * cell, (gy + p[..., 2]) * cell
        w, h = p[..., 3].clamp(min=0) * SIZE, p[..., 4].clamp(min=0) * SIZE
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        keep = score > score_threshold
        out.append({"boxes": boxes[keep], "scores": score[keep], "labels": cls[keep]})
    return out


# ----------------------------------------------------------------------------- models


def backbone(channels: Sequence[int] = (16, 32, 64)) -> nn.Sequential:
    """Three blocks of conv 3x3 (padding 1) + ReLU + max-pool 2: (N, 1, 32, 32) -> (N, 64, 4, 4)."""
    layers: list[nn.Module] = []
    cin = 1
    for c in channels:
        layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        cin = c
    return nn.Sequential(*layers)


class Net(nn.Module):
    """backbone -> flatten -> fc (1024 -> embed_dim) + ReLU (the *embedding*) -> head.

    ``head`` is any module from embed_dim features to the outputs: nn.Linear(embed_dim, K) for
    K classes, a regression head for one number, or a dict of heads (nn.ModuleDict) for several
    outputs, in which case forward returns a dict. ``embed(x)`` returns the embedding (N, D).
    """

    def __init__(self, head: nn.Module, embed_dim: int = 128):
        super().__init__()
        self.features = backbone()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, embed_dim), nn.ReLU())
        self.head = head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def forward(self, x: torch.Tensor):
        z = self.embed(x)
        if isinstance(self.head, nn.ModuleDict):
            return {k: h(z) for k, h in self.head.items()}
        return self.head(z)


class GridDetector(nn.Module):
    """backbone -> conv 3x3 (64) + ReLU -> conv 1x1 to 5 + C numbers per cell of the 4x4 grid.

    Output (N, 4, 4, 5 + C): objectness logit, box (cx, cy in the cell; w, h / image size),
    C class logits."""

    def __init__(self, num_classes: int = len(SHAPES)):
        super().__init__()
        self.features = backbone()
        self.head = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(64, 5 + num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).permute(0, 2, 3, 1)


def fit(model: nn.Module, batch_loss: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        n: int, epochs: int = 10, batch_size: int = 64, lr: float = 2e-3,
        seed: int = 0) -> list[float]:
    """Adam on ``batch_loss(model, idx)`` (idx: the indices of one mini-batch of the n training
    examples), ``epochs`` seeded passes over the data; returns each step's loss. One CPU
    thread (faster than several for networks this small). The course's one small loop,
    :func:`sit471.trainer.fit_indices`, with this module's defaults."""
    return fit_indices(model, batch_loss, n, epochs=epochs, batch_size=batch_size, lr=lr,
                       seed=seed)


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 500):
    """model(x) in eval mode, batch by batch (tensors, or dicts of tensors, concatenated)."""
    model.eval()
    outs = [model(torch.as_tensor(x[s:s + batch_size])) for s in range(0, len(x), batch_size)]
    if isinstance(outs[0], dict):
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return torch.cat(outs)


@torch.no_grad()
def embeddings(net: Net, x: torch.Tensor | np.ndarray, batch_size: int = 500) -> torch.Tensor:
    """net.embed(x) in eval mode, batch by batch: (N, 1, 32, 32) -> (N, embed_dim)."""
    net.eval()
    x = torch.as_tensor(x)
    return torch.cat([net.embed(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])


# ----------------------------------------------------------------------------- measuring

# Thresholds for a verifier: distances of unit-length vectors lie in [0, 2]; a geometric grid
# resolves small distances (raw pixels of faces all point nearly the same way) as well as large.
THRESHOLDS = np.concatenate([[0.0], np.geomspace(1e-3, 2.0, 300)])


def roc(verify: Callable, emb1: torch.Tensor, emb2: torch.Tensor, same: np.ndarray,
        thresholds: np.ndarray = THRESHOLDS) -> dict[str, np.ndarray]:
    """ROC of a verifier over the given thresholds, using only its decisions.

    verify(emb1, emb2, t) -> (N,) bool is the notebook's exercise (True: judged the same
    identity); emb1, emb2 (N, D); same (N,) bool, the truth. Returns thresholds (T,), tpr (share
    of same pairs accepted), fpr (share of different pairs accepted) and accuracy, each (T,)."""
    same = np.asarray(same, bool)
    decided = np.stack([np.asarray(verify(emb1, emb2, float(t))).astype(bool)
                        for t in thresholds])
    return {"thresholds": np.asarray(thresholds, float), "tpr": decided[:, same].mean(1),
            "fpr": decided[:, ~same].mean(1), "accuracy": (decided == same).mean(1)}


def pairs(identity: np.ndarray, n_pairs: int, seed: int = 0, alike: np.ndarray | None = None,
          tolerance: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n_pairs same-identity and n_pairs different-identity index pairs, alternating: (i, j, same).

    alike (N, k), e.g. each image's pose and lighting: when given, every different-identity pair
    is a *hard negative*, two people whose k values all differ by less than tolerance (photos
    taken in nearly the same pose and light). The same-identity pairs are drawn as without it.
    """
    rng = np.random.default_rng(seed)
    i_s, j_s, same = [], [], []
    while len(i_s) < 2 * n_pairs:
        i, j = rng.integers(0, len(identity), 2)
        want_same = len(i_s) % 2 == 0
        if i == j or (identity[i] == identity[j]) != want_same:
            continue
        if alike is not None and not want_same and not (np.abs(alike[i] - alike[j])
                                                        < tolerance).all():
            continue
        i_s.append(i)
        j_s.append(j)
        same.append(want_same)
    return np.array(i_s), np.array(j_s), np.array(same)


def detection_counts(preds: list[dict], boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                     box_iou: Callable, iou_threshold: float = 0.5) -> dict[str, int]:
    """Greedy matching, highest score first: a prediction is a true positive when it has the
    right class and IoU >= iou_threshold with a true box not matched before. Returns tp, fp, fn."""
    tp = fp = n_true = 0
    for p, b, lab in zip(preds, boxes, labels, strict=True):
        n_true += len(b)
        used = np.zeros(len(b), bool)
        order = torch.argsort(p["scores"], descending=True)
        iou = box_iou(p["boxes"][order].float(), torch.as_tensor(np.asarray(b)).reshape(-1, 4))
        for r, k in enumerate(order.tolist()):
            ok = [j for j in range(len(b)) if not used[j] and int(lab[j]) == int(p["labels"][k])
                  and float(iou[r, j]) >= iou_threshold]
            if ok:
                used[max(ok, key=lambda j: float(iou[r, j]))] = True
                tp += 1
            else:
                fp += 1
    return {"tp": tp, "fp": fp, "fn": n_true - tp}


def summary(values: Sequence[float]) -> dict:
    """One measurement over seeds: the runs, their mean and the half-width of its 95 % interval
    (Student's t; 0 for one run)."""
    mean, half = mean_ci(values)
    return {"runs": [round(float(v), 4) for v in values], "mean": round(mean, 4),
            "ci": round(half, 4)}


def pm(s: dict, factor: float = 1.0, digits: int = 2) -> str:
    """A summary as 'mean ± half-width' (times factor, e.g. 100 for percent)."""
    return f"{factor * s['mean']:.{digits}f} ± {factor * s['ci']:.{digits}f}"


# ----------------------------------------------------------------------------- the experiments
#
# One function per section of the notebook. Each takes the notebook's answers it needs as
# arguments (nothing is imported from the reference), trains one model per seed (the seed sets
# the initial weights and the order of the batches; the data stay the same) and returns a
# JSON-able dict. scale < 1 shrinks the data and the epochs (quick tests).

SEEDS = (0, 1, 2)
EPOCHS = 12  # Adam 2e-3, batches of 64, for every model of the notebook (the detector: 15)
COUNT_RANGES = ((0, 16), (17, 33), (34, 50))  # crowd sizes the counting errors are split by


def _size(k: int, scale: float) -> int:
    return max(8, int(k * scale))


def _epochs(e: int, scale: float) -> int:
    return e if scale >= 1 else max(1, round(e * scale))


def check_inputs(scale: float, seeds: Sequence[int], **functions: Callable) -> None:
    """Fail early, before any training: scale > 0, at least one integer seed, every answer
    callable."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if len(seeds) == 0 or not all(isinstance(s, (int, np.integer)) for s in seeds):
        raise ValueError(f"seeds must be one or more integers, got {seeds!r}")
    for name, f in functions.items():
        if not callable(f):
            raise TypeError(f"{name} must be the notebook's function (or class), got "
                            f"{type(f).__name__}")


def require_tools(tools: dict[str, Callable], names: Sequence[str]) -> None:
    """KeyError naming every one of ``names`` that ``tools`` lacks (the notebook's answers)."""
    missing = [n for n in names if n not in tools]
    if missing:
        raise KeyError(f"tools lacks {', '.join(missing)} (the notebook's answers)")


def run_sections(sections: Sequence[tuple[str, Callable[[], dict]]], settings: dict,
                 log: Callable[[str], None] = print) -> dict:
    """{"settings": settings, name: section() for each (name, section) in order}. Logs the time
    since the start as each section finishes; the total goes in settings["seconds"]."""
    start = time.time()
    res: dict = {"settings": settings}
    for name, section in sections:
        res[name] = section()
        log(f"[{time.time() - start:5.1f} s] {name} done")
    settings["seconds"] = round(time.time() - start, 1)
    return res


def _train_classifier(data: dict, key: str, k: int, seed: int, epochs: int) -> Net:
    import torch.nn.functional as F

    xt, yt = torch.as_tensor(data["x"]), torch.as_tensor(data[key])
    torch.manual_seed(seed)
    net = Net(nn.Linear(128, k))
    fit(net, lambda m, i: F.cross_entropy(m(xt[i]), yt[i]), len(xt), epochs=epochs, seed=seed)
    return net


def label_tasks(seeds: Sequence[int] = SEEDS, scale: float = 1.0) -> dict:
    """Section 1: the same network, a 3-way head for the shape of one object and a 4-way head
    for the arrangement of a scene. Test accuracy per seed."""
    check_inputs(scale, seeds)
    res: dict = {}
    acc: dict[str, list[float]] = {}
    for name, make, k in (("objects", objects, len(SHAPES)), ("scenes", scenes, len(ARRANGEMENTS))):
        tr, te = make(_size(3000, scale), seed=1), make(_size(1000, scale), seed=2)
        acc[name] = [float((predict(_train_classifier(tr, "label", k, s, _epochs(EPOCHS, scale)),
                                    te["x"]).argmax(1).numpy() == te["label"]).mean())
                     for s in seeds]
        res[name] = {"classes": k, "train": len(tr["x"]), "test": len(te["x"]),
                     "accuracy": summary(acc[name])}
    res["scenes_minus_objects"] = summary(np.subtract(acc["scenes"], acc["objects"]))
    return res


def age_regression(RegressionHead: Callable, regression_loss: Callable, bin_centers: Callable,
                   expected_value: Callable, seeds: Sequence[int] = SEEDS,
                   scale: float = 1.0) -> dict:
    """Section 3: the age of a face, by L2 and L1 regression of (age - 50) / 30 and by a 12-way
    classifier over bins of 5 years read out by its expected value (and, for comparison, by the
    centre of its top bin). Test MAE in years per seed, and paired differences."""
    import torch.nn.functional as F

    check_inputs(scale, seeds, RegressionHead=RegressionHead, regression_loss=regression_loss,
                 bin_centers=bin_centers, expected_value=expected_value)
    tr = faces(_size(60, scale), 40, seed=3, first_identity=1000, ages="uniform")
    te = faces(_size(100, scale), 10, seed=4, first_identity=2000, ages="uniform")
    xt, at = torch.as_tensor(tr["x"]), torch.as_tensor(tr["age"])
    centers = bin_centers(*AGE_RANGE, 12)
    width = (AGE_RANGE[1] - AGE_RANGE[0]) / 12
    bins = ((at - AGE_RANGE[0]) // width).clamp(0, 11).long()
    epochs = _epochs(EPOCHS, scale)
    mae: dict[str, list[float]] = {k: [] for k in ("l2", "l1", "bins", "bins_argmax")}

    def err(pred: torch.Tensor) -> float:
        return float(np.abs(np.asarray(pred, float) - te["age"]).mean())

    for s in seeds:
        for kind in ("l2", "l1"):
            torch.manual_seed(s)
            net = Net(RegressionHead(128))
            # the target is standardised (age - 50) / 30 so that one learning rate suits all
            fit(net, lambda m, i, k=kind: regression_loss(m(xt[i]), (at[i] - 50) / 30, k),
                len(xt), epochs=epochs, seed=s)
            mae[kind].append(err(predict(net, te["x"]) * 30 + 50))
        torch.manual_seed(s)
        net = Net(nn.Linear(128, 12))
        fit(net, lambda m, i: F.cross_entropy(m(xt[i]), bins[i]), len(xt), epochs=epochs, seed=s)
        logits = predict(net, te["x"])
        mae["bins"].append(err(expected_value(logits, centers)))
        mae["bins_argmax"].append(err(centers[logits.argmax(1)]))
    d = {k: np.asarray(v) for k, v in mae.items()}
    return {"train": len(xt), "test": len(te["x"]), "bins": 12,
            **{f"mae_{k}": summary(v) for k, v in mae.items()},
            "bins_minus_l2": summary(d["bins"] - d["l2"]),
            "bins_minus_l1": summary(d["bins"] - d["l1"]),
            "argmax_minus_bins": summary(d["bins_argmax"] - d["bins"]),
            "mae_predict_mean": round(float(np.abs(te["age"] - tr["age"].mean()).mean()), 2)}


def face_verification(verify: Callable, seeds: Sequence[int] = SEEDS, scale: float = 1.0) -> dict:
    """Section 2: a classifier over 50 known identities, its embedding used to verify pairs of
    50 identities it never saw, with ``verify`` (the notebook's answer) deciding every pair.

    Three embeddings: the trained network's, the same network untrained (random weights) and
    the raw pixels. Two kinds of test pairs: random pairs, and pairs whose different-identity
    half are hard negatives (nearly the same pose and lighting). The threshold is the one most
    accurate on development pairs of 50 other unseen identities (same kind of pairs); reported:
    test accuracy at it, and the area under the ROC curve. ROC curves of the first seed.
    """
    check_inputs(scale, seeds, verify=verify)
    known = faces(50, _size(40, scale), seed=5)
    held = faces(50, 6, seed=6)
    n_pairs = 500 if scale >= 1 else 20
    sets = {}
    for split, (first, seed) in {"dev": (500, 7), "test": (600, 8)}.items():
        unseen = faces(50, 8, seed=seed, first_identity=first)
        alike = np.stack([unseen["pose"], unseen["light"]], 1)
        sets[split] = {"x": torch.as_tensor(unseen["x"]),
                       "random": pairs(unseen["identity"], n_pairs, seed=seed),
                       "hard": pairs(unseen["identity"], n_pairs, seed=seed, alike=alike)}

    def measure(embed: Callable[[torch.Tensor], torch.Tensor]) -> dict:
        out = {}
        emb = {split: embed(sets[split]["x"]) for split in sets}
        for kind in ("random", "hard"):
            i, j, same = sets["dev"][kind]
            dev = roc(verify, emb["dev"][i], emb["dev"][j], same)
            t = float(dev["thresholds"][np.argmax(dev["accuracy"])])
            i, j, same = sets["test"][kind]
            test = roc(verify, emb["test"][i], emb["test"][j], same)
            decided = np.asarray(verify(emb["test"][i], emb["test"][j], t)).astype(bool)
            out[kind] = {"threshold": t, "accuracy": float((decided == same).mean()),
                         "auc": float(np.trapezoid(test["tpr"], test["fpr"])),
                         "fpr": test["fpr"], "tpr": test["tpr"]}
        return out

    runs: dict[str, list[dict]] = {"trained": [], "untrained": []}
    id_acc = []
    for s in seeds:
        net = _train_classifier(known, "identity", 50, s, _epochs(EPOCHS, scale))
        id_acc.append(float((predict(net, held["x"]).argmax(1).numpy() == held["identity"])
                            .mean()))
        runs["trained"].append(measure(lambda x, net=net: embeddings(net, x)))
        torch.manual_seed(s)
        untrained = Net(nn.Linear(128, 50))
        runs["untrained"].append(measure(lambda x, net=untrained: embeddings(net, x)))
    runs["pixels"] = [measure(lambda x: x.flatten(1))]  # no weights: the same for every seed
    verification = {
        emb: {kind: {m: summary([r[kind][m] for r in rs]) for m in ("accuracy", "auc",
                                                                      "threshold")}
              for kind in ("random", "hard")} for emb, rs in runs.items()}
    curves = {f"{emb}_{kind}": {"fpr": [round(float(v), 3) for v in rs[0][kind]["fpr"]],
                                "tpr": [round(float(v), 3) for v in rs[0][kind]["tpr"]]}
              for emb, rs in runs.items() for kind in ("random", "hard")}
    return {"identities": 50, "train": len(known["x"]), "pairs": 2 * n_pairs,
            "identification_accuracy": summary(id_acc), "identification_chance": 1 / 50,
            "verification_chance": 0.5, "verification": verification, "roc": curves}


def counting_data(scale: float = 1.0) -> tuple[dict, dict]:
    """The crowds both counting experiments use (this notebook's regression and assignment 06's
    density map): 3,000 training and 1,000 test images of 0..50 people."""
    return crowds(_size(3000, scale), seed=9), crowds(_size(1000, scale), seed=10)


def count_errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Count errors over all test images and by crowd size (COUNT_RANGES): mae and rmse."""
    err = np.asarray(pred, float) - np.asarray(truth, float)
    out = {"all": {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}}
    for lo, hi in COUNT_RANGES:
        e = err[(truth >= lo) & (truth <= hi)]
        out[f"{lo}-{hi}"] = {"mae": float(np.abs(e).mean()) if len(e) else float("nan"),
                             "rmse": float(np.sqrt((e ** 2).mean())) if len(e) else float("nan")}
    return out


def summarise_counts(runs: list[dict]) -> dict:
    """count_errors of several seeds -> {range: {mae: summary, rmse: summary}}."""
    return {r: {m: summary([run[r][m] for run in runs]) for m in ("mae", "rmse")}
            for r in runs[0]}


def count_regression(RegressionHead: Callable, regression_loss: Callable,
                     seeds: Sequence[int] = SEEDS, scale: float = 1.0) -> dict:
    """Section 4, and the baseline of assignment 06: Net with a RegressionHead, L1 loss on
    count / 20, EPOCHS epochs on counting_data(). Returns the errors by crowd size over seeds
    (``errors``), each seed's errors (``runs``) and always-the-mean for comparison."""
    check_inputs(scale, seeds, RegressionHead=RegressionHead, regression_loss=regression_loss)
    tr, te = counting_data(scale)
    xt, ct = torch.as_tensor(tr["x"]), torch.as_tensor(tr["count"])
    runs = []
    for s in seeds:
        torch.manual_seed(s)
        net = Net(RegressionHead(128))
        fit(net, lambda m, i: regression_loss(m(xt[i]), ct[i] / 20, "l1"), len(xt),
            epochs=_epochs(EPOCHS, scale), seed=s)
        runs.append(count_errors(predict(net, te["x"]).numpy() * 20, te["count"]))
    return {"train": len(xt), "test": len(te["x"]), "epochs": _epochs(EPOCHS, scale),
            "loss": "L1 on count / 20", "errors": summarise_counts(runs),
            "mae_predict_mean": round(float(np.abs(te["count"] - tr["count"].mean()).mean()), 2)}


def localisation(box_iou: Callable, seeds: Sequence[int] = SEEDS, scale: float = 1.0) -> dict:
    """Section 5: one object, two heads (class and box), cross-entropy + 5 x L1 of the box
    divided by the image size. Class accuracy, mean IoU and the share with IoU >= 0.5."""
    import torch.nn.functional as F

    check_inputs(scale, seeds, box_iou=box_iou)
    tr, te = objects(_size(3000, scale), seed=11), objects(_size(1000, scale), seed=12)
    xt, yt = torch.as_tensor(tr["x"]), torch.as_tensor(tr["label"])
    bt = torch.as_tensor(tr["box"]) / SIZE

    def loc_loss(m: nn.Module, i: torch.Tensor, w: float = 5.0) -> torch.Tensor:
        out = m(xt[i])
        return F.cross_entropy(out["cls"], yt[i]) + w * (out["box"] - bt[i]).abs().mean()

    acc, mean_iou, hit = [], [], []
    for s in seeds:
        torch.manual_seed(s)
        net = Net(nn.ModuleDict({"cls": nn.Linear(128, 3), "box": nn.Linear(128, 4)}))
        fit(net, loc_loss, len(xt), epochs=_epochs(EPOCHS, scale), seed=s)
        out = predict(net, te["x"])
        b = out["box"] * SIZE
        b = torch.stack([b[:, 0], b[:, 1], torch.maximum(b[:, 0], b[:, 2]),
                         torch.maximum(b[:, 1], b[:, 3])], 1)
        iou = np.asarray(box_iou(b, torch.as_tensor(te["box"]))).diagonal()
        acc.append(float((out["cls"].argmax(1).numpy() == te["label"]).mean()))
        mean_iou.append(float(iou.mean()))
        hit.append(float((iou >= 0.5).mean()))
    return {"train": len(xt), "test": len(te["x"]), "box_weight": 5.0, "accuracy": summary(acc),
            "mean_iou": summary(mean_iou), "iou_at_least_0.5": summary(hit)}


def _rates(c: dict[str, int]) -> dict:
    return {**c, "detections": c["tp"] + c["fp"], "precision": c["tp"] / max(1, c["tp"] + c["fp"]),
            "recall": c["tp"] / max(1, c["tp"] + c["fn"])}


def detection(box_iou: Callable, detection_loss: Callable, nms: Callable,
              seeds: Sequence[int] = SEEDS, scale: float = 1.0,
              cells_per_object: int = 4) -> dict:
    """Section 6: a grid detector in which the 2 x 2 cells nearest each object's centre are all
    responsible for it (so several cells propose overlapping boxes for one object), trained with
    detection_loss; boxes with a score above 0.3 before and after per-class nms at IoU 0.5
    (``after_nms``) and 0.3 (``after_nms_0.3``), and NMS over all classes at IoU 0.5
    (``after_nms_any_class``: a box also suppresses boxes of other classes).
    Counts (tp, fp, fn), precision and recall per seed; the detections of the first seed on
    the first six test images, before and after NMS."""
    check_inputs(scale, seeds, box_iou=box_iou, detection_loss=detection_loss, nms=nms)
    tr, te = multi_objects(_size(4000, scale), seed=13), multi_objects(_size(500, scale), seed=14)
    xt = torch.as_tensor(tr["x"])
    tg = grid_targets(tr["boxes"], tr["labels"], cells_per_object=cells_per_object)
    runs: dict[str, list[dict]] = {"before_nms": [], "after_nms": [], "after_nms_0.3": [],
                                   "after_nms_any_class": []}
    examples: dict[str, list] = {}
    for s in seeds:
        torch.manual_seed(s)
        det = GridDetector()
        fit(det, lambda m, i: detection_loss(m(xt[i]), tg["obj"][i], tg["boxes"][i],
                                             tg["labels"][i], 5.0, 1.0),
            len(xt), epochs=_epochs(15, scale), seed=s)
        raw = decode_grid(predict(det, te["x"]), score_threshold=0.3)
        kept: dict[tuple[float, bool], list[dict]] = {}
        for iou, per_class in ((0.5, True), (0.3, True), (0.5, False)):
            kept[iou, per_class] = []
            for p in raw:
                k = nms(p["boxes"], p["scores"], iou, p["labels"] if per_class else None)
                k = torch.as_tensor(k).long()
                kept[iou, per_class].append({key: v[k] for key, v in p.items()})
        for name, preds in (("before_nms", raw), ("after_nms", kept[0.5, True]),
                            ("after_nms_0.3", kept[0.3, True]),
                            ("after_nms_any_class", kept[0.5, False])):
            runs[name].append(_rates(detection_counts(preds, te["boxes"], te["labels"], box_iou)))
            if name in ("before_nms", "after_nms") and not examples.get(name):
                examples[name] = [{"boxes": [[round(float(t), 2) for t in b] for b in p["boxes"]],
                                   "labels": p["labels"].tolist(),
                                   "scores": [round(float(t), 3) for t in p["scores"]]}
                                  for p in preds[:6]]
    res = {"train": len(xt), "test": len(te["x"]), "cells_per_object": cells_per_object,
           "score_threshold": 0.3, "nms_iou": 0.5,
           "objects": int(sum(len(b) for b in te["boxes"])), "examples": examples}
    for name, rs in runs.items():
        res[name] = {m: summary([r[m] for r in rs]) for m in ("detections", "tp", "fp", "fn",
                                                               "precision", "recall")}
    return res


def run_experiments(tools: dict[str, Callable], log: Callable[[str], None] = print,
                    scale: float = 1.0, seeds: Sequence[int] | None = None) -> dict:
    """Every section's experiment with the given functions, measured on test data.

    tools: RegressionHead, regression_loss, bin_centers, expected_value, box_iou,
    detection_loss, nms, verify (the notebook's answers; nothing else is imported). seeds:
    SEEDS by default (the first two when scale < 1). scale < 1 shrinks the data and epochs
    (quick tests). About 20 minutes on one CPU thread of a shared machine (1,290 s measured
    for the cached results). Returns a JSON-able dict.
    """
    names = ("RegressionHead", "regression_loss", "bin_centers", "expected_value", "box_iou",
             "detection_loss", "nms", "verify")
    require_tools(tools, names)
    seeds = tuple(seeds if seeds is not None else SEEDS if scale >= 1 else SEEDS[:2])
    check_inputs(scale, seeds, **{n: tools[n] for n in names})
    t = tools
    settings = {"scale": scale, "seeds": list(seeds), "epochs": _epochs(EPOCHS, scale),
                "optimizer": "Adam 2e-3, batch 64, one CPU thread"}
    return run_sections([
        ("labels", lambda: label_tasks(seeds, scale)),
        ("faces", lambda: face_verification(t["verify"], seeds, scale)),
        ("age", lambda: age_regression(t["RegressionHead"], t["regression_loss"],
                                       t["bin_centers"], t["expected_value"], seeds, scale)),
        ("counting", lambda: count_regression(t["RegressionHead"], t["regression_loss"], seeds,
                                              scale)),
        ("localisation", lambda: localisation(t["box_iou"], seeds, scale)),
        ("detection", lambda: detection(t["box_iou"], t["detection_loss"], t["nms"], seeds,
                                        scale)),
    ], settings, log)


def format_results(res: dict) -> str:
    """The measured numbers as a markdown table (quoted by the notebook): mean ± half-width of
    the 95 % interval over the seeds."""
    lab, f, a, c = res["labels"], res["faces"], res["age"], res["counting"]
    lo, det = res["localisation"], res["detection"]
    v = f["verification"]
    rows = [
        ("objects: shape class (3)", "accuracy %", pm(lab["objects"]["accuracy"], 100, 1)),
        ("scenes: arrangement (4)", "accuracy %", pm(lab["scenes"]["accuracy"], 100, 1)),
        ("faces: 50 known identities (chance 2 %)", "identification accuracy %",
         pm(f["identification_accuracy"], 100, 1)),
    ]
    for emb, name in (("trained", "trained embedding"), ("untrained", "untrained network"),
                      ("pixels", "raw pixels")):
        for kind, pairs_name in (("random", "random pairs"), ("hard", "hard negatives")):
            rows.append((f"faces: unseen, {pairs_name}, {name} (chance 50 %)",
                         "verification accuracy % / AUC",
                         f"{pm(v[emb][kind]['accuracy'], 100, 1)} / "
                         f"{pm(v[emb][kind]['auc'], 1, 3)}"))
    rows += [
        ("age: L2 regression", "MAE (years)", pm(a["mae_l2"])),
        ("age: L1 regression", "MAE (years)", pm(a["mae_l1"])),
        ("age: 12 bins + expected value", "MAE (years)", pm(a["mae_bins"])),
        ("age: 12 bins, centre of the top bin", "MAE (years)", pm(a["mae_bins_argmax"])),
        ("age: always the mean age", "MAE (years)", f"{a['mae_predict_mean']:.2f}"),
    ]
    for r, e in c["errors"].items():
        rows.append((f"counting: direct regression, {r} people", "MAE / RMSE",
                     f"{pm(e['mae'])} / {pm(e['rmse'])}"))
    rows += [
        ("counting: always the mean count", "MAE", f"{c['mae_predict_mean']:.2f}"),
        ("localisation + class", "accuracy % / mean IoU",
         f"{pm(lo['accuracy'], 100, 1)} / {pm(lo['mean_iou'], 1, 3)}"),
    ]
    for name, label in (("before_nms", "no NMS"), ("after_nms", "NMS at IoU 0.5"),
                        ("after_nms_0.3", "NMS at IoU 0.3"),
                        ("after_nms_any_class", "NMS at IoU 0.5 over all classes")):
        if name not in det:  # results cached before this variant existed
            continue
        d = det[name]
        rows.append((f"detection: score > 0.3, {label}",
                     "detections / false positives / precision % / recall %",
                     f"{pm(d['detections'], 1, 0)} / {pm(d['fp'], 1, 0)} / "
                     f"{pm(d['precision'], 100, 1)} / {pm(d['recall'], 100, 1)}"))
    lines = [f"Mean ± 95 % interval over {len(res['settings']['seeds'])} seeds.", "",
             "| task | metric | result |", "|---|---|---|"]
    return "\n".join(lines + [f"| {t} | {m} | {r} |" for t, m, r in rows])


# ----------------------------------------------------------------------------- figures


def draw_boxes(ax, boxes, labels=None, color: str = "lime", scores=None) -> None:
    """Draw (x1, y1, x2, y2) pixel boxes on an image axis, with class names and scores."""
    from matplotlib.patches import Rectangle

    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, float).reshape(-1, 4)):
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color=color,
                               lw=1.2))
        text = "" if labels is None else SHAPES[int(labels[k])][:3]
        if scores is not None:
            text += f" {float(scores[k]):.2f}"
        if text:
            ax.text(x1 - 0.5, y1 - 1, text, color=color, fontsize=6)


def show_samples(x: np.ndarray, titles: Sequence[str], boxes=None, labels=None, ncols: int = 8):
    """Images (M, 1, 32, 32) in a grid with titles and, optionally, a list of boxes per image."""
    import matplotlib.pyplot as plt

    m = len(x)
    ncols = min(m, ncols)
    nrows = -(-m // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.35 * ncols, 1.45 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < m:
            ax.imshow(x[k, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(titles[k], fontsize=7)
            if boxes is not None:
                draw_boxes(ax, boxes[k], None if labels is None else labels[k])
    fig.tight_layout()
    return fig
