"""Data, small networks and training loops for assignment 07 (no exercise answers in here).

Seeded generators, nothing downloads:

    tiles(n, seed)        multispectral tiles (n, 5, 16, 16), bands blue, green, red, NIR, SWIR;
                          water and solar panels look the same in the visible bands, not in the
                          infrared
    clips(n, seed)        colour clips (n, 5, 3, 16, 16): two classes differ by colour only, two
                          only by the direction of motion
    color_scenes(n, seed) colour pictures (n, 16, 16, 3): sky, ground, sun and a ball whose
                          colour the lightness alone cannot tell
    shape_pairs(n, seed)  the same shape as a filled picture on a textured background and as a
                          clean line drawing, (n, 1, 16, 16) each

:func:`fit` is a tiny training loop on one CPU thread. :func:`run_experiments` trains every
model of the notebook with the functions it is given (the notebook's answers) and returns
measured numbers. The staff make the notebook's ``results.json`` with the reference answers,
from the repository: ``python -m sit471.reference.experiments multi``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sit471 import label_number

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
CLIP_CLASSES = ("red square", "green square", "blue square going left",
                "blue square going right")
CLIP_TYPES = ("appearance", "appearance", "motion", "motion")
FRAMES = 5
CLIP_COLOURS = np.array([[0.9, 0.2, 0.1], [0.2, 0.9, 0.1], [0.2, 0.1, 0.9]], np.float32)
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

    A 5x5 square moves by one pixel per frame over a static grey texture. Red and green squares
    (the *appearance* classes) go up or down; blue squares go left or right, and the direction is
    the class (the *motion* classes). The three colours have the same mean over R, G, B, so in
    grayscale every square looks the same.
    """
    rng = np.random.default_rng(seed)
    label = rng.integers(0, len(CLIP_CLASSES), n)
    x = np.zeros((n, FRAMES, 3, SIZE, SIZE), np.float32)
    for i in range(n):
        background = 0.15 + 0.1 * rng.uniform(size=(SIZE, SIZE)).astype(np.float32)
        k = int(label[i])
        colour = CLIP_COLOURS[min(k, 2)]
        if k < 2:
            step = (0, rng.choice([-1, 1]))
        else:
            step = (-1 if k == 2 else 1, 0)
        x0, y0 = rng.integers(5, 7, 2)
        x0 += -step[0] * 2
        y0 += -step[1] * 2
        for t in range(FRAMES):
            img = np.repeat(background[None], 3, axis=0)
            px, py = x0 + step[0] * t, y0 + step[1] * t
            img[:, py:py + 5, px:px + 5] = colour[:, None, None]
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


def _classify(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0,
              lr: float = 3e-3) -> None:
    """Cross-entropy with label smoothing 0.1: a stream that cannot tell two classes apart
    learns to say 50/50 instead of guessing with confidence (which late fusion would trust)."""
    fit(net, lambda i: F.cross_entropy(net(x[i]), y[i], label_smoothing=0.1), len(x),
        epochs=epochs, seed=seed, lr=lr)


