"""Data, small networks and training loops for assignment 07 (no exercise answers in here).

Seeded generators, nothing downloads:

    tiles(n, seed)        multispectral tiles (n, 5, 16, 16), bands blue, green, red, NIR, SWIR;
                          water and solar panels look the same in the visible bands, not in the
                          infrared
    clips(n, seed)        colour clips (n, 5, 3, 16, 16): each class a colour and a direction,
                          both blurred, so a frame and the motion each give partial evidence
    color_scenes(n, seed) colour pictures (n, 16, 16, 3): sky, ground, sun and a ball whose
                          colour the lightness alone cannot tell
    shape_pairs(n, seed)  the same shape as a filled picture on a textured background and as a
                          clean line drawing, (n, 1, 16, 16) each

:func:`fit` is a tiny training loop on one CPU thread. One runner per notebook section
(``RUNNERS``: :func:`run_multispectral`, :func:`run_two_streams`, :func:`run_colorization`,
:func:`run_cross_modal`) trains its models once per seed with the functions it is given (the
notebook's answers, ``NEEDS[section]``; checked before anything trains) and returns the measured
numbers; :func:`run_experiments` runs all four. The staff make the notebook's ``results.json``
with the reference answers, from the repository: ``python -m sit471.reference.experiments
multi`` (695 s on a busy machine; every seed draws its own data).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sit471 import label_number
from sit471.transfer import mean_ci

SIZE = 16
BANDS = ("blue", "green", "red", "NIR", "SWIR")
TILE_CLASSES = ("water", "solar panel", "vegetation", "roof")
# reflectance of each material in each band (blue, green, red, NIR, SWIR)
SIGNATURES = np.array([
    [0.07, 0.06, 0.04, 0.02, 0.01],   # water: dark everywhere, darkest in the infrared
    [0.07, 0.06, 0.04, 0.24, 0.16],   # solar panel: the same visible colour, bright in the IR
    [0.05, 0.11, 0.06, 0.45, 0.22],   # vegetation: green, very bright in NIR
    [0.28, 0.27, 0.30, 0.34, 0.40],   # roof: grey, bright everywhere
], np.float32)
TILE_SCALE = 2.0  # networks see reflectance x 2
SOIL = np.array([0.12, 0.15, 0.19, 0.26, 0.33], np.float32)
CLIP_CLASSES = ("red going right", "green going down", "blue going left", "yellow going up")
FRAMES = 5
# the colours have the same mean over R, G, B: in grayscale every square looks the same
CLIP_COLOURS = np.array([[0.8, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.2, 0.8], [0.6, 0.6, 0.0]],
                        np.float32)
COLOUR_MIX = 0.7  # a clip's colour is mixed with another class's colour by up to this share
TURN = 60.0  # a clip's direction is its class's direction turned by up to this many degrees
SHAPES = ("circle", "square", "triangle", "cross")

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


# ----------------------------------------------------------------------------- data


def tiles(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n multispectral tiles: x (n, 5, 16, 16) float32 reflectances, label (n,) int64.

    Each tile is soil with a patch of one material (its label) covering a rectangle or an
    ellipse of random size and place; shapes do not depend on the class. Per-tile illumination
    (x0.7 to x1.3) and per-pixel noise hide small brightness differences.
    """
    rng = np.random.default_rng(seed)
    label = rng.integers(0, len(TILE_CLASSES), n)
    x = np.zeros((n, len(BANDS), SIZE, SIZE), np.float32)
    for i in range(n):
        cx, cy = rng.uniform(5, 11, 2)
        rx, ry = rng.uniform(4, 8, 2)
        if rng.uniform() < 0.5:
            mask = ((np.abs(_XX - cx) < rx) & (np.abs(_YY - cy) < ry)).astype(np.float32)
        else:
            mask = (((_XX - cx) / rx) ** 2 + ((_YY - cy) / ry) ** 2 < 1).astype(np.float32)
        sig = SIGNATURES[label[i]] * rng.uniform(0.9, 1.1, len(BANDS))
        soil = SOIL * rng.uniform(0.8, 1.2, len(BANDS))
        img = mask[None] * sig[:, None, None] + (1 - mask[None]) * soil[:, None, None]
        img = img * rng.uniform(0.7, 1.3) + 0.015 * rng.standard_normal(img.shape)
        x[i] = img
    return {"x": x.astype(np.float32), "label": label.astype(np.int64)}


