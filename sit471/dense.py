"""Data, small fully convolutional networks and training loops for assignment 06 (image -> label
image); no exercise answers in here.

Seeded generators of small grayscale images (N, 1, 32, 32) in [0, 1], nothing downloads:

    shapes_scenes(n, seed)   1..3 shapes on a textured background: per-pixel labels (N, 32, 32)
                             0 background, 1 circle, 2 square, 3 triangle, 255 on blurred edges
    parsing_scenes(n, seed)  two kinds of scene ("harbour": a bright bar along the top, "field":
                             a bright bar down the left side) with a striped patch and a
                             checked patch far from the bar; stripes are class 1 (water) in a
                             harbour and class 2 (crop) in a field, checks are always class 3
    depth_scenes(n, seed)    a ground plane and standing boxes with known depth in metres;
                             a random global scale per scene is NOT visible in the image
    crowds(n, seed)          sit471.label_number.crowds (head positions) -> density maps

Models: :class:`FCN` (two conv-pool blocks, 1x1 classifier, two x2 transposed convolutions with
a skip connection from the 1/2-resolution features; optionally a context module such as
pyramid pooling on the 1/4-resolution features). :func:`run_experiments` trains the models of
the notebook with the functions it is given (the notebook's answers) and returns measured
results. The staff make the notebook's ``results.json`` with the reference answers, from the
repository: ``python -m sit471.reference.experiments dense``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sit471 import label_number

SIZE = 32
SHAPE_CLASSES = ("background", "circle", "square", "triangle")
PARSING_CLASSES = ("background", "water", "crop", "checks")
SCENE_KINDS = ("harbour", "field")
IGNORE = 255

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def _finish(img: np.ndarray, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    return np.clip(img + noise * rng.standard_normal(img.shape), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- generators

def shapes_scenes(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n images with 1..3 shapes (circle, square, triangle; radius 4..8 px, may overlap, the
    later on top) on a background of faint stripes. Returns x (n, 1, 32, 32) float32 and
    labels (n, 32, 32) int64: the class of each pixel, 255 (ignore) where a shape's soft edge
    makes the class uncertain."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    y = np.zeros((n, SIZE, SIZE), np.int64)
    for i in range(n):
        img = 0.15 + 0.08 * np.sin(_XX * rng.uniform(0.3, 1.0) + _YY * rng.uniform(-1, 1))
        lab = np.zeros((SIZE, SIZE), np.int64)
        for _ in range(rng.integers(1, 4)):
            kind = int(rng.integers(0, 3))
            r = rng.uniform(4, 8)
            cx, cy = rng.uniform(r, SIZE - r, 2)
            m = label_number._shape_mask(kind, cx, cy, r)
            img = img * (1 - m) + m * rng.uniform(0.5, 0.95)
            lab[m > 0.75] = kind + 1
            lab[(m > 0.25) & (m <= 0.75)] = IGNORE
        x[i, 0] = _finish(img, rng)
        y[i] = lab
    return {"x": x, "labels": y}


def _patch(rng: np.random.Generator, texture: str, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if texture == "stripes":
        ang = rng.uniform(0, np.pi)
        t = np.sin((np.cos(ang) * xx + np.sin(ang) * yy) * 2 * np.pi / rng.uniform(3, 5))
        return 0.55 + 0.3 * np.sign(t)
    period = int(rng.integers(2, 4))
    return 0.55 + 0.3 * (((xx // period + yy // period) % 2) * 2 - 1)


def parsing_scenes(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n scenes whose kind (0 harbour: bright bar along the top; 1 field: along the left) is
    shown ONLY by a bar 3 px wide at the image edge. A striped patch and a checked patch
    (7..10 px each) lie in the region rows, columns >= 12, at least 9 px from the bar, so a
    network that sees about 10 px around a pixel cannot tell water from crop. Returns x
    (n, 1, 32, 32), labels (n, 32, 32) int64 (0 background, 1 water = stripes in a harbour,
    2 crop = stripes in a field, 3 checks) and kind (n,) int64."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    y = np.zeros((n, SIZE, SIZE), np.int64)
    kind = rng.integers(0, 2, n)
    for i in range(n):
        img = np.full((SIZE, SIZE), 0.2, np.float32)
        if kind[i] == 0:
            img[:3, :] = 0.9
        else:
            img[:, :3] = 0.9
        lab = np.zeros((SIZE, SIZE), np.int64)
        order = ["stripes", "checks"] if rng.uniform() < 0.5 else ["checks", "stripes"]
        # two patches side by side or one above the other inside [12, 32)
        horizontal = rng.uniform() < 0.5
        for j, tex in enumerate(order):
            h, w = rng.integers(7, 11, 2)
            if horizontal:
                top = int(rng.integers(12, SIZE - h + 1))
                left = int(12 + j * 10 + rng.integers(0, max(1, 10 - w + 1)))
            else:
                left = int(rng.integers(12, SIZE - w + 1))
                top = int(12 + j * 10 + rng.integers(0, max(1, 10 - h + 1)))
            h, w = min(h, SIZE - top), min(w, SIZE - left)
            img[top:top + h, left:left + w] = _patch(rng, tex, h, w)
            cls = 3 if tex == "checks" else 1 + int(kind[i])
            lab[top:top + h, left:left + w] = cls
        x[i, 0] = _finish(img, rng)
        y[i] = lab
    return {"x": x, "labels": y, "kind": kind.astype(np.int64)}


def depth_scenes(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n scenes seen by a camera above a ground plane: the ground's depth grows towards the
    horizon (depth = 32 / (row - horizon), at most 30), 1..3 boxes stand on the ground at the
    depth of their foot, the sky is at the far limit (30). The picture shows a checked
    ground whose squares shrink with depth, and haze (things far away are brighter and
    flatter). Each scene is multiplied by a random scale in [0.5, 2] that the picture does NOT
    show (the same picture could be a model town or a real one), so only depth up to a
    global factor can be learned. Returns x (n, 1, 32, 32), depth (n, 32, 32) float32 in
    metres (> 0) and scale (n,)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    depth = np.zeros((n, SIZE, SIZE), np.float32)
    scale = np.exp(rng.uniform(np.log(0.5), np.log(2.0), n)).astype(np.float32)
    rows = _YY[:, 0]
    for i in range(n):
        horizon = rng.uniform(6, 14)
        base = 8.0
        far = 30.0
        d = np.where(rows > horizon + 0.5, np.minimum(base * 4 / np.maximum(rows - horizon, 1e-3),
                                                      far), far)
        d = np.repeat(d[:, None], SIZE, 1)
        # the ground texture: checks of 1 unit on the plane -> x / depth, depth
        u = (_XX - 16) * d / 16
        tex = ((np.floor(u) + np.floor(d)) % 2)
        img = np.where(d < far, 0.35 + 0.25 * tex, 0.85)
        for _ in range(rng.integers(1, 4)):
            foot = rng.uniform(horizon + 3, SIZE)
            bd = min(base * 4 / (foot - horizon), far)
            half_w = 24 / bd
            height = 40 / bd
            cx = rng.uniform(0, SIZE)
            m = (np.abs(_XX - cx) < half_w) & (_YY < foot) & (_YY > foot - height)
            m &= d > bd - 1e-6  # nearer things hide farther ones
            d = np.where(m, bd, d)
            img = np.where(m, rng.uniform(0.05, 0.3), img)
        haze = np.clip(d / far, 0, 1)
        img = img * (1 - 0.6 * haze) + 0.85 * 0.6 * haze
        x[i, 0] = _finish(img, rng, noise=0.03)
        depth[i] = d * scale[i]
    return {"x": x, "depth": depth, "scale": scale}


def crowds(n: int, seed: int = 0, sigma: float = 1.5,
           density_map: Callable | None = None) -> dict:
    """sit471.label_number.crowds(n, seed) plus density maps (n, 32, 32) float32 built with the
    given density_map(points, shape, sigma) function (the notebook's or the reference's)."""
    data = label_number.crowds(n, seed)
    if density_map is not None:
        data["density"] = np.stack([density_map(p, (SIZE, SIZE), sigma)
                                    for p in data["positions"]]).astype(np.float32)
    return data


# ----------------------------------------------------------------------------- models

class FCN(nn.Module):
    """A small fully convolutional network, (N, 1, H, W) -> (N, out_channels, H, W), H and W
    divisible by 4:

        block1: conv 3x3 (1 -> c1) + ReLU + conv 3x3 + ReLU + max-pool 2   -> H/2 (skip from here)
        block2: conv 3x3 (c1 -> c2) + ReLU + max-pool 2                     -> H/4
        context (optional, e.g. a pyramid pooling module with c2 -> context_channels)
        score: conv 1x1 to out_channels at H/4; up1: transposed conv x2 (kernel 4, stride 2,
        padding 1, initialised bilinear) + a 1x1 score of the skip features; up2: x2 again.

    Each pixel of the plain network sees about 12 input pixels around it; the context
    module adds what the whole image shows. ``upsample_init(c, c, 4)`` gives the initial
    weights of the transposed convolutions (bilinear); None leaves PyTorch's random ones.
    """

    def __init__(self, out_channels: int, c1: int = 16, c2: int = 32,
                 context: nn.Module | None = None, context_channels: int | None = None,
                 upsample_init: Callable | None = None):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.context = context
        cin = c2 if context is None else int(context_channels or c2)
        self.score = nn.Conv2d(cin, out_channels, 1)
        self.score_skip = nn.Conv2d(c1, out_channels, 1)
        self.up1 = nn.ConvTranspose2d(out_channels, out_channels, 4, stride=2, padding=1,
                                      bias=False)
        self.up2 = nn.ConvTranspose2d(out_channels, out_channels, 4, stride=2, padding=1,
                                      bias=False)
        if upsample_init is not None:
            with torch.no_grad():
                for up in (self.up1, self.up2):
                    up.weight.copy_(upsample_init(out_channels, out_channels, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.block1(x)
        f2 = self.block2(f1)
        if self.context is not None:
            f2 = self.context(f2)
        s = self.up1(self.score(f2)) + self.score_skip(f1)
        return self.up2(s)


fit = label_number.fit
predict = label_number.predict


def segment(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Predicted class per pixel (N, H, W) int64 (argmax of the logits)."""
    return predict(model, x).argmax(1).numpy()


