"""The shipped source network of assignment 04 loads into its architecture, is small, and
reproduces the accuracy recorded in its recipe (evaluated, not retrained)."""

from __future__ import annotations

import re

import torch

from sit471.transfer import (
    RECIPE,
    SOURCE_CLASSES,
    WEIGHTS,
    accuracy,
    load_source_cnn,
    small_cnn,
    source_data,
)


def test_weights_file_is_small_and_holds_plain_tensors():
    assert WEIGHTS.is_file() and RECIPE.is_file()
    assert WEIGHTS.stat().st_size < 5 * 1024 * 1024
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert set(state) == set(small_cnn(SOURCE_CLASSES).state_dict())
    assert all(v.dtype == torch.float32 for v in state.values())


def test_weights_reproduce_the_recorded_source_accuracy():
    text = RECIPE.read_text()
    m = re.search(r"source validation accuracy: (\d+) / (\d+)", text)
    assert m, f"{RECIPE} does not record the source validation accuracy"
    assert re.search(r"source test accuracy: (\d+) / (\d+)", text)
    right, total = int(m[1]), int(m[2])
    data = source_data(parts=("val",))
    assert len(data["y_val"]) == total
    model = load_source_cnn()
    assert round(accuracy(model, data["x_val"], data["y_val"]) * total) == right
    assert right / total >= 0.7  # 256 classes: chance is 0.4 %


def test_load_source_cnn_gives_independent_copies():
    a, b = load_source_cnn(), load_source_cnn()
    with torch.no_grad():
        a.features.conv1.weight.zero_()
    assert b.features.conv1.weight.abs().sum() > 0