def clips(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n short colour clips: x (n, 5, 3, 16, 16) in [0, 1], label (n,) int64.

    A 6x6 square moves by one pixel per frame over a static grey texture. Each class has a
    colour and a direction (CLIP_CLASSES), and both are blurred, independently: the colour is
    mixed with the colour of a random other class (share uniform in [0, COLOUR_MIX)), the
    direction is turned by an angle uniform in (-TURN, TURN) degrees. So one frame and the motion
    each carry partial evidence: a colour mixed about half-way, or a direction about half-way
    between two classes, leaves two classes possible, and the other stream can usually tell which.
    The colours have the same mean over R, G, B, so the grayscale frames (from which the motion
    is computed) show no colour at all.
    """
    rng = np.random.default_rng(seed)
    label = rng.integers(0, len(CLIP_CLASSES), n)
    x = np.zeros((n, FRAMES, 3, SIZE, SIZE), np.float32)
    for i in range(n):
        k = int(label[i])
        other = (k + rng.integers(1, len(CLIP_CLASSES))) % len(CLIP_CLASSES)
        mix = rng.uniform(0, COLOUR_MIX)
        colour = (1 - mix) * CLIP_COLOURS[k] + mix * CLIP_COLOURS[other]
        angle = np.deg2rad(90.0 * k + rng.uniform(-TURN, TURN))  # 0 right, 90 down (y grows)
        cx, cy = rng.uniform(6.5, 9.5, 2)
        background = 0.15 + 0.1 * rng.uniform(size=(SIZE, SIZE)).astype(np.float32)
        for t in range(FRAMES):
            px = cx + np.cos(angle) * (t - FRAMES // 2)
            py = cy + np.sin(angle) * (t - FRAMES // 2)
            fill = np.clip(3.0 - np.maximum(np.abs(_XX - px), np.abs(_YY - py)), 0, 1)
            img = background[None] * (1 - fill) + colour[:, None, None] * fill
            x[i, t] = img + 0.01 * rng.standard_normal(img.shape)
    return {"x": np.clip(x, 0, 1).astype(np.float32), "label": label.astype(np.int64)}


def color_scenes(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n colour pictures (n, 16, 16, 3) in [0, 1]: a blue sky above green or brown ground, often
    a yellow sun, and a ball that is red, green or blue with about the same lightness (so the
    lightness alone cannot tell its colour). Also ball (n, 16, 16) bool: the ball's pixels."""
    rng = np.random.default_rng(seed)
    balls = np.array([[0.85, 0.15, 0.15], [0.2, 0.55, 0.15], [0.25, 0.35, 0.85]], np.float32)
    x = np.zeros((n, SIZE, SIZE, 3), np.float32)
    ball = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        horizon = rng.uniform(6, 10)
        sky = np.array([0.35, 0.6, 0.95]) * rng.uniform(0.8, 1.05)
        ground = (np.array([0.25, 0.6, 0.2]) if rng.uniform() < 0.7
                  else np.array([0.55, 0.4, 0.2])) * rng.uniform(0.8, 1.1)
        up = (_YY < horizon)[..., None]
        img = np.where(up, sky * (0.8 + 0.02 * _YY[..., None]), ground)
        if rng.uniform() < 0.6:
            sx, sy = rng.uniform(2, 14), rng.uniform(1.5, horizon - 1)
            sun = (_XX - sx) ** 2 + (_YY - sy) ** 2 < 2.2 ** 2
            img = np.where(sun[..., None], np.array([1.0, 0.9, 0.2]), img)
        bx, by, r = rng.uniform(4, 12), rng.uniform(horizon, 13), rng.uniform(2, 3.2)
        ball[i] = (_XX - bx) ** 2 + (_YY - by) ** 2 < r ** 2
        img = np.where(ball[i][..., None], balls[rng.integers(0, 3)], img)
        x[i] = np.clip(img + 0.015 * rng.standard_normal(img.shape), 0, 1)
    return {"x": x, "ball": ball}


def _shape(kind: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Signed 'inside' distance of a shape (positive inside), in pixels."""
    dx, dy = _XX - cx, _YY - cy
    if kind == 0:
        return r - np.sqrt(dx ** 2 + dy ** 2)
    if kind == 1:
        return r - np.maximum(np.abs(dx), np.abs(dy))
    if kind == 2:
        return np.minimum(r - dy, (dy + r) / 2 - np.abs(dx)) * 0.9
    arm = r / 3
    return np.maximum(np.minimum(arm - np.abs(dx), r - np.abs(dy)),
                      np.minimum(arm - np.abs(dy), r - np.abs(dx)))


def shape_pairs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n scenes seen in two modalities: image (n, 1, 16, 16) a filled shape of random
    brightness on a noisy textured background; drawing (n, 1, 16, 16) the clean outline of the
    same shape at the same place; label (n,) int64 index into SHAPES."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, len(SHAPES), n)
    image = np.zeros((n, 1, SIZE, SIZE), np.float32)
    drawing = np.zeros((n, 1, SIZE, SIZE), np.float32)
    for i in range(n):
        r = rng.uniform(4, 6.5)
        cx, cy = rng.uniform(r, SIZE - r, 2)
        d = _shape(int(label[i]), cx, cy, r)
        fill = np.clip(d + 0.5, 0, 1)
        bg = 0.2 + 0.2 * rng.uniform(size=(SIZE, SIZE))
        img = bg * (1 - fill) + fill * rng.uniform(0.6, 0.9)
        image[i, 0] = np.clip(img + 0.06 * rng.standard_normal((SIZE, SIZE)), 0, 1)
        drawing[i, 0] = np.clip(1 - np.abs(d) / 0.8, 0, 1)
    return {"image": image, "drawing": drawing, "label": label.astype(np.int64)}


# ----------------------------------------------------------------------------- networks


def small_cnn(in_channels: int, n_out: int, width: int = 16) -> nn.Sequential:
    """conv 3x3 -> ReLU -> max-pool 2 -> conv 3x3 -> ReLU -> global average -> linear.
    The first layer is ``net[0]`` (replace it to change the number of input channels)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, n_out))