# ----------------------------------------------------------------------------- experiments

def run_experiments(tools: dict[str, Callable], log: Callable[[str], None] = print,
                    scale: float = 1.0) -> dict:
    """Train the models of the notebook with the given functions, measure them on test data.

    tools: confusion_matrix, iou_from_confusion, pixel_accuracy, bilinear_kernel,
    PyramidPooling, scale_invariant_loss, depth_metrics, density_map (the notebook's answers)
    and, optionally, RegressionHead (assignment 05's answer; without it the direct count
    regressor is left out). Nothing else is imported, so it runs in a student install.
    scale < 1 shrinks the data sets and epochs (quick tests). JSON-able dict.
    """
    start = time.time()
    epochs = 10 if scale >= 1 else max(1, round(10 * scale))  # scale < 1: quick tests
    res: dict = {"settings": {"scale": scale, "epochs": epochs,
                              "optimizer": "Adam 2e-3, batch 64, one CPU thread"}}

    def size(k: int) -> int:
        return max(16, int(k * scale))

    def note(name: str) -> None:
        log(f"[{time.time() - start:5.1f} s] {name}: {res[name]}")

    def seg_eval(model, data, c):
        conf = tools["confusion_matrix"](segment(model, data["x"]), data["labels"], c)
        iou, miou = tools["iou_from_confusion"](conf)
        return {"pixel_accuracy": float(tools["pixel_accuracy"](conf)), "mean_iou": float(miou),
                "iou": [None if np.isnan(v) else float(v) for v in iou]}

    def seg_loss(data):
        xt, yt = torch.as_tensor(data["x"]), torch.as_tensor(data["labels"])
        return lambda m, i: F.cross_entropy(m(xt[i]), yt[i], ignore_index=IGNORE)

    # 1. shapes: segmentation, bilinear vs random initialisation of the upsampling
    train, test = shapes_scenes(size(1500), seed=1), shapes_scenes(size(500), seed=2)
    res["shapes"] = {}
    for name, init in (("bilinear_init", tools["bilinear_kernel"]), ("random_init", None)):
        torch.manual_seed(0)
        model = FCN(4, upsample_init=init)
        fit(model, seg_loss(train), len(train["x"]), epochs=epochs)
        res["shapes"][name] = seg_eval(model, test, 4)
    note("shapes")

    # 2. scene parsing: plain FCN vs FCN + pyramid pooling
    train, test = parsing_scenes(size(1500), seed=3), parsing_scenes(size(500), seed=4)
    res["parsing"] = {}
    for name in ("fcn", "fcn_ppm"):
        torch.manual_seed(0)
        ctx = tools["PyramidPooling"](32) if name == "fcn_ppm" else None
        model = FCN(4, context=ctx, context_channels=None if ctx is None else 64,
                    upsample_init=tools["bilinear_kernel"])
        fit(model, seg_loss(train), len(train["x"]), epochs=epochs)
        res["parsing"][name] = seg_eval(model, test, 4)
    note("parsing")

    # 3. depth: scale-invariant loss vs L2 on log depth
    train, test = depth_scenes(size(1500), seed=5), depth_scenes(size(500), seed=6)
    xt, lt = torch.as_tensor(train["x"]), torch.log(torch.as_tensor(train["depth"]))
    res["depth"] = {}
    for name, lam in (("l2_log", 0.0), ("scale_invariant", 0.5)):
        torch.manual_seed(0)
        model = FCN(1, upsample_init=tools["bilinear_kernel"])
        fit(model, lambda m, i, lam=lam: tools["scale_invariant_loss"](m(xt[i])[:, 0], lt[i],
                                                                       lam=lam),
            len(xt), epochs=epochs)
        pred = np.exp(predict(model, test["x"])[:, 0].numpy().astype(np.float64))
        raw = tools["depth_metrics"](pred, test["depth"])
        ratio = (np.median(test["depth"].reshape(len(pred), -1), 1)
                 / np.median(pred.reshape(len(pred), -1), 1))
        aligned = tools["depth_metrics"](pred * ratio[:, None, None], test["depth"])
        res["depth"][name] = {"raw": raw, "median_scaled": aligned}
    note("depth")

    # 4. crowds: density map vs direct count regression (assignment 05's model)
    train = crowds(size(2000), seed=7, density_map=tools["density_map"])
    test = crowds(size(600), seed=8, density_map=tools["density_map"])
    xt = torch.as_tensor(train["x"])
    dt = torch.as_tensor(train["density"])[:, None] * 100  # x100: pixel values near 1
    ct = torch.as_tensor(train["count"])
    torch.manual_seed(0)
    dens = FCN(1, upsample_init=tools["bilinear_kernel"])
    fit(dens, lambda m, i: F.mse_loss(m(xt[i]), dt[i]), len(xt), epochs=epochs)
    count_dens = predict(dens, test["x"]).sum((1, 2, 3)).numpy() / 100
    counts = {"density_map": count_dens}
    if "RegressionHead" in tools:  # assignment 05's answer: given by the staff runner only
        torch.manual_seed(0)
        reg = label_number.Net(tools["RegressionHead"](128))  # (N, 128) -> (N,)
        fit(reg, lambda m, i: F.mse_loss(m(xt[i]), ct[i]), len(xt), epochs=epochs)
        counts["regression"] = predict(reg, test["x"]).numpy()
    truth = test["count"]
    res["crowds"] = {}
    for level, sel in (("all", truth >= 0), ("low (0-25)", truth <= 25),
                       ("high (26-50)", truth > 25)):
        res["crowds"][level] = {
            name: {"mae": float(np.abs(p[sel] - truth[sel]).mean()),
                   "rmse": float(np.sqrt(((p[sel] - truth[sel]) ** 2).mean()))}
            for name, p in counts.items()}
    note("crowds")
    res["settings"]["seconds"] = round(time.time() - start, 1)
    return res


