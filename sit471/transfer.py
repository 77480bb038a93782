"""Transfer learning on the digits (assignment 04): the source network, the tasks, a tiny loop.

The *source* task is to tell apart the handwritten digits 0-4; the *target* tasks are the
digits 5-9, with few training examples per class, either as they are (a target *similar* to
the source) or inverted, white strokes becoming black on white (a strongly *shifted* target).
All images come from :func:`sit471.data.digits` (8x8, scikit-learn's bundled set): nothing
downloads.

    model = load_source_cnn()               # the pretrained network shipped with the course
    data = target_data(per_class=20, shift="invert", seed=0)
    losses = train(model, optimizer, data["x_train"], data["y_train"], steps=200)
    accuracy(model, data["x_test"], data["y_test"])

The network (:func:`small_cnn`) is a sequence of two named blocks, so its layers have dotted
names: ``features.conv1`` ... ``features.pool2`` (three 3x3 convolutions with ReLU, two 2x2
max-pools: 8x8 -> 4x4 -> 2x2) and ``classifier.flatten``, ``classifier.fc1`` (128 -> 64),
``classifier.relu``, ``classifier.head`` (64 -> classes).

Command line (staff): ``python -m sit471.transfer sweep [--seeds 5] [--out FILE]`` runs the
experiment of the notebook and writes its results as JSON; the source network itself is made
by ``benchmarks/make_source_cnn.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sit471.data import digits

#: The shipped weights of the source network, and their recipe.
WEIGHTS = Path(__file__).resolve().parent / "weights" / "source_cnn.pt"
RECIPE = WEIGHTS.with_suffix(".md")

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
SHIFTS = ("none", "invert")

#: The source network's training recipe (also written into RECIPE).
SOURCE_LR = 0.05
MOMENTUM = 0.9
SPLIT_SEED = 0  # the seed of the digits' train / validation / test split


def small_cnn(num_classes: int = 5, in_channels: int = 1) -> nn.Sequential:
    """The course's small CNN for 8x8 images: x (N, in_channels, 8, 8) -> scores (N, classes).

    ``features`` (conv 3x3 -> 16, ReLU, conv 3x3 -> 32, ReLU, max-pool 2, conv 3x3 -> 32, ReLU,
    max-pool 2; padding 1 keeps the size before each pool) then ``classifier`` (flatten 32x2x2 =
    128, fc1 128 -> 64, ReLU, head 64 -> num_classes). 22,629 parameters for 5 classes.
    Initialised with torch's defaults: seed torch first for a reproducible network.
    """
    features = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(in_channels, 16, 3, padding=1), relu1=nn.ReLU(),
        conv2=nn.Conv2d(16, 32, 3, padding=1), relu2=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv3=nn.Conv2d(32, 32, 3, padding=1), relu3=nn.ReLU(), pool2=nn.MaxPool2d(2)))
    classifier = nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(128, 64), relu=nn.ReLU(),
        head=nn.Linear(64, num_classes)))
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))


def load_source_cnn(path: str | Path | None = None) -> nn.Sequential:
    """The pretrained source network (digits 0-4), loaded from the shipped weights file.

    Loaded with ``weights_only=True`` (plain tensors only: a weights file cannot run code).
    Returns a fresh model in training mode; every call gives an independent copy.
    """
    state = torch.load(WEIGHTS if path is None else path, map_location="cpu", weights_only=True)
    model = small_cnn(num_classes=state["classifier.head.weight"].shape[0])
    model.load_state_dict(state)
    return model


def _pick(x: np.ndarray, y: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``classes``, relabelled 0, 1, ... in the order of ``classes``."""
    keep = np.isin(y, classes)
    relabel = {c: k for k, c in enumerate(classes)}
    return x[keep], np.array([relabel[int(c)] for c in y[keep]], dtype=np.int64)


def shift_images(x: np.ndarray, shift: str) -> np.ndarray:
    """``"none"``: x unchanged; ``"invert"``: 1 - x (dark strokes on a white background)."""
    if shift == "none":
        return x
    if shift == "invert":
        return 1.0 - x
    raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}")


def source_data() -> dict[str, np.ndarray]:
    """The source task: digits 0-4, labels 0-4, all of their training images.

    Keys as in :func:`sit471.data.digits`: ``x_train (N, 1, 8, 8)`` float32 in [0, 1],
    ``y_train (N,)`` int64, and ``x_val, y_val, x_test, y_test``.
    """
    raw = digits(SPLIT_SEED)
    out = {}
    for part in ("train", "val", "test"):
        x, y = _pick(raw[f"x_{part}"], raw[f"y_{part}"], SOURCE_CLASSES)
        out[f"x_{part}"], out[f"y_{part}"] = x.astype(np.float32), y
    return out