def encoder(in_channels: int = 1, dim: int = 32) -> nn.Sequential:
    """A modality-specific encoder: (N, C, 16, 16) -> (N, dim)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 16, dim), nn.ReLU())


def colorizer(n_out: int) -> nn.Sequential:
    """Lightness (N, 1, H, W) -> n_out maps (N, n_out, H, W); dilated convolutions see the
    whole 16x16 picture."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=4, dilation=4), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, n_out, 1))


def fit(model: nn.Module, batch_loss: Callable[[torch.Tensor], torch.Tensor], n: int,
        epochs: int = 10, batch_size: int = 32, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Adam on ``batch_loss(idx)`` (idx: indices of one mini-batch of the n training examples)
    for ``epochs`` seeded passes; returns each step's loss. One CPU thread.
    (Assignment 05's loop, with this module's defaults.)"""
    return label_number.fit(model, lambda _model, idx: batch_loss(idx), n, epochs=epochs,
                         batch_size=batch_size, lr=lr, seed=seed)


def accuracy(scores: torch.Tensor, y: torch.Tensor) -> float:
    return float((scores.argmax(dim=1) == y).float().mean())


def clip_motion(x: torch.Tensor, motion_field: Callable) -> torch.Tensor:
    """Clips (N, T, 3, H, W) -> stacked motion fields (N, 2 (T - 1), H, W) of the grayscale
    frames (mean of R, G, B), computed with the given ``motion_field``."""
    gray = torch.as_tensor(x).mean(dim=2)
    flows = [torch.as_tensor(motion_field(gray[:, t], gray[:, t + 1]))
             for t in range(gray.shape[1] - 1)]
    return torch.cat(flows, dim=1).float()


# ----------------------------------------------------------------------------- experiments

SEEDS = (0, 1, 2, 3, 4)  # every network of an experiment is trained once per seed
COLOR_SEEDS = (0, 1, 2)  # the colorizers cost the most (421 s for 3 seeds on a busy machine)
# Each seed draws its own training and test data (data seed = base + DATA_STEP * seed, with
# one base per data set) as well as its own starting weights and batch order, so the spread
# over the seeds includes a new draw of the data.
DATA_STEP = 100
# what each section's runner needs from the notebook (its answers, and widen_first_conv)
NEEDS = {"multispectral": ("adapt_in_channels", "band_ablation"),
         "two_stream": ("late_fusion", "motion_field"),
         "colorization": ("rgb_to_lab", "lab_to_rgb", "quantize_ab", "dequantize_ab"),
         "cross_modal": ("cross_modal_forward",)}


def _check(section: str, tools: dict[str, Callable], scale: float, seeds: Sequence[int]) -> None:
    """Inputs of a runner, checked before anything trains."""
    missing = [n for n in NEEDS[section] if not callable(tools.get(n))]
    if missing:
        raise ValueError(f"the {section} experiment needs the functions {missing}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must lie in (0, 1], got {scale}")
    if len(seeds) == 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"need one or more different seeds, got {list(seeds)}")


def _epochs(e: int, scale: float) -> int:
    return max(1, int(round(e * scale)))


def spread(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation, the half-width of the mean's 95 % interval ("ci",
    Student's t over the seeds; 0 for one value) and the values themselves (JSON-ready)."""
    v = np.asarray(values, dtype=float)
    mean, half = mean_ci(v)
    return {"mean": mean, "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "ci": half,
            "values": [float(a) for a in v]}


def _data(make: Callable[..., dict], n: int, base: int, seed: int) -> dict:
    """Seed ``seed``'s own draw of a data set: ``make(n, seed=base + DATA_STEP * seed)``."""
    return make(n, seed=base + DATA_STEP * seed)


def _classify(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0,
              lr: float = 3e-3) -> None:
    """Cross-entropy with label smoothing 0.1: a network that cannot tell two classes apart
    learns to say 50/50 instead of guessing with confidence (which a fusion would trust)."""
    fit(net, lambda i: F.cross_entropy(net(x[i]), y[i], label_smoothing=0.1), len(x),
        epochs=epochs, seed=seed, lr=lr)


def _net(seed: int, in_channels: int, n_out: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return small_cnn(in_channels, n_out)


def run_multispectral(tools: dict[str, Callable], scale: float = 1.0,
                      seeds: Sequence[int] = SEEDS, log: Callable[[str], None] = print) -> dict:
    """Section 1: visible bands vs all five, and a visible network widened to five bands
    (``tools["adapt_in_channels"](conv, 5)``) against a five-band network from scratch, both
    trained for the same number of epochs (1, 3 and 15); ``tools["band_ablation"]`` on the
    scratch network (15 epochs) of the first seed. Each seed draws its own training and test
    tiles; paired differences (widened minus scratch, five bands minus visible) per seed."""
    _check("multispectral", tools, scale, seeds)
    start = time.time()
    budgets = tuple(sorted({_epochs(e, scale) for e in (1, 3, 15)}))
    rows: dict[str, list[float]] = {"visible": []}
    water: dict[str, list[float]] = {"visible": []}
    for e in budgets:
        rows[f"scratch_{e}"], rows[f"widened_{e}"] = [], []
    importance = None
    for seed in seeds:
        tr, te = _data(tiles, int(800 * scale), 1, seed), _data(tiles, 400, 2, seed)
        # reflectances are small numbers: scale them to about [0, 1] for the networks
        xtr, ytr = torch.as_tensor(tr["x"]) * TILE_SCALE, torch.as_tensor(tr["label"])
        xte, yte = torch.as_tensor(te["x"]) * TILE_SCALE, torch.as_tensor(te["label"])
        visible = _net(seed, 3, len(TILE_CLASSES))
        _classify(visible, xtr[:, :3], ytr, budgets[-1], seed=seed)
        with torch.no_grad():
            pv = visible(xte[:, :3])
        rows["visible"].append(accuracy(pv, yte))
        water["visible"].append(accuracy(pv[yte == 0], yte[yte == 0]))
        for e in budgets:
            scratch = _net(seed, len(BANDS), len(TILE_CLASSES))
            _classify(scratch, xtr, ytr, e, seed=seed)
            torch.manual_seed(seed)
            widened = small_cnn(3, len(TILE_CLASSES))
            widened.load_state_dict(visible.state_dict())
            widened[0] = tools["adapt_in_channels"](widened[0], len(BANDS))
            _classify(widened, xtr, ytr, e, seed=seed)
            with torch.no_grad():
                rows[f"scratch_{e}"].append(accuracy(scratch(xte), yte))
                rows[f"widened_{e}"].append(accuracy(widened(xte), yte))
            if e == budgets[-1] and importance is None:
                importance = tools["band_ablation"](scratch, xte, yte)
    res = {"budgets": list(budgets), "accuracy": {k: spread(v) for k, v in rows.items()},
           "widened_minus_scratch": {str(e): spread(np.subtract(rows[f"widened_{e}"],
                                                                rows[f"scratch_{e}"]))
                                     for e in budgets},
           "five_minus_visible": spread(np.subtract(rows[f"scratch_{budgets[-1]}"],
                                                    rows["visible"])),
           "visible_water": spread(water["visible"]),
           "band_importance": {b: float(d) for b, d in zip(BANDS, importance, strict=True)},
           "seconds": round(time.time() - start, 1)}
    log(f"multispectral {res['accuracy']} ({res['seconds']:.0f} s)")
    return res


FUSIONS = ("spatial", "temporal", "probabilities", "logits", "early", "probabilities_loud",
           "logits_loud")
LOUD = 5.0  # the control: the temporal stream's scores multiplied by this before fusing


def run_two_streams(tools: dict[str, Callable], scale: float = 1.0,
                    seeds: Sequence[int] = SEEDS,
                    log: Callable[[str], None] = print) -> dict:
    """Section 2: a spatial CNN on the middle frame, a temporal CNN on the stacked motion fields
    (``tools["motion_field"]``), their late fusion after the softmax
    (``tools["late_fusion"]``), the softmax of their averaged logits, and one CNN on the frame
    and the motion fields stacked as 11 input channels (early fusion), each trained as long.
    Control: both late fusions again with the temporal scores multiplied by LOUD (a stream whose
    scores are on a larger scale, as after longer training or without label smoothing). Test
    accuracy of each, and each fusion's margin over the better single stream, per seed (each
    seed draws its own training and test clips)."""
    _check("two_stream", tools, scale, seeds)
    start = time.time()
    mid = FRAMES // 2
    epochs = _epochs(12, scale)
    acc: dict[str, list[float]] = {name: [] for name in FUSIONS}
    for seed in seeds:
        tr, te = _data(clips, int(800 * scale), 3, seed), _data(clips, 400, 4, seed)
        ytr, yte = torch.as_tensor(tr["label"]), torch.as_tensor(te["label"])
        frame_tr, frame_te = torch.as_tensor(tr["x"][:, mid]), torch.as_tensor(te["x"][:, mid])
        flow_tr = clip_motion(tr["x"], tools["motion_field"])
        flow_te = clip_motion(te["x"], tools["motion_field"])
        both_tr, both_te = torch.cat([frame_tr, flow_tr], 1), torch.cat([frame_te, flow_te], 1)
        spatial = _net(seed, 3, len(CLIP_CLASSES))
        _classify(spatial, frame_tr, ytr, epochs, seed=seed)
        temporal = _net(seed, flow_tr.shape[1], len(CLIP_CLASSES))
        _classify(temporal, flow_tr, ytr, epochs, seed=seed)
        early = _net(seed, both_tr.shape[1], len(CLIP_CLASSES))
        _classify(early, both_tr, ytr, epochs, seed=seed)
        with torch.no_grad():
            zs, zt, ze = spatial(frame_te), temporal(flow_te), early(both_te)
        late = tools["late_fusion"]
        scores = {"spatial": zs, "temporal": zt, "probabilities": torch.as_tensor(late([zs, zt])),
                  "logits": (zs + zt) / 2, "early": ze,
                  "probabilities_loud": torch.as_tensor(late([zs, LOUD * zt])),
                  "logits_loud": (zs + LOUD * zt) / 2}
        for name in FUSIONS:
            acc[name].append(accuracy(scores[name], yte))
    best = np.maximum(acc["spatial"], acc["temporal"])
    res = {"epochs": epochs, "accuracy": {k: spread(v) for k, v in acc.items()},
           "margin": {k: spread(np.asarray(acc[k]) - best)
                      for k in FUSIONS[2:]},
           "probabilities_minus_logits": spread(np.subtract(acc["probabilities"],
                                                            acc["logits"])),
           "probabilities_minus_logits_loud": spread(np.subtract(acc["probabilities_loud"],
                                                                 acc["logits_loud"])),
           "early_minus_probabilities": spread(np.subtract(acc["early"],
                                                           acc["probabilities"])),
           "seconds": round(time.time() - start, 1)}
    log(f"two_stream {res['accuracy']} ({res['seconds']:.0f} s)")
    return res


def run_colorization(tools: dict[str, Callable], scale: float = 1.0,
                     seeds: Sequence[int] = COLOR_SEEDS,
                     log: Callable[[str], None] = print) -> dict:
    """Section 3: one colorizer trained by regression of (a, b), one by classification over
    the ab cells (annealed mean, temperature 0.38), from L of ``tools["rgb_to_lab"]``; ab error
    and chroma on 100 test pictures (overall and on the ball), per seed (each seed draws its
    own training and test pictures), and classification minus regression paired by seed; the
    first seed's colourised test pictures (hex, see :func:`encode_image`)."""
    _check("colorization", tools, scale, seeds)
    start = time.time()
    centres = torch.as_tensor(tools["dequantize_ab"](torch.arange(22 * 22))).float()
    epochs = _epochs(30, scale)
    measured: dict[str, dict[str, list[float]]] = {"regression": {}, "classification": {},
                                                   "truth": {}}
    examples: dict[str, list[str]] = {}
    for seed in seeds:
        tr, te = _data(color_scenes, int(500 * scale), 5, seed), _data(color_scenes, 100, 6, seed)
        lab_tr = torch.as_tensor(tools["rgb_to_lab"](torch.as_tensor(tr["x"]))).float()
        lab_te = torch.as_tensor(tools["rgb_to_lab"](torch.as_tensor(te["x"]))).float()
        ltr = (lab_tr[..., 0] / 50 - 1)[:, None]
        lte = (lab_te[..., 0] / 50 - 1)[:, None]
        abtr = lab_tr[..., 1:].permute(0, 3, 1, 2)
        qtr = torch.as_tensor(tools["quantize_ab"](lab_tr[..., 1:]))
        ball, truth = torch.as_tensor(te["ball"]), lab_te[..., 1:]
        measured["truth"].setdefault("chroma", []).append(float(truth.norm(dim=-1).mean()))
        measured["truth"].setdefault("chroma_ball", []).append(
            float(truth.norm(dim=-1)[ball].mean()))
        if seed == seeds[0]:
            grey = torch.cat([lab_te[:6, ..., :1], torch.zeros_like(lab_te[:6, ..., 1:])], dim=-1)
            examples["lightness"] = [encode_image(i) for i in
                                     torch.as_tensor(tools["lab_to_rgb"](grey)).numpy()]
            examples["truth"] = [encode_image(i) for i in te["x"][:6]]
        torch.manual_seed(seed)
        reg = colorizer(2)
        fit(reg, lambda i, reg=reg, x=ltr, t=abtr: F.mse_loss(reg(x[i]), t[i] / 100), len(ltr),
            epochs=epochs, batch_size=16, seed=seed)
        torch.manual_seed(seed)
        cls = colorizer(len(centres))
        fit(cls, lambda i, cls=cls, x=ltr, t=qtr: F.cross_entropy(cls(x[i]), t[i]), len(ltr),
            epochs=epochs, batch_size=16, seed=seed)
        with torch.no_grad():
            ab = {"regression": reg(lte).permute(0, 2, 3, 1) * 100,
                  "classification": torch.softmax(cls(lte) / 0.38, dim=1).permute(0, 2, 3, 1)
                  @ centres}  # the annealed mean
        for name, pred in ab.items():
            err, chroma = (pred - truth).norm(dim=-1), pred.norm(dim=-1)
            for key, value in (("ab_error", err.mean()), ("ab_error_ball", err[ball].mean()),
                               ("chroma", chroma.mean()), ("chroma_ball", chroma[ball].mean())):
                measured[name].setdefault(key, []).append(float(value))
            if seed == seeds[0]:
                lab = torch.cat([lab_te[:6, ..., :1], pred[:6]], dim=-1)
                examples[name] = [encode_image(i) for i in
                                  torch.as_tensor(tools["lab_to_rgb"](lab)).numpy()]
    res = {name: {k: spread(v) for k, v in m.items()} for name, m in measured.items()}
    res["classification_minus_regression"] = {
        k: spread(np.subtract(measured["classification"][k], measured["regression"][k]))
        for k in measured["regression"]}
    res["epochs"], res["examples"] = epochs, examples
    res["seconds"] = round(time.time() - start, 1)
    log(f"colorization {({k: res[k] for k in ('regression', 'classification')})} "
        f"({res['seconds']:.0f} s)")
    return res


def run_cross_modal(tools: dict[str, Callable], scale: float = 1.0,
                    seeds: Sequence[int] = SEEDS, log: Callable[[str], None] = print) -> dict:
    """Section 4: encoders and shared layers (``tools["cross_modal_forward"]``) trained with
    the pairing term ("paired") or without ("unpaired"); accuracy on test pictures and
    drawings, and retrieval of each test drawing's picture, per seed (each seed draws its own
    training and test pairs), and paired minus unpaired by seed."""
    _check("cross_modal", tools, scale, seeds)
    start = time.time()
    n_test = 400
    forward = tools["cross_modal_forward"]
    measured: dict[str, dict[str, list[float]]] = {"paired": {}, "unpaired": {}}
    for seed in seeds:
        tr, te = _data(shape_pairs, int(800 * scale), 7, seed), _data(shape_pairs, n_test, 8, seed)
        itr, dtr = torch.as_tensor(tr["image"]), torch.as_tensor(tr["drawing"])
        ite, dte = torch.as_tensor(te["image"]), torch.as_tensor(te["drawing"])
        ytr, yte = torch.as_tensor(tr["label"]), torch.as_tensor(te["label"])
        for name, weight in (("paired", 1.0), ("unpaired", 0.0)):
            torch.manual_seed(seed)
            encoders = nn.ModuleDict({"image": encoder(), "drawing": encoder()})
            shared = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 16))
            head = nn.Linear(16, len(SHAPES))

            def loss(i, weight=weight, encoders=encoders, shared=shared, head=head,
                     images=itr, drawings=dtr, labels=ytr):
                ei, zi = forward(images[i], "image", encoders, shared, head)
                ed, _ = forward(drawings[i], "drawing", encoders, shared, head)
                return F.cross_entropy(zi, labels[i]) + weight * F.mse_loss(ed, ei)

            fit(nn.ModuleList([encoders, shared, head]), loss, len(itr),
                epochs=_epochs(15, scale), seed=seed)
            with torch.no_grad():
                ei, zi = forward(ite, "image", encoders, shared, head)
                ed, zd = forward(dte, "drawing", encoders, shared, head)
            nearest = (F.normalize(ed, dim=1) @ F.normalize(ei, dim=1).T).argmax(dim=1)
            for key, value in (
                    ("image_accuracy", accuracy(zi, yte)),
                    ("drawing_accuracy", accuracy(zd, yte)),
                    ("retrieval_top1", (nearest == torch.arange(n_test)).float().mean()),
                    ("retrieval_same_class", (yte[nearest] == yte).float().mean())):
                measured[name].setdefault(key, []).append(float(value))
    res = {name: {k: spread(v) for k, v in m.items()} for name, m in measured.items()}
    res["paired_minus_unpaired"] = {
        k: spread(np.subtract(measured["paired"][k], measured["unpaired"][k]))
        for k in measured["paired"]}
    res["chance_top1"] = 1 / n_test
    res["seconds"] = round(time.time() - start, 1)
    log(f"cross_modal {res} ({res['seconds']:.0f} s)")
    return res


