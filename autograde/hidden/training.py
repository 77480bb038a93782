"""Hidden tests of assignment 02 (training), decided by the grader.

Each test draws its inputs from the run's generator; the notebook's probe calls the student's
function on them (seeding any generator it needs from the case) and returns the outputs; the
check compares them with ``sit471.reference.training`` (and the reference softmax loss of
``sit471.reference.layers`` for ``sgd_epoch``). The checks also cover what the visible tests
check (inputs left untouched, integer results, non-finite values passed through, one epoch
of SGD on the digits lowers the loss below 1.0), so a kernel that skips its visible tests
gains nothing.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os

import numpy as np

from autograde.verdict import HiddenTests
from sit471.checks import check_array, check_scalar
from sit471.reference import layers as ref_layers
from sit471.reference import training as ref

hidden = HiddenTests()


# ------------------------------------------------------------------ iterations_per_epoch


@hidden.cases("test_iterations_per_epoch")
def _(rng):
    pairs = [(1, 1), (7, 7), (100, 1), (0, 5), (10**12 + 1, 10**6)]
    pairs += [(int(rng.integers(1, 5000)), int(rng.integers(1, 300))) for _ in range(20)]
    for _ in range(3):  # huge n (< 2**63), not a multiple: a float n / batch_size is inexact
        b, q = int(rng.integers(3, 100)), 8 * int(rng.integers(2**52, 2**53)) + 2
        pairs.append((b * q + int(rng.integers(1, b)), b))  # q + 1 is no float64: ceil misses
    return [dict(n=n, batch_size=b, drop_last=drop) for n, b in pairs for drop in (False, True)]


def _whole_number(got, name: str) -> int:
    if isinstance(got, np.ndarray) and got.size == 1 and got.dtype.kind in "iu":
        return int(got.reshape(()))
    if isinstance(got, int) and not isinstance(got, bool):
        return got
    kind = "float" if isinstance(got, float) or (
        isinstance(got, np.ndarray) and got.dtype.kind == "f") else type(got).__name__
    raise AssertionError(f"{name} should return a whole number (int), got {kind}: use // and % "
                         "rather than / (and np.ceil returns a float)")


@hidden.check("test_iterations_per_epoch")
def _(case, got):
    n, b, drop = case["n"], case["batch_size"], case["drop_last"]
    name = f"iterations_per_epoch({n}, {b}, drop_last={drop})"
    value = _whole_number(got, name)
    expected = ref.iterations_per_epoch(n, b, drop)
    if value == expected:
        return
    mistakes = {}
    if not drop and n % b:
        mistakes[n // b] = ("it was rounded down: without drop_last the short last batch is "
                            "still an iteration")
    if drop and n % b:
        mistakes[n // b + 1] = "drop_last was ignored: it skips the short last batch"
    if not n % b:
        mistakes[n // b + 1] = f"a batch was added although {b} divides {n}"
    if n > 2**53:
        mistakes.setdefault(math.ceil(n / b) if not drop else math.floor(n / b),
                            "n / batch_size was used: a float, inexact for large n; use // and %")
    hint = mistakes.get(value)
    raise AssertionError(f"{name} is wrong; it looks like {hint}" if hint else
                         f"{name} is wrong: got {value}, expected {expected}")


# --------------------------------------------------------------------------- minibatches


@hidden.cases("test_minibatches")
def _(rng):
    settings = [(17, 5, True, False), (17, 5, True, True), (9, 9, True, False),
                (4, 7, False, False), (4, 7, True, True), (30, 1, True, False),
                (12, 4, False, True), (1000, 64, True, False)]
    settings += [(int(rng.integers(2, 200)), int(rng.integers(1, 40)), True, bool(drop))
                 for drop in (False, True)]
    return [dict(n=n, batch_size=b, seed=int(rng.integers(2**31)), shuffle=s, drop_last=d)
            for n, b, s, d in settings]


@hidden.check("test_minibatches")
def _(case, got):
    n, b, seed, shuffle, drop = (case[k] for k in ("n", "batch_size", "seed", "shuffle",
                                                   "drop_last"))
    where = f"n={n}, batch_size={b}, shuffle={shuffle}, drop_last={drop}"
    rng = np.random.default_rng(seed)
    assert isinstance(got, list) and len(got) == 2, "the probe runs two epochs of minibatches"
    orders = []
    for epoch, batches in enumerate(got):
        expected = list(ref.minibatches(n, b, rng, shuffle=shuffle, drop_last=drop))
        assert isinstance(batches, list), f"minibatches should return a list of index arrays " \
            f"({where})"
        assert len(batches) == len(expected), (
            f"{len(batches)} mini-batches for {where}, expected {len(expected)}")
        batches = [np.asarray(x) for x in batches]
        for x in batches:
            assert x.dtype.kind in "iu" or x.size == 0, (
                f"indices should be integers, got {x.dtype} ({where})")
        sizes, exp_sizes = [x.size for x in batches], [len(x) for x in expected]
        assert sizes == exp_sizes, f"batch sizes {sizes[:8]} for {where}, expected {exp_sizes[:8]}"
        every = np.concatenate(batches) if batches else np.zeros(0, int)
        assert len(np.unique(every)) == len(every), (
            f"an index appears twice in one epoch ({where}): draw the order without "
            "replacement, with rng.permutation(n), so that every example is used exactly once")
        assert every.size == 0 or (every.min() >= 0 and every.max() < n), (
            f"indices out of range 0..{n - 1} ({where})")
        if not shuffle:
            assert np.array_equal(every, np.arange(every.size)), (
                f"with shuffle=False the batches are in order 0, 1, ... ({where})")
        orders.append(every)
        for k, (x, e) in enumerate(zip(batches, expected, strict=True)):
            if np.array_equal(x, e):
                continue
            if epoch and shuffle and n > 2 and np.array_equal(orders[0], every):
                raise AssertionError(
                    f"two epochs visited the examples in the same order ({where}): draw a "
                    "fresh permutation from rng on every call")
            raise AssertionError(
                f"batch {k} of epoch {epoch} is wrong ({where}): draw the order with "
                "rng.permutation(n), once per call, then cut it into consecutive batches")


# ----------------------------------------------------------------------------- sgd_epoch


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits (the file sit471.data reads, without importing scikit-learn, which
    would cost the grader a second): X (1797, 64) in [0, 1] as float32, y (1797,) int64."""
    spec = importlib.util.find_spec("sklearn")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    raw = np.loadtxt(path, delimiter=",")
    # the pixels are multiples of 1/16: exact in float32, half the bytes to send
    return (raw[:, :-1] / 16.0).astype(np.float32), raw[:, -1].astype(np.int64)


