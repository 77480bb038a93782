"""Reference answers for assignment 02: epochs, mini-batches, the learning rate, monitoring.

Vocabulary used throughout:

    n           number of training examples
    batch_size  examples per gradient step (one step = one iteration)
    epoch       one pass in which every example is used once

Everything here is plain NumPy and works with any model: the learning-rate range test only
needs a function that takes a rate, performs one training step at it and returns the loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np


def iterations_per_epoch(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of mini-batches (gradient steps) in one epoch of ``n`` examples.

    ceil(n / batch_size), or floor(n / batch_size) with ``drop_last`` (the short final batch
    is skipped). 55,000 examples in batches of 100 -> 550; 10 in batches of 3 -> 4 (3, 3, 3, 1),
    or 3 with ``drop_last``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    full, rest = divmod(n, batch_size)
    return full if drop_last or rest == 0 else full + 1


def minibatches(
    n: int,
    batch_size: int,
    rng: np.random.Generator,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[np.ndarray]:
    """Index arrays for the mini-batches of one epoch.

    Yields ``iterations_per_epoch(n, batch_size, drop_last)`` integer arrays, each of shape
    (batch_size,) except possibly the last, shape (n % batch_size,). Together they hold every
    index 0..n-1 exactly once (with ``drop_last``, the short last batch is left out). With
    ``shuffle`` the order is a fresh permutation drawn from ``rng`` on every call, so each
    epoch visits the examples in a new order; without it the order is 0, 1, ..., n-1.

    Use as ``for idx in minibatches(len(X), 32, rng): step(X[idx], y[idx])``.
    """
    count = iterations_per_epoch(n, batch_size, drop_last)  # validates n and batch_size
    order = rng.permutation(n) if shuffle else np.arange(n)
    # A separate generator so the arguments are checked (and the permutation drawn) at the
    # call, not at the first next().
    return (order[k * batch_size : (k + 1) * batch_size] for k in range(count))


def smooth(values: Sequence[float] | np.ndarray, weight: float = 0.6) -> np.ndarray:
    """TensorBoard's smoothing: a de-biased exponential moving average.

    values: shape (T,). Returns shape (T,), float. For each finite y, in order::

        last = weight * last + (1 - weight) * y      # last starts at 0
        k += 1                                        # k counts the finite values so far
        out = last / (1 - weight**k)                  # de-bias: undo the pull towards 0

    Dividing by 1 - weight**k (the total weight given to real values) makes the first
    smoothed point equal the first value instead of (1 - weight) times it. A non-finite y
    (NaN, inf) is output unchanged and changes neither ``last`` nor ``k``. A constant series
    (all finite values equal) is returned as is. ``weight`` is in [0, 1); 0 means no
    smoothing, and larger values smooth more (TensorBoard's slider defaults to 0.6).

    Example, weight 0.6: [1, 2, 3, 4] -> [1, 1.625, 2.32653, 3.09559].
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"weight must be in [0, 1), got {weight}")
    y = np.asarray(values, dtype=float).reshape(-1)
    finite = np.isfinite(y)
    if finite.any() and np.all(y[finite] == y[finite][0]):
        return y.copy()
    out = y.copy()
    last, k = 0.0, 0
    for t in np.flatnonzero(finite):
        last = weight * last + (1.0 - weight) * y[t]
        k += 1
        out[t] = last / (1.0 - weight**k)
    return out


def lr_range_test(
    loss_at_lr: Callable[[float], float],
    lr_min: float = 1e-7,
    lr_max: float = 10.0,
    steps: int = 100,
    weight: float = 0.6,
    stop_factor: float = 4.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Learning-rate range test: train with a rate that grows every step, watch the loss.

    ``loss_at_lr(lr)`` performs ONE training step at rate ``lr`` (on the next mini-batch,
    continuing from the current weights) and returns that step's loss. The rates are
    lr_min * (lr_max / lr_min) ** (i / (steps - 1)), i = 0..steps-1: exponential growth from
    lr_min to lr_max. Each loss is smoothed as in :func:`smooth` (de-biased, same weight).
    The test stops early, after recording it, at the first smoothed loss that is not finite
    or exceeds ``stop_factor`` times the lowest smoothed loss so far: the loss has blown up,
    and larger rates would only waste steps (losses are assumed positive).

    Returns (lrs, losses): the rates tried and their smoothed losses, both shape (m,) with
    m <= steps. Reset the model's weights afterwards: the test has trained it.
    """
    if not 0.0 < lr_min < lr_max:
        raise ValueError(f"need 0 < lr_min < lr_max, got lr_min={lr_min}, lr_max={lr_max}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"weight must be in [0, 1), got {weight}")
    if stop_factor <= 1.0:
        raise ValueError(f"stop_factor must be > 1, got {stop_factor}")

    lrs, losses = [], []
    last, k, best = 0.0, 0, math.inf
    for lr in np.geomspace(lr_min, lr_max, steps):
        loss = float(loss_at_lr(float(lr)))
        if math.isfinite(loss):
            last = weight * last + (1.0 - weight) * loss
            k += 1
            smoothed = last / (1.0 - weight**k)
        else:
            smoothed = loss
        lrs.append(float(lr))
        losses.append(smoothed)
        if not math.isfinite(smoothed) or smoothed > stop_factor * best:
            break
        best = min(best, smoothed)
    return np.array(lrs), np.array(losses)


def suggest_lr(lrs: Sequence[float] | np.ndarray, losses: Sequence[float] | np.ndarray) -> float:
    """Suggested learning rate from a range test: (rate at the minimum smoothed loss) / 10.

    The rule: find the rate where the smoothed loss is lowest, then back off by a factor of
    10, because at the minimum the loss is about to blow up; one order of magnitude lower
    is still fast but safely stable. This is a common rule of thumb, not a law. Non-finite
    losses are ignored; ties go to the smaller rate. lrs, losses: shape (m,).
    """
    lrs = np.asarray(lrs, dtype=float).reshape(-1)
    losses = np.asarray(losses, dtype=float).reshape(-1)
    if lrs.shape != losses.shape:
        raise ValueError(f"lrs and losses differ in length: {lrs.size} vs {losses.size}")
    finite = np.isfinite(losses)
    if not finite.any():
        raise ValueError("no finite loss to choose a learning rate from")
    candidates = np.flatnonzero(finite)
    best = candidates[np.argmin(losses[candidates])]
    return float(lrs[best] / 10.0)


def best_epoch(val_losses: Sequence[float] | np.ndarray, patience: int | None = None) -> int:
    """Index (0-based) of the epoch with the lowest validation loss; ties: the earliest.

    With ``patience`` p (early stopping), training stops once p epochs in a row have not
    improved on the best loss, i.e. at epoch best + p, and the answer is the best epoch seen
    up to that point: a lower loss that comes later is never seen. Without patience every
    epoch is seen. A non-finite loss never counts as an improvement. val_losses: shape (E,).
    """
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 or None, got {patience}")
    best, best_i, waited = math.inf, -1, 0
    for i, loss in enumerate(np.asarray(val_losses, dtype=float).reshape(-1)):
        if math.isfinite(loss) and loss < best:
            best, best_i, waited = float(loss), i, 0
        else:
            waited += 1
            if patience is not None and waited >= patience:
                break
    if best_i < 0:
        raise ValueError("val_losses holds no finite loss")
    return best_i