RUNNERS = {"multispectral": run_multispectral, "two_stream": run_two_streams,
           "colorization": run_colorization, "cross_modal": run_cross_modal}


def run_experiments(tools: dict[str, Callable], log: Callable[[str], None] = print,
                    scale: float = 1.0, seeds: Sequence[int] | None = None) -> dict:
    """Every section's experiment with the functions in ``tools`` (see NEEDS); scale < 1
    shrinks the training sets and epochs; seeds (default: each runner's own) for every
    section. Returns the measured numbers (JSON-ready)."""
    for section in RUNNERS:
        _check(section, tools, scale, SEEDS if seeds is None else seeds)
    start = time.time()
    res: dict = {"settings": {"scale": scale}}
    for section, runner in RUNNERS.items():
        res[section] = (runner(tools, scale=scale, log=log) if seeds is None
                        else runner(tools, scale=scale, seeds=seeds, log=log))
    res["settings"]["seconds"] = round(time.time() - start, 1)
    return res


def encode_image(img: np.ndarray) -> str:
    """A colour picture (16, 16, 3) in [0, 1] as a hex string of 8-bit values (for JSON)."""
    img = np.asarray(img, dtype=np.float64)
    if img.shape != (SIZE, SIZE, 3):
        raise ValueError(f"expected a picture ({SIZE}, {SIZE}, 3), got {img.shape}")
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8).tobytes().hex()


