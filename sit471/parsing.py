"""Assignment 09's library (no exercise answers in here): data and networks for two heads on
one backbone and for parts of objects, the runner of all five experiments, and the tables and
figures of their results. The volumes are in :mod:`sit471.volumes`, the dissected network and
the face networks in :mod:`sit471.units`.

Seeded generators of small grayscale images (N, 1, 32, 32) in [0, 1], nothing downloads:

    sit471.dense.parsing_scenes   harbour / field scenes (assignment 06): stripes are water in a
                                  harbour and crop in a field; the scene shows only in a bar
    part_scenes(n, seed)          one object per image, a square "robot" or a round "owl" of the
                                  same grey, with a bright spot in its centre: the robot's lamp
                                  or the owl's eye. Object labels and part labels (two levels)

Models: :class:`TwoHeads` (pixel head and scene head on one backbone) and :class:`PartNet`
(part head and object head; local patch or context). :func:`run_experiments` trains every model
of the notebook with the functions it is given (the notebook's answers) and returns measured
results; the staff make the notebook's ``results.json`` with the reference answers, from the
repository: ``python -m sit471.reference.experiments parsing``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sit471 import label_number

SIZE = 32
IGNORE = 255
OBJECTS = ("background", "robot", "owl")
PARTS = ("background", "robot body", "lamp", "owl body", "eye")
PART_TO_OBJECT = np.array([0, 1, 1, 2, 2])

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def _finish(img: np.ndarray, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    return np.clip(img + noise * rng.standard_normal(img.shape), 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------ parts

def part_scenes(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n images with one object: a robot (a square, half-side 7..9 px) or an owl (a disc,
    radius 8..10), the same grey and texture, each with a bright spot (radius 2.2) in its
    centre. The spot is a lamp on a robot and an eye on an owl: it looks the same on both,
    and its nearest outline is at least 5 px away. Returns x (n, 1, 32, 32), objects
    (n, 32, 32) int64 (OBJECTS), parts (n, 32, 32) int64 (PARTS; PART_TO_OBJECT maps a part
    to its object) and kind (n,) int64 (1 robot, 2 owl)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    objects = np.zeros((n, SIZE, SIZE), np.int64)
    parts = np.zeros((n, SIZE, SIZE), np.int64)
    kind = rng.integers(1, 3, n)
    for i in range(n):
        img = 0.15 + 0.06 * np.sin(_XX * rng.uniform(0.2, 0.8) + _YY * rng.uniform(-0.8, 0.8))
        if kind[i] == 1:
            r = rng.uniform(7, 9)
            cx, cy = rng.uniform(r + 1, SIZE - r - 1, 2)
            body = (np.abs(_XX - cx) <= r) & (np.abs(_YY - cy) <= r)
        else:
            r = rng.uniform(8, 10)
            cx, cy = rng.uniform(r + 1, SIZE - r - 1, 2)
            body = (_XX - cx) ** 2 + (_YY - cy) ** 2 <= r * r
        spot = (_XX - cx) ** 2 + (_YY - cy) ** 2 <= 2.2 ** 2
        img = np.where(body, 0.5 + 0.05 * np.sin(_XX + _YY), img)
        img = np.where(spot, 0.95, img)
        objects[i][body] = kind[i]
        parts[i][body] = 1 if kind[i] == 1 else 3
        parts[i][spot] = 2 if kind[i] == 1 else 4
        x[i, 0] = _finish(img, rng)
    return {"x": x, "objects": objects, "parts": parts, "kind": kind.astype(np.int64)}


# ------------------------------------------------------------------------------ models

def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())


class TwoHeads(nn.Module):
    """One backbone, two heads: (N, 1, 32, 32) -> pixel logits (N, 4, 32, 32) and scene logits
    (N, 2). Backbone: conv-ReLU-pool (16), conv-ReLU-pool (32), conv-ReLU (32): 8x8 features.
    The scene head averages them over the image (global average pooling) and applies a linear layer;
    the pixel head is a 1x1 convolution on the features (with ``context=True`` also on the
    averaged features copied to every position), upsampled bilinearly to 32x32."""

    def __init__(self, context: bool = True, pixel_classes: int = 4, scene_classes: int = 2):
        super().__init__()
        self.context = context
        self.backbone = nn.Sequential(_block(1, 16), nn.MaxPool2d(2), _block(16, 32),
                                      nn.MaxPool2d(2), _block(32, 32))
        self.scene = nn.Linear(32, scene_classes)
        self.pixels = nn.Conv2d(64 if context else 32, pixel_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x)
        g = f.mean((2, 3))
        if self.context:
            f = torch.cat([f, g[:, :, None, None].expand_as(f)], 1)
        pix = F.interpolate(self.pixels(f), size=x.shape[-2:], mode="bilinear",
                            align_corners=False)
        return pix, self.scene(g)


class PartNet(nn.Module):
    """(N, 1, 32, 32) -> part logits (N, 5, 32, 32) and object logits (N, 3, 32, 32), from one
    feature map and two 1x1 heads.

    local (context=False): three 3x3 convolutions at full resolution, so each pixel's answer
    depends on a 7x7 patch around it. context=True: the first convolution, then two pooled
    blocks (each pixel sees about 18 px), their average over the image (the whole object:
    there is one per image), both upsampled and joined with the first features. Parameter
    counts are close (9,560 local, 9,368 context)."""

    def __init__(self, context: bool = True):
        super().__init__()
        self.context = context
        self.stem = _block(1, 16)
        if context:
            self.deep = nn.Sequential(nn.MaxPool2d(2), _block(16, 24), nn.MaxPool2d(2),
                                      _block(24, 24))
            width = 64
        else:
            self.deep = nn.Sequential(_block(16, 32), _block(32, 16))
            width = 16
        self.parts = nn.Conv2d(width, len(PARTS), 1)
        self.objects = nn.Conv2d(width, len(OBJECTS), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        d = self.deep(s)
        if self.context:
            whole = d.mean((2, 3), keepdim=True).expand(-1, -1, *s.shape[-2:])
            d = torch.cat([s, F.interpolate(d, size=s.shape[-2:], mode="bilinear",
                                            align_corners=False), whole], 1)
        return self.parts(d), self.objects(d)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


fit = label_number.fit


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 500):
    """model(x) in eval mode, batch by batch (a tensor, or a tuple of tensors, concatenated)."""
    model.eval()
    outs = [model(torch.as_tensor(x[s:s + batch_size])) for s in range(0, len(x), batch_size)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))
    return torch.cat(outs)


# ------------------------------------------------------------------------------ experiments

SEEDS = (0, 1, 2)
SCENE_WEIGHTS = (0.1, 1.0, 10.0)


def pack(a: np.ndarray) -> dict:
    """A small image or mask as JSON: uint8 bytes in base64 (values scaled to 0..255 when
    float)."""
    import base64

    a = np.asarray(a)
    if a.dtype.kind == "f":
        a = np.round(np.clip(a, 0, 1) * 255)
    a = a.astype(np.uint8)
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def unpack(d: dict, scale: bool = False) -> np.ndarray:
    import base64

    a = np.frombuffer(base64.b64decode(d["b64"]), np.uint8).reshape(d["shape"])
    return a / 255.0 if scale else a.astype(np.int64)


def _threads(fn: Callable) -> Callable:
    """Run fn on one torch thread (tiny networks: faster than a pool), restoring the setting."""
    def wrapped(*args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return wrapped


def _size(k: int, scale: float) -> int:
    return max(8, int(k * scale))


def _two_heads(tools: dict, scale: float, epochs: int, seeds) -> dict:
    from sit471.dense import parsing_scenes

    train, test = parsing_scenes(_size(800, scale), seed=11), parsing_scenes(_size(300, scale),
                                                                             seed=12)
    xt, yt, kt = (torch.as_tensor(train[k]) for k in ("x", "labels", "kind"))
    configs = {"local, pixels only": (False, 0.0), "pixels only": (True, 0.0)}
    configs.update({f"joint, weight {w:g}": (True, w) for w in SCENE_WEIGHTS})
    configs["scene only"] = (True, "scene")
    out: dict = {name: [] for name in configs}
    for name, (context, weight) in configs.items():
        for seed in seeds:
            torch.manual_seed(seed)
            model = TwoHeads(context=context)

            def batch_loss(m, i, weight=weight):
                pix, scene = m(xt[i])
                if weight == "scene":
                    return F.cross_entropy(scene, kt[i])
                return tools["joint_loss"](pix, yt[i], scene, kt[i], weight)

            fit(model, batch_loss, len(xt), epochs=epochs, lr=2e-3, seed=seed)
            pix, scene = predict(model, test["x"])
            pred = pix.argmax(1).numpy()
            stripes = np.isin(test["labels"], (1, 2))
            out[name].append({
                "mean_iou": tools["mean_iou"](pred, test["labels"], 4),
                "stripe_accuracy": float((pred == test["labels"])[stripes].mean()),
                "scene_accuracy": float((scene.argmax(1).numpy() == test["kind"]).mean())})
    return out


def _parts(tools: dict, scale: float, epochs: int, seeds) -> tuple[dict, dict]:
    train, test = part_scenes(_size(600, scale), seed=21), part_scenes(_size(300, scale), seed=22)
    xt, pt, ot = (torch.as_tensor(train[k]) for k in ("x", "parts", "objects"))
    out: dict = {}
    shown = {"x": [pack(x[0]) for x in test["x"][:4]],
             "parts": [pack(p) for p in test["parts"][:4]]}
    for name, context in (("local patch", False), ("context", True)):
        out[name] = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = PartNet(context=context)

            def batch_loss(m, i):
                parts, objects = m(xt[i])
                return F.cross_entropy(parts, pt[i]) + F.cross_entropy(objects, ot[i])

            fit(model, batch_loss, len(xt), epochs=epochs, lr=5e-3, seed=seed)
            parts, objects = (t.argmax(1).numpy() for t in predict(model, test["x"]))
            spots = np.isin(test["parts"], (2, 4))
            out[name].append({
                "object_miou": tools["mean_iou"](objects, test["objects"], len(OBJECTS)),
                "part_miou": tools["mean_iou"](parts, test["parts"], len(PARTS)),
                "consistency": tools["part_consistency"](parts, objects, PART_TO_OBJECT),
                "spot_accuracy": float((parts == test["parts"])[spots].mean())})
            if seed == seeds[0]:
                shown[name] = [pack(p) for p in parts[:4]]
        out["parameters"] = out.get("parameters", {})
        out["parameters"][name] = n_parameters(PartNet(context=context))
    return out, shown


def _volumes(tools: dict, scale: float, epochs: int, seeds) -> tuple[dict, dict]:
    from sit471 import volumes as vol

    train = vol.brain_volumes(_size(48, scale), seed=31)
    test = vol.brain_volumes(_size(16, scale), seed=32)
    dice_loss = tools["soft_dice_loss"]
    configs = {
        "3-D, cross-entropy": (lambda: vol.Net3D(), F.binary_cross_entropy_with_logits),
        "3-D, soft Dice": (lambda: vol.Net3D(), dice_loss),
        "2-D slice-wise, soft Dice": (
            lambda: vol.SliceWise(vol.Net2D(), tools["slicewise"]), dice_loss)}
    truth, lesions = test["target"], test["lesions"]
    out: dict = {"positive_fraction": float(train["target"].mean()),
                 "all_negative": {"voxel_accuracy": float(1 - truth.mean()),
                                  "dice": tools["dice"](np.zeros_like(truth), truth).tolist()},
                 "parameters": {}}
    v = 0
    z = int(np.argmax(truth[v].sum((1, 2))))
    slices = (z - 2, z, z + 2)
    shown = {"slices": list(slices), "x": [pack(test["x"][v, 0, s]) for s in slices],
             "target": [pack(truth[v, s]) for s in slices]}
    for name, (make, loss) in configs.items():
        out[name] = []
        out["parameters"][name] = vol.n_parameters(make())
        for seed in seeds:
            torch.manual_seed(seed)
            model = make()
            vol.train_volume_net(model, train, loss, epochs=epochs, seed=seed)
            pred = vol.predict_volumes(model, test["x"]) > 0.5
            found, total = tools["lesion_detection_rate"](pred, lesions)
            out[name].append({"dice": [float(d) for d in tools["dice"](pred, truth)],
                              "detected": int(found), "lesions": int(total),
                              "false_positive_voxels": int((pred & ~truth).sum() / len(pred)),
                              "voxel_accuracy": float((pred == truth).mean())})
            if seed == seeds[0]:
                shown[name] = [pack(pred[v, s]) for s in slices]
    return out, shown


def _dissection(tools: dict, scale: float, epochs: int, seeds, iou_threshold: float = 0.04,
                top: float = 0.005) -> tuple[dict, dict]:
    from sit471 import units

    train = units.concept_scenes(_size(1000, scale), seed=41)
    test = units.concept_scenes(_size(300, scale), seed=42)
    xt, yt = torch.as_tensor(train["x"]), torch.as_tensor(train["present"])
    out: dict = {"concepts": list(units.CONCEPTS), "iou_threshold": iou_threshold, "top": top}
    shown: dict = {}
    for name in ("trained", "random init"):
        out[name] = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = units.ShapeClassifier()
            if name == "trained":
                fit(model, lambda m, i: F.binary_cross_entropy_with_logits(m(xt[i]), yt[i]),
                    len(xt), epochs=epochs, seed=seed)
            with torch.no_grad():
                model.eval()
                acts = model.features(torch.as_tensor(test["x"]))
                logits = model(torch.as_tensor(test["x"]))
            iou = np.asarray(tools["dissect"](acts, torch.as_tensor(test["masks"]), top))
            best = iou.max(1)
            concept = iou.argmax(1)
            detectors = best > iou_threshold
            out[name].append({
                "detectors": int(detectors.sum()), "units": int(len(best)),
                "mean_best_iou": float(best.mean()),
                "per_concept": [int((detectors & (concept == c)).sum())
                                for c in range(len(units.CONCEPTS))],
                "shape_accuracy": float(((logits > 0).numpy() == (test["present"] > 0.5)).mean())})
            if seed == seeds[0]:
                order = np.argsort(-best)[:4]
                up = F.interpolate(acts, size=(SIZE, SIZE), mode="bilinear",
                                   align_corners=False).numpy()
                rows = []
                for u in order:
                    c = int(concept[u])
                    imgs = np.argsort(-(up[:, u] * test["masks"][:, c]).sum((1, 2)))[:3]
                    rows.append({"unit": int(u), "concept": units.CONCEPTS[c],
                                 "iou": float(best[u]),
                                 "x": [pack(test["x"][i, 0]) for i in imgs],
                                 "act": [pack(up[i, u] / max(float(up[:, u].max()), 1e-9))
                                         for i in imgs],
                                 "mask": [pack(test["masks"][i, c]) for i in imgs]})
                shown[name] = rows
    return out, shown


def _faces(tools: dict, scale: float, epochs: int, seeds, identities: int = 60) -> dict:
    from sit471 import units

    out: dict = {"parameters": {
        "convolution": n_parameters(units.FaceNet(identities).layer),
        "locally connected": n_parameters(units.FaceNet(identities,
                                                        tools["locally_connected"]).layer)}}
    per_train, per_test = (5, 8) if scale >= 1 else (2, 2)
    for setting, shift in (("aligned", 0), ("misaligned", 4)):
        train = units.face_sets(identities, per_train, seed=51, shift=shift)
        test = units.face_sets(identities, per_test, seed=52, shift=shift)
        xt, yt = torch.as_tensor(train["x"]), torch.as_tensor(train["identity"])
        out[setting] = {}
        for name, lc in (("convolution", None), ("locally connected", tools["locally_connected"])):
            out[setting][name] = []
            for seed in seeds:
                torch.manual_seed(seed)
                model = units.FaceNet(identities, lc)
                fit(model, lambda m, i, xt=xt, yt=yt: F.cross_entropy(m(xt[i]), yt[i]), len(xt),
                    epochs=epochs, batch_size=32, seed=seed)
                acc = (predict(model, test["x"]).argmax(1).numpy() == test["identity"]).mean()
                out[setting][name].append(float(acc))
    return out


@_threads
def run_experiments(tools: dict[str, Callable], log: Callable[[str], None] = print,
                    scale: float = 1.0, seeds=SEEDS) -> dict:
    """Train every model of the notebook with the given functions; measure on test data.

    tools: joint_loss, mean_iou, part_consistency, dice, soft_dice_loss, slicewise,
    lesion_detection_rate, dissect, locally_connected (the notebook's answers; nothing else
    is imported, so it runs in a student install). Each setting is trained once per seed in
    ``seeds``; scale < 1 shrinks the data and the epochs (quick tests). JSON-able dict.
    """
    import time

    start = time.time()

    def epochs(k: int) -> int:
        return k if scale >= 1 else max(1, round(k * scale))

    res: dict = {"settings": {"scale": scale, "seeds": list(seeds),
                              "optimizer": "Adam, one CPU thread"}, "figures": {}}
    steps = [("two_heads", lambda: _two_heads(tools, scale, epochs(30), seeds)),
             ("parts", lambda: _parts(tools, scale, epochs(40), seeds)),
             ("volumes", lambda: _volumes(tools, scale, epochs(16), seeds)),
             ("dissection", lambda: _dissection(tools, scale, epochs(20), seeds)),
             ("faces", lambda: _faces(tools, scale, epochs(30), seeds))]
    for name, step in steps:
        got = step()
        if isinstance(got, tuple):
            res[name], res["figures"][name] = got
        else:
            res[name] = got
        res["settings"][f"{name}_seconds"] = round(time.time() - start, 1)
        log(f"[{time.time() - start:6.1f} s] {name} done")
    return res


# ------------------------------------------------------------------------------ reporting

def _ms(values, digits: int = 3) -> str:
    """'mean ± standard deviation' over seeds (sample sd; a single value alone)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return f"{v.mean():.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _pct(values) -> str:
    v = 100 * np.asarray(values, dtype=float)
    return f"{v.mean():.1f} %" if len(v) < 2 else f"{v.mean():.1f} ± {v.std(ddof=1):.1f} %"


