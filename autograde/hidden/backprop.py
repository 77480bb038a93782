"""Hidden tests of assignment 01 (backprop), decided by the grader.

Each test draws its inputs from the run's generator; the notebook's probe returns the
student's outputs; the check compares them with ``sit471.reference.backprop``. The checks
also cover what the visible tests check (no overflow, inputs left untouched), so a kernel
that skips its visible tests gains nothing.
"""

from __future__ import annotations

import numpy as np

from autograde.verdict import HiddenTests
from sit471.checks import check_array, check_gradient, check_scalar
from sit471.reference import backprop as ref

hidden = HiddenTests()


def _shape_name(n: int, i: int, h: int, o: int) -> str:
    return f"n={n}, i={i}, h={h}, o={o}"


@hidden.cases("test_sigmoid")
def _(rng):
    return [dict(z=rng.normal(scale=20, size=shape)) for shape in [(1,), (4, 3), (2, 5, 3)]] + [
        dict(z=np.array([-1000.0, -rng.uniform(700, 900), rng.uniform(700, 900), 1000.0]))]


@hidden.check("test_sigmoid")
def _(case, got):
    if got.get("overflow"):
        raise AssertionError("sigmoid overflows for large |z| (for example z = -1000): avoid "
                             "computing exp(-z) for large negative z")
    z = case["z"]
    check_array(got["s"], ref.sigmoid(z), f"sigmoid on input of shape {z.shape}")


@hidden.cases("test_sigmoid_prime")
def _(rng):
    return [dict(z=rng.normal(scale=4, size=(5, 4))), dict(z=np.linspace(-6, 6, 13))]


@hidden.check("test_sigmoid_prime")
def _(case, got):
    z = case["z"]
    s = ref.sigmoid(z)
    check_array(got, ref.sigmoid_prime(z), "sigmoid_prime on the grader's input",
                inputs=z if z.ndim == 1 else None, input_name="z",
                mistakes={"f(z) was returned instead of f'(z)": s,
                          "the factor (1 - f(z)) is missing (f(z) * f(z))": s * s,
                          "f(z) (1 + f(z)) was computed instead of f(z) (1 - f(z))": s * (1 + s),
                          "the sign of z is flipped inside": ref.sigmoid(-z) ** 2})


@hidden.cases("test_forward")
def _(rng):
    return [dict(X=rng.normal(size=(n, i)), W1=rng.normal(size=(i, h)), W2=rng.normal(size=(h, o)))
            for n, i, h, o in [(1, 2, 3, 1), (7, 4, 5, 2), (2, 1, 1, 3), (3, 2, 3, 1)]]


@hidden.check("test_forward")
def _(case, got):
    n, i = case["X"].shape
    h, o = case["W2"].shape
    assert isinstance(got, list) and len(got) == 4, (
        "forward must return a tuple (z2, a2, z3, y_hat)")
    for name, a, e in zip(["z2", "a2", "z3", "y_hat"], got, ref.forward(**case), strict=True):
        check_array(a, e, f"{name} for {_shape_name(n, i, h, o)}")


@hidden.cases("test_cost")
def _(rng):
    return [dict(y=rng.random((6, 2)), y_hat=rng.random((6, 2))),
            dict(y=rng.random((3, 1)), y_hat=rng.random((3, 1)))]


@hidden.check("test_cost")
def _(case, got):
    expected = ref.cost(case["y"], case["y_hat"])
    check_scalar(got, expected, f"cost on random data of shape {case['y'].shape}", rtol=1e-9,
                 mistakes={"the mean was taken instead of the sum": expected / case["y"].size,
                           "the factor 1/2 is missing": 2 * expected})


@hidden.cases("test_backward_output")
def _(rng):
    cases = []
    for n, h, o in [(1, 3, 1), (6, 4, 2), (3, 3, 3)]:
        z3 = rng.normal(size=(n, o))
        # consistent inputs: y_hat = f(z3), as forward produces them
        cases.append(dict(y=rng.random((n, o)), y_hat=ref.sigmoid(z3), z3=z3,
                          a2=rng.random((n, h))))
    return cases


@hidden.check("test_backward_output")
def _(case, got):
    y, y_hat, z3, a2 = case["y"], case["y_hat"], case["z3"], case["a2"]
    (n, h), o = a2.shape, y.shape[1]
    d3, g2 = ref.backward_output(y, y_hat, z3, a2)
    assert isinstance(got, list) and len(got) == 2, (
        "backward_output must return a tuple (delta3, dJdW2)")
    check_array(got[0], d3, f"delta3 for n={n}, h={h}, o={o}",
                mistakes={"the factor f'(z3) is missing": -(y - y_hat),
                          "f(z3) was used instead of f'(z3)": -(y - y_hat) * ref.sigmoid(z3),
                          "the sign is flipped: use -(y - y_hat)":
                              (y - y_hat) * ref.sigmoid_prime(z3)})
    check_array(got[1], g2, f"dJdW2 for n={n}, h={h}, o={o}",
                mistakes={"the factor f'(z3) is missing": a2.T @ -(y - y_hat)})


@hidden.cases("test_backward_hidden")
def _(rng):
    return [dict(delta3=rng.normal(size=(n, o)), W2=rng.normal(size=(h, o)),
                 z2=rng.normal(size=(n, h)), X=rng.normal(size=(n, i)))
            for n, i, h, o in [(1, 2, 3, 1), (5, 3, 4, 2), (4, 4, 4, 4)]]