def decode_image(text: str) -> np.ndarray:
    """The inverse of :func:`encode_image`: (16, 16, 3) float32 in [0, 1]."""
    raw = np.frombuffer(bytes.fromhex(text), dtype=np.uint8)
    return (raw.reshape(SIZE, SIZE, 3) / 255).astype(np.float32)


def _pm(s: dict, digits: int = 3, sign: str = "") -> str:
    """'mean ± half-width of the 95 % interval' of a :func:`spread` (sign "+": signed mean)."""
    return f"{s['mean']:{sign}.{digits}f} ± {s['ci']:.{digits}f}"


def format_multispectral(m: dict) -> list[str]:
    a = m["accuracy"]
    rows = [f"| multispectral | visible bands only, {m['budgets'][-1]} epochs | accuracy "
            f"{_pm(a['visible'])} (water {_pm(m['visible_water'], 2)}) |"]
    for e in m["budgets"]:
        epochs = f"{e} epoch" + ("s" if e != 1 else "")
        rows.append(f"| multispectral | all 5 bands from scratch, {epochs} | accuracy "
                    f"{_pm(a[f'scratch_{e}'])} |")
        rows.append(f"| multispectral | visible net widened to 5 bands, {epochs} more | "
                    f"accuracy {_pm(a[f'widened_{e}'])} |")
        rows.append(f"| multispectral | widened minus scratch, {epochs}, paired by seed | "
                    f"accuracy {_pm(m['widened_minus_scratch'][str(e)], sign='+')} |")
    rows.append(f"| multispectral | 5 bands from scratch minus visible bands, {m['budgets'][-1]} "
                f"epochs, paired by seed | accuracy {_pm(m['five_minus_visible'], sign='+')} |")
    rows.append("| multispectral | band importance (accuracy drop, first seed) | " + ", ".join(
        f"{b} {v:.3f}" for b, v in m["band_importance"].items()) + " |")
    return rows


