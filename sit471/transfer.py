"""Transfer learning on synthetic glyphs (assignment 04): the source network, the tasks, a loop.

All images are 28x28 gray *glyphs* drawn by seeded code (nothing downloads): each class is a
random shape made of two or three pen strokes (straight strokes with a bend, and arcs), and
each image of a class draws that shape again with a random rotation, size, position, stroke
width, a small wobble of every stroke and pixel noise.

* The **source** task: 64 glyph classes, 250 training images each (16,000), on which the
  shipped source network was trained (``benchmarks/make_source_cnn.py``).
* The **target** task: 10 *other* glyph classes (shapes the source network never saw), with
  few training images per class, drawn either in the same style (``shift="none"``, a target
  *similar* to the source) or in a different one (``shift="checker"``: every pixel of the
  image multiplied by a +/-1 checkerboard around mid-gray, so that a stroke is no longer a
  bright line but a fine pattern whose phase flips with every pixel. Smooth filters average
  it away; it is not something a convolution can undo, but a network that is allowed to
  change its first layers can learn to read it.)

    model = load_source_cnn()               # the pretrained network shipped with the course
    data = target_data(per_class=10, shift="checker", seed=0)
    losses = train(model, optimizer, data["x_train"], data["y_train"], steps=200)
    accuracy(model, data["x_test"], data["y_test"])

The network (:func:`small_cnn`) is a sequence of two named blocks, so its layers have dotted
names: ``features.conv1`` ... ``features.pool3`` (three 3x3 convolutions with ReLU, each
followed by a max-pool: 28 -> 14 -> 7 -> 2x2) and ``classifier.flatten``, ``classifier.fc1``
(128 -> 64), ``classifier.relu``, ``classifier.head`` (64 -> classes).

The experiment (:func:`sweep`) trains three kinds of network on every target size: from
scratch, by approach 1 and by approach 2, where the two approaches are *functions passed in*
(the notebook passes the student's own ``approach1`` / ``approach2``; the staff command line
passes the reference answers). For every run the learning rate is chosen from a small grid
and the number of steps by early stopping, both on the target's validation set; the test set
is only used to report the chosen model.

Command line (staff): ``python -m sit471.transfer sweep [--seeds 10] [--jobs 2] [--out FILE]``
recomputes ``course/source/04_transfer/sweep.json``; ``--quick`` runs the reduced version that
the notebook offers students.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: The shipped weights of the source network, and their recipe.
WEIGHTS = Path(__file__).resolve().parent / "weights" / "source_cnn.pt"
RECIPE = WEIGHTS.with_suffix(".md")

SIZE = 28  # images are SIZE x SIZE, one gray channel
SOURCE_CLASSES = 256
TARGET_CLASSES = 10
SHIFTS = ("none", "checker")

#: Seeds of the glyph shapes (source and target classes are drawn from different seeds, so the
#: target's shapes are new) and of the images of each split.
SOURCE_GLYPH_SEED = 1
TARGET_GLYPH_SEED = 2
SPLIT_SEED = 0
SOURCE_PER_CLASS = {"train": 80, "val": 5, "test": 10}
TARGET_PER_CLASS = {"train": 100, "val": 20, "test": 100}

MOMENTUM = 0.9


# ----------------------------------------------------------------------------- the network


def small_cnn(num_classes: int = 5, in_channels: int = 1) -> nn.Sequential:
    """The course's small CNN: x (N, in_channels, H, W) -> scores (N, num_classes).

    ``features``: conv1 3x3 -> 16, ReLU, pool1 (max 2x2), conv2 3x3 -> 32, ReLU, pool2 (max
    2x2), conv3 3x3 -> 32, ReLU, pool3 (adaptive max-pool to 2x2); padding 1 keeps the size in
    every convolution, so 28x28 -> 14x14 -> 7x7 -> 2x2 (any input of at least 4x4 works).
    ``classifier``: flatten 32x2x2 = 128, fc1 128 -> 64, ReLU, head 64 -> num_classes.
    22,629 parameters for 5 classes (22,954 for 10). Initialised with torch's defaults: seed
    torch first for a reproducible network.
    """
    features = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(in_channels, 16, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(16, 32, 3, padding=1), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        conv3=nn.Conv2d(32, 32, 3, padding=1), relu3=nn.ReLU(), pool3=nn.AdaptiveMaxPool2d(2)))
    classifier = nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(128, 64), relu=nn.ReLU(),
        head=nn.Linear(64, num_classes)))
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))


def load_source_cnn(path: str | Path | None = None) -> nn.Sequential:
    """The pretrained source network (64 glyph classes), loaded from the shipped weights file.

    Loaded with ``weights_only=True`` (plain tensors only: a weights file cannot run code).
    Returns a fresh model in training mode; every call gives an independent copy.
    """
    state = torch.load(WEIGHTS if path is None else path, map_location="cpu", weights_only=True)
    model = small_cnn(num_classes=state["classifier.head.weight"].shape[0])
    model.load_state_dict(state)
    return model


# ----------------------------------------------------------------------------- the glyphs


def glyphs(n: int, seed: int) -> list[np.ndarray]:
    """``n`` random glyph shapes; each is an array (segments, 2, 2) of line segments (start and
    end point, x and y in [-1, 1]) that make up two or three strokes: a straight stroke with one
    bend (two segments) or an arc (four segments)."""
    rng = np.random.default_rng(seed)
    shapes = []
    for _ in range(n):
        segments = []
        for _ in range(int(rng.integers(2, 4))):
            if rng.random() < 0.5:
                points = rng.uniform(-0.8, 0.8, size=(3, 2))
            else:
                centre, radius = rng.uniform(-0.4, 0.4, 2), rng.uniform(0.25, 0.6)
                angles = rng.uniform(0, 2 * np.pi) + np.linspace(0, rng.uniform(1.6, 6.0), 5)
                points = centre + radius * np.stack([np.cos(angles), np.sin(angles)], 1)
            segments += [points[k:k + 2] for k in range(len(points) - 1)]
        shapes.append(np.array(segments, dtype=np.float32))
    return shapes


_GRID = ((np.stack(np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="xy"), -1)
          .reshape(-1, 2).astype(np.float32) + 0.5) / SIZE * 2 - 1)  # pixel centres in [-1, 1]


def render(shapes: Sequence[np.ndarray], labels: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Draw one image of ``shapes[label]`` for every label: (N, 1, SIZE, SIZE) float32 in
    [0, 1], white strokes on black, each with its own random rotation (+/- 29 degrees), scale
    (0.7-1.05), shift (+/- 2.8 pixels), stroke width, wobble of every point, pixel noise and,
    in half of the images, one short stray stroke."""
    labels = np.asarray(labels)
    n, most = len(labels), max(len(s) for s in shapes)
    segs = np.zeros((n, most, 2, 2), np.float32)
    used = np.zeros((n, most), bool)
    for i, c in enumerate(labels):
        segs[i, :len(shapes[c])], used[i, :len(shapes[c])] = shapes[c], True
    angle, scale = rng.uniform(-0.5, 0.5, n), rng.uniform(0.7, 1.05, n)
    rot = np.stack([np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)], 1)
    rot = (rot * scale[:, None]).reshape(n, 1, 1, 2, 2).astype(np.float32)
    segs = (rot @ segs[..., None])[..., 0] + rng.uniform(-0.2, 0.2, (n, 1, 1, 2))
    segs = (segs + rng.normal(0, 0.07, segs.shape)).astype(np.float32)
    # a distractor: one short stray stroke somewhere in half of the images
    stray = rng.uniform(-0.9, 0.9, (n, 1, 1, 2)) + rng.normal(0, 0.3, (n, 1, 2, 2))
    keep = rng.random(n) < 0.5
    segs = np.concatenate([segs, stray.astype(np.float32)], 1)
    used = np.concatenate([used, keep[:, None]], 1)
    width = rng.uniform(0.06, 0.12, (n, 1, 1)).astype(np.float32)
    out = np.empty((n, SIZE * SIZE), np.float32)
    # each pixel's distance to each stroke, x and y apart: (b, S, pixels) arrays, about 4x
    # faster than a trailing axis of 2 (the same numbers)
    gx, gy = _GRID[:, 0], _GRID[:, 1]
    for s in range(0, n, 256):
        a, b = segs[s:s + 256, :, 0, :, None], segs[s:s + 256, :, 1, :, None]  # (b, S, 2, 1)
        (abx, aby), (apx, apy) = (b - a).transpose(2, 0, 1, 3), (gx - a[:, :, 0], gy - a[:, :, 1])
        t = np.clip((apx * abx + apy * aby) / np.maximum(abx * abx + aby * aby, 1e-6), 0, 1)
        dx, dy = apx - t * abx, apy - t * aby
        dist = np.sqrt(dx * dx + dy * dy)  # (b, S, pixels)
        ink = np.clip((width[s:s + 256] - dist) / 0.07 + 0.5, 0, 1) * used[s:s + 256, :, None]
        out[s:s + 256] = ink.max(1)
    out += rng.normal(0, 0.05, out.shape).astype(np.float32)
    return np.clip(out, 0, 1).reshape(n, 1, SIZE, SIZE)


