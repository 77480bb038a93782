"""Tests for sit471.reference.training (assignment 02 reference answers)."""

from __future__ import annotations

import numpy as np
import pytest

from sit471.reference.training import (
    best_epoch,
    iterations_per_epoch,
    lr_range_test,
    minibatches,
    smooth,
    suggest_lr,
)

NAN = float("nan")

# Known outputs of TensorBoard's smoothing at weight 0.6 (worked by hand; see smooth()).
KNOWN = [
    ([1.0, 2.0, 3.0, 4.0], [1.0, 1.625, 2.32653, 3.09559]),
    ([1.0, NAN, 3.0, 4.0], [1.0, NAN, 2.25, 3.14286]),
]


def matches_known(fn) -> bool:
    """Whether a smoothing function reproduces the known vectors (weight 0.6, 5 digits)."""
    return all(
        np.allclose(fn(values, 0.6), expected, atol=1e-5, equal_nan=True)
        for values, expected in KNOWN
    )


def smooth_closed_form(values, weight):
    """Independent re-implementation: the k-th finite value is the weighted mean
    sum_j w^(k-j) y_j / sum_j w^(k-j) over the finite values y_1..y_k (no recursion)."""
    y = np.asarray(values, dtype=float)
    finite = np.isfinite(y)
    ys = y[finite]
    out = y.copy()
    smoothed = []
    for k in range(1, len(ys) + 1):
        w = weight ** np.arange(k - 1, -1, -1)  # w^(k-1), ..., w^0
        smoothed.append(np.sum(w * ys[:k]) / np.sum(w))
    out[finite] = smoothed
    return out


# ----------------------------------------------------------------------------- smoothing


@pytest.mark.parametrize(("values", "expected"), KNOWN)
def test_smooth_known_vectors(values, expected):
    np.testing.assert_allclose(smooth(values, 0.6), expected, atol=1e-5)


def test_smooth_default_weight_is_tensorboards():
    np.testing.assert_allclose(smooth([1.0, 2.0, 3.0, 4.0]), KNOWN[0][1], atol=1e-5)


def test_smooth_first_point_equals_first_value():
    rng = np.random.default_rng(0)
    for weight in (0.0, 0.3, 0.6, 0.9, 0.999):
        values = rng.normal(size=20)
        assert smooth(values, weight)[0] == pytest.approx(values[0])


def test_smooth_non_finite_values_pass_through_and_do_not_count():
    out = smooth([NAN, 1.0, np.inf, 2.0, -np.inf, NAN], 0.6)
    assert np.isnan(out[0]) and np.isnan(out[5])
    assert out[2] == np.inf and out[4] == -np.inf
    # Same finite outputs as if the non-finite values were not there.
    np.testing.assert_allclose(out[[1, 3]], smooth([1.0, 2.0], 0.6))
    assert out[1] == pytest.approx(1.0)


def test_smooth_constant_series_returned_as_is():
    np.testing.assert_array_equal(smooth([0.1] * 7, 0.6), [0.1] * 7)
    out = smooth([0.3, NAN, 0.3, 0.3], 0.99)
    assert np.isnan(out[1])
    np.testing.assert_array_equal(out[[0, 2, 3]], [0.3, 0.3, 0.3])


def test_smooth_edge_cases():
    assert smooth([], 0.6).shape == (0,)
    np.testing.assert_array_equal(smooth([NAN, NAN], 0.6), [NAN, NAN])
    np.testing.assert_array_equal(smooth([3.0, 1.0, 2.0], 0.0), [3.0, 1.0, 2.0])
    values = np.array([1.0, 2.0, 3.0])
    smooth(values, 0.6)
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])  # input not modified


@pytest.mark.parametrize("weight", [-0.1, 1.0, 1.5])
def test_smooth_rejects_weight_outside_0_1(weight):
    with pytest.raises(ValueError, match="weight must be in"):
        smooth([1.0, 2.0], weight)


def test_smooth_agrees_with_closed_form_on_random_series():
    rng = np.random.default_rng(42)
    for _ in range(50):
        values = rng.normal(size=int(rng.integers(1, 60))) * 10
        values[rng.random(values.size) < 0.15] = NAN
        weight = float(rng.choice([0.0, 0.25, 0.6, 0.9, 0.99]))
        np.testing.assert_allclose(
            smooth(values, weight),
            smooth_closed_form(values, weight),
            rtol=1e-10,
            atol=1e-10,
            equal_nan=True,
        )