FUSION_NAMES = {"spatial": "spatial stream alone", "temporal": "temporal stream alone",
                "probabilities": "late fusion of probabilities (after the softmax)",
                "logits": "late fusion of logits (before the softmax)",
                "early": "early fusion (one CNN on frame + motion, 11 channels)",
                "probabilities_loud": f"control: fusion of probabilities, temporal scores "
                                      f"x{LOUD:g}",
                "logits_loud": f"control: fusion of logits, temporal scores x{LOUD:g}"}


def format_two_streams(t: dict) -> list[str]:
    rows = []
    for name in FUSIONS:
        margin = (f", margin over the better stream {_pm(t['margin'][name], sign='+')}"
                  if name in t["margin"] else "")
        rows.append(f"| two-stream | {FUSION_NAMES[name]} | accuracy "
                    f"{_pm(t['accuracy'][name])}{margin} |")
    for key, name in (("probabilities_minus_logits", "probabilities minus logits"),
                      ("probabilities_minus_logits_loud", "control: probabilities minus logits"),
                      ("early_minus_probabilities", "early fusion minus fusion of probabilities")):
        rows.append(f"| two-stream | {name}, paired by seed | accuracy {_pm(t[key], sign='+')} |")
    return rows


def format_colorization(c: dict) -> list[str]:
    rows = []
    for name in ("regression", "classification"):
        r = c[name]
        rows.append(f"| colorization | {name} | ab error {_pm(r['ab_error'], 1)} (ball "
                    f"{_pm(r['ab_error_ball'], 1)}), chroma {_pm(r['chroma'], 1)} (ball "
                    f"{_pm(r['chroma_ball'], 1)}) |")
    d = c["classification_minus_regression"]
    rows.append(f"| colorization | classification minus regression, paired by seed | ab error "
                f"{_pm(d['ab_error'], 1, '+')} (ball {_pm(d['ab_error_ball'], 1, '+')}), chroma "
                f"{_pm(d['chroma'], 1, '+')} (ball {_pm(d['chroma_ball'], 1, '+')}) |")
    rows.append(f"| colorization | true colours | chroma {_pm(c['truth']['chroma'], 1)} (ball "
                f"{_pm(c['truth']['chroma_ball'], 1)}) |")
    return rows