def shift_images(x: np.ndarray, shift: str) -> np.ndarray:
    """``"none"``: x unchanged; ``"checker"``: 0.5 + (x - 0.5) * c with c = +1 / -1 in a
    checkerboard of single pixels (strokes and background swap brightness from one pixel to
    the next, so every stroke becomes a fine pattern)."""
    if shift == "none":
        return x
    if shift == "checker":
        i, j = np.indices(x.shape[-2:])
        sign = np.where((i + j) % 2 == 0, 1.0, -1.0).astype(np.float32)
        return (0.5 + (x - 0.5) * sign).astype(np.float32)
    raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}")


def _make(shapes: list[np.ndarray], per_class: dict[str, int], seed: int
          ) -> dict[str, np.ndarray]:
    out = {}
    for k, part in enumerate(("train", "val", "test")):
        rng = np.random.default_rng([seed, k])
        labels = rng.permutation(np.repeat(np.arange(len(shapes)), per_class[part]))
        out[f"x_{part}"], out[f"y_{part}"] = render(shapes, labels, rng), labels.astype(np.int64)
    return out


@lru_cache(maxsize=3)
def _source(part: str) -> tuple[np.ndarray, np.ndarray]:
    k = ("train", "val", "test").index(part)
    rng = np.random.default_rng([SPLIT_SEED, k])
    shapes = glyphs(SOURCE_CLASSES, SOURCE_GLYPH_SEED)
    labels = rng.permutation(np.repeat(np.arange(len(shapes)), SOURCE_PER_CLASS[part]))
    return render(shapes, labels, rng), labels.astype(np.int64)