def _loss(W, b, X, y):
    loss, dscores = ref_layers.softmax_cross_entropy(X @ W + b, y)
    return loss, X.T @ dscores, dscores.sum(axis=0)


def _sgd(W, b, X, y, lr, batch_size, seed, sign=1.0, step=1.0, update_b=True, after=False,
         shuffle=True):
    """The reference epoch; the keyword arguments make the common mistakes."""
    W, b, losses = W.astype(float), b.astype(float), []
    rng = np.random.default_rng(seed)
    for idx in ref.minibatches(len(X), batch_size, rng, shuffle=shuffle):
        loss, dW, db = _loss(W, b, X[idx], y[idx])
        W = W - sign * step * lr * dW
        if update_b:
            b = b - sign * step * lr * db
        losses.append(_loss(W, b, X[idx], y[idx])[0] if after else loss)
    return W, b, np.array(losses)


@hidden.cases("test_sgd_epoch")
def _(rng):
    cases = []
    for n, d, k, bs in [(23, 5, 4, 4), (7, 3, 2, 10), (16, 2, 3, 1), (40, 6, 5, 16)]:
        cases.append(dict(W=rng.normal(size=(d, k)), b=rng.normal(size=k),
                          X=rng.normal(size=(n, d)), y=rng.integers(0, k, size=n),
                          lr=float(rng.uniform(0.1, 0.5)), batch_size=bs,
                          seed=int(rng.integers(2**31))))
    X, y = _digits()  # one epoch on 1,259 random digits from zero weights, as the visible test
    rows = rng.permutation(len(X))[:1259]
    X, y = X[rows], y[rows]
    cases.append(dict(W=np.zeros((X.shape[1], 10)), b=np.zeros(10), X=X, y=y, lr=0.5,
                      batch_size=32, seed=int(rng.integers(2**31))))
    return cases


