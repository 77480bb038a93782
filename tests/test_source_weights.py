"""The shipped source network of assignment 04 loads into its architecture, is small, and
reproduces the source accuracy recorded in its recipe (evaluated, not retrained)."""

from __future__ import annotations

import re

import torch

from sit471.transfer import RECIPE, WEIGHTS, accuracy, load_source_cnn, small_cnn, source_data


def test_weights_file_is_small_and_holds_plain_tensors():
    assert WEIGHTS.is_file() and RECIPE.is_file()
    assert WEIGHTS.stat().st_size < 1024 * 1024
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert set(state) == set(small_cnn(5).state_dict())
    assert all(v.dtype == torch.float32 for v in state.values())


def test_weights_reproduce_the_recorded_source_accuracy():
    m = re.search(r"source test accuracy: (\d+) / (\d+)", RECIPE.read_text())
    assert m, f"{RECIPE} does not record the source test accuracy"
    right, total = int(m[1]), int(m[2])
    data = source_data()
    assert len(data["y_test"]) == total
    model = load_source_cnn()
    assert round(accuracy(model, data["x_test"], data["y_test"]) * total) == right
    assert right / total >= 0.95


def test_load_source_cnn_gives_independent_copies():
    a, b = load_source_cnn(), load_source_cnn()
    with torch.no_grad():
        a.features.conv1.weight.zero_()
    assert b.features.conv1.weight.abs().sum() > 0