def format_results(res: dict) -> str:
    """The five experiments as markdown tables (mean ± sd over the seeds)."""
    lines = ["| two heads: training | pixel mIoU | water/crop pixels right | scene accuracy |",
             "|---|---:|---:|---:|"]
    for name, runs in res["two_heads"].items():
        pix = ("—" if name == "scene only" else _ms([r["mean_iou"] for r in runs]))
        stripes = ("—" if name == "scene only"
                   else _pct([r["stripe_accuracy"] for r in runs]))
        scene = ("—" if name.endswith("pixels only")
                 else _pct([r["scene_accuracy"] for r in runs]))
        lines.append(f"| {name} | {pix} | {stripes} | {scene} |")
    parts = res["parts"]
    lines += ["", "| parts: network | parameters | object mIoU | part mIoU | consistency "
              "| lamp/eye pixels right |", "|---|---:|---:|---:|---:|---:|"]
    for name in ("local patch", "context"):
        runs = parts[name]
        lines.append(f"| {name} | {parts['parameters'][name]:,} | "
                     f"{_ms([r['object_miou'] for r in runs])} | "
                     f"{_ms([r['part_miou'] for r in runs])} | "
                     f"{_pct([r['consistency'] for r in runs])} | "
                     f"{_pct([r['spot_accuracy'] for r in runs])} |")
    vol = res["volumes"]
    lines += ["", "| volumes: model | parameters | mean Dice per volume | lesions found "
              "| false-positive voxels per volume | voxel accuracy |",
              "|---|---:|---:|---:|---:|---:|"]
    neg = vol["all_negative"]
    lines.append(f"| all negative | 0 | {np.mean(neg['dice']):.3f} | 0 % | 0 | "
                 f"{100 * neg['voxel_accuracy']:.2f} % |")
    for name, n_par in vol["parameters"].items():
        runs = vol[name]
        lines.append(f"| {name} | {n_par:,} | {_ms([np.mean(r['dice']) for r in runs])} | "
                     f"{_pct([r['detected'] / r['lesions'] for r in runs])} | "
                     f"{_ms([r['false_positive_voxels'] for r in runs], 0)} | "
                     f"{_ms([100 * r['voxel_accuracy'] for r in runs], 2)} % |")
    dis = res["dissection"]
    concepts = dis["concepts"]
    lines += ["", f"| dissection: network | detectors (IoU > {dis['iou_threshold']}) of "
              f"{dis['trained'][0]['units']} units | mean best IoU | detectors per concept "
              "(all seeds) | shape presence accuracy |", "|---|---:|---:|---|---:|"]
    for name in ("trained", "random init"):
        runs = dis[name]
        per = np.sum([r["per_concept"] for r in runs], 0)
        per_text = ", ".join(f"{c} {int(k)}" for c, k in zip(concepts, per, strict=True))
        lines.append(f"| {name} | {_ms([r['detectors'] for r in runs], 1)} | "
                     f"{_ms([r['mean_best_iou'] for r in runs])} | {per_text} | "
                     f"{_pct([r['shape_accuracy'] for r in runs])} |")
    faces = res["faces"]
    lines += ["", "| faces: layer | parameters of the layer | aligned: test accuracy "
              "| misaligned (±4 px): test accuracy |", "|---|---:|---:|---:|"]
    for name in ("convolution", "locally connected"):
        lines.append(f"| {name} | {faces['parameters'][name]:,} | "
                     f"{_pct(faces['aligned'][name])} | {_pct(faces['misaligned'][name])} |")
    return "\n".join(lines)