def target_data(per_class: int | None = None, shift: str = "none",
                seed: int = 0) -> dict[str, np.ndarray]:
    """The target task: digits 5-9 (labels 0-4 stand for 5-9), optionally shifted.

    per_class  training images per class (a seeded random choice among the digit's training
               images); None for all of them (about 125 per class)
    shift      ``"none"`` (similar to the source) or ``"invert"`` (strongly shifted)
    The validation and test sets are always complete (and shifted the same way).
    """
    raw = digits(SPLIT_SEED)
    out = {}
    for part in ("train", "val", "test"):
        x, y = _pick(raw[f"x_{part}"], raw[f"y_{part}"], TARGET_CLASSES)
        out[f"x_{part}"], out[f"y_{part}"] = shift_images(x, shift).astype(np.float32), y
    if per_class is not None:
        rng = np.random.default_rng(seed)
        counts = np.bincount(out["y_train"])
        if per_class < 1 or per_class > counts.min():
            raise ValueError(f"per_class must be between 1 and {counts.min()}, got {per_class}")
        idx = np.concatenate([rng.choice(np.flatnonzero(out["y_train"] == c), per_class,
                                         replace=False) for c in range(len(TARGET_CLASSES))])
        idx = rng.permutation(idx)
        out["x_train"], out["y_train"] = out["x_train"][idx], out["y_train"][idx]
    return out


def train(model: nn.Module, optimizer: torch.optim.Optimizer, x: np.ndarray, y: np.ndarray,
          steps: int = 200, batch_size: int = 32, seed: int = 0) -> list[float]:
    """``steps`` mini-batch steps of ``optimizer`` on the cross-entropy of ``model``; returns
    the loss of every step.

    x (N, C, H, W), y (N,) class labels. Each epoch visits the examples in a new seeded random
    order; a batch never holds more than N examples. The model is left in training mode.
    Only ``optimizer`` changes the weights, so what it was given (its parameter groups and
    their learning rates) decides what is trained and how fast. Runs on one CPU thread (for a
    network this small, several threads cost more in coordination than they save).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, optimizer, x, y, steps, batch_size, seed)
    finally:
        torch.set_num_threads(threads)


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, x: np.ndarray, y: np.ndarray,
           steps: int, batch_size: int, seed: int) -> list[float]:
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, len(xt))
    model.train()
    losses: list[float] = []
    order = torch.randperm(len(xt), generator=gen)
    start = 0
    for _ in range(steps):
        if start + batch_size > len(xt):
            order, start = torch.randperm(len(xt), generator=gen), 0
        idx = order[start:start + batch_size]
        start += batch_size
        loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Share of the images x (N, C, H, W) that ``model`` classifies as y (N,), in eval mode."""
    was_training = model.training
    model.eval()
    try:
        scores = model(torch.as_tensor(np.asarray(x), dtype=torch.float32))
    finally:
        model.train(was_training)
    return float((scores.argmax(dim=1).numpy() == np.asarray(y)).mean())


@torch.no_grad()
def first_layer_maps(model: nn.Module, image: np.ndarray) -> np.ndarray:
    """The feature maps of the first convolution plus ReLU for one image (C, H, W):
    (filters, H, W)."""
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    x = torch.as_tensor(np.asarray(image), dtype=torch.float32)[None]
    return torch.relu(first(x))[0].numpy()


# ----------------------------------------------------------------------------- the experiment

METHODS = ("scratch", "approach 1", "approach 2")
SIZES = (5, 20, 50, None)  # training images per target class; None = all
STEPS = 300
BATCH = 32


def run_method(method: str, data: dict[str, np.ndarray], seed: int,
               steps: int = STEPS, tools: dict[str, Callable] | None = None) -> float:
    """Train one network on ``data``'s training set by ``method``; return its test accuracy.

    scratch     a freshly initialised small_cnn, every layer at SOURCE_LR
    approach 1  the source network frozen, a new head, trained at 10x / 20x of SOURCE_LR / 10
    approach 2  the source network with a new head, everything trained: pretrained layers at
                SOURCE_LR / 10, the head at 10x (weights) and 20x (biases) of that
    All use SGD with momentum 0.9 for ``steps`` steps of batches of 32. ``tools`` holds the
    functions ``freeze``, ``replace_head`` and ``finetune_param_groups`` to use (a notebook
    passes its own); by default the reference answers (staff installs only).
    """
    if tools is None:
        from sit471.reference import transfer as tools_module

        tools = vars(tools_module)
    freeze, replace_head = tools["freeze"], tools["replace_head"]
    finetune_param_groups = tools["finetune_param_groups"]

    torch.manual_seed(seed)
    base_lr = SOURCE_LR / 10
    if method == "scratch":
        model = small_cnn(len(TARGET_CLASSES))
        groups: list[dict] = [{"params": list(model.parameters()), "lr": SOURCE_LR}]
    elif method in ("approach 1", "approach 2"):
        model = load_source_cnn()
        if method == "approach 1":
            freeze(model)
        head = nn.Linear(model.classifier.head.in_features, len(TARGET_CLASSES))
        replace_head(model, "classifier.head", head)
        groups = finetune_param_groups(model, [head], base_lr)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    optimizer = torch.optim.SGD(groups, lr=base_lr, momentum=MOMENTUM)
    train(model, optimizer, data["x_train"], data["y_train"], steps, BATCH, seed)
    return accuracy(model, data["x_test"], data["y_test"])


