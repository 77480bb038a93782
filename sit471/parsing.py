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
results, after :func:`tune` has chosen each experiment's learning rate and epochs on validation
data (GRID); the staff make the notebook's ``results.json`` with the reference answers, from the
repository: ``python -m sit471.reference.experiments parsing`` (1,558 s on a busy machine, the
validation grid 724 s of it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sit471 import label_number
from sit471.transfer import mean_ci

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


# Learning rate and epochs of every experiment, chosen on validation data (:func:`tune`): a
# fresh draw of each generator (its own seed, VALIDATION_SEEDS), never the test sets. Seed 0
# only; every setting of an experiment shares its (lr, epochs), picked by the mean of the
# experiment's validation score (TUNE_SCORE) over its settings. The grid is small: two learning
# rates, and the score read after half and after all of the epochs in one training run.
GRID = {"two_heads": ((2e-3, 5e-3), (15, 30)), "parts": ((2e-3, 5e-3), (20, 40)),
        "volumes": ((3e-3, 1e-2), (8, 16)), "dissection": ((2e-3, 5e-3), (10, 20)),
        "faces": ((2e-3, 5e-3), (15, 30))}
# the settings used before they were chosen on validation data (set on trial runs)
BEFORE = {"two_heads": (2e-3, 30), "parts": (5e-3, 40), "volumes": (1e-2, 16),
          "dissection": (2e-3, 20), "faces": (2e-3, 30)}
TEST_SEEDS = {"two_heads": 12, "parts": 22, "volumes": 32, "dissection": 42, "faces": 52}
VALIDATION_SEEDS = {"two_heads": 13, "parts": 23, "volumes": 33, "dissection": 43, "faces": 53}


def _train(model: nn.Module, batch_loss: Callable, n: int, epochs: int, lr: float, seed: int,
           score: Callable[[nn.Module], dict], at: tuple[int, ...], batch_size: int = 64
           ) -> dict[int, dict]:
    """The course's small loop (:func:`sit471.trainer.fit_indices`, one thread) with the
    evaluation ``score(model)`` after each epoch in ``at`` (1-based): {epoch: score}."""
    from sit471.trainer import fit_indices

    scores: dict[int, dict] = {}

    def after(epoch: int, _losses: list[float]) -> None:
        if epoch + 1 in at:
            scores[epoch + 1] = score(model)
            model.train()

    fit_indices(model, batch_loss, n, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                on_epoch=after)
    return scores


def _record(out: list, scores: dict[int, dict], at: tuple[int, ...]) -> None:
    """One run: its scores after the last epoch, and after each epoch of ``at`` when several."""
    run = dict(scores[max(at)])
    if len(at) > 1:
        run["by_epoch"] = {str(e): scores[e] for e in at}
    out.append(run)


def _two_heads(tools: dict, scale: float, epochs: int, seeds, lr: float = 2e-3,
               eval_seed: int = TEST_SEEDS["two_heads"], at: tuple[int, ...] = ()) -> dict:
    from sit471.dense import parsing_scenes

    at = at or (epochs,)
    train = parsing_scenes(_size(800, scale), seed=11)
    test = parsing_scenes(_size(300, scale), seed=eval_seed)
    xt, yt, kt = (torch.as_tensor(train[k]) for k in ("x", "labels", "kind"))
    configs = {"local, pixels only": (False, 0.0), "pixels only": (True, 0.0)}
    configs.update({f"joint, weight {w:g}": (True, w) for w in SCENE_WEIGHTS})
    configs["scene only"] = (True, "scene")
    out: dict = {name: [] for name in configs}

    def score(model: nn.Module) -> dict:
        pix, scene = predict(model, test["x"])
        pred = pix.argmax(1).numpy()
        stripes = np.isin(test["labels"], (1, 2))
        return {"mean_iou": tools["mean_iou"](pred, test["labels"], 4),
                "stripe_accuracy": float((pred == test["labels"])[stripes].mean()),
                "scene_accuracy": float((scene.argmax(1).numpy() == test["kind"]).mean())}

    for name, (context, weight) in configs.items():
        for seed in seeds:
            torch.manual_seed(seed)
            model = TwoHeads(context=context)

            def batch_loss(m, i, weight=weight):
                pix, scene = m(xt[i])
                if weight == "scene":
                    return F.cross_entropy(scene, kt[i])
                return tools["joint_loss"](pix, yt[i], scene, kt[i], weight)

            _record(out[name], _train(model, batch_loss, len(xt), epochs, lr, seed, score, at),
                    at)
    return out


def _parts(tools: dict, scale: float, epochs: int, seeds, lr: float = 5e-3,
           eval_seed: int = TEST_SEEDS["parts"], at: tuple[int, ...] = ()) -> tuple[dict, dict]:
    at = at or (epochs,)
    train = part_scenes(_size(600, scale), seed=21)
    test = part_scenes(_size(300, scale), seed=eval_seed)
    xt, pt, ot = (torch.as_tensor(train[k]) for k in ("x", "parts", "objects"))
    out: dict = {}
    shown = {"x": [pack(x[0]) for x in test["x"][:4]],
             "parts": [pack(p) for p in test["parts"][:4]]}

    def score(model: nn.Module) -> dict:
        parts, objects = (t.argmax(1).numpy() for t in predict(model, test["x"]))
        spots = np.isin(test["parts"], (2, 4))
        return {"object_miou": tools["mean_iou"](objects, test["objects"], len(OBJECTS)),
                "part_miou": tools["mean_iou"](parts, test["parts"], len(PARTS)),
                "consistency": tools["part_consistency"](parts, objects, PART_TO_OBJECT),
                "spot_accuracy": float((parts == test["parts"])[spots].mean())}

    for name, context in (("local patch", False), ("context", True)):
        out[name] = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = PartNet(context=context)

            def batch_loss(m, i):
                parts, objects = m(xt[i])
                return F.cross_entropy(parts, pt[i]) + F.cross_entropy(objects, ot[i])

            _record(out[name], _train(model, batch_loss, len(xt), epochs, lr, seed, score, at),
                    at)
            if seed == seeds[0]:
                shown[name] = [pack(p) for p in predict(model, test["x"][:4])[0].argmax(1).numpy()]
        out["parameters"] = out.get("parameters", {})
        out["parameters"][name] = n_parameters(PartNet(context=context))
    return out, shown


def _volumes(tools: dict, scale: float, epochs: int, seeds, lr: float = 1e-2,
             eval_seed: int = TEST_SEEDS["volumes"], at: tuple[int, ...] = ()
             ) -> tuple[dict, dict]:
    from sit471 import volumes as vol

    at = at or (epochs,)
    train = vol.brain_volumes(_size(48, scale), seed=31)
    test = vol.brain_volumes(_size(16, scale), seed=eval_seed)
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
    xt = torch.as_tensor(train["x"])
    tt = torch.as_tensor(train["target"][:, None]).float()

    def score(model: nn.Module) -> dict:
        pred = vol.predict_volumes(model, test["x"]) > 0.5
        found, total = tools["lesion_detection_rate"](pred, lesions)
        return {"dice": [float(d) for d in tools["dice"](pred, truth)],
                "detected": int(found), "lesions": int(total),
                "false_positive_voxels": int((pred & ~truth).sum() / len(pred)),
                "voxel_accuracy": float((pred == truth).mean())}

    for name, (make, loss) in configs.items():
        out[name] = []
        out["parameters"][name] = vol.n_parameters(make())
        for seed in seeds:
            torch.manual_seed(seed)
            model = make()
            _record(out[name], _train(model, lambda m, i, loss=loss: loss(m(xt[i]), tt[i]),
                                      len(xt), epochs, lr, seed, score, at, batch_size=4), at)
            if seed == seeds[0]:
                pred = vol.predict_volumes(model, test["x"][:1]) > 0.5
                shown[name] = [pack(pred[v, s]) for s in slices]
    return out, shown


def _dissection(tools: dict, scale: float, epochs: int, seeds, lr: float = 2e-3,
                eval_seed: int = TEST_SEEDS["dissection"], at: tuple[int, ...] = (),
                iou_threshold: float = 0.04, top: float = 0.005) -> tuple[dict, dict]:
    from sit471 import units

    at = at or (epochs,)
    train = units.concept_scenes(_size(1000, scale), seed=41)
    test = units.concept_scenes(_size(300, scale), seed=eval_seed)
    xt, yt = torch.as_tensor(train["x"]), torch.as_tensor(train["present"])
    out: dict = {"concepts": list(units.CONCEPTS), "iou_threshold": iou_threshold, "top": top}
    shown: dict = {}

    def score(model: nn.Module) -> dict:
        with torch.no_grad():
            model.eval()
            acts = model.features(torch.as_tensor(test["x"]))
            logits = model(torch.as_tensor(test["x"]))
        iou = np.asarray(tools["dissect"](acts, torch.as_tensor(test["masks"]), top))
        best, concept = iou.max(1), iou.argmax(1)
        detectors = best > iou_threshold
        return {"detectors": int(detectors.sum()), "units": int(len(best)),
                "mean_best_iou": float(best.mean()),
                "per_concept": [int((detectors & (concept == c)).sum())
                                for c in range(len(units.CONCEPTS))],
                "shape_accuracy": float(((logits > 0).numpy() == (test["present"] > 0.5)).mean()),
                "_acts": acts, "_best": best, "_concept": concept}

    for name in ("trained", "random init"):
        out[name] = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = units.ShapeClassifier()
            if name == "trained":
                scores = _train(model, lambda m, i: F.binary_cross_entropy_with_logits(
                    m(xt[i]), yt[i]), len(xt), epochs, lr, seed, score, at)
            else:
                scores = {e: score(model) for e in at}
            final = scores[max(at)]
            acts, best, concept = final["_acts"], final["_best"], final["_concept"]
            for run in scores.values():
                for key in ("_acts", "_best", "_concept"):
                    run.pop(key)
            _record(out[name], scores, at)
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


def _faces(tools: dict, scale: float, epochs: int, seeds, lr: float = 2e-3,
           eval_seed: int = TEST_SEEDS["faces"], at: tuple[int, ...] = (),
           identities: int = 60) -> dict:
    from sit471 import units

    at = at or (epochs,)
    out: dict = {"parameters": {
        "convolution": n_parameters(units.FaceNet(identities).layer),
        "locally connected": n_parameters(units.FaceNet(identities,
                                                        tools["locally_connected"]).layer)}}
    per_train, per_test = (5, 8) if scale >= 1 else (2, 2)
    for setting, shift in (("aligned", 0), ("misaligned", 4)):
        train = units.face_sets(identities, per_train, seed=51, shift=shift)
        test = units.face_sets(identities, per_test, seed=eval_seed, shift=shift)
        xt, yt = torch.as_tensor(train["x"]), torch.as_tensor(train["identity"])
        out[setting] = {}

        def score(model: nn.Module, test=test) -> dict:
            pred = predict(model, test["x"]).argmax(1).numpy()
            return {"accuracy": float((pred == test["identity"]).mean())}

        for name, lc in (("convolution", None), ("locally connected", tools["locally_connected"])):
            out[setting][name] = []
            for seed in seeds:
                torch.manual_seed(seed)
                model = units.FaceNet(identities, lc)
                scores = _train(model, lambda m, i, xt=xt, yt=yt: F.cross_entropy(m(xt[i]), yt[i]),
                                len(xt), epochs, lr, seed, score, at, batch_size=32)
                if len(at) > 1:
                    out[setting][name].append({str(e): scores[e]["accuracy"] for e in at})
                else:
                    out[setting][name].append(scores[max(at)]["accuracy"])
    return out


EXPERIMENTS = {"two_heads": _two_heads, "parts": _parts, "volumes": _volumes,
               "dissection": _dissection, "faces": _faces}


def _mean(values) -> float:
    return float(np.mean(values))


def _at(run, e: str):
    """A run's scores after e epochs (a run scored at one epoch count holds only those)."""
    if isinstance(run, dict) and "by_epoch" in run:
        return run["by_epoch"][e]
    return run[e] if isinstance(run, dict) and e in run else run


# the validation score of each experiment, from its runs at one epoch count (higher is better)
TUNE_SCORE = {
    "two_heads": lambda r, e: _mean([_at(run, e)["mean_iou"] for name, runs in r.items()
                                     if name != "scene only" for run in runs]),
    "parts": lambda r, e: _mean([_at(run, e)["part_miou"] for name in
                                 ("local patch", "context") for run in r[name]]),
    "volumes": lambda r, e: _mean([np.mean(_at(run, e)["dice"]) for name in
                                   ("3-D, soft Dice", "2-D slice-wise, soft Dice")
                                   for run in r[name]]),
    "dissection": lambda r, e: _mean([_at(run, e)["shape_accuracy"] for run in r["trained"]]),
    "faces": lambda r, e: _mean([_at(run, e) for setting in ("aligned", "misaligned")
                                 for runs in r[setting].values() for run in runs]),
}
TUNE_SCORE_NAMES = {"two_heads": "mean pixel mIoU of the five settings with a pixel head",
                    "parts": "mean part mIoU of the two networks",
                    "volumes": "mean Dice of the two soft-Dice networks",
                    "dissection": "shape presence accuracy of the trained classifier",
                    "faces": "mean identity accuracy of both layers, aligned and misaligned"}


@_threads
def tune(tools: dict[str, Callable], log: Callable[[str], None] = print, scale: float = 1.0,
         grid: dict | None = None, seed: int = 0) -> dict:
    """Choose each experiment's (learning rate, epochs) on validation data: every setting of
    the experiment trained with seed ``seed`` at each learning rate of ``grid`` (default GRID),
    scored (TUNE_SCORE) on a fresh validation draw after each epoch count of the grid. Returns
    {experiment: {"scores": {"lr/epochs": score}, "chosen": [lr, epochs]}} (JSON-able)."""
    import time

    grid = GRID if grid is None else grid
    out: dict = {}
    for name, (rates, counts) in grid.items():
        start = time.time()
        counts = tuple(sorted({c if scale >= 1 else max(1, round(c * scale)) for c in counts}))
        scores = {}
        for lr in rates:
            got = EXPERIMENTS[name](tools, scale, max(counts), (seed,), lr=lr,
                                    eval_seed=VALIDATION_SEEDS[name], at=counts)
            runs = got[0] if isinstance(got, tuple) else got
            for e in counts:
                scores[f"{lr:g}/{e}"] = TUNE_SCORE[name](runs, str(e))
        best = max(scores, key=scores.get)
        lr, e = best.split("/")
        out[name] = {"scores": scores, "chosen": [float(lr), int(e)],
                     "criterion": TUNE_SCORE_NAMES[name],
                     "seconds": round(time.time() - start, 1)}
        log(f"tune {name}: {scores} -> {best} ({out[name]['seconds']:.0f} s)")
    return out


@_threads
def run_experiments(tools: dict[str, Callable], log: Callable[[str], None] = print,
                    scale: float = 1.0, seeds=SEEDS, chosen: dict | None = None,
                    tuning: dict | None = None) -> dict:
    """Train every model of the notebook with the given functions; measure on test data.

    tools: joint_loss, mean_iou, part_consistency, dice, soft_dice_loss, slicewise,
    lesion_detection_rate, dissect, locally_connected (the notebook's answers; nothing else
    is imported, so it runs in a student install). First :func:`tune` chooses each
    experiment's learning rate and epochs on validation data (unless ``chosen`` gives them,
    {experiment: (lr, epochs)}, with the ``tuning`` record they came from); then each setting is
    trained once per seed in ``seeds`` with them and measured on the test data. scale < 1
    shrinks the data and the epochs (quick tests). JSON-able dict.
    """
    import time

    start = time.time()
    if chosen is None:
        tuning = tune(tools, log=log, scale=scale)
        chosen = {name: tuple(t["chosen"]) for name, t in tuning.items()}
    res: dict = {"settings": {"scale": scale, "seeds": list(seeds),
                              "optimizer": "Adam, one CPU thread",
                              "chosen": {k: list(v) for k, v in chosen.items()}},
                 "tuning": tuning, "figures": {}}
    for name, run in EXPERIMENTS.items():
        lr, epochs = chosen[name]
        if scale < 1:
            epochs = max(1, round(epochs * scale))
        got = run(tools, scale, int(epochs), seeds, lr=float(lr))
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


TITLES = {"two_heads": "two heads", "parts": "parts", "volumes": "volumes",
          "dissection": "dissection", "faces": "faces"}


def format_tuning(tuning: dict) -> list[str]:
    """The validation choice of each experiment's learning rate and epochs, as a table."""
    lines = ["| validation (seed 0): experiment | score | learning rate: score after each "
             "number of epochs | chosen |", "|---|---|---|---|"]
    for name, t in tuning.items():
        by_lr: dict[str, list[str]] = {}
        for key, value in t["scores"].items():
            lr, e = key.split("/")
            by_lr.setdefault(lr, []).append(f"{e} epochs {value:.3f}")
        grid = "; ".join(f"{lr}: " + ", ".join(v) for lr, v in by_lr.items())
        lr, e = t["chosen"]
        lines.append(f"| {TITLES[name]} | {t['criterion']} | {grid} | {lr:g}, {e} epochs |")
    return lines


#: The differences the findings claim, each paired by seed: (experiment, first setting,
#: second setting, what is measured, how to read it from one run).
DIFFERENCES = [
    ("two heads", "joint, weight 1", "pixels only", "pixel mIoU", lambda r: r["mean_iou"]),
    ("two heads", "joint, weight 1", "pixels only", "water/crop pixels right",
     lambda r: r["stripe_accuracy"]),
    ("two heads", "pixels only", "local, pixels only", "pixel mIoU", lambda r: r["mean_iou"]),
    ("parts", "context", "local patch", "part mIoU", lambda r: r["part_miou"]),
    ("parts", "context", "local patch", "consistency", lambda r: r["consistency"]),
    ("volumes", "3-D, soft Dice", "2-D slice-wise, soft Dice", "mean Dice per volume",
     lambda r: float(np.mean(r["dice"]))),
    ("volumes", "3-D, soft Dice", "3-D, cross-entropy", "mean Dice per volume",
     lambda r: float(np.mean(r["dice"]))),
    ("dissection", "trained", "random init", "detectors", lambda r: r["detectors"]),
]


def paired_differences(res: dict) -> list[tuple[str, str, float, float, int, int]]:
    """Each claimed difference (:data:`DIFFERENCES`, then the faces' locally connected layer
    against the convolution, aligned and misaligned), paired by seed: (experiment, what,
    mean difference, half-width of its 95 % t-interval over the seeds, seeds where the first
    is ahead, seeds)."""
    rows = []
    for experiment, first, second, measure, value in DIFFERENCES:
        runs = res[experiment.replace(" ", "_")]
        d = [value(a) - value(b) for a, b in zip(runs[first], runs[second], strict=True)]
        rows.append((experiment, f"{first} − {second}: {measure}", *mean_ci(d),
                     sum(x > 0 for x in d), len(d)))
    for setting in ("aligned", "misaligned"):
        acc = res["faces"][setting]
        d = [a - b for a, b in zip(acc["locally connected"], acc["convolution"], strict=True)]
        rows.append(("faces", f"locally connected − convolution: {setting} test accuracy",
                     *mean_ci(d), sum(x > 0 for x in d), len(d)))
    return rows


def format_differences(res: dict) -> list[str]:
    """:func:`paired_differences` as a markdown table."""
    lines = ["| experiment | difference (paired by seed) | mean ± 95 % interval | first ahead |",
             "|---|---|---:|---:|"]
    for experiment, what, mean, half, ahead, n in paired_differences(res):
        lines.append(f"| {experiment} | {what} | {mean:+.3f} ± {half:.3f} | {ahead} of {n} |")
    return lines


def format_results(res: dict) -> str:
    """The validation choice of the settings, then the five experiments as markdown tables
    (mean ± sd over the seeds, on test data), then the claimed differences paired by seed
    with their 95 % intervals."""
    lines = format_tuning(res["tuning"]) + [""] if res.get("tuning") else []
    lines += ["| two heads: training | pixel mIoU | water/crop pixels right | scene accuracy |",
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
    return "\n".join([*lines, "", *format_differences(res)])


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