@hidden.check("test_sgd_epoch")
def _(case, got):
    W, b, X, y, lr, bs, seed = (case[k] for k in ("W", "b", "X", "y", "lr", "batch_size",
                                                  "seed"))
    (n, d), k = X.shape, W.shape[1]
    where = f"n={n}, D={d}, K={k}, batch_size={bs}, lr={lr:.3g}"
    assert np.array_equal(np.asarray(got["W_in"]), W) and np.array_equal(
        np.asarray(got["b_in"]), b), (
        "sgd_epoch changed the caller's W or b: start from copies (W = W.copy(), b = b.copy())")
    out = got["out"]
    assert isinstance(out, list) and len(out) == 3, "sgd_epoch must return a tuple (W, b, losses)"
    gW, gb, gl = out
    eW, eb, el = _sgd(W, b, X, y, lr, bs, seed)
    assert np.shape(gl) == el.shape, (
        f"losses should have one entry per iteration, {el.size} for {where}, got shape "
        f"{np.shape(gl)}")
    uphill = _sgd(W, b, X, y, lr, bs, seed, sign=-1.0)
    no_lr = _sgd(W, b, X, y, lr, bs, seed, step=1.0 / lr)
    no_b = _sgd(W, b, X, y, lr, bs, seed, update_b=False)
    after = _sgd(W, b, X, y, lr, bs, seed, after=True)
    ordered = _sgd(W, b, X, y, lr, bs, seed, shuffle=False)
    check_array(gl, el, f"losses for {where}",
                mistakes={"the loss was recorded after the step, not before it": after[2],
                          "the step went uphill (W += lr * dW)": uphill[2],
                          "the examples were not shuffled: use minibatches(len(X), batch_size, "
                          "rng) with its defaults": ordered[2]})
    check_array(gW, eW, f"W after one epoch for {where}",
                mistakes={"the step went uphill (W += lr * dW instead of W -= lr * dW)":
                          uphill[0], "the learning rate was left out": no_lr[0]})
    check_array(gb, eb, f"b after one epoch for {where}",
                mistakes={"the step went uphill (b += lr * db)": uphill[1],
                          "b was not updated": no_b[1]})
    if n > 1000:  # the digits: the trained weights, judged by the reference loss
        loss = _loss(np.asarray(gW, float), np.asarray(gb, float), X, y)[0]
        assert loss < 1.0, f"one epoch should bring the training loss below 1.0, got {loss:.3f}"


# -------------------------------------------------------------------------------- smooth


@hidden.cases("test_smooth")
def _(rng):
    cases = []
    for t, w in [(1, 0.6), (50, 0.6), (200, 0.95), (30, float(rng.uniform(0.1, 0.9)))]:
        v = np.cumsum(rng.normal(size=t)) + 10
        if t > 5:
            v[rng.choice(t, size=3, replace=False)] = [np.nan, np.inf, -np.inf]
        cases.append(dict(values=v, weight=w))
    for with_nan in (False, True):
        const = np.full(int(rng.integers(7, 15)), float(rng.choice([0.1, 0.2, 0.3, 0.7, 1.1])))
        if with_nan:
            const[rng.integers(1, len(const))] = np.nan
        cases.append(dict(values=const, weight=0.6))
    return cases


def _smooth_variant(y, weight, debias=True, count_nan=False, swap=False):
    out, last, k = y.copy(), 0.0, 0
    a, c = (1 - weight, weight) if swap else (weight, 1 - weight)
    for t in range(len(y)):
        if np.isfinite(y[t]):
            last = a * last + c * y[t]
            k += 1
            out[t] = last / (1 - a**k) if debias else last
        elif count_nan:
            k += 1
    return out


@hidden.check("test_smooth")
def _(case, got):
    v, w = case["values"], case["weight"]
    exp = ref.smooth(v, w)
    got = np.asarray(got, dtype=float)
    name = f"smooth of {v.size} values with weight {w:.3g}"
    assert got.shape == exp.shape, f"shape {got.shape} for {v.size} values, expected {exp.shape}"
    finite = np.isfinite(v)
    if finite.any() and np.all(v[finite] == v[finite][0]):
        assert np.array_equal(got, exp, equal_nan=True), (
            f"{name}: a constant series{' (with a NaN)' if not finite.all() else ''} must come "
            "back exactly as it is; check whether all the finite values are equal first")
        return
    assert np.isfinite(got[finite]).all(), (
        f"{name} has NaN or infinity where the input is finite: a non-finite value must not "
        "enter the average (skip every value that np.isfinite rejects, inf too)")
    bad = ~finite
    assert np.array_equal(got[bad], exp[bad], equal_nan=True), (
        f"{name}: a NaN or infinity must be passed through unchanged")
    check_array(got[finite], exp[finite], name, rtol=1e-9, atol=1e-12,
                mistakes={"the de-biasing is missing: divide m_k by 1 - weight**k":
                          _smooth_variant(v, w, debias=False)[finite],
                          "the NaN was counted: a non-finite value changes neither m nor k":
                          _smooth_variant(v, w, count_nan=True)[finite],
                          "the weights are swapped: m = weight * m + (1 - weight) * y":
                          _smooth_variant(v, w, swap=True)[finite]})


# ---------------------------------------------------------------------------- suggest_lr