def test_known_vectors_reject_wrong_smoothings():
    """The checks can fail: plausible mistakes give numbers other than the known vectors."""

    def no_debias(values, weight):
        out, last = np.array(values, dtype=float), 0.0
        for t, y in enumerate(out):
            if np.isfinite(y):
                last = weight * last + (1 - weight) * y
                out[t] = last
        return out

    def nan_advances_count(values, weight):
        out, last, k = np.array(values, dtype=float), 0.0, 0
        for t, y in enumerate(out):
            k += 1  # counts NaN too: wrong de-biasing after a gap
            if np.isfinite(y):
                last = weight * last + (1 - weight) * y
                out[t] = last / (1 - weight**k)
        return out

    def nan_treated_as_zero(values, weight):
        return smooth(np.nan_to_num(np.asarray(values, dtype=float)), weight)

    def weight_swapped(values, weight):
        return smooth(values, 1 - weight)

    assert matches_known(smooth)
    assert matches_known(smooth_closed_form)
    for wrong in (no_debias, nan_advances_count, nan_treated_as_zero, weight_swapped):
        assert not matches_known(wrong), wrong.__name__


# ------------------------------------------------------------------- epochs and batches


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "expected"),
    [
        (55_000, 100, False, 550),
        (55_000, 100, True, 550),
        (10, 3, False, 4),
        (10, 3, True, 3),
        (10, 10, False, 1),
        (10, 11, False, 1),
        (10, 11, True, 0),
        (0, 5, False, 0),
        (1, 1, False, 1),
        (60_000, 128, False, 469),
    ],
)
def test_iterations_per_epoch(n, batch_size, drop_last, expected):
    assert iterations_per_epoch(n, batch_size, drop_last) == expected


def test_iterations_per_epoch_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n must be >= 0"):
        iterations_per_epoch(-1, 10)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        iterations_per_epoch(10, 0)


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (55, 5), (7, 7), (5, 8), (100, 1)])
def test_minibatches_cover_every_index_once(n, batch_size):
    batches = list(minibatches(n, batch_size, np.random.default_rng(0)))
    assert len(batches) == iterations_per_epoch(n, batch_size)
    assert all(b.dtype.kind == "i" for b in batches)
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(n))


def test_minibatches_new_order_each_epoch():
    rng = np.random.default_rng(1)
    first = np.concatenate(list(minibatches(100, 10, rng)))
    second = np.concatenate(list(minibatches(100, 10, rng)))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, np.arange(100))
    np.testing.assert_array_equal(np.sort(second), np.arange(100))
    # Reproducible from the seed.
    again = np.concatenate(list(minibatches(100, 10, np.random.default_rng(1))))
    np.testing.assert_array_equal(first, again)


def test_minibatches_without_shuffle_keep_order():
    batches = list(minibatches(10, 4, np.random.default_rng(0), shuffle=False))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_minibatches_drop_last():
    batches = list(minibatches(10, 3, np.random.default_rng(2), drop_last=True))
    assert [len(b) for b in batches] == [3, 3, 3]
    used = np.concatenate(batches)
    assert len(np.unique(used)) == 9 and set(used) <= set(range(10))
    assert list(minibatches(2, 3, np.random.default_rng(2), drop_last=True)) == []
    # Nothing is dropped when the batches divide n exactly.
    batches = list(minibatches(9, 3, np.random.default_rng(2), drop_last=True))
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(9))


def test_minibatches_check_arguments_at_the_call():
    with pytest.raises(ValueError, match="batch_size"):
        minibatches(10, 0, np.random.default_rng(0))  # no next() needed


# ------------------------------------------------------------------- learning-rate range test


def make_least_squares_stepper(seed: int = 0):
    """One mini-batch SGD step on least squares per call; returns (step, max stable rate).

    Loss 1/2 mean (X w - y)^2 has Hessian X^T X / n; full-batch gradient descent diverges
    for rates above 2 / (its largest eigenvalue).
    """
    rng = np.random.default_rng(seed)
    n, d = 256, 5
    X = rng.normal(size=(n, d)) * np.array([1.0, 1.0, 1.0, 2.0, 3.0])
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)
    w = np.zeros(d)
    lam_max = np.linalg.eigvalsh(X.T @ X / n).max()
    batches: list[np.ndarray] = []

    def step(lr: float) -> float:
        nonlocal w
        if not batches:
            batches.extend(minibatches(n, 32, rng))
        idx = batches.pop()
        residual = X[idx] @ w - y[idx]
        loss = 0.5 * float(np.mean(residual**2))
        w = w - lr * X[idx].T @ residual / len(idx)
        return loss

    return step, 2.0 / lam_max