@lru_cache(maxsize=1)
def _target() -> dict[str, np.ndarray]:
    return _make(glyphs(TARGET_CLASSES, TARGET_GLYPH_SEED), TARGET_PER_CLASS, SPLIT_SEED + 1)


def source_data(parts: Sequence[str] = ("train", "val", "test")) -> dict[str, np.ndarray]:
    """The source task: 64 glyph classes (labels 0-63); 250 training, 20 validation and 50 test
    images per class. Keys ``x_train (N, 1, 28, 28)`` float32 in [0, 1], ``y_train (N,)``
    int64, and ``x_val, y_val, x_test, y_test`` (only those of ``parts``). Each part is drawn
    once per process (the training images take about 10 s, validation about 1 s)."""
    out = {}
    for part in parts:
        x, y = _source(part)
        out[f"x_{part}"], out[f"y_{part}"] = x.copy(), y.copy()
    return out


def target_data(per_class: int | None = None, shift: str = "none",
                seed: int = 0) -> dict[str, np.ndarray]:
    """The target task: 10 new glyph classes (labels 0-9), optionally shifted.

    per_class  training images per class (a seeded random choice among the class's 100
               training images); None for all 100
    shift      ``"none"`` (drawn like the source) or ``"checker"`` (see :func:`shift_images`)
    The validation (20 per class) and test (100 per class) sets are always complete and
    shifted the same way. Keys as in :func:`source_data`.
    """
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}")
    out = {k: shift_images(v, shift).copy() if k.startswith("x") else v.copy()
           for k, v in _target().items()}
    if per_class is not None:
        most = TARGET_PER_CLASS["train"]
        if int(per_class) != per_class or not 1 <= per_class <= most:
            raise ValueError(f"per_class must be between 1 and {most}, got {per_class}")
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.flatnonzero(out["y_train"] == c), int(per_class),
                                         replace=False) for c in range(TARGET_CLASSES)])
        idx = rng.permutation(idx)
        out["x_train"], out["y_train"] = out["x_train"][idx], out["y_train"][idx]
    return out