@hidden.cases("test_suggest_lr")
def _(rng):
    cases = []
    for m in (1, 5, 60, 100):
        lrs = np.geomspace(float(rng.uniform(1e-7, 1e-5)), float(rng.uniform(1, 10)), m)
        losses = 2.3 - np.sin(np.linspace(0, 3, m)) + rng.normal(scale=0.05, size=m)
        if m > 5:
            losses[-3:] = [np.inf, np.nan, -np.nan]
            losses[rng.integers(0, m - 3)] = np.nan
        if m == 60:
            losses[rng.integers(0, m - 3)] = -np.inf
        cases.append(dict(lrs=lrs, losses=losses))
    lrs = np.geomspace(1e-4, 1.0, 9)
    losses = np.round(2.0 - np.sin(np.linspace(0, 3, 9)), 1)  # rounded: the lowest is a tie
    cases.append(dict(lrs=lrs, losses=losses))
    return cases


@hidden.check("test_suggest_lr")
def _(case, got):
    lrs, losses = case["lrs"], case["losses"]
    expected = ref.suggest_lr(lrs, losses)
    mistakes = {"the rate at the lowest loss itself (not divided by 10)": 10 * expected,
                "the rate was multiplied by 10 instead of divided": 100 * expected}
    with np.errstate(invalid="ignore"):
        first = int(np.argmin(losses))
        mistakes["a NaN loss was taken as the minimum (np.argmin picks NaN): ignore "
                 "non-finite losses"] = lrs[first] / 10
        if not np.isnan(losses).all():
            mistakes["an infinite loss was taken as the minimum: ignore every non-finite "
                     "loss (np.isfinite)"] = lrs[int(np.nanargmin(losses))] / 10
    finite = np.flatnonzero(np.isfinite(losses))
    ties = finite[losses[finite] == losses[finite].min()]
    if len(ties) > 1:
        mistakes["of two equal lowest losses, take the smaller rate"] = lrs[ties[-1]] / 10
    check_scalar(got, expected, f"suggest_lr on a curve of {lrs.size} points", rtol=1e-12,
                 mistakes=mistakes)


# ---------------------------------------------------------------------------- best_epoch


@hidden.cases("test_best_epoch")
def _(rng):
    cases = []
    for e in (1, 2, 10, 40, 120):
        v = np.round(1 / np.arange(1, e + 1) + 0.003 * np.arange(e)
                     + rng.normal(scale=0.02, size=e), 2)
        if e > 10:
            v[rng.integers(0, e)] = np.nan
        cases += [dict(val_losses=v, patience=p) for p in (None, 1, 2, 3, 5, 10, 30)]
    for p in (2, 3, 5):  # gaps shorter than the patience, then an improvement, again and again
        best, v = float(rng.uniform(1, 2)), []
        for _ in range(p + 2):
            v.append(best)
            gap = best + rng.uniform(0, 0.1, size=int(rng.integers(1, p)))
            gap[rng.integers(0, gap.size)] = rng.choice([best, np.nan])  # a tie or a NaN
            v.extend(gap)
            best -= float(rng.uniform(0.01, 0.1))
        v.extend([best] + [best + 0.05] * p + [best - 0.5])  # the last one comes too late
        cases += [dict(val_losses=np.array(v), patience=q) for q in (None, p)]
    return cases


def _best_epoch_variant(v, patience, reset=True, late=0, tie=False):
    best, best_i, waited = math.inf, -1, 0
    for i, loss in enumerate(v):
        if math.isfinite(loss) and (loss <= best if tie else loss < best):
            best, best_i = float(loss), i
            if reset:
                waited = 0
        else:
            waited += 1
            if patience is not None and waited >= patience + late:
                break
    return best_i


@hidden.check("test_best_epoch")
def _(case, got):
    v, p = case["val_losses"], case["patience"]
    expected = ref.best_epoch(v, p)
    variants = {"patience was ignored": dict(patience=None),
                "the count of epochs without improvement was not reset to 0 at an "
                "improvement (patience counts epochs in a row)": dict(reset=False),
                "training went on one epoch too long (waited > patience)": dict(late=1),
                "training stopped one epoch too early (patience - 1)": dict(late=-1),
                "a tie was taken as an improvement": dict(tie=True)}
    mistakes = {}
    for text, kw in variants.items():
        value = _best_epoch_variant(v, kw.pop("patience", p), **kw)
        if value != expected:
            mistakes.setdefault(text, value)
    mistakes["it counts epochs from 1: return the 0-based index"] = expected + 1
    check_scalar(got, expected, f"best_epoch on a curve of {v.size} epochs, patience {p}",
                 mistakes=mistakes)
