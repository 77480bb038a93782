"""sit471.trainer and sit471.device: TensorBoard logs read back with TensorBoard's own reader,
history contents, the device choice, progress and log folders while grading, and the MNIST
loader of sit471.data. Tiny models and data: the whole file runs in a few seconds."""

from __future__ import annotations

import gzip
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import TensorDataset

import sit471.trainer as trainer
from sit471.data import digits, load_mnist_or_digits
from sit471.device import device
from sit471.trainer import History, default_logdir, evaluate, fit, new_run_dir, show_progress

TAGS = {"epoch_loss", "epoch_accuracy"}


def tiny_data(n: int = 30, seed: int = 0, features: int = 4, classes: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1)  # learnable labels 0..2
    return x, y % classes


def tiny_model(seed: int = 0, features: int = 4, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(features, classes)


def scalars(run_part: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of one TensorBoard run folder, as (step, value) lists."""
    events = EventAccumulator(str(run_part))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


@pytest.fixture(autouse=True)
def _not_grading(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("SIT471_DEVICE", raising=False)
    device.cache_clear()
    yield
    device.cache_clear()


# ------------------------------------------------------------------------------ TensorBoard


def test_fit_writes_keras_layout_that_tensorboard_reads(tmp_path):
    train, val = tiny_data(30, 0), tiny_data(12, 1)
    history = fit(tiny_model(), train, val, epochs=3, batch_size=8, lr=0.5, logdir=tmp_path,
                  name="tiny")
    run = history.logdir
    assert run.parent == tmp_path
    assert re.fullmatch(r"\d{8}-\d{6}-tiny", run.name), run.name
    assert sorted(p.name for p in run.iterdir()) == ["train", "validation"]
    expected = {
        "train": {"epoch_loss": history.loss, "epoch_accuracy": history.accuracy},
        "validation": {"epoch_loss": history.val_loss, "epoch_accuracy": history.val_accuracy},
    }
    for part, tags in expected.items():
        found = scalars(run / part)
        assert set(found) == TAGS, (part, set(found))
        for tag, values in tags.items():
            steps = [s for s, _ in found[tag]]
            assert steps == [0, 1, 2], f"{part}/{tag}: one step per epoch, got {steps}"
            np.testing.assert_allclose([v for _, v in found[tag]], values, rtol=1e-6)


def test_every_run_gets_its_own_folder(tmp_path):
    train = tiny_data()
    runs = [fit(tiny_model(), train, epochs=1, logdir=tmp_path, name="same").logdir
            for _ in range(3)]
    assert len(set(runs)) == 3 and all(r.parent == tmp_path for r in runs)
    assert [sorted(p.name for p in r.iterdir()) for r in runs] == [["train"]] * 3
    assert set(scalars(runs[0] / "train")) == TAGS


def test_new_run_dir_cleans_names(tmp_path):
    run = new_run_dir(tmp_path / "deep" / "runs", "lr=0.1 / batch 32")
    assert run.is_dir() and run.parent == tmp_path / "deep" / "runs"
    assert run.name.endswith("-lr=0.1___batch_32"), run.name


def test_regression_targets_log_loss_only(tmp_path):
    x, _ = tiny_data()
    y = x[:, :1] * 2.0
    history = fit(nn.Linear(4, 1), (x, y), (x, y), epochs=2, loss_fn=nn.functional.mse_loss,
                  logdir=tmp_path)
    assert history.accuracy == [] and history.val_accuracy == []
    assert len(history.loss) == len(history.val_loss) == 2
    for part in ("train", "validation"):
        assert set(scalars(history.logdir / part)) == {"epoch_loss"}


def test_log_false_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    history = fit(tiny_model(), tiny_data(), epochs=2, log=False)
    assert history.logdir is None
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ history


def test_history_contents(tmp_path):
    train, val = tiny_data(30, 0), tiny_data(12, 1)
    model = tiny_model()
    history = fit(model, train, val, epochs=4, batch_size=8, lr=0.5, logdir=tmp_path)
    assert isinstance(history, History) and history.stopped is None
    assert history.epochs == 4
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
        assert len(getattr(history, name)) == 4, name
    assert len(history.batch_loss) == 4 * 4  # ceil(30 / 8) = 4 iterations per epoch
    assert all(0.0 <= a <= 1.0 for a in history.accuracy + history.val_accuracy)
    assert all(np.diff(history.seconds) >= 0) and history.seconds[0] >= 0
    # the epoch's training loss is the mean over its examples of the batch losses (8, 8, 8, 6)
    weights = np.array([8, 8, 8, 6]) / 30
    for epoch in range(4):
        batch = np.array(history.batch_loss[4 * epoch:4 * epoch + 4])
        assert math.isclose(history.loss[epoch], float(weights @ batch), rel_tol=1e-9)
    # the last validation numbers are those of the trained model
    loss, acc = evaluate(model, val)
    assert math.isclose(history.val_loss[-1], loss, rel_tol=1e-6)
    assert history.val_accuracy[-1] == acc
    assert history.loss[-1] < history.loss[0], "training should lower the loss"
    as_dict = history.as_dict()
    assert as_dict["val_loss"] == history.val_loss and as_dict["logdir"] == history.logdir


def test_same_seed_same_run():
    train, val = tiny_data(30, 0), tiny_data(12, 1)
    a = fit(tiny_model(3), train, val, epochs=3, batch_size=4, seed=5, log=False)
    b = fit(tiny_model(3), train, val, epochs=3, batch_size=4, seed=5, log=False)
    c = fit(tiny_model(3), train, val, epochs=3, batch_size=4, seed=6, log=False)
    assert a.batch_loss == b.batch_loss and a.val_loss == b.val_loss
    assert a.batch_loss != c.batch_loss, "the seed should change the order of the examples"


def test_datasets_and_tensors_are_accepted():
    x, y = tiny_data(20)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    from_tensors = fit(tiny_model(), (xt, yt), (xt, yt), epochs=2, batch_size=6, log=False)
    from_dataset = fit(tiny_model(), TensorDataset(xt, yt), TensorDataset(xt, yt), epochs=2,
                       batch_size=6, log=False)
    assert len(from_tensors.batch_loss) == len(from_dataset.batch_loss) == 2 * 4
    assert from_dataset.val_accuracy and from_tensors.val_accuracy


def test_callback_can_stop_training():
    seen = []

    def stop_after_two(history):
        seen.append(history.epochs)
        return history.epochs == 2

    history = fit(tiny_model(), tiny_data(), epochs=10, callback=stop_after_two, log=False)
    assert seen == [1, 2] and history.epochs == 2
    assert "callback" in history.stopped


def test_diverging_run_stops_with_a_reason():
    x, _ = tiny_data()
    y = x[:, :1]  # linear regression with a far too large rate: the loss grows without bound
    history = fit(nn.Linear(4, 1), (x, y), epochs=200, lr=50.0,
                  loss_fn=nn.functional.mse_loss, log=False)
    assert history.epochs < 200
    assert not math.isfinite(history.loss[-1]) and "training loss became" in history.stopped


def test_bad_arguments():
    with pytest.raises(ValueError, match="differ in length"):
        fit(tiny_model(), (np.zeros((3, 4)), np.zeros(2, dtype=int)), log=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(tiny_model(), tiny_data(), batch_size=0, log=False)


# ------------------------------------------------------------------------------ device


def test_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device() == torch.device("cpu")


def test_device_is_cuda_when_available_and_chosen_once(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: calls.append(1) or True)
    assert device() == torch.device("cuda")
    assert device() == torch.device("cuda") and len(calls) == 1, "the choice is made once"


def test_device_can_be_overridden(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("SIT471_DEVICE", "cpu")
    assert device() == torch.device("cpu")


def test_model_and_data_go_to_the_chosen_device():
    model = tiny_model()
    fit(model, tiny_data(), epochs=1, log=False)
    assert all(p.device.type == device().type for p in model.parameters())


# ------------------------------------------------------------------------------ grading


def test_while_grading_logs_go_to_a_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_logdir() == Path("runs")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setattr(trainer, "_grading_logdir", None)
    temporary = default_logdir()
    assert temporary.is_absolute() and temporary.is_dir()
    assert not temporary.is_relative_to(tmp_path)
    history = fit(tiny_model(), tiny_data(), epochs=1)
    assert history.logdir.parent == temporary
    assert list(tmp_path.iterdir()) == [], "nothing may be written next to the notebook"


def test_progress_bar_only_when_someone_watches(monkeypatch, capsys):
    assert show_progress(True) and not show_progress(False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert not show_progress(None)
    assert show_progress(True), "an explicit request wins"
    fit(tiny_model(), tiny_data(), epochs=2, log=False)
    assert capsys.readouterr().err == ""


def test_trainer_holds_no_graded_answers():
    """The library must not hand out the answers to assignment 02's exercises."""
    import sit471.device

    graded = {"iterations_per_epoch", "minibatches", "smooth", "suggest_lr", "best_epoch",
              "sgd_epoch", "lr_range_test"}
    for module in (trainer, sit471.device):
        assert not graded & set(vars(module)), module.__name__


# ------------------------------------------------------------------------------ data


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_load_mnist_or_digits_without_a_path_is_digits():
    a, b = load_mnist_or_digits(seed=3), digits(3)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_load_mnist_or_digits_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, size=(20, 28, 28))
    train_labels = np.arange(20) % 10
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_images)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_labels)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", train_images[:6])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", train_labels[:6])
    data = load_mnist_or_digits(tmp_path, seed=1, val_size=5)
    assert data["x_train"].shape == (15, 1, 28, 28) and data["x_val"].shape == (5, 1, 28, 28)
    assert data["x_test"].shape == (6, 1, 28, 28) and data["y_test"].dtype == np.int64
    assert data["x_train"].dtype == np.float64
    assert 0.0 <= data["x_train"].min() and data["x_train"].max() <= 1.0
    # the split is a permutation of the training file: every image once, labels kept with it
    both = np.concatenate([data["x_train"], data["x_val"]])[:, 0]
    labels = np.concatenate([data["y_train"], data["y_val"]])
    order = [int(np.flatnonzero((train_images / 255.0 == img).all(axis=(1, 2)))[0]) for img in both]
    assert sorted(order) == list(range(20))
    np.testing.assert_array_equal(labels, train_labels[order])
    again = load_mnist_or_digits(tmp_path, seed=1, val_size=5)
    np.testing.assert_array_equal(again["y_val"], data["y_val"])
    with pytest.raises(ValueError, match="val_size"):
        load_mnist_or_digits(tmp_path, val_size=20)
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        load_mnist_or_digits(tmp_path / "missing")