def sweep(seeds: int = 5, sizes: Sequence[int | None] = SIZES,
          log: Callable[[str], None] = print, tools: dict[str, Callable] | None = None) -> dict:
    """Every method on every target size and shift, ``seeds`` times; returns the results as
    {"settings": ..., "runs": [{"shift", "per_class", "method", "seed", "accuracy"}, ...]}."""
    runs = []
    start = time.perf_counter()
    for shift in SHIFTS:
        for per_class in sizes:
            for seed in range(seeds):
                data = target_data(per_class, shift, seed)
                for method in METHODS:
                    acc = run_method(method, data, seed, tools=tools)
                    runs.append({"shift": shift, "per_class": per_class, "method": method,
                                 "seed": seed, "accuracy": acc})
            seconds = time.perf_counter() - start
            log(f"{shift:6s} {per_class!s:>4s} per class done ({seconds:.0f} s)")
    settings = {"steps": STEPS, "batch": BATCH, "source_lr": SOURCE_LR, "momentum": MOMENTUM,
                "seeds": seeds, "sizes": list(sizes), "torch": torch.__version__}
    return {"settings": settings, "runs": runs}


def summarise(results: dict) -> list[dict]:
    """One row per (shift, per_class, method): mean and std (over seeds) of the accuracy."""
    table: dict[tuple, list[float]] = {}
    for r in results["runs"]:
        table.setdefault((r["shift"], r["per_class"], r["method"]), []).append(r["accuracy"])
    return [{"shift": s, "per_class": n, "method": m, "mean": float(np.mean(a)),
             "std": float(np.std(a, ddof=1)) if len(a) > 1 else 0.0, "n": len(a)}
            for (s, n, m), a in table.items()]


def format_table(results: dict) -> str:
    """The summary as a Markdown table: rows (shift, size), columns methods, mean ± std in %."""
    rows = summarise(results)
    cell = {(r["shift"], r["per_class"], r["method"]): r for r in rows}
    keys = list(dict.fromkeys((r["shift"], r["per_class"]) for r in rows))
    lines = ["| target | images per class | " + " | ".join(METHODS) + " |",
             "|---|---:|" + "---:|" * len(METHODS)]
    for shift, n in keys:
        values = [f"{100 * cell[shift, n, m]['mean']:.1f} ± {100 * cell[shift, n, m]['std']:.1f}"
                  for m in METHODS]
        name = "similar (5-9)" if shift == "none" else "shifted (5-9 inverted)"
        lines.append(f"| {name} | {'all' if n is None else n} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def plot_sweep(results: dict):
    """Test accuracy against training images per class, one panel per target, one line per
    method (mean over seeds, bars: one standard deviation). Returns the figure."""
    import matplotlib.pyplot as plt

    rows = summarise(results)
    full = len(target_data()["y_train"]) // len(TARGET_CLASSES)  # "all" drawn at its average
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, shift in zip(axes, SHIFTS, strict=True):
        for method in METHODS:
            sel = [r for r in rows if r["shift"] == shift and r["method"] == method]
            xs = [full if r["per_class"] is None else r["per_class"] for r in sel]
            ax.errorbar(xs, [100 * r["mean"] for r in sel], [100 * r["std"] for r in sel],
                        marker="o", capsize=3, label=method)
        ax.set_xscale("log")
        ax.set_xlabel(f"training images per class (all = about {full})")
        ax.set_title("similar target: digits 5-9" if shift == "none"
                     else "shifted target: digits 5-9 inverted")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend()
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sit471.transfer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="run the experiment of assignment 04, write JSON")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("course/source/04_transfer/sweep.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = sweep(args.seeds, log=lambda s: print(s, file=sys.stderr))
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(format_table(results))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
