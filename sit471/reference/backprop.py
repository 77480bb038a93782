"""Reference answers for assignment 01: a two-layer sigmoid network trained by backpropagation.

Notation (rows are examples, so one matrix product handles a whole batch):

    X  (n, i)   inputs            W1 (i, h)   input -> hidden weights
    z2 = X W1       (n, h)        a2 = f(z2)  (n, h)
    z3 = a2 W2      (n, o)        y_hat = f(z3) (n, o)        W2 (h, o)
    J  = sum of 1/2 (y - y_hat)^2 over every example and output

f is the logistic sigmoid. There are no biases. The lecture's network has i=2, h=3, o=1,
but every function here works for any n, i, h and o.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# The same measure the notebooks use to compare gradients: ||a - b|| / ||a + b||.
from sit471.checks import relative_error  # noqa: F401  (part of this module's API)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """f(z) = 1 / (1 + e^-z), elementwise, without overflow for large |z|."""
    z = np.asarray(z, dtype=float)
    # e^-|z| never overflows; choose the algebraically equal form for each sign.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_prime(z: np.ndarray) -> np.ndarray:
    """f'(z) = e^-z / (1 + e^-z)^2 = f(z) (1 - f(z)), elementwise."""
    s = sigmoid(z)
    return s * (1.0 - s)


def forward(
    X: np.ndarray, W1: np.ndarray, W2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Forward pass. X (n, i), W1 (i, h), W2 (h, o).

    Returns z2 (n, h), a2 (n, h), z3 (n, o), y_hat (n, o).
    """
    z2 = X @ W1
    a2 = sigmoid(z2)
    z3 = a2 @ W2
    y_hat = sigmoid(z3)
    return z2, a2, z3, y_hat


def cost(y: np.ndarray, y_hat: np.ndarray) -> float:
    """J = sum 1/2 (y - y_hat)^2 over all examples and outputs. y, y_hat (n, o)."""
    return float(0.5 * np.sum((np.asarray(y) - np.asarray(y_hat)) ** 2))


def backward_output(
    y: np.ndarray, y_hat: np.ndarray, z3: np.ndarray, a2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Output layer: delta3 = -(y - y_hat) * f'(z3)  (n, o);  dJ/dW2 = a2^T delta3  (h, o)."""
    delta3 = -(y - y_hat) * sigmoid_prime(z3)
    return delta3, a2.T @ delta3


def backward_hidden(
    delta3: np.ndarray, W2: np.ndarray, z2: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Hidden layer: delta2 = (delta3 W2^T) * f'(z2)  (n, h);  dJ/dW1 = X^T delta2  (i, h)."""
    delta2 = (delta3 @ W2.T) * sigmoid_prime(z2)
    return delta2, X.T @ delta2


def backward(
    X: np.ndarray, y: np.ndarray, W1: np.ndarray, W2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of J: dJ/dW1 shaped like W1 (i, h), dJ/dW2 shaped like W2 (h, o)."""
    z2, a2, z3, y_hat = forward(X, W1, W2)
    delta3, dJdW2 = backward_output(y, y_hat, z3, a2)
    _, dJdW1 = backward_hidden(delta3, W2, z2, X)
    return dJdW1, dJdW2


def numerical_gradient(f: Callable[[np.ndarray], float], W: np.ndarray, eps: float = 1e-4):
    """Centred differences: (f(W + eps e_k) - f(W - eps e_k)) / (2 eps) for every entry k.

    f takes an array shaped like W and returns a scalar; W is not modified. The error of
    the centred formula shrinks like eps^2. Returns an array shaped like W.
    """
    W = np.array(W, dtype=float)
    grad = np.zeros_like(W)
    for k in np.ndindex(W.shape):
        old = W[k]
        W[k] = old + eps
        f_plus = f(W.copy())
        W[k] = old - eps
        f_minus = f(W.copy())
        W[k] = old
        grad[k] = (f_plus - f_minus) / (2 * eps)
    return grad


def train(
    X: np.ndarray,
    y: np.ndarray,
    W1: np.ndarray,
    W2: np.ndarray,
    lr: float = 3.0,
    steps: int = 5000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain gradient descent on J: W <- W - lr dJ/dW, `steps` times.

    The inputs are not modified. Returns the trained W1, W2 and the cost before every
    step and after the last one: history (steps + 1,).
    """
    W1 = np.array(W1, dtype=float)
    W2 = np.array(W2, dtype=float)
    history = np.empty(steps + 1)
    for step in range(steps):
        history[step] = cost(y, forward(X, W1, W2)[3])
        dJdW1, dJdW2 = backward(X, y, W1, W2)
        W1 -= lr * dJdW1
        W2 -= lr * dJdW2
    history[steps] = cost(y, forward(X, W1, W2)[3])
    return W1, W2, history