def format_results(res: dict) -> str:
    """The measured numbers as markdown tables (quoted by the notebook)."""
    s, p, d, c = res["shapes"], res["parsing"], res["depth"], res["crowds"]
    rows = [
        ("shapes: FCN, bilinear init", "pixel acc. / mean IoU",
         f"{100 * s['bilinear_init']['pixel_accuracy']:.1f} % / "
         f"{s['bilinear_init']['mean_iou']:.3f}"),
        ("shapes: FCN, random init", "pixel acc. / mean IoU",
         f"{100 * s['random_init']['pixel_accuracy']:.1f} % / "
         f"{s['random_init']['mean_iou']:.3f}"),
        ("scene parsing: FCN", "pixel acc. / mean IoU",
         f"{100 * p['fcn']['pixel_accuracy']:.1f} % / {p['fcn']['mean_iou']:.3f}"),
        ("scene parsing: FCN + pyramid pooling", "pixel acc. / mean IoU",
         f"{100 * p['fcn_ppm']['pixel_accuracy']:.1f} % / {p['fcn_ppm']['mean_iou']:.3f}"),
    ]
    for name, label in (("l2_log", "L2 on log depth"), ("scale_invariant", "scale-invariant")):
        for kind in ("raw", "median_scaled"):
            m = d[name][kind]
            rows.append((f"depth: {label}, {kind.replace('_', ' ')}",
                         "AbsRel / RMSE / δ<1.25",
                         f"{m['abs_rel']:.3f} / {m['rmse']:.2f} / {100 * m['delta1']:.1f} %"))
    for level, v in c.items():
        for name in v:
            rows.append((f"crowds {level}: {name.replace('_', ' ')}", "count MAE / RMSE",
                         f"{v[name]['mae']:.2f} / {v[name]['rmse']:.2f}"))
    lines = ["| task | metric | result |", "|---|---|---|"]
    return "\n".join(lines + [f"| {t} | {m} | {r} |" for t, m, r in rows])


