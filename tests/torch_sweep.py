"""The one helper for reference tests that rebuild a computation in torch (early tinygrad's
``helper_test_op``): one helper, many cases, instead of many hand-written comparisons.

* ``results(fn, inputs, grads)`` runs ``fn`` on torch copies of ``inputs`` and returns its
  outputs and, through autograd, the gradients of the inputs given a name in ``grads``;
* ``mismatches(ours, expected)`` names every result whose shape differs or whose largest
  error exceeds ``tol`` times max(1, largest expected value); ``[]`` means agreement;
* ``torch_mismatches(ours, theirs, inputs, grads)`` does both for two torch functions.

A test asserts ``== []``; a test of the test asserts which result a wrong version spoils.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

TOL = 1e-10


@dataclass(frozen=True)
class Case:
    """One point of a sweep: what to run, the shapes of its float inputs, parameters, seed."""

    op: str
    shapes: tuple[tuple[int, ...], ...]
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __str__(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.op}{list(self.shapes)}{params}#{self.seed}"

    def inputs(self, rng: np.random.Generator | None = None) -> list[np.ndarray]:
        """Standard normal float64 arrays of ``shapes``, drawn in order."""
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        return [rng.standard_normal(shape) for shape in self.shapes]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def results(
    fn: Callable, inputs: Sequence[Any], grads: Sequence[str | None] = (), *,
    outputs: Sequence[str] = ("out",), dout: np.ndarray | None = None, seed: int = 0,
) -> dict[str, np.ndarray]:
    """``fn`` on torch copies of ``inputs``: its outputs (named ``outputs``; ``fn`` returns one
    tensor or a tuple) and the gradient of the first one with respect to each input named in
    ``grads`` (aligned with ``inputs``; None: not differentiated). A non-scalar first output
    is differentiated against ``dout``, by default standard normal from ``seed``."""
    grads = list(grads) + [None] * (len(inputs) - len(grads))
    tensors = [torch.as_tensor(a).detach().clone().requires_grad_(g is not None)
               for a, g in zip(inputs, grads, strict=True)]
    out = fn(*tensors)
    out = out if isinstance(out, tuple) else (out,)
    found = dict(zip(outputs, (_numpy(o) for o in out), strict=True))
    if any(grads):
        first = out[0]
        if dout is None and first.ndim:
            dout = np.random.default_rng(seed).standard_normal(tuple(first.shape))
        first.backward(None if dout is None else torch.as_tensor(dout, dtype=first.dtype))
        found |= {g: _numpy(t.grad) for g, t in zip(grads, tensors, strict=True) if g}
    return found


def mismatches(
    ours: Mapping[str, Any], expected: Mapping[str, Any], tol: float = TOL
) -> list[str]:
    """Names (in ``expected``'s order) of results that are missing, of another shape, or off by
    more than ``tol`` times max(1, largest expected magnitude)."""
    wrong = []
    for name, ref in expected.items():
        ref = _numpy(ref)
        got = _numpy(ours[name]) if name in ours else None
        limit = tol * max(1.0, np.max(np.abs(ref), initial=0))
        if got is None or got.shape != ref.shape or np.max(np.abs(got - ref), initial=0) > limit:
            wrong.append(name)
    return wrong


def torch_mismatches(
    ours: Callable, theirs: Callable, inputs: Sequence[Any], grads: Sequence[str | None] = (),
    tol: float = TOL, seed: int = 0,
) -> list[str]:
    """Compare two torch implementations of one computation: outputs and gradients."""
    return mismatches(results(ours, inputs, grads, seed=seed),
                      results(theirs, inputs, grads, seed=seed), tol)