# ----------------------------------------------------------------------------- training


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
    return fit(model, optimizer, x, y, steps=steps, batch_size=batch_size, seed=seed)["losses"]


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, x: np.ndarray, y: np.ndarray,
        steps: int = 200, batch_size: int = 32, seed: int = 0,
        x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
        eval_every: int = 20, patience: int = 5) -> dict:
    """:func:`train` with optional early stopping on a validation set.

    Without ``x_val`` it runs exactly ``steps`` steps. With it, the validation accuracy is
    measured every ``eval_every`` steps (and before the first); training stops after
    ``patience`` measurements without improvement or after ``steps`` steps, and the model is
    left with the weights of its best measurement (the earliest of equal ones). Returns
    {"losses": [...], "best_step": steps of the kept weights, "val_accuracy": its validation
    accuracy or None}.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
        gen = torch.Generator().manual_seed(seed)
        batch_size = min(batch_size, len(xt))
        losses: list[float] = []
        best = (-1.0, 0, None)  # (val accuracy, step, weights)
        waited = 0
        order, start = torch.randperm(len(xt), generator=gen), 0
        for step in range(steps + 1):
            if x_val is not None and step % eval_every == 0:
                acc = accuracy(model, x_val, y_val)
                if acc > best[0]:
                    best = (acc, step, copy.deepcopy(model.state_dict()))
                    waited = 0
                else:
                    waited += 1
                    if waited >= patience:
                        break
            if step == steps:
                break
            model.train()
            if start + batch_size > len(xt):
                order, start = torch.randperm(len(xt), generator=gen), 0
            idx = order[start:start + batch_size]
            start += batch_size
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
        model.train()
        if best[2] is not None:
            model.load_state_dict(best[2])
            return {"losses": losses, "best_step": best[1], "val_accuracy": best[0]}
        return {"losses": losses, "best_step": len(losses), "val_accuracy": None}
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Share of the images x (N, C, H, W) that ``model`` classifies as y (N,), in eval mode."""
    was_training = model.training
    model.eval()
    try:
        scores = torch.cat([model(torch.as_tensor(np.asarray(x[s:s + 500]), dtype=torch.float32))
                            for s in range(0, len(x), 500)])
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
SIZES = {"none": (1, 3, 10, 100), "checker": (10, 100)}  # per class; 100 = all
#: Learning-rate grids: scratch's rate for every layer; the approaches' base rate (the new
#: head trains at 10x / 20x of it). Each run picks its rate on validation.
LRS = {"scratch": (0.01, 0.03, 0.1), "approach 1": (0.001, 0.003, 0.01),
       "approach 2": (0.001, 0.003, 0.01)}
