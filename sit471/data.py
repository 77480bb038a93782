"""Small datasets the notebooks use. Everything is embedded or generated: nothing downloads."""

from __future__ import annotations

import os

import numpy as np

#: Hours of sleep and hours of study for three students, and their test scores.
SLEEP_STUDY_X = ((3.0, 5.0), (5.0, 1.0), (10.0, 2.0))
SLEEP_STUDY_Y = ((75.0,), (82.0,), (93.0,))


def sleep_study(scaled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The toy data of assignment 01: X (3, 2) = [sleep, study] hours, y (3, 1) = score.

    With ``scaled`` (the default) every column of X is divided by its maximum and y by 100,
    so that all values lie in [0, 1], where a sigmoid output can reach them.
    """
    X = np.array(SLEEP_STUDY_X)
    y = np.array(SLEEP_STUDY_Y)
    if scaled:
        X = X / X.max(axis=0)
        y = y / 100.0
    return X, y


def digits(
    seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> dict[str, np.ndarray]:
    """Real handwritten digits shipped with scikit-learn (1,797 images, 8x8, classes 0-9).

    Returns a seeded, stratified train / validation / test split:
    ``x_train (N, 1, 8, 8)`` float64 in [0, 1], ``y_train (N,)`` int64, and likewise
    ``x_val, y_val, x_test, y_test``. The same seed always gives the same split.
    """
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    raw = load_digits()
    x = (raw.images / 16.0)[:, None, :, :]
    y = raw.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_val = round(len(idx) * val_fraction)
        n_test = round(len(idx) * test_fraction)
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val:n_val + n_test])
        parts["train"].append(idx[n_val + n_test:])
    out: dict[str, np.ndarray] = {}
    for name, chunks in parts.items():
        idx = rng.permutation(np.concatenate(chunks))
        out[f"x_{name}"], out[f"y_{name}"] = x[idx], y[idx]
    return out


def load_mnist_or_digits(
    path: str | os.PathLike | None = None, seed: int = 0, val_size: int = 5000
) -> dict[str, np.ndarray]:
    """MNIST from its four IDX files in ``path``, or, without a path, the bundled digits.

    Returns the same keys as :func:`digits`: ``x_train (N, 1, H, W)`` float64 in [0, 1],
    ``y_train (N,)`` int64, and likewise ``x_val, y_val, x_test, y_test``. Without ``path``
    this is ``digits(seed)`` (8x8 images). With ``path`` (see :func:`sit471.idx.load_mnist`;
    nothing is downloaded) the 60,000 training images are split, with ``seed``, into
    ``60,000 - val_size`` for training and ``val_size`` for validation (55,000 and 5,000 by
    default); the 10,000 test images are the test set. Images are 28x28.
    """
    if path is None:
        return digits(seed)
    from sit471.idx import load_mnist

    raw = load_mnist(path)
    n = len(raw["train_labels"])
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be between 1 and {n - 1}, got {val_size}")

    def images(a: np.ndarray) -> np.ndarray:
        return (a.astype(np.float64) / 255.0)[:, None, :, :]

    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:val_size], order[val_size:]
    x, y = raw["train_images"], raw["train_labels"].astype(np.int64)
    return {  # index the uint8 images first: one float copy of each split, not two
        "x_train": images(x[train]), "y_train": y[train],
        "x_val": images(x[val]), "y_val": y[val],
        "x_test": images(raw["test_images"]), "y_test": raw["test_labels"].astype(np.int64),
    }