def run_experiments(tools: dict[str, Callable], log: Callable[[str], None] = print,
                    scale: float = 1.0) -> dict:
    """Train every model of the notebook; ``tools`` holds late_fusion, motion_field,
    rgb_to_lab, lab_to_rgb, quantize_ab, dequantize_ab, cross_modal_forward, band_ablation and
    adapt_in_channels. Returns the measured numbers (JSON-ready)."""
    start = time.time()
    res: dict = {"settings": {"scale": scale}}
    ep = lambda e: max(1, int(round(e * scale)))  # noqa: E731
    n_train, n_test = int(800 * scale), 400

    # 1. multispectral tiles
    tr, te = tiles(n_train, seed=1), tiles(n_test, seed=2)
    # reflectances are small numbers: scale them to about [0, 1] for the networks
    xtr, ytr = torch.as_tensor(tr["x"]) * TILE_SCALE, torch.as_tensor(tr["label"])
    xte, yte = torch.as_tensor(te["x"]) * TILE_SCALE, torch.as_tensor(te["label"])
    torch.manual_seed(0)
    visible = small_cnn(3, len(TILE_CLASSES))
    _classify(visible, xtr[:, :3], ytr, ep(15))
    torch.manual_seed(0)
    allb = small_cnn(len(BANDS), len(TILE_CLASSES))
    _classify(allb, xtr, ytr, ep(15))
    torch.manual_seed(0)
    adapted = small_cnn(3, len(TILE_CLASSES))
    adapted.load_state_dict(visible.state_dict())
    adapted[0] = tools["adapt_in_channels"](adapted[0], len(BANDS))
    _classify(adapted, xtr, ytr, ep(3), lr=1e-3)
    with torch.no_grad():
        pv, pa, pd = visible(xte[:, :3]), allb(xte), adapted(xte)
    per_class = lambda p: {c: float((p.argmax(1)[yte == k] == k).float().mean())  # noqa: E731
                           for k, c in enumerate(TILE_CLASSES)}
    drop = tools["band_ablation"](allb, xte, yte)
    res["multispectral"] = {
        "visible_accuracy": accuracy(pv, yte), "all_bands_accuracy": accuracy(pa, yte),
        "adapted_accuracy": accuracy(pd, yte), "adapted_epochs": ep(3),
        "visible_per_class": per_class(pv), "all_bands_per_class": per_class(pa),
        "band_importance": {b: float(d) for b, d in zip(BANDS, drop, strict=True)}}
    log(f"multispectral {res['multispectral']} ({time.time() - start:.0f} s)")

    # 2. two streams
    tr, te = clips(n_train, seed=3), clips(n_test, seed=4)
    ytr, yte = torch.as_tensor(tr["label"]), torch.as_tensor(te["label"])
    mid = FRAMES // 2
    str_, ste = torch.as_tensor(tr["x"][:, mid]), torch.as_tensor(te["x"][:, mid])
    mtr = clip_motion(tr["x"], tools["motion_field"])
    mte = clip_motion(te["x"], tools["motion_field"])
    torch.manual_seed(0)
    spatial = small_cnn(3, len(CLIP_CLASSES))
    _classify(spatial, str_, ytr, ep(12))
    torch.manual_seed(0)
    temporal = small_cnn(mtr.shape[1], len(CLIP_CLASSES))
    _classify(temporal, mtr, ytr, ep(12))
    with torch.no_grad():
        zs, zt = spatial(ste), temporal(mte)
    fused = tools["late_fusion"]([zs, zt])
    table = {}
    for name, p in (("spatial", zs.softmax(1)), ("temporal", zt.softmax(1)), ("fused", fused)):
        row = {"all": accuracy(p, yte)}
        for kind in ("appearance", "motion"):
            keep = torch.tensor([CLIP_TYPES[int(k)] == kind for k in yte])
            row[kind] = accuracy(p[keep], yte[keep])
        table[name] = row
    res["two_stream"] = table
    log(f"two_stream {table} ({time.time() - start:.0f} s)")

    # 3. colorization
    tr, te = color_scenes(int(500 * scale), seed=5), color_scenes(100, seed=6)
    lab_tr = torch.as_tensor(tools["rgb_to_lab"](torch.as_tensor(tr["x"]))).float()
    lab_te = torch.as_tensor(tools["rgb_to_lab"](torch.as_tensor(te["x"]))).float()
    ltr = (lab_tr[..., 0] / 50 - 1)[:, None]
    lte = (lab_te[..., 0] / 50 - 1)[:, None]
    abtr = lab_tr[..., 1:].permute(0, 3, 1, 2)
    qtr = torch.as_tensor(tools["quantize_ab"](lab_tr[..., 1:]))
    centres = torch.as_tensor(tools["dequantize_ab"](torch.arange(22 * 22))).float()
    torch.manual_seed(0)
    reg = colorizer(2)
    fit(reg, lambda i: F.mse_loss(reg(ltr[i]), abtr[i] / 100), len(ltr), epochs=ep(30),
        batch_size=16)
    torch.manual_seed(0)
    cls = colorizer(len(centres))
    fit(cls, lambda i: F.cross_entropy(cls(ltr[i]), qtr[i]), len(ltr), epochs=ep(30),
        batch_size=16)
    with torch.no_grad():
        ab_reg = reg(lte).permute(0, 2, 3, 1) * 100
        probs = torch.softmax(cls(lte) / 0.38, dim=1).permute(0, 2, 3, 1)  # annealed mean
        ab_cls = probs @ centres
    ball = torch.as_tensor(te["ball"])
    truth = lab_te[..., 1:]

    def scores(ab: torch.Tensor) -> dict:
        err = (ab - truth).norm(dim=-1)
        chroma = ab.norm(dim=-1)
        return {"ab_error": float(err.mean()), "ab_error_ball": float(err[ball].mean()),
                "chroma": float(chroma.mean()), "chroma_ball": float(chroma[ball].mean())}

    res["colorization"] = {"regression": scores(ab_reg), "classification": scores(ab_cls),
                           "truth": {"chroma": float(truth.norm(dim=-1).mean()),
                                     "chroma_ball": float(truth.norm(dim=-1)[ball].mean())}}
    examples = {"truth": [encode_image(i) for i in te["x"][:6]]}
    for name, ab in (("regression", ab_reg), ("classification", ab_cls)):
        lab = torch.cat([lab_te[:6, ..., :1], ab[:6]], dim=-1).clamp(-110, 110)
        lab[..., 0] = lab[..., 0].clamp(0, 100)
        examples[name] = [encode_image(i) for i in torch.as_tensor(tools["lab_to_rgb"](lab)
                                                                    ).numpy()]
    res["colorization_examples"] = examples
    log(f"colorization {res['colorization']} ({time.time() - start:.0f} s)")

    # 4. cross-modal
    tr, te = shape_pairs(n_train, seed=7), shape_pairs(n_test, seed=8)
    itr, dtr = torch.as_tensor(tr["image"]), torch.as_tensor(tr["drawing"])
    ite, dte = torch.as_tensor(te["image"]), torch.as_tensor(te["drawing"])
    ytr, yte = torch.as_tensor(tr["label"]), torch.as_tensor(te["label"])
    forward = tools["cross_modal_forward"]
    cross = {}
    for name, weight in (("paired", 1.0), ("unpaired", 0.0)):
        torch.manual_seed(0)
        encoders = nn.ModuleDict({"image": encoder(), "drawing": encoder()})
        shared = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 16))
        head = nn.Linear(16, len(SHAPES))
        model = nn.ModuleList([encoders, shared, head])

        def loss(i, weight=weight, encoders=encoders, shared=shared, head=head):
            ei, zi = forward(itr[i], "image", encoders, shared, head)
            ed, _ = forward(dtr[i], "drawing", encoders, shared, head)
            return F.cross_entropy(zi, ytr[i]) + weight * F.mse_loss(ed, ei)

        fit(model, loss, len(itr), epochs=ep(15))
        with torch.no_grad():
            ei, zi = forward(ite, "image", encoders, shared, head)
            ed, zd = forward(dte, "drawing", encoders, shared, head)
        sim = F.normalize(ed, dim=1) @ F.normalize(ei, dim=1).T
        nearest = sim.argmax(dim=1)
        cross[name] = {"image_accuracy": accuracy(zi, yte), "drawing_accuracy": accuracy(zd, yte),
                       "retrieval_top1": float((nearest == torch.arange(len(yte))).float().mean()),
                       "retrieval_same_class": float((yte[nearest] == yte).float().mean())}
    cross["chance_top1"] = 1 / n_test
    res["cross_modal"] = cross
    log(f"cross_modal {cross} ({time.time() - start:.0f} s)")
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