MAX_STEPS = 300
EVAL_EVERY = 20
PATIENCE = 5
BATCH = 32
#: The reduced experiment students run with their own functions (about 30 s): three cells,
#: 3 seeds, one learning rate per method (the one the full sweep chose most often), fewer steps.
QUICK = {"cells": (("none", 3), ("checker", 10), ("none", None)), "seeds": 3, "max_steps": 200,
         "lrs": {"scratch": (0.03,), "approach 1": (0.001,), "approach 2": (0.001,)}}


def make_model(method: str, base_lr: float, tools: dict[str, Callable], seed: int
               ) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A network and its optimizer for ``method``, from a torch seeded with ``seed``.

    scratch     ``small_cnn(10)`` with torch's random initialisation, SGD (momentum 0.9) at
                ``base_lr`` for every layer (this needs none of the exercises)
    approach 1  ``tools["approach1"](load_source_cnn(), 10, base_lr)``
    approach 2  ``tools["approach2"](load_source_cnn(), 10, base_lr)``
    ``tools`` holds the two functions of exercises 5 and 6 (the notebook passes its own).
    """
    torch.manual_seed(seed)
    if method == "scratch":
        model = small_cnn(TARGET_CLASSES)
        return model, torch.optim.SGD(model.parameters(), lr=base_lr, momentum=MOMENTUM)
    if method in ("approach 1", "approach 2"):
        fn = tools["approach1" if method == "approach 1" else "approach2"]
        return fn(load_source_cnn(), TARGET_CLASSES, base_lr)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def run_one(shift: str, per_class: int | None, method: str, seed: int,
            tools: dict[str, Callable], lrs: Sequence[float] | None = None,
            max_steps: int = MAX_STEPS) -> dict:
    """One row of the sweep: train ``method`` on ``target_data(per_class, shift, seed)`` once
    per learning rate in ``lrs`` (default ``LRS[method]``), each with early stopping on the
    validation set; keep the rate with the best validation accuracy (the first of equal ones)
    and report its validation and test accuracy."""
    data = target_data(per_class, shift, seed)
    best = None
    for lr in LRS[method] if lrs is None else lrs:
        model, optimizer = make_model(method, lr, tools, seed)
        out = fit(model, optimizer, data["x_train"], data["y_train"], steps=max_steps,
                  batch_size=BATCH, seed=seed, x_val=data["x_val"], y_val=data["y_val"],
                  eval_every=EVAL_EVERY, patience=PATIENCE)
        if best is None or out["val_accuracy"] > best["val_accuracy"]:
            best = {"lr": lr, "steps": out["best_step"], "val_accuracy": out["val_accuracy"],
                    "test_accuracy": accuracy(model, data["x_test"], data["y_test"])}
    return {"shift": shift, "per_class": per_class, "method": method, "seed": seed, **best}


_TOOLS: dict[str, Callable] = {}  # the functions the worker processes use (inherited by fork)


def _work(args: tuple) -> dict:
    torch.set_num_threads(1)
    shift, per_class, method, seed, lrs, max_steps = args
    return run_one(shift, per_class, method, seed, _TOOLS, lrs, max_steps)


def sweep(tools: dict[str, Callable], seeds: int = 10,
          cells: Sequence[tuple[str, int | None]] | None = None,
          lrs: dict[str, Sequence[float]] | None = None, max_steps: int = MAX_STEPS,
          jobs: int = 1, log: Callable[[str], None] = print) -> dict:
    """Every method on every (shift, per_class) cell, for seeds 0 .. seeds - 1.

    tools  {"approach1": fn, "approach2": fn}: the functions of exercises 5 and 6
    cells  default: every size of ``SIZES`` for each shift (per_class None stands for all)
    jobs   worker processes (each on one thread; more than one needs the fork start method)
    Returns {"settings": ..., "runs": [{"shift", "per_class", "method", "seed",
    "val_accuracy", "test_accuracy", "lr", "steps"}, ...]}.
    """
    if cells is None:
        cells = [(s, None if n == TARGET_PER_CLASS["train"] else n)
                 for s in SHIFTS for n in SIZES[s]]
    lrs = {m: tuple(LRS[m] if lrs is None else lrs[m]) for m in METHODS}
    tasks = [(shift, n, m, seed, lrs[m], max_steps)
             for shift, n in cells for seed in range(seeds) for m in METHODS]
    start = time.perf_counter()
    _target(), _TOOLS.clear(), _TOOLS.update(tools)
    runs = []
    if jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for k, row in enumerate(pool.imap(_work, tasks)):
                runs.append(row)
                if (k + 1) % (seeds * len(METHODS)) == 0:
                    log(f"{row['shift']:7s} {row['per_class']!s:>4s} per class done "
                        f"({time.perf_counter() - start:.0f} s)")
    else:
        threads = torch.get_num_threads()
        try:
            for k, task in enumerate(tasks):
                runs.append(_work(task))
                if (k + 1) % (seeds * len(METHODS)) == 0:
                    log(f"{task[0]:7s} {task[1]!s:>4s} per class done "
                        f"({time.perf_counter() - start:.0f} s)")
        finally:
            torch.set_num_threads(threads)
    settings = {"seeds": seeds, "cells": [list(c) for c in cells], "lrs": lrs,
                "max_steps": max_steps, "eval_every": EVAL_EVERY, "patience": PATIENCE,
                "batch": BATCH, "momentum": MOMENTUM, "target_per_class": TARGET_PER_CLASS,
                "jobs": jobs, "seconds": round(time.perf_counter() - start, 1),
                "torch": torch.__version__}
    return {"settings": settings, "runs": runs}


def quick_sweep(approach1: Callable, approach2: Callable, jobs: int = 1,
                log: Callable[[str], None] = print) -> dict:
    """The reduced experiment of the notebook (``QUICK``) with the given functions."""
    return sweep({"approach1": approach1, "approach2": approach2}, seeds=QUICK["seeds"],
                 cells=QUICK["cells"], lrs=QUICK["lrs"], max_steps=QUICK["max_steps"],
                 jobs=jobs, log=log)


# ----------------------------------------------------------------------------- reporting

_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
         19: 2.093, 29: 2.045}


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95 % confidence interval (Student's t, n - 1 degrees of
    freedom; 0 for a single value)."""
    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return float(a.mean()), 0.0
    df = len(a) - 1
    t = _T975.get(df) or _T975[max(k for k in _T975 if k <= df)] if df <= 29 else 1.96
    return float(a.mean()), float(t * a.std(ddof=1) / np.sqrt(len(a)))