def test_fit_indices_is_seeded_adam_over_shuffled_index_batches():
    """The experiments' one small loop: the same steps as Adam written out by hand, the caller's
    thread count restored, on_epoch sees each epoch's step losses."""
    from sit471.trainer import fit_indices

    x, y = torch.randn(50, 3), torch.randn(50)

    def make():
        torch.manual_seed(1)
        return torch.nn.Linear(3, 1)

    def batch_loss(model, idx):
        return ((model(x[idx]).squeeze(1) - y[idx]) ** 2).mean()

    model, seen = make(), []
    torch.set_num_threads(2)
    losses = fit_indices(model, batch_loss, 50, epochs=3, batch_size=16, lr=0.01, seed=4,
                         on_epoch=lambda epoch, ls: seen.append((epoch, len(ls))))
    assert torch.get_num_threads() == 2
    assert seen == [(0, 4), (1, 4), (2, 4)] and len(losses) == 12

    by_hand, expected = make(), []
    opt, gen = torch.optim.Adam(by_hand.parameters(), lr=0.01), torch.Generator().manual_seed(4)
    for _ in range(3):
        order = torch.randperm(50, generator=gen)
        for s in range(0, 50, 16):
            loss = batch_loss(by_hand, order[s:s + 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
            expected.append(loss.item())
    assert losses == expected
    assert torch.equal(model.weight, by_hand.weight)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        fit_indices(model, batch_loss, 50, batch_size=0)