def test_lr_range_test_stops_when_the_loss_blows_up():
    step, stable = make_least_squares_stepper()
    lrs, losses = lr_range_test(step, lr_min=1e-5, lr_max=100.0, steps=100)
    assert lrs.shape == losses.shape
    assert 10 < len(lrs) < 100  # stopped early
    # Exponential schedule from lr_min, with the full schedule's ratio between steps.
    assert lrs[0] == pytest.approx(1e-5)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], (100.0 / 1e-5) ** (1 / 99))
    # The last point is the blow-up: not finite, or above 4x the best before it.
    assert not np.isfinite(losses[-1]) or losses[-1] > 4 * losses[:-1].min()
    assert np.all(losses[:-1] <= 4 * np.minimum.accumulate(losses[:-1]))
    # It blew up only once the rate was beyond (about) the stability limit.
    assert lrs[-1] > 0.5 * stable
    # The loss did come down before it blew up.
    assert losses[:-1].min() < 0.5 * losses[0]
    lr = suggest_lr(lrs, losses)
    assert 1e-3 * stable < lr < stable


def test_lr_range_test_records_smoothed_losses():
    raw = [4.0, 3.0, 2.0, 1.0, 50.0]
    lrs, losses = lr_range_test(lambda lr: raw.pop(0), lr_min=1e-3, lr_max=1.0, steps=10)
    np.testing.assert_allclose(losses, smooth([4.0, 3.0, 2.0, 1.0, 50.0], 0.6))
    assert len(lrs) == 5  # stopped at the 50 (smoothed ~28 > 4 x 1.8)


def test_lr_range_test_stops_on_non_finite_loss():
    raw = iter([1.0, 0.9, float("inf"), 0.5])
    lrs, losses = lr_range_test(lambda lr: next(raw), steps=10)
    assert len(lrs) == 3 and losses[-1] == np.inf


def test_lr_range_test_runs_all_steps_when_nothing_blows_up():
    lrs, losses = lr_range_test(lambda lr: 1.0 / (1.0 + lr), 1e-4, 1.0, steps=20)
    assert len(lrs) == 20
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1.0)


def test_lr_range_test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lr_min"):
        lr_range_test(lambda lr: 1.0, lr_min=1.0, lr_max=0.1)
    with pytest.raises(ValueError, match="steps"):
        lr_range_test(lambda lr: 1.0, steps=1)


def test_suggest_lr_is_rate_at_minimum_over_ten():
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert suggest_lr(lrs, [2.0, 1.5, 0.5, 0.9, NAN]) == pytest.approx(1e-3)
    assert suggest_lr(lrs, [NAN, 1.5, 0.9, 0.2, np.inf]) == pytest.approx(1e-2)
    with pytest.raises(ValueError, match="no finite loss"):
        suggest_lr([1e-3, 1e-2], [NAN, NAN])
    with pytest.raises(ValueError, match="differ in length"):
        suggest_lr([1e-3, 1e-2], [1.0])


# ------------------------------------------------------------------------------ best epoch


def test_best_epoch_without_patience():
    assert best_epoch([5.0, 4.0, 3.0, 3.5, 2.0]) == 4
    assert best_epoch([3.0, 1.0, 1.0, 2.0, 1.0]) == 1  # ties: the earliest
    assert best_epoch([0.7]) == 0
    assert best_epoch([NAN, 2.0, 1.0, NAN]) == 2


def test_best_epoch_with_patience_misses_a_later_minimum():
    losses = [1.0, 0.8, 0.9, 0.95, 0.97, 0.5]
    assert best_epoch(losses) == 5
    assert best_epoch(losses, patience=3) == 1  # stops after epoch 4; never sees 0.5
    assert best_epoch(losses, patience=4) == 5  # epoch 5 is still within patience
    assert best_epoch([5.0, 4.0, 3.0, 3.5, 2.0], patience=1) == 2
    assert best_epoch([5.0, 4.0, 3.0, 3.5, 2.0], patience=2) == 4
    # An equal loss is not an improvement: the counter keeps running.
    assert best_epoch([2.0, 1.0, 1.0, 1.0, 0.5], patience=2) == 1


def test_best_epoch_rejects_bad_input():
    with pytest.raises(ValueError, match="patience"):
        best_epoch([1.0, 2.0], patience=0)
    with pytest.raises(ValueError, match="no finite loss"):
        best_epoch([])
    with pytest.raises(ValueError, match="no finite loss"):
        best_epoch([NAN, NAN])