def summarise(results: dict, key: str = "test_accuracy") -> list[dict]:
    """One row per (shift, per_class, method): mean, 95 % half-width and n of ``key``."""
    table: dict[tuple, list[float]] = {}
    for r in results["runs"]:
        table.setdefault((r["shift"], r["per_class"], r["method"]), []).append(r[key])
    rows = []
    for (s, n, m), a in table.items():
        mean, half = mean_ci(a)
        rows.append({"shift": s, "per_class": n, "method": m, "mean": mean, "ci": half,
                     "n": len(a)})
    return rows


def gaps(results: dict, a: str, b: str) -> list[dict]:
    """Per (shift, per_class): mean and 95 % interval of the paired difference a - b in test
    accuracy (the same seed means the same training images for both methods)."""
    by = {(r["shift"], r["per_class"], r["method"], r["seed"]): r["test_accuracy"]
          for r in results["runs"]}
    cells = list(dict.fromkeys((r["shift"], r["per_class"]) for r in results["runs"]))
    out = []
    for s, n in cells:
        seeds = sorted({k[3] for k in by if k[:2] == (s, n)})
        diff = [by[s, n, a, k] - by[s, n, b, k] for k in seeds]
        mean, half = mean_ci(diff)
        out.append({"shift": s, "per_class": n, "mean": mean, "ci": half, "n": len(diff)})
    return out