def format_cross_modal(x: dict) -> list[str]:
    rows = []
    for name in ("paired", "unpaired"):
        r = x[name]
        rows.append(f"| cross-modal | {name} training | images {_pm(r['image_accuracy'])}, "
                    f"drawings {_pm(r['drawing_accuracy'])}, retrieval top-1 "
                    f"{_pm(r['retrieval_top1'])}, same class {_pm(r['retrieval_same_class'])} |")
    d = x["paired_minus_unpaired"]
    rows.append(f"| cross-modal | paired minus unpaired, by seed | images "
                f"{_pm(d['image_accuracy'], sign='+')}, drawings "
                f"{_pm(d['drawing_accuracy'], sign='+')}, retrieval top-1 "
                f"{_pm(d['retrieval_top1'], sign='+')}, same class "
                f"{_pm(d['retrieval_same_class'], sign='+')} |")
    return rows


FORMATS = {"multispectral": format_multispectral, "two_stream": format_two_streams,
           "colorization": format_colorization, "cross_modal": format_cross_modal}


def format_results(res: dict, sections: Sequence[str] = tuple(RUNNERS)) -> str:
    """The measured numbers (mean ± half-width of its 95 % t-interval over the seeds) as a
    markdown table."""
    rows = ["| experiment | setting | result (mean ± 95 % interval over the seeds) |",
            "|---|---|---|"]
    for section in sections:
        rows += FORMATS[section](res[section])
    return "\n".join(rows)


# ----------------------------------------------------------------------------- plots


def show_images(images: Sequence[np.ndarray], titles: Sequence[str], ncols: int = 8,
                cmap: str | None = None):
    """A grid of pictures (H, W) or (H, W, 3) with titles; returns the figure."""
    import matplotlib.pyplot as plt

    nrows = (len(images) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(np.clip(img, 0, 1), cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig
