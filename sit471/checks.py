"""Checks that visible and hidden notebook tests call.

Each check turns the student's answer into a plain NumPy value first (so an object that
overrides ``==`` or an ndarray subclass cannot pass by accident), then compares it with the
expected value. On a mismatch it raises ``AssertionError`` with a message that names the
likely mistake: a wrong shape, a transposed result, a sign error, a constant factor, or one
of the mistakes a test names explicitly.

    check_array(answer, expected, "dJdW2", mistakes={"a2 not transposed": wrong})
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np

# Own references, taken at import: an answer cell that rebinds np.allclose cannot
# change what these checks do.
_array = np.array
_allclose = np.allclose
_isfinite = np.isfinite
_norm = np.linalg.norm
_ndarray = np.ndarray
_float64 = np.float64


def _plain(value: object, name: str) -> np.ndarray:
    """The answer as a base-class float64 ndarray, or AssertionError saying why it isn't one."""
    if value is None:
        raise AssertionError(f"{name} is None: did the function forget to `return` its result?")
    if not isinstance(value, (_ndarray, numbers.Real, list, tuple, np.generic)):
        raise AssertionError(
            f"{name} should be a NumPy array or a number, got {type(value).__name__}"
        )
    try:
        out = _array(value, dtype=_float64, copy=True, subok=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{name} cannot be read as an array of numbers: {exc}") from None
    return out


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and bool(_allclose(a, b, rtol=rtol, atol=atol))


def check_array(
    actual: object,
    expected: np.ndarray,
    name: str,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-10,
    mistakes: Mapping[str, np.ndarray] | None = None,
    inputs: np.ndarray | None = None,
    input_name: str = "x",
) -> None:
    """Assert that ``actual`` equals ``expected`` (same shape, values within tolerance).

    ``mistakes`` maps a plain-words description to the value that mistake would produce;
    when the answer matches one of them, the message says so. ``inputs``: the 1-D grid the
    values were computed on (one input per element of a 1-D ``expected``); a wrong value is then
    reported at its input, "at z = 1.5 got ..." (with ``input_name="z"``), not at its index.
    """
    expected = _array(expected, dtype=_float64, copy=True, subok=False)
    got = _plain(actual, name)
    if not _isfinite(got).all():
        raise AssertionError(f"{name} contains NaN or infinity")
    if got.shape != expected.shape:
        transposed = got.ndim == 2 and got.shape == expected.shape[::-1]
        if transposed and _close(got.T, expected, rtol, atol):
            raise AssertionError(
                f"{name} looks transposed: shape {got.shape}, expected {expected.shape}"
            )
        if got.size == expected.size and _close(got.reshape(expected.shape), expected, rtol, atol):
            raise AssertionError(
                f"{name} has the right values but shape {got.shape}, expected {expected.shape}"
            )
        raise AssertionError(f"{name} has shape {got.shape}, expected {expected.shape}")
    if _close(got, expected, rtol, atol):
        return
    for description, wrong in (mistakes or {}).items():
        wrong = _array(wrong, dtype=_float64, copy=True, subok=False)
        if _close(got, wrong, rtol, atol):
            raise AssertionError(f"{name} is wrong; it looks like {description}")
    if got.ndim == 2 and got.shape[0] == got.shape[1] and _close(got.T, expected, rtol, atol):
        raise AssertionError(f"{name} looks transposed")
    if _close(-got, expected, rtol, atol):
        raise AssertionError(f"{name} has the wrong sign")
    nonzero = abs(expected) > 1e-12
    if expected.size > 1 and nonzero.sum() > 1 and (abs(got[~nonzero]) <= atol).all():
        ratios = got[nonzero] / expected[nonzero]
        if _allclose(ratios, ratios.flat[0], rtol=1e-6) and abs(ratios.flat[0]) > 1e-12:
            raise AssertionError(
                f"{name} is off by a constant factor: {ratios.flat[0]:.6g} times the "
                "expected value"
            )
    if got.ndim == 0:
        raise AssertionError(f"{name} is wrong: got {got:.10g}, expected {expected:.10g}")
    diff = abs(got - expected)
    worst = np.unravel_index(int(diff.argmax()), diff.shape)
    grid = None if inputs is None else _array(inputs, dtype=_float64, subok=False)
    if grid is not None and grid.ndim == 1 and grid.shape == expected.shape:
        raise AssertionError(
            f"{name} is wrong: at {input_name} = {grid[worst]:.6g} got {got[worst]:.10g}, "
            f"expected {expected[worst]:.10g}"
        )
    raise AssertionError(
        f"{name} is wrong: at index {tuple(int(i) for i in worst)} got {got[worst]:.10g}, "
        f"expected {expected[worst]:.10g}"
    )


def check_scalar(
    actual: object,
    expected: float,
    name: str,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-12,
    mistakes: Mapping[str, float] | None = None,
) -> None:
    """Assert that ``actual`` is one number equal to ``expected`` within tolerance."""
    got = _plain(actual, name)
    if got.size != 1:
        raise AssertionError(f"{name} should be a single number, got shape {got.shape}")
    check_array(got.reshape(()), _array(expected, dtype=_float64), name, rtol=rtol, atol=atol,
                mistakes=mistakes)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||a + b||, the usual measure for comparing two gradients (0 if both are 0)."""
    a = _array(a, dtype=_float64, subok=False)
    b = _array(b, dtype=_float64, subok=False)
    denom = _norm(a + b)
    if denom == 0:
        return 0.0 if _norm(a - b) == 0 else float("inf")
    return float(_norm(a - b) / denom)


def _agree(got: np.ndarray, numeric: np.ndarray, name: str, tol: float, against: str) -> float:
    """The relative error of ``got`` against ``numeric``; AssertionError unless it is below
    ``tol``, saying when ``-got`` would pass (a sign error)."""
    err = relative_error(got, numeric)
    if not err < tol:
        if relative_error(-got, numeric) < tol:
            raise AssertionError(f"{name} has the wrong sign (relative error {err:.2e})")
        raise AssertionError(
            f"{name} disagrees with {against}: relative error {err:.2e} "
            f"(should be below {tol:.0e})"
        )
    return err


def check_gradient(analytic: object, numeric: np.ndarray, name: str, tol: float = 1e-8) -> None:
    """Assert that an analytic gradient agrees with a numerical one: relative error < tol."""
    numeric = _array(numeric, dtype=_float64, subok=False)
    got = _plain(analytic, name)
    if got.shape != numeric.shape:
        raise AssertionError(f"{name} has shape {got.shape}, expected {numeric.shape}")
    _agree(got, numeric, name, tol, "the numerical gradient")


def check_directional_derivatives(
    analytic: object,
    f,
    a: np.ndarray,
    name: str,
    *,
    tol: float = 1e-7,
    directions: int = 6,
    eps: float = 1e-5,
    seed: int = 0,
) -> float:
    """Assert that the gradient ``analytic`` of the number ``f()`` with respect to ``a`` is right
    along a few random directions; return the relative error.

    ``f`` takes no arguments and reads the array ``a``, which is moved in place to
    ``a + eps * v`` and ``a - eps * v`` for each random unit direction ``v`` and then restored.
    The centred difference ``(f(a + eps v) - f(a - eps v)) / (2 eps)`` estimates the
    directional derivative, which a right gradient ``g`` gives as ``sum(g * v)``. Two calls of
    ``f`` per direction, whatever the size of ``a`` (a wrong gradient disagrees along almost
    every direction), instead of two per entry.
    """
    got = _plain(analytic, name)
    if got.shape != np.shape(a):
        raise AssertionError(f"{name} has shape {got.shape}, expected {np.shape(a)}")
    if not _isfinite(got).all():
        raise AssertionError(f"{name} contains NaN or infinity")
    rng = np.random.default_rng(seed)
    saved = _array(a, copy=True)
    predicted, measured = [], []
    try:
        for _ in range(directions):
            v = rng.normal(size=saved.shape)
            v /= _norm(v) or 1.0
            a[...] = saved + eps * v
            plus = float(f())
            a[...] = saved - eps * v
            minus = float(f())
            a[...] = saved
            measured.append((plus - minus) / (2 * eps))
            predicted.append(float(np.sum(got * v)))
    finally:
        a[...] = saved
    return _agree(_array(predicted), _array(measured), name, tol,
                  "the numerical derivative along random directions")