def show_rows(rows: list[list[np.ndarray]], row_titles: list[str], col_titles=None,
              kinds=None, size: float = 1.6):
    """A grid of small images: rows[r][c]; kinds[r] 'image' (grey), 'labels' (0 black, then
    blue, orange, green, red, ...) or 'heat'. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    labels = ListedColormap(["black"] + list(plt.get_cmap("tab10").colors[:9]))
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols + 1.2, size * n_rows),
                             squeeze=False)
    for r, row in enumerate(rows):
        kind = (kinds or ["image"] * n_rows)[r]
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            if kind == "labels":
                ax.imshow(row[c], cmap=labels, vmin=-0.5, vmax=9.5, interpolation="nearest")
            elif kind == "heat":
                ax.imshow(row[c], cmap="magma", vmin=0, vmax=1)
            else:
                ax.imshow(row[c], cmap="gray", vmin=0, vmax=1)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=8)
            if col_titles and r == 0:
                ax.set_title(col_titles[c], fontsize=8)
    fig.tight_layout()
    return fig


def plot_figures(res: dict, which: str):
    """The cached figure ``which`` ('parts', 'volumes' or 'dissection') of a results dict."""
    fig_data = res["figures"][which]
    if which == "parts":
        rows = [[unpack(a, True) for a in fig_data["x"]],
                [unpack(a) for a in fig_data["parts"]],
                [unpack(a) for a in fig_data["local patch"]],
                [unpack(a) for a in fig_data["context"]]]
        return show_rows(rows, ["image", "true parts", "local patch", "context"],
                         kinds=["image", "labels", "labels", "labels"])
    if which == "volumes":
        names = [k for k in fig_data if k not in ("slices", "x", "target")]
        rows = [[unpack(a, True) for a in fig_data["x"]], [unpack(a) for a in fig_data["target"]]]
        rows += [[unpack(a) for a in fig_data[k]] for k in names]
        return show_rows(rows, ["slice", "true lesions"] + names,
                         [f"slice {s}" for s in fig_data["slices"]],
                         kinds=["image"] + ["labels"] * (len(rows) - 1), size=1.8)
    rows, titles, kinds = [], [], []
    for unit in fig_data["trained"]:
        rows += [[unpack(a, True) for a in unit["x"]], [unpack(a, True) for a in unit["act"]]]
        titles += [f"unit {unit['unit']}: {unit['concept']}",
                   f"IoU {unit['iou']:.2f}: activation"]
        kinds += ["image", "heat"]
    fig = show_rows(rows, titles, kinds=kinds, size=1.3)
    axes = np.array(fig.axes).reshape(len(rows), -1)
    for r, unit in enumerate(fig_data["trained"]):  # the concept's outline on the activation
        for c, mask in enumerate(unit["mask"]):
            axes[2 * r + 1, c].contour(unpack(mask), levels=[0.5], colors="cyan",
                                       linewidths=0.8)
    return fig