# ----------------------------------------------------------------------------- figures

def show_segmentation(x: np.ndarray, labels: Sequence[np.ndarray], titles: Sequence[str],
                      n: int = 6, class_names: Sequence[str] = SHAPE_CLASSES):
    """Rows: the images, then each label image in ``labels`` (N, H, W) drawn over them
    (ignored pixels white). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["none", "tab:red", "tab:green", "tab:blue"][:len(class_names)])
    fig, axes = plt.subplots(1 + len(labels), n, figsize=(1.6 * n, 1.7 * (1 + len(labels))),
                             squeeze=False)
    for k in range(n):
        axes[0, k].imshow(x[k, 0], cmap="gray", vmin=0, vmax=1)
        for r, lab in enumerate(labels, start=1):
            axes[r, k].imshow(x[k, 0], cmap="gray", vmin=0, vmax=1)
            lk = np.asarray(lab[k])
            axes[r, k].imshow(np.ma.masked_where((lk == 0) | (lk == IGNORE), lk), cmap=cmap,
                              vmin=0, vmax=len(class_names) - 1, alpha=0.55,
                              interpolation="nearest")
            axes[r, k].imshow(np.ma.masked_where(lk != IGNORE, lk), cmap="gray_r", alpha=0.8,
                              interpolation="nearest")
    for r, t in enumerate(["image", *titles]):
        axes[r, 0].set_ylabel(t, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    colours = ", ".join(f"{c}={n}" for c, n in zip(("red", "green", "blue"), class_names[1:],
                                                     strict=False))
    fig.suptitle(f"{colours}; white = ignored (255)", fontsize=9)
    fig.tight_layout()
    return fig
