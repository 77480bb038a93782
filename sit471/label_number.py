"""Data, a backbone and tiny training loops for assignment 05 (no exercise answers in here).

Seeded generators of small grayscale images (N, 1, 32, 32) in [0, 1], nothing downloads:

    objects(n, seed)        one shape (circle, square, triangle) per image: label, size, box
    scenes(n, seed)         three shapes arranged in a row, a column or a diagonal: label
    faces(ids, per_id, seed)  parametric drawn faces: identity, age, pose, lighting, expression
    crowds(n, seed)         0..max_count blobs ("people"): count and positions
    multi_objects(n, seed)  0..4 shapes per image: boxes (k, 4) and labels (k,)

Models: :func:`backbone` (three conv-ReLU-pool blocks, 32x32 -> 64 maps of 4x4) and
:class:`Net` (backbone + a named head). :func:`fit` is a tiny training loop on one CPU thread.
:func:`run_experiments` trains one model per topic with functions it is given (the notebook's
answers) and returns measured results. The staff make the notebook's ``results.json`` with the
reference answers, from the repository: ``python -m sit471.reference.experiments label_number``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

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


def grid_targets(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 grid: int = GRID) -> dict[str, torch.Tensor]:
    """Targets of a grid detector: the cell that holds a box's centre is responsible for it.

    Box numbers per cell: (centre x, centre y) relative to the cell in [0, 1] and (w, h)
    divided by the image size. Returns obj (N, g, g), boxes (N, g, g, 4), labels (N, g, g).
    """
    n, cell = len(boxes), SIZE / grid
    obj = torch.zeros(n, grid, grid)
    tb = torch.zeros(n, grid, grid, 4)
    tl = torch.zeros(n, grid, grid, dtype=torch.int64)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        for (x1, y1, x2, y2), c in zip(np.asarray(b), np.asarray(lab), strict=True):
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            gx, gy = min(int(cx // cell), grid - 1), min(int(cy // cell), grid - 1)
            obj[i, gy, gx] = 1
            tb[i, gy, gx] = torch.tensor([cx / cell - gx, cy / cell - gy, (x2 - x1) / SIZE,
                                          (y2 - y1) / SIZE])
            tl[i, gy, gx] = int(c)
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
    thread (faster than several for networks this small)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        losses = []
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for s in range(0, n, batch_size):
                loss = batch_loss(model, order[s:s + batch_size])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.item()))
        model.eval()
        return losses
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 500):
    """model(x) in eval mode, batch by batch (tensors, or dicts of tensors, concatenated)."""
    model.eval()
    outs = [model(torch.as_tensor(x[s:s + batch_size])) for s in range(0, len(x), batch_size)]
    if isinstance(outs[0], dict):
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return torch.cat(outs)


def roc(distances: np.ndarray, same: np.ndarray) -> dict[str, np.ndarray]:
    """ROC of the rule "same identity when distance <= t" over every threshold t.

    Returns thresholds, tpr (share of same pairs accepted), fpr (share of different pairs
    accepted) and accuracy at each threshold."""
    distances, same = np.asarray(distances, float), np.asarray(same, bool)
    t = np.concatenate([[-np.inf], np.sort(distances)])
    acc = np.array([((distances <= v) == same).mean() for v in t])
    tpr = np.array([(distances[same] <= v).mean() for v in t])
    fpr = np.array([(distances[~same] <= v).mean() for v in t])
    return {"thresholds": t, "tpr": tpr, "fpr": fpr, "accuracy": acc}


def pairs(identity: np.ndarray, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray,
                                                                         np.ndarray]:
    """n_pairs same-identity and n_pairs different-identity index pairs: (i, j, same)."""
    rng = np.random.default_rng(seed)
    i_s, j_s, same = [], [], []
    while len(i_s) < 2 * n_pairs:
        i, j = rng.integers(0, len(identity), 2)
        want_same = len(i_s) % 2 == 0
        if i != j and (identity[i] == identity[j]) == want_same:
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


# ----------------------------------------------------------------------------- the experiment


def run_experiments(tools: dict[str, Callable], log: Callable[[str], None] = print,
                    scale: float = 1.0) -> dict:
    """Train one model per topic with the given functions and measure it on test data.

    tools: RegressionHead, regression_loss, bin_centers, expected_value, box_iou,
    detection_loss, nms, verify (the notebook's answers; nothing else is imported).
    scale < 1 shrinks the data sets and epochs (for quick tests). Returns a JSON-able dict.
    """
    import torch.nn.functional as F

    start = time.time()

    def size(k: int) -> int:
        return max(8, int(k * scale))

    def ep(e: int) -> int:  # scale < 1 shortens the training too (1 epoch at least)
        return e if scale >= 1 else max(1, round(e * scale))

    res: dict = {"settings": {"scale": scale, "epochs": ep(12), "optimizer": "Adam 2e-3, batch 64"}}

    def note(name: str) -> None:
        log(f"[{time.time() - start:5.1f} s] {name}: {res[name]}")

    # 1. one backbone, two heads: objects (what) and scenes (how arranged)
    for name, make in [("objects", objects), ("scenes", scenes)]:
        tr, te = make(size(3000), seed=1), make(size(1000), seed=2)
        torch.manual_seed(0)
        net = Net(nn.Linear(128, 4 if name == "scenes" else 3))
        xt, yt = torch.as_tensor(tr["x"]), torch.as_tensor(tr["label"])
        fit(net, lambda m, i, xt=xt, yt=yt: F.cross_entropy(m(xt[i]), yt[i]), len(xt),
            epochs=ep(12))
        acc = float((predict(net, te["x"]).argmax(1).numpy() == te["label"]).mean())
        res[name] = {"accuracy": round(acc, 4), "train": len(xt), "test": len(te["x"])}
        note(name)

    # 2. image -> number: age of generated faces, three ways
    tr = faces(size(60), 40, seed=3, first_identity=1000, ages="uniform")
    te = faces(size(100), 10, seed=4, first_identity=2000, ages="uniform")
    xt, at = torch.as_tensor(tr["x"]), torch.as_tensor(tr["age"])
    centers = tools["bin_centers"](*AGE_RANGE, 12)
    width = (AGE_RANGE[1] - AGE_RANGE[0]) / 12
    res["age"] = {"train": len(xt), "test": len(te["x"]), "bins": 12}
    for method in ("l2", "l1", "bins"):
        torch.manual_seed(0)
        if method == "bins":
            net = Net(nn.Linear(128, 12))
            bins = ((at - AGE_RANGE[0]) // width).clamp(0, 11).long()
            fit(net, lambda m, i, b=bins: F.cross_entropy(m(xt[i]), b[i]), len(xt),
                epochs=ep(12))
            pred = tools["expected_value"](predict(net, te["x"]), centers)
            argmax = centers[predict(net, te["x"]).argmax(1)]
            res["age"]["mae_bins_argmax"] = round(float(np.abs(argmax.numpy() - te["age"]).mean()),
                                                  2)
        else:
            net = Net(tools["RegressionHead"](128))
            # the target is standardised (age - 50) / 30 so that one learning rate suits all
            fit(net, lambda m, i, k=method: tools["regression_loss"](
                m(xt[i]), (at[i] - 50) / 30, k), len(xt), epochs=ep(12))
            pred = predict(net, te["x"]) * 30 + 50
        res["age"][f"mae_{method}"] = round(float(np.abs(pred.numpy() - te["age"]).mean()), 2)
    res["age"]["mae_predict_mean"] = round(float(np.abs(te["age"] - tr["age"].mean()).mean()), 2)
    note("age")

    # 3. faces: classifier over known identities -> embedding -> verify unseen identities
    known = faces(50, size(40), seed=5)
    xt, it = torch.as_tensor(known["x"]), torch.as_tensor(known["identity"])
    torch.manual_seed(0)
    net = Net(nn.Linear(128, 50))
    fit(net, lambda m, i: F.cross_entropy(m(xt[i]), it[i]), len(xt), epochs=ep(12))
    held = faces(50, 6, seed=6)
    id_acc = float((predict(net, held["x"]).argmax(1).numpy() == held["identity"]).mean())
    verif = {}
    for split, (first, seed) in {"dev": (500, 7), "test": (600, 8)}.items():
        unseen = faces(50, 8, seed=seed, first_identity=first)
        with torch.no_grad():
            emb = net.embed(torch.as_tensor(unseen["x"]))
        i, j, same = pairs(unseen["identity"], 500, seed=seed)
        dist = (F.normalize(emb[i], dim=1) - F.normalize(emb[j], dim=1)).norm(dim=1).numpy()
        verif[split] = (emb, i, j, same, dist)
    dev = roc(verif["dev"][4], verif["dev"][3])
    t_best = float(dev["thresholds"][np.argmax(dev["accuracy"])])
    emb, i, j, same, dist = verif["test"]
    test_roc = roc(dist, same)
    decided = tools["verify"](emb[i], emb[j], t_best).numpy()
    keep = np.linspace(0, len(test_roc["fpr"]) - 1, 80).astype(int)
    res["faces"] = {
        "identities": 50, "train": len(xt), "identification_accuracy": round(id_acc, 4),
        "threshold": round(t_best, 4), "verification_accuracy": round(float((decided == same)
                                                                           .mean()), 4),
        "best_test_accuracy": round(float(test_roc["accuracy"].max()), 4),
        "auc": round(float(np.trapezoid(test_roc["tpr"], test_roc["fpr"])), 4),
        "roc_fpr": [round(float(v), 4) for v in test_roc["fpr"][keep]],
        "roc_tpr": [round(float(v), 4) for v in test_roc["tpr"][keep]],
        "pairs": len(same)}
    note("faces")

    # 4. counting by direct regression (the baseline of assignment 06)
    tr, te = crowds(size(3000), seed=9), crowds(size(1000), seed=10)
    xt, ct = torch.as_tensor(tr["x"]), torch.as_tensor(tr["count"])
    torch.manual_seed(0)
    net = Net(tools["RegressionHead"](128))
    fit(net, lambda m, i: tools["regression_loss"](m(xt[i]), ct[i] / 20, "l1"), len(xt),
        epochs=ep(12))
    err = predict(net, te["x"]).numpy() * 20 - te["count"]
    res["counting"] = {"train": len(xt), "test": len(te["x"]),
                       "mae": round(float(np.abs(err).mean()), 2),
                       "rmse": round(float(np.sqrt((err ** 2).mean())), 2),
                       "mae_predict_mean": round(float(np.abs(te["count"] - tr["count"].mean())
                                                       .mean()), 2)}
    note("counting")

    # 5. localisation + classification of one object: two heads, weighted sum of losses
    tr, te = objects(size(3000), seed=11), objects(size(1000), seed=12)
    xt, yt = torch.as_tensor(tr["x"]), torch.as_tensor(tr["label"])
    bt = torch.as_tensor(tr["box"]) / SIZE
    torch.manual_seed(0)
    net = Net(nn.ModuleDict({"cls": nn.Linear(128, 3), "box": nn.Linear(128, 4)}))

    def loc_loss(m: nn.Module, i: torch.Tensor, w: float = 5.0) -> torch.Tensor:
        out = m(xt[i])
        return F.cross_entropy(out["cls"], yt[i]) + w * (out["box"] - bt[i]).abs().mean()

    fit(net, loc_loss, len(xt), epochs=ep(12))
    out = predict(net, te["x"])
    boxes = out["box"] * SIZE
    boxes = torch.stack([boxes[:, 0], boxes[:, 1], torch.maximum(boxes[:, 0], boxes[:, 2]),
                         torch.maximum(boxes[:, 1], boxes[:, 3])], 1)
    iou = tools["box_iou"](boxes, torch.as_tensor(te["box"])).diagonal().numpy()
    res["localisation"] = {"train": len(xt), "test": len(te["x"]), "box_weight": 5.0,
                           "accuracy": round(float((out["cls"].argmax(1).numpy() == te["label"])
                                                   .mean()), 4),
                           "mean_iou": round(float(iou.mean()), 4),
                           "iou_at_least_0.5": round(float((iou >= 0.5).mean()), 4)}
    note("localisation")

    # 6. detection of several objects: a grid, the combined loss, NMS, precision and recall
    tr, te = multi_objects(size(4000), seed=13), multi_objects(size(500), seed=14)
    xt = torch.as_tensor(tr["x"])
    tg = grid_targets(tr["boxes"], tr["labels"])
    torch.manual_seed(0)
    det = GridDetector()
    fit(det, lambda m, i: tools["detection_loss"](m(xt[i]), tg["obj"][i], tg["boxes"][i],
                                                  tg["labels"][i], 5.0, 1.0),
        len(xt), epochs=ep(15))
    grid_out = predict(det, te["x"])
    res["detection"] = {"train": len(xt), "test": len(te["x"]), "score_threshold": 0.3,
                        "low_score_threshold": 0.05, "nms_iou": 0.5,
                        "objects": int(sum(len(b) for b in te["boxes"]))}
    for suffix, threshold in [("", 0.3), ("_low", 0.05)]:
        raw = decode_grid(grid_out, score_threshold=threshold)
        kept = []
        for p in raw:
            k = tools["nms"](p["boxes"], p["scores"], 0.5, p["labels"])
            kept.append({key: v[k] for key, v in p.items()})
        for name, preds in [("before_nms", raw), ("after_nms", kept)]:
            c = detection_counts(preds, te["boxes"], te["labels"], tools["box_iou"])
            res["detection"][name + suffix] = {
                **c, "precision": round(c["tp"] / max(1, c["tp"] + c["fp"]), 4),
                "recall": round(c["tp"] / max(1, c["tp"] + c["fn"]), 4)}
        if suffix == "":
            examples = kept[:6]
    res["detection"]["examples"] = [{k: [round(float(t), 3) for t in v.flatten()] if k == "scores"
                                     else v.tolist() for k, v in p.items()} for p in examples]
    note("detection")
    res["settings"]["seconds"] = round(time.time() - start, 1)
    return res


def format_results(res: dict) -> str:
    """The measured numbers as a markdown table (quoted by the notebook)."""
    a, f, c = res["age"], res["faces"], res["counting"]
    lo, det = res["localisation"], res["detection"]
    d = det["after_nms"]
    rows = [
        ("objects: shape class (3)", "accuracy", f"{100 * res['objects']['accuracy']:.1f} %"),
        ("scenes: arrangement (4)", "accuracy", f"{100 * res['scenes']['accuracy']:.1f} %"),
        ("age: L2 regression", "MAE", f"{a['mae_l2']:.2f} years"),
        ("age: L1 regression", "MAE", f"{a['mae_l1']:.2f} years"),
        ("age: 12 bins + expected value", "MAE", f"{a['mae_bins']:.2f} years"),
        ("age: 12 bins, centre of the top bin", "MAE", f"{a['mae_bins_argmax']:.2f} years"),
        ("age: always the mean age", "MAE", f"{a['mae_predict_mean']:.2f} years"),
        ("faces: 50 known identities", "identification accuracy",
         f"{100 * f['identification_accuracy']:.1f} %"),
        ("faces: unseen identities", "verification accuracy",
         f"{100 * f['verification_accuracy']:.1f} % (AUC {f['auc']:.3f})"),
        ("counting: direct regression", "MAE / RMSE", f"{c['mae']:.2f} / {c['rmse']:.2f}"),
        ("counting: always the mean count", "MAE", f"{c['mae_predict_mean']:.2f}"),
        ("localisation + class", "accuracy / mean IoU",
         f"{100 * lo['accuracy']:.1f} % / {lo['mean_iou']:.3f}"),
        ("detection: score > 0.3, no NMS", "precision / recall at IoU >= 0.5",
         f"{100 * det['before_nms']['precision']:.1f} % / "
         f"{100 * det['before_nms']['recall']:.1f} %"),
        ("detection: score > 0.3, NMS", "precision / recall at IoU >= 0.5",
         f"{100 * d['precision']:.1f} % / {100 * d['recall']:.1f} %"),
        ("detection: score > 0.05, no NMS", "precision / recall at IoU >= 0.5",
         f"{100 * det['before_nms_low']['precision']:.1f} % / "
         f"{100 * det['before_nms_low']['recall']:.1f} %"),
        ("detection: score > 0.05, NMS", "precision / recall at IoU >= 0.5",
         f"{100 * det['after_nms_low']['precision']:.1f} % / "
         f"{100 * det['after_nms_low']['recall']:.1f} %"),
    ]
    lines = ["| task | metric | result |", "|---|---|---|"]
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
