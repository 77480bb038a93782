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
pyramid pooling on the 1/4-resolution features).

Experiments, one function per section of the notebook, each over several seeds and taking the
notebook's answers it needs as arguments: :func:`segmentation_init`, :func:`scene_parsing`
(with controls for context and capacity), :func:`depth_estimation`, :func:`crowd_counting`
(against assignment 05's :func:`sit471.label_number.count_regression`);
:func:`run_experiments` runs them all (about 20 minutes on one CPU thread). The staff make the
notebook's ``results.json`` with the reference answers, from the repository:
``python -m sit471.reference.experiments dense``.
"""

from __future__ import annotations

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
#
# One function per section of the notebook. Each takes the notebook's answers it needs as
# arguments (nothing is imported from the reference), trains one model per seed (the seed sets
# the initial weights and the order of the batches; the data stay the same) and returns a
# JSON-able dict of summaries over the seeds (mean, 95 % interval, the runs). scale < 1 shrinks
# the data and the epochs (quick tests).

SEEDS = label_number.SEEDS
EPOCHS = 10  # Adam 2e-3, batches of 64 (the crowds use assignment 05's budget, 12 epochs)
summary, pm, check_inputs = label_number.summary, label_number.pm, label_number.check_inputs


def _size(k: int, scale: float) -> int:
    return max(16, int(k * scale))


def _epochs(e: int, scale: float) -> int:
    return e if scale >= 1 else max(1, round(e * scale))


def _seg_loss(data: dict) -> Callable:
    xt, yt = torch.as_tensor(data["x"]), torch.as_tensor(data["labels"])
    return lambda m, i: F.cross_entropy(m(xt[i]), yt[i], ignore_index=IGNORE)


def _seg_scores(pred: np.ndarray, labels: np.ndarray, c: int, confusion_matrix: Callable,
                iou_from_confusion: Callable, pixel_accuracy: Callable) -> dict:
    conf = confusion_matrix(pred, labels, c)
    iou, miou = iou_from_confusion(conf)
    return {"pixel_accuracy": float(pixel_accuracy(conf)), "mean_iou": float(miou),
            "iou": [float("nan") if np.isnan(v) else float(v) for v in np.asarray(iou, float)]}


def _summarise_seg(runs: list[dict]) -> dict:
    return {"pixel_accuracy": summary([r["pixel_accuracy"] for r in runs]),
            "mean_iou": summary([r["mean_iou"] for r in runs]),
            "iou": [summary([r["iou"][k] for r in runs]) for k in range(len(runs[0]["iou"]))]}


def encode_labels(labels: np.ndarray) -> list[str]:
    """A small label image (H, W) with classes 0..9 as H strings of W digits (for JSON)."""
    return ["".join(str(int(v)) for v in row) for row in np.asarray(labels)]


def decode_labels(rows: Sequence[str]) -> np.ndarray:
    """The inverse of encode_labels: (H, W) int64."""
    return np.array([[int(ch) for ch in row] for row in rows], np.int64)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def segmentation_init(confusion_matrix: Callable, iou_from_confusion: Callable,
                      pixel_accuracy: Callable, bilinear_kernel: Callable,
                      seeds: Sequence[int] = SEEDS, scale: float = 1.0) -> dict:
    """Sections 1-2: the FCN on shapes_scenes, its transposed convolutions started as bilinear
    upsampling (bilinear_kernel) or PyTorch's random start. Pixel accuracy, mean IoU and IoU per
    class (one confusion matrix over the test set) per seed; the paired mIoU difference."""
    check_inputs(scale, seeds, confusion_matrix=confusion_matrix,
                 iou_from_confusion=iou_from_confusion, pixel_accuracy=pixel_accuracy,
                 bilinear_kernel=bilinear_kernel)
    train = shapes_scenes(_size(1500, scale), seed=1)
    test = shapes_scenes(_size(500, scale), seed=2)
    runs: dict[str, list[dict]] = {"bilinear_init": [], "random_init": []}
    for s in seeds:
        for name, init in (("bilinear_init", bilinear_kernel), ("random_init", None)):
            torch.manual_seed(s)
            model = FCN(4, upsample_init=init)
            fit(model, _seg_loss(train), len(train["x"]), epochs=_epochs(EPOCHS, scale), seed=s)
            runs[name].append(_seg_scores(segment(model, test["x"]), test["labels"], 4,
                                          confusion_matrix, iou_from_confusion, pixel_accuracy))
    res = {"train": len(train["x"]), "test": len(test["x"]),
           **{name: _summarise_seg(r) for name, r in runs.items()}}
    res["bilinear_minus_random_miou"] = summary(
        [a["mean_iou"] - b["mean_iou"] for a, b in zip(runs["bilinear_init"], runs["random_init"],
                                                       strict=True)])
    return res


# the scene-parsing models: the context module on the 8 x 8 features of a 32 x 32 image
PARSING_MODELS = {
    "fcn": "plain FCN (no context module)",
    "ppm": "pyramid pooling, bins 1, 2, 3, 6",
    "global_only": "global pooling only, bins 1, 1, 1, 1 (the same parameters as ppm)",
    "local_only": "no pooling, bins 8, 8, 8, 8 (the same parameters as ppm, no context)",
}
_PARSING_BINS = {"ppm": (1, 2, 3, 6), "global_only": (1, 1, 1, 1), "local_only": (8, 8, 8, 8)}


def scene_parsing(PyramidPooling: Callable, bilinear_kernel: Callable, confusion_matrix: Callable,
                  iou_from_confusion: Callable, pixel_accuracy: Callable,
                  seeds: Sequence[int] = SEEDS, scale: float = 1.0) -> dict:
    """Section 3: parsing_scenes with four networks (PARSING_MODELS). The controls separate
    context from capacity: ``local_only`` is PyramidPooling(32, bins=(8, 8, 8, 8)) on the 8 x 8
    features, where pooling to 8 x 8 and upsampling back change nothing, so it has exactly the
    pyramid's parameters but sees no wider context; ``global_only`` has the same parameters
    and only the image's mean. Scores per seed, the parameter counts, and the predicted label
    maps of the first seed on the first six test images."""
    check_inputs(scale, seeds, PyramidPooling=PyramidPooling, bilinear_kernel=bilinear_kernel,
                 confusion_matrix=confusion_matrix, iou_from_confusion=iou_from_confusion,
                 pixel_accuracy=pixel_accuracy)
    train = parsing_scenes(_size(1500, scale), seed=3)
    test = parsing_scenes(_size(500, scale), seed=4)
    runs: dict[str, list[dict]] = {name: [] for name in PARSING_MODELS}
    params, examples = {}, {}
    for s in seeds:
        for name in PARSING_MODELS:
            torch.manual_seed(s)
            ctx = None if name == "fcn" else PyramidPooling(32, _PARSING_BINS[name])
            model = FCN(4, context=ctx, context_channels=None if ctx is None else 64,
                        upsample_init=bilinear_kernel)
            params[name] = n_parameters(model)
            fit(model, _seg_loss(train), len(train["x"]), epochs=_epochs(EPOCHS, scale), seed=s)
            pred = segment(model, test["x"])
            runs[name].append(_seg_scores(pred, test["labels"], 4, confusion_matrix,
                                          iou_from_confusion, pixel_accuracy))
            examples.setdefault(name, [encode_labels(p) for p in pred[:6]])
    res = {"train": len(train["x"]), "test": len(test["x"]), "models": PARSING_MODELS,
           "parameters": params, "examples": examples,
           **{name: _summarise_seg(r) for name, r in runs.items()}}
    for name in ("fcn", "global_only", "local_only"):
        res[f"ppm_minus_{name}_miou"] = summary(
            [a["mean_iou"] - b["mean_iou"] for a, b in zip(runs["ppm"], runs[name], strict=True)])
    return res


def depth_estimation(scale_invariant_loss: Callable, depth_metrics: Callable,
                     bilinear_kernel: Callable, seeds: Sequence[int] = SEEDS,
                     scale: float = 1.0) -> dict:
    """Section 4: the FCN with one output (log depth), L2 on log depth (lam 0) against the
    scale-invariant loss (lam 0.5); depth_metrics on the raw predictions and after scaling each
    image by median(true) / median(predicted). Per seed, and the paired differences."""
    check_inputs(scale, seeds, scale_invariant_loss=scale_invariant_loss,
                 depth_metrics=depth_metrics, bilinear_kernel=bilinear_kernel)
    train, test = depth_scenes(_size(1500, scale), seed=5), depth_scenes(_size(500, scale), seed=6)
    xt, lt = torch.as_tensor(train["x"]), torch.log(torch.as_tensor(train["depth"]))
    runs: dict[str, list[dict]] = {"l2_log": [], "scale_invariant": []}
    for s in seeds:
        for name, lam in (("l2_log", 0.0), ("scale_invariant", 0.5)):
            torch.manual_seed(s)
            model = FCN(1, upsample_init=bilinear_kernel)
            fit(model, lambda m, i, lam=lam: scale_invariant_loss(m(xt[i])[:, 0], lt[i], lam=lam),
                len(xt), epochs=_epochs(EPOCHS, scale), seed=s)
            pred = np.exp(predict(model, test["x"])[:, 0].numpy().astype(np.float64))
            ratio = (np.median(test["depth"].reshape(len(pred), -1), 1)
                     / np.median(pred.reshape(len(pred), -1), 1))
            runs[name].append({"raw": dict(depth_metrics(pred, test["depth"])),
                               "median_scaled": dict(depth_metrics(pred * ratio[:, None, None],
                                                                   test["depth"]))})
    metrics = ("abs_rel", "rmse", "delta1", "delta2", "delta3")
    res: dict = {"train": len(xt), "test": len(test["x"])}
    for name, rs in runs.items():
        res[name] = {kind: {m: summary([float(r[kind][m]) for r in rs]) for m in metrics}
                     for kind in ("raw", "median_scaled")}
    res["scale_invariant_minus_l2_log"] = {
        m: summary([float(a["median_scaled"][m]) - float(b["median_scaled"][m])
                    for a, b in zip(runs["scale_invariant"], runs["l2_log"], strict=True)])
        for m in ("abs_rel", "rmse", "delta1")}
    return res


def crowd_counting(density_map: Callable, bilinear_kernel: Callable,
                   seeds: Sequence[int] = SEEDS, scale: float = 1.0,
                   RegressionHead: Callable | None = None,
                   regression_loss: Callable | None = None) -> dict:
    """Section 5: the FCN trained with L2 on 100 x the density map (sigma 1.5) on assignment 05's
    counting data (label_number.counting_data: the same 3,000 / 1,000 images) with 05's budget
    (12 epochs), its count = the map's sum; errors by crowd size over seeds. Given 05's
    RegressionHead and regression_loss, also assignment 05's direct regression baseline
    (label_number.count_regression: the same function, data, loss and budget as in 05, so the
    same numbers)."""
    check_inputs(scale, seeds, density_map=density_map, bilinear_kernel=bilinear_kernel)
    tr, te = label_number.counting_data(scale)
    dt = torch.as_tensor(np.stack([density_map(p, (SIZE, SIZE), 1.5) for p in tr["positions"]])
                         .astype(np.float32))[:, None] * 100  # x100: pixel values near 1
    xt = torch.as_tensor(tr["x"])
    epochs = label_number._epochs(label_number.EPOCHS, scale)
    runs = []
    for s in seeds:
        torch.manual_seed(s)
        model = FCN(1, upsample_init=bilinear_kernel)
        fit(model, lambda m, i: F.mse_loss(m(xt[i]), dt[i]), len(xt), epochs=epochs, seed=s)
        runs.append(label_number.count_errors(predict(model, te["x"]).sum((1, 2, 3)).numpy() / 100,
                                              te["count"]))
    res: dict = {"train": len(xt), "test": len(te["x"]), "epochs": epochs, "sigma": 1.5,
                 "density_map": label_number.summarise_counts(runs)}
    if RegressionHead is not None and regression_loss is not None:
        res["regression"] = label_number.count_regression(RegressionHead, regression_loss, seeds,
                                                          scale)["errors"]
    return res


def run_experiments(tools: dict[str, Callable], log: Callable[[str], None] = print,
                    scale: float = 1.0, seeds: Sequence[int] | None = None) -> dict:
    """Every section's experiment with the given functions, measured on test data.

    tools: confusion_matrix, iou_from_confusion, pixel_accuracy, bilinear_kernel,
    PyramidPooling, scale_invariant_loss, depth_metrics, density_map (the notebook's answers)
    and, optionally, RegressionHead and regression_loss (assignment 05's answers; without them
    the direct count regressor is left out). Nothing else is imported, so it runs in a student
    install. seeds: SEEDS (the first two when scale < 1). About 20 minutes on one CPU thread
    of a shared machine (1,187 s measured for the cached results).
    """
    names = ("confusion_matrix", "iou_from_confusion", "pixel_accuracy", "bilinear_kernel",
             "PyramidPooling", "scale_invariant_loss", "depth_metrics", "density_map")
    label_number.require_tools(tools, names)
    seeds = tuple(seeds if seeds is not None else SEEDS if scale >= 1 else SEEDS[:2])
    check_inputs(scale, seeds, **{n: tools[n] for n in names},
                 **{n: tools[n] for n in ("RegressionHead", "regression_loss") if n in tools})
    t = tools
    metrics = (t["confusion_matrix"], t["iou_from_confusion"], t["pixel_accuracy"])
    settings = {"scale": scale, "seeds": list(seeds), "epochs": _epochs(EPOCHS, scale),
                "optimizer": "Adam 2e-3, batch 64, one CPU thread"}
    return label_number.run_sections([
        ("shapes", lambda: segmentation_init(*metrics, t["bilinear_kernel"], seeds, scale)),
        ("parsing", lambda: scene_parsing(t["PyramidPooling"], t["bilinear_kernel"], *metrics,
                                          seeds, scale)),
        ("depth", lambda: depth_estimation(t["scale_invariant_loss"], t["depth_metrics"],
                                           t["bilinear_kernel"], seeds, scale)),
        ("crowds", lambda: crowd_counting(t["density_map"], t["bilinear_kernel"], seeds, scale,
                                          t.get("RegressionHead"), t.get("regression_loss"))),
    ], settings, log)


def format_results(res: dict) -> str:
    """The measured numbers as a markdown table (quoted by the notebook): mean ± half-width of
    the 95 % interval over the seeds."""
    s, p, d, c = res["shapes"], res["parsing"], res["depth"], res["crowds"]

    def seg(m: dict) -> str:
        return f"{pm(m['pixel_accuracy'], 100, 1)} / {pm(m['mean_iou'], 1, 3)}"

    rows = [("shapes: FCN, bilinear init", "pixel acc. % / mean IoU", seg(s["bilinear_init"])),
            ("shapes: FCN, random init", "pixel acc. % / mean IoU", seg(s["random_init"]))]
    for name in PARSING_MODELS:
        m = p[name]
        per_class = ", ".join(f"{PARSING_CLASSES[k]} {pm(v, 1, 2)}"
                              for k, v in enumerate(m["iou"]) if k > 0)
        rows.append((f"scene parsing: {PARSING_MODELS[name]}, {p['parameters'][name]:,} "
                     "parameters", "pixel acc. % / mean IoU (IoU per class)",
                     f"{seg(m)} ({per_class})"))
    for name, label in (("l2_log", "L2 on log depth"), ("scale_invariant", "scale-invariant")):
        for kind in ("raw", "median_scaled"):
            m = d[name][kind]
            rows.append((f"depth: {label}, {kind.replace('_', ' ')}",
                         "AbsRel / RMSE / δ<1.25 %",
                         f"{pm(m['abs_rel'], 1, 3)} / {pm(m['rmse'])} / "
                         f"{pm(m['delta1'], 100, 1)}"))
    gain = d["scale_invariant_minus_l2_log"]
    rows.append(("depth: scale-invariant minus L2, median scaled (paired)",
                 "AbsRel / RMSE / δ<1.25 %",
                 f"{pm(gain['abs_rel'], 1, 3)} / {pm(gain['rmse'])} / "
                 f"{pm(gain['delta1'], 100, 1)}"))
    for name, label in (("density_map", "density map"), ("regression", "direct regression (05)")):
        for r, e in c.get(name, {}).items():
            rows.append((f"crowds, {r} people: {label}", "count MAE / RMSE",
                         f"{pm(e['mae'])} / {pm(e['rmse'])}"))
    for r, e in c.get("regression", {}).items():  # seed by seed: the same seeds, the same data
        diff = summary(np.subtract(c["density_map"][r]["mae"]["runs"], e["mae"]["runs"]))
        rows.append((f"crowds, {r} people: density map minus direct regression (paired)",
                     "count MAE", pm(diff)))
    lines = [f"Mean ± 95 % interval over {len(res['settings']['seeds'])} seeds.", "",
             "| task | metric | result |", "|---|---|---|"]
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
