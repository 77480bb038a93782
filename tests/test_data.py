"""Embedded datasets: seeded, deterministic, nothing downloaded."""

import numpy as np

from sit471.data import digits


def test_digits_split_is_seeded_stratified_and_disjoint():
    a, b = digits(seed=3), digits(seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    n = sum(len(a[f"y_{s}"]) for s in ("train", "val", "test"))
    assert n == 1797 and a["x_train"].shape[1:] == (1, 8, 8)
    assert 0 <= a["x_train"].min() and a["x_train"].max() <= 1
    assert set(np.unique(a["y_test"])) == set(range(10))
    flat = {s: {row.tobytes() for row in a[f"x_{s}"]} for s in ("train", "test")}
    assert len(flat["train"] & flat["test"]) < 10  # a handful of identical images exist
    assert not np.array_equal(digits(seed=4)["y_train"], a["y_train"])