def _name(shift: str) -> str:
    return "similar" if shift == "none" else f"shifted ({shift})"


def format_table(results: dict) -> str:
    """The summary as a Markdown table: rows (shift, size), columns methods, test accuracy in %
    as mean ± half-width of the 95 % interval, and the number of seeds."""
    rows = summarise(results)
    cell = {(r["shift"], r["per_class"], r["method"]): r for r in rows}
    keys = list(dict.fromkeys((r["shift"], r["per_class"]) for r in rows))
    lines = ["| target | images per class | " + " | ".join(METHODS) + " | seeds |",
             "|---|---:|" + "---:|" * len(METHODS) + "---:|"]
    for shift, n in keys:
        values = [f"{100 * cell[shift, n, m]['mean']:.1f} ± {100 * cell[shift, n, m]['ci']:.1f}"
                  for m in METHODS]
        size = f"all ({TARGET_PER_CLASS['train']})" if n is None else str(n)
        lines.append(f"| {_name(shift)} | {size} | " + " | ".join(values)
                     + f" | {cell[shift, n, METHODS[0]]['n']} |")
    return "\n".join(lines)


def plot_sweep(results: dict):
    """Test accuracy against training images per class, one panel per target: every seed's
    result as a dot, the mean as a line, its 95 % interval as a bar. Returns the figure."""
    import matplotlib.pyplot as plt

    rows = summarise(results)
    shifts = list(dict.fromkeys(r["shift"] for r in rows))
    full = TARGET_PER_CLASS["train"]
    fig, axes = plt.subplots(1, len(shifts), figsize=(5.2 * len(shifts), 3.9), sharey=True,
                             squeeze=False)
    colours = dict(zip(METHODS, ("tab:gray", "tab:blue", "tab:orange"), strict=True))
    offsets = dict(zip(METHODS, (0.92, 1.0, 1.08), strict=True))
    for ax, shift in zip(axes[0], shifts, strict=True):
        for method in METHODS:
            pts = [(full if r["per_class"] is None else r["per_class"], r["test_accuracy"])
                   for r in results["runs"] if r["shift"] == shift and r["method"] == method]
            xs = np.array([p[0] for p in pts], float) * offsets[method]
            ax.scatter(xs, [100 * p[1] for p in pts], s=9, alpha=0.35, color=colours[method],
                       linewidths=0)
            sel = sorted((r for r in rows if r["shift"] == shift and r["method"] == method),
                         key=lambda r: full if r["per_class"] is None else r["per_class"])
            mx = [(full if r["per_class"] is None else r["per_class"]) * offsets[method]
                  for r in sel]
            ax.errorbar(mx, [100 * r["mean"] for r in sel], [100 * r["ci"] for r in sel],
                        marker="o", capsize=3, color=colours[method], label=method)
        ax.set_xscale("log")
        ax.set_xlabel(f"training images per class (all = {full})")
        ax.set_title(f"{_name(shift)} target")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sit471.transfer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="run the experiment of assignment 04, write JSON")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--quick", action="store_true", help="the reduced version of the notebook")
    p.add_argument("--out", type=Path, default=None,
                   help="default: course/source/04_transfer/sweep.json (quick: print only)")
    args = parser.parse_args(argv)
    try:
        from sit471.reference import transfer as ref  # staff only: the reference answers
    except ImportError:
        parser.error("the sweep runs the reference answers, which only the staff install has; "
                     "notebook 04 runs the quick sweep with the student's own functions")

    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    torch.set_num_threads(1)
    if args.quick:
        results = quick_sweep(ref.approach1, ref.approach2, jobs=args.jobs, log=log)
    else:
        results = sweep({"approach1": ref.approach1, "approach2": ref.approach2},
                        seeds=args.seeds, jobs=args.jobs, log=log)
    out = args.out or (None if args.quick else Path("course/source/04_transfer/sweep.json"))
    if out is not None:
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}", file=sys.stderr)
    print(format_table(results))
    print(f"{results['settings']['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