def format_results(res: dict) -> str:
    """The measured numbers as a markdown table (quoted by the notebook)."""
    m, t, c, x = (res["multispectral"], res["two_stream"], res["colorization"],
                  res["cross_modal"])
    rows = ["| experiment | setting | result |", "|---|---|---|"]
    rows.append(f"| multispectral | visible bands only | accuracy {m['visible_accuracy']:.3f} "
                f"(water {m['visible_per_class']['water']:.2f}, solar panel "
                f"{m['visible_per_class']['solar panel']:.2f}) |")
    rows.append(f"| multispectral | all 5 bands | accuracy {m['all_bands_accuracy']:.3f} |")
    rows.append(f"| multispectral | visible net adapted to 5 bands, {m['adapted_epochs']} epochs "
                f"| accuracy {m['adapted_accuracy']:.3f} |")
    rows.append("| multispectral | band importance (accuracy drop) | " + ", ".join(
        f"{b} {v:.3f}" for b, v in m["band_importance"].items()) + " |")
    for name in ("spatial", "temporal", "fused"):
        r = t[name]
        rows.append(f"| two-stream | {name} | all {r['all']:.3f}, appearance classes "
                    f"{r['appearance']:.3f}, motion classes {r['motion']:.3f} |")
    for name in ("regression", "classification"):
        r = c[name]
        rows.append(f"| colorization | {name} | ab error {r['ab_error']:.1f} (ball "
                    f"{r['ab_error_ball']:.1f}), chroma {r['chroma']:.1f} (ball "
                    f"{r['chroma_ball']:.1f}) |")
    rows.append(f"| colorization | true colours | chroma {c['truth']['chroma']:.1f} (ball "
                f"{c['truth']['chroma_ball']:.1f}) |")
    for name in ("paired", "unpaired"):
        r = x[name]
        rows.append(f"| cross-modal | {name} training | images {r['image_accuracy']:.3f}, "
                    f"drawings {r['drawing_accuracy']:.3f}, retrieval top-1 "
                    f"{r['retrieval_top1']:.3f}, same class {r['retrieval_same_class']:.3f} |")
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
