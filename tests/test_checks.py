"""The checks notebook tests call: right answers pass, common mistakes fail with a named cause."""

from __future__ import annotations

import numpy as np
import pytest

from sit471.checks import (
    check_array,
    check_directional_derivatives,
    check_gradient,
    check_scalar,
)

EXPECTED = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]])


def test_right_answer_passes_including_lists_and_tiny_float_noise():
    check_array(EXPECTED + 1e-12, EXPECTED, "w")
    check_array(EXPECTED.tolist(), EXPECTED, "w")
    check_scalar(0.25, 0.25, "J")
    check_scalar(np.float32(0.25), 0.25, "J")


@pytest.mark.parametrize(
    "answer,message",
    [
        (None, "forget to `return`"),
        (EXPECTED.T, "looks transposed"),
        (-EXPECTED, "wrong sign"),
        (2 * EXPECTED, "constant factor: 2 times"),
        (EXPECTED[:, :2], r"has shape \(2, 2\), expected \(2, 3\)"),
        (EXPECTED.ravel(), r"right values but shape \(6,\)"),
        (EXPECTED + np.eye(2, 3), r"at index \(0, 0\) got 2, expected 1"),
        (np.full((2, 3), np.nan), "NaN"),
        (["a", "b"], "cannot be read as an array"),
        ("abc", "should be a NumPy array"),
        ({"a": 1}, "should be a NumPy array"),
    ],
)
def test_wrong_answers_fail_with_a_helpful_message(answer, message):
    with pytest.raises(AssertionError, match=message):
        check_array(answer, EXPECTED, "w")


def test_transposed_square_matrix_is_named():
    m = np.array([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(AssertionError, match="looks transposed"):
        check_array(m.T, m, "m")


def test_named_mistake_is_reported():
    with pytest.raises(AssertionError, match="it looks like the factor f'.z3. is missing"):
        check_array(
            EXPECTED * 3 + 1,
            EXPECTED,
            "delta3",
            mistakes={"the factor f'(z3) is missing": EXPECTED * 3 + 1},
        )


def test_a_wrong_value_on_a_1d_grid_is_reported_at_its_input():
    z = np.linspace(-6, 6, 13)
    want = np.cos(z) + 2
    wrong = want.copy()
    wrong[9] += 0.5
    at_3 = r"^f\(z\) is wrong: at z = 3 got 1\.51.*, expected 1\.01"
    with pytest.raises(AssertionError, match=at_3):
        check_array(wrong, want, "f(z)", inputs=z, input_name="z")
    with pytest.raises(AssertionError, match=r"at index \(9,\) got"):  # no grid: the index
        check_array(wrong, want, "f(z)")
    with pytest.raises(AssertionError, match=r"at index \(0, 1\)"):  # grid does not fit: index
        check_array(EXPECTED + np.eye(2, 3)[::-1], EXPECTED, "w", inputs=np.arange(3.0))
    with pytest.raises(AssertionError, match="it looks like s"):  # named mistakes come first
        check_array(wrong, want, "f(z)", inputs=z, mistakes={"s": wrong})


def test_scalar_check_rejects_arrays():
    with pytest.raises(AssertionError, match="single number"):
        check_scalar(np.array([0.25, 0.25]), 0.25, "J")


class AlwaysEqual:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


class LyingArray(np.ndarray):
    def __eq__(self, other):
        return np.ones(np.shape(other), dtype=bool)


def test_objects_that_fake_equality_do_not_pass():
    with pytest.raises(AssertionError):
        check_array(AlwaysEqual(), EXPECTED, "w")
    lying = np.zeros((2, 3)).view(LyingArray)
    with pytest.raises(AssertionError, match="at index"):
        check_array(lying, EXPECTED, "w")


def test_checks_keep_their_own_numpy_functions(monkeypatch):
    monkeypatch.setattr(np, "allclose", lambda *a, **k: True)
    with pytest.raises(AssertionError):
        check_array(EXPECTED * 5 + 1, EXPECTED, "w")


def test_gradient_check():
    g = np.array([[0.1, -0.2], [0.3, 0.4]])
    check_gradient(g * (1 + 1e-11), g, "dW")
    with pytest.raises(AssertionError, match="wrong sign"):
        check_gradient(-g, g, "dW")
    with pytest.raises(AssertionError, match="relative error"):
        check_gradient(g * 1.001, g, "dW")
    with pytest.raises(AssertionError, match="shape"):
        check_gradient(g.T[:1], g, "dW")


def test_directional_derivatives_pass_the_gradient_and_name_a_wrong_one():
    a0 = np.array([[0.5, -1.0], [2.0, 0.25]])
    a = a0.copy()
    loss = lambda: float((a ** 2).sum())  # noqa: E731 -- gradient 2a
    assert check_directional_derivatives(2 * a0, loss, a, "dA") < 1e-7
    with pytest.raises(AssertionError, match="dA has the wrong sign"):
        check_directional_derivatives(-2 * a0, loss, a, "dA")
    with pytest.raises(AssertionError, match="disagrees with the numerical derivative along "
                                             "random directions: relative error 3.33e-01"):
        check_directional_derivatives(a0, loss, a, "dA")
    with pytest.raises(AssertionError, match="shape"):
        check_directional_derivatives(np.ones(3), loss, a, "dA")
    assert np.array_equal(a, a0)  # moved in place, then restored