@hidden.check("test_backward_hidden")
def _(case, got):
    d3, W2, z2, X = case["delta3"], case["W2"], case["z2"], case["X"]
    (n, i), (h, o) = X.shape, W2.shape
    d2, g1 = ref.backward_hidden(d3, W2, z2, X)
    assert isinstance(got, list) and len(got) == 2, (
        "backward_hidden must return a tuple (delta2, dJdW1)")
    check_array(got[0], d2, f"delta2 for {_shape_name(n, i, h, o)}",
                mistakes={"the factor f'(z2) is missing": d3 @ W2.T})
    check_array(got[1], g1, f"dJdW1 for {_shape_name(n, i, h, o)}",
                mistakes={"the factor f'(z2) is missing": X.T @ (d3 @ W2.T)})


@hidden.cases("test_backward")
def _(rng):
    return [dict(X=rng.normal(size=(n, i)), y=rng.random((n, o)), W1=rng.normal(size=(i, h)),
                 W2=rng.normal(size=(h, o)))
            for n, i, h, o in [(1, 2, 3, 1), (8, 3, 5, 2)]]


@hidden.check("test_backward")
def _(case, got):
    (n, i), (h, o) = case["X"].shape, case["W2"].shape
    assert isinstance(got, list) and len(got) == 2, "backward must return (dJdW1, dJdW2)"
    expected = ref.backward(case["X"], case["y"], case["W1"], case["W2"])
    for name, a, e in zip(["dJdW1", "dJdW2"], got, expected, strict=True):
        check_array(a, e, f"{name} for {_shape_name(n, i, h, o)}")


def _smooth(A: np.ndarray):
    """The function whose gradient the numerical_gradient probe estimates (same in both)."""
    return lambda W: float(np.sum(np.tanh(W) * A) + np.sum(W ** 3))


@hidden.cases("test_numerical_gradient")
def _(rng):
    return [dict(A=rng.normal(size=(3, 4)), W=rng.normal(size=(3, 4))),
            dict(A=rng.normal(size=(2, 2, 2)), W=rng.normal(size=(2, 2, 2))),
            dict(A=rng.normal(size=(5,)), W=rng.normal(size=(5,)))]


@hidden.check("test_numerical_gradient")
def _(case, got):
    A, W = case["A"], case["W"]
    f = _smooth(A)
    check_array(got["W_after"], W, "W after numerical_gradient (it must not change the "
                "caller's W)")
    onesided = np.zeros_like(W)
    for k in np.ndindex(W.shape):
        Wp = W.copy()
        Wp[k] += 1e-4
        onesided[k] = (f(Wp) - f(W)) / 1e-4
    check_array(got["grad"], ref.numerical_gradient(f, W),
                f"numerical gradient of a smooth function of a W of shape {W.shape}",
                rtol=1e-6, atol=1e-9,
                mistakes={"a one-sided difference: use (f(W + eps) - f(W - eps)) / (2 eps)":
                          onesided})


@hidden.cases("test_gradient_check")
def _(rng):
    return [dict(X=rng.normal(size=(5, 3)), y=rng.random((5, 2)), W1=rng.normal(size=(3, 4)),
                 W2=rng.normal(size=(4, 2)))]


@hidden.check("test_gradient_check")
def _(case, got):
    # the student's own backward against the reference's numerical gradient of the cost, with
    # eps = 1e-5: at the notebook's 1e-4 the centred formula's own error on random inputs
    # reaches 1e-8 (the tolerance) now and then and fails a correct answer; at 1e-5 the worst
    # of 2,000 draws was 9.8e-10
    X, y, W1, W2 = case["X"], case["y"], case["W1"], case["W2"]
    num1 = ref.numerical_gradient(lambda W: ref.cost(y, ref.forward(X, W, W2)[3]), W1, eps=1e-5)
    num2 = ref.numerical_gradient(lambda W: ref.cost(y, ref.forward(X, W1, W)[3]), W2, eps=1e-5)
    check_gradient(got[0], num1, "dJdW1 (5x3 data, 4 hidden, 2 outputs)")
    check_gradient(got[1], num2, "dJdW2 (5x3 data, 4 hidden, 2 outputs)")


@hidden.cases("test_train")
def _(rng):
    return [dict(X=rng.random((4, 3)), y=rng.random((4, 2)), W1=rng.normal(size=(3, 5)),
                 W2=rng.normal(size=(5, 2)), lr=float(rng.uniform(0.3, 1.0)), steps=20)]


@hidden.check("test_train")
def _(case, got):
    X, y, W1, W2, lr, steps = (case[k] for k in ("X", "y", "W1", "W2", "lr", "steps"))
    check_array(got["W1_after"], W1, "W1 passed to train (it must not be modified)")
    check_array(got["W2_after"], W2, "W2 passed to train (it must not be modified)")
    e1, e2, eh = ref.train(X, y, W1, W2, lr=lr, steps=steps)
    assert np.shape(got["history"]) == (steps + 1,), (
        f"history should have steps + 1 = {steps + 1} entries, got shape "
        f"{np.shape(got['history'])}")
    where = f"{steps} steps at lr={lr:.3f} on the grader's data"
    check_array(got["history"], eh, f"history for {where}")
    check_array(got["W1"], e1, f"W1 after {where}")
    check_array(got["W2"], e2, f"W2 after {where}")
    # the trained weights, judged by the reference's own forward pass
    check_scalar(ref.cost(y, ref.forward(X, got["W1"], got["W2"])[3]), eh[-1],
                 "the cost of the trained weights")
