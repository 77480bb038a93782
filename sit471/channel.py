"""The kernel's side of grading: run the student's functions on the grader's inputs and send
the outputs back, as data only.

At grading time the grader chooses fresh inputs for every hidden test and writes them to a
file named by ``$SIT471_CASES``. A hidden test cell hands a *probe* to :func:`send`: a
function that takes one case's inputs as keyword arguments, calls the student's code and
returns what should be checked::

    send("test_forward", lambda X, W1, W2: dict(zip(["z2", "a2", "z3", "y_hat"],
                                                    forward(X, W1, W2))))

:func:`send` runs the probe on every case and displays the outputs as one output of the
cell with the MIME type :data:`MIME`: JSON, with arrays as ``.npy`` bytes in base64. The
grader reads that output, compares it with the reference answers in its own process and
writes the verdict into the cell. Nothing here knows the right answers, and nothing here
decides a point: whatever the kernel does, a wrong answer cannot pass.

Outside grading (no ``$SIT471_CASES``) :func:`send` does nothing.

Values a probe may return: numbers, booleans, strings, ``None``, NumPy arrays of numbers or
booleans (torch tensors are converted), and lists, tuples and string-keyed dicts of these.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: MIME type of the output that carries a test cell's results to the grader.
MIME = "application/vnd.sit471.results+json"
#: Environment variable naming the grader's file of inputs.
CASES_ENV = "SIT471_CASES"

# Own references, taken at import (a student who rebinds np.save only breaks their results).
_save, _load, _ndarray, _generic = np.save, np.load, np.ndarray, np.generic


def encode(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data: arrays become ``{"npy": base64}`` (no pickle, ever)."""
    if depth > 8:
        raise TypeError("the result is nested too deeply")
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, float) and not math.isfinite(value):
        value = np.array(value)  # JSON has no NaN or infinity: send it as an array
    if isinstance(value, (_ndarray, _generic)):  # before float: np.float64 is a float
        buffer = io.BytesIO()
        _save(buffer, np.asarray(value), allow_pickle=False)
        return {"npy": base64.b64encode(buffer.getvalue()).decode("ascii")}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return {"list": [encode(v, depth + 1) for v in value]}
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode(v, depth + 1) for k, v in value.items()}}
    raise TypeError(f"a {type(value).__name__} cannot be sent to the grader")


def decode(data: Any, depth: int = 0) -> Any:
    """The inverse of :func:`encode`; raises ValueError on anything else."""
    if depth > 8:
        raise ValueError("nested too deeply")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, dict) and len(data) == 1:
        (kind, inner), = data.items()
        if kind == "npy" and isinstance(inner, str):
            array = _load(io.BytesIO(base64.b64decode(inner, validate=True)), allow_pickle=False)
            if array.dtype.kind not in "biuf":
                raise ValueError(f"arrays of dtype {array.dtype} are not accepted")
            return array
        if kind == "list" and isinstance(inner, list):
            return [decode(v, depth + 1) for v in inner]
        if kind == "dict" and isinstance(inner, dict):
            return {str(k): decode(v, depth + 1) for k, v in inner.items()}
    raise ValueError(f"unreadable value {str(data)[:60]!r}")


def read_cases(path: str | os.PathLike, grade_id: str | None = None
               ) -> dict[str, list[dict[str, Any]]]:
    """The grader's inputs: grade id -> list of cases (keyword arguments of the probe);
    only ``grade_id``'s when given."""
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    return {gid: [decode(case) for case in cases] for gid, cases in raw.items()
            if grade_id is None or gid == grade_id}


def write_cases(path: str | os.PathLike, cases: Mapping[str, list[Mapping[str, Any]]]) -> None:
    """Write the grader's inputs for :func:`read_cases`."""
    data = {gid: [encode(dict(case)) for case in items] for gid, items in cases.items()}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)


def send(grade_id: str, probe: Callable[..., Any]) -> None:
    """Run ``probe(**case)`` on each of this grading run's cases for ``grade_id`` and
    display the outputs for the grader. An exception in one case is sent as that case's
    error (the grader turns it into the test's message)."""
    path = os.environ.get(CASES_ENV)
    if not path:
        return
    from IPython.display import display

    cases = read_cases(path, grade_id).get(grade_id, [])
    results = []
    for case in cases:
        try:
            out = probe(**case)
            results.append({"ok": encode(out)})
        except Exception as exc:  # the student's code failed on the grader's input
            results.append({"error": f"{type(exc).__name__}: {exc}"[:500]})
    display({MIME: {"grade_id": grade_id, "results": results}}, raw=True)
