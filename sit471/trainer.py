"""A small training loop for torch classifiers: progress bar, TensorBoard logs, history as data.

    from sit471.trainer import fit
    history = fit(model, (x_train, y_train), (x_val, y_val), epochs=20, batch_size=32, lr=0.1)
    history.val_loss        # one number per epoch
    # then, in a terminal:  tensorboard --logdir runs

What one call does, epoch after epoch: shuffle the training set, take one SGD step per
mini-batch (an *iteration*), then measure the validation set, log both to TensorBoard and
call ``callback`` (which may stop training).

TensorBoard logs follow the Keras layout, so ``tensorboard --logdir runs`` shows what a
Keras user expects: every call writes one run folder ``<logdir>/<timestamp>[-name]`` with the
sub-folders ``train`` and ``validation``, each with the scalars ``epoch_loss`` and
``epoch_accuracy`` at step 0, 1, 2, ... (one step per epoch). As in Keras, the training
numbers of an epoch are averages over its mini-batches, measured while the weights were still
changing; the validation numbers are measured once, at the end of the epoch.

The model runs on :func:`sit471.device.device` (CPU unless a GPU is available). Data are
``(x, y)`` pairs of NumPy arrays or tensors, or any ``torch.utils.data.Dataset``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

from sit471.device import device

#: A progress bar appears only once a run has lasted this many seconds.
PROGRESS_DELAY_S = 3.0

Data = tuple[Any, Any] | Dataset
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class History:
    """What :func:`fit` measured. Per-epoch lists have one entry per completed epoch.

    loss, accuracy          training loss and accuracy, averaged over the epoch's mini-batches
    val_loss, val_accuracy  on the validation set at the end of each epoch (empty without one)
    seconds                 wall-clock seconds from the start of fit to the end of each epoch
    batch_loss              the loss of every mini-batch, in order: one entry per iteration
    logdir                  the run's TensorBoard folder (None when logging is off)
    stopped                 why training ended before ``epochs`` (None if it did not)

    Accuracy lists stay empty when the targets are not integer class labels.
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    logdir: Path | None = None
    stopped: str | None = None

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.loss)

    def as_dict(self) -> dict[str, Any]:
        """The history as a plain dict of lists (Keras's ``history.history`` names)."""
        return asdict(self)


def _grading() -> bool:
    return os.environ.get("NBGRADER_EXECUTION") is not None


_grading_logdir: Path | None = None


def default_logdir() -> Path:
    """Where runs are logged: ``runs`` in the current folder, or a temporary folder while
    nbgrader validates or autogrades (so that a submission folder does not fill up with logs;
    the temporary folder is removed when the process ends)."""
    global _grading_logdir
    if not _grading():
        return Path("runs")
    if _grading_logdir is None:
        _grading_logdir = Path(tempfile.mkdtemp(prefix="sit471-runs-"))
        atexit.register(shutil.rmtree, _grading_logdir, True)
    return _grading_logdir


def new_run_dir(logdir: str | os.PathLike, name: str | None = None) -> Path:
    """Create and return ``logdir/<YYYYmmdd-HHMMSS>[-name]``; ``-2``, ``-3``... if taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = stamp if not name else f"{stamp}-{re.sub(r'[^A-Za-z0-9._=+-]', '_', name)}"
    for k in itertools.count(1):
        run = Path(logdir) / (base if k == 1 else f"{base}-{k}")
        try:
            run.mkdir(parents=True)
            return run
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def show_progress(progress: bool | None = None) -> bool:
    """Whether to draw a progress bar: ``progress`` if given; otherwise only when someone can
    watch (a terminal or a Jupyter kernel) and nbgrader is not grading."""
    if progress is not None:
        return progress
    if _grading():
        return False
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _as_dataset(data: Data) -> Dataset:
    """A Dataset on :func:`device`: (x, y) arrays become float32 inputs and, for integer y,
    int64 class labels (otherwise float32 targets)."""
    if isinstance(data, Dataset):
        return data
    x, y = data
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    y = y.long() if not (y.is_floating_point() or y.is_complex()) else y.float()
    return TensorDataset(x.float().to(device()), y.to(device()))


def _loader(dataset: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None,
            drop_last: bool = False) -> DataLoader:
    if isinstance(dataset, TensorDataset):
        # Index the tensors with a whole batch of indices at once: much faster than fetching
        # and stacking one example at a time, which matters for small models.
        order = RandomSampler(dataset, generator=generator) if shuffle else range(len(dataset))
        return DataLoader(dataset, batch_size=None,
                          sampler=BatchSampler(order, batch_size, drop_last))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last)


def _to_device(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    xb, yb = batch
    return xb.to(device()), yb.to(device())


def _correct(out: torch.Tensor, yb: torch.Tensor) -> int | None:
    """Number of right answers when yb holds class labels (out: (B, C) scores), else None."""
    if yb.dtype != torch.long or out.ndim < 2:
        return None
    return int((out.argmax(dim=1) == yb).sum().item())


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, loss_fn: LossFn = nn.functional.cross_entropy,
             batch_size: int = 1024) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on ``data``, in evaluation mode, without gradients.

    ``loss_fn`` must return the mean over a batch. Accuracy is NaN when the targets are not
    class labels.
    """
    was_training = model.training
    model.eval()
    total, correct, seen = 0.0, 0, 0
    classify = True
    try:
        for batch in _loader(_as_dataset(data), batch_size, shuffle=False, generator=None):
            xb, yb = _to_device(batch)
            out = model(xb)
            total += float(loss_fn(out, yb).item()) * len(yb)
            right = _correct(out, yb)
            classify = classify and right is not None
            correct += right or 0
            seen += len(yb)
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("cannot evaluate on an empty data set")
    return total / seen, (correct / seen if classify else float("nan"))


def fit(
    model: nn.Module,
    train: Data,
    val: Data | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 0.1,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: LossFn = nn.functional.cross_entropy,
    seed: int = 0,
    log: bool = True,
    logdir: str | os.PathLike | None = None,
    name: str | None = None,
    progress: bool | None = None,
    callback: Callable[[History], bool | None] | None = None,
) -> History:
    """Train ``model`` with mini-batch SGD for ``epochs`` epochs and return its History.

    model       a torch module, moved to :func:`device`; initialise (and seed) it yourself
    train, val  (x, y) arrays or tensors, or Datasets; x: (N, ...) inputs, y: (N,) class
                labels (any targets ``loss_fn`` accepts)
    batch_size  examples per iteration; the last batch of an epoch may be smaller
    lr          learning rate of the default optimizer, plain SGD (ignored if ``optimizer``)
    loss_fn     (outputs, targets) -> mean loss over the batch
    seed        seeds the shuffling (a new order every epoch, the same orders every call)
    log         write TensorBoard event files to ``logdir`` (default :func:`default_logdir`)
                in a new run folder ``<timestamp>[-name]`` with ``train`` and ``validation``
    progress    progress bar: True, False, or None = only when someone can watch, and only
                once the run has lasted PROGRESS_DELAY_S seconds
    callback    called with the History after every epoch; returning True stops training

    Training also stops when an epoch's training loss is NaN or infinite (the rate is too
    large); ``History.stopped`` then says so.
    """
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    model.to(device())
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    train_set = _as_dataset(train)
    val_set = None if val is None else _as_dataset(val)
    loader = _loader(train_set, batch_size, shuffle=True,
                     generator=torch.Generator().manual_seed(seed))
    history = History()
    writers: dict[str, Any] = {}
    if log:
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when logging

        history.logdir = new_run_dir(logdir if logdir is not None else default_logdir(), name)
        writers = {part: SummaryWriter(str(history.logdir / part))
                   for part in (["train", "validation"] if val_set is not None else ["train"])}

    from tqdm.auto import tqdm

    bar = tqdm(total=epochs * len(loader), unit="it", desc=name or "training",
               disable=not show_progress(progress), delay=PROGRESS_DELAY_S)
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            model.train()
            total, correct, seen, classify = 0.0, 0, 0, True
            for batch in loader:
                xb, yb = _to_device(batch)
                out = model(xb)
                loss = loss_fn(out, yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                value = float(loss.item())
                history.batch_loss.append(value)
                total += value * len(yb)
                seen += len(yb)
                right = _correct(out.detach(), yb)
                classify = classify and right is not None
                correct += right or 0
                bar.update()
            history.loss.append(total / seen)
            if classify:
                history.accuracy.append(correct / seen)
            if val_set is not None:
                val_loss, val_acc = evaluate(model, val_set, loss_fn)
                history.val_loss.append(val_loss)
                if classify:
                    history.val_accuracy.append(val_acc)
            history.seconds.append(time.perf_counter() - start)
            _log_epoch(writers, history, epoch)
            postfix = {"epoch": epoch + 1, "loss": f"{history.loss[-1]:.4g}"}
            if history.val_loss:
                postfix["val_loss"] = f"{history.val_loss[-1]:.4g}"
            bar.set_postfix(postfix)
            if not np.isfinite(history.loss[-1]):
                history.stopped = f"the training loss became {history.loss[-1]} in epoch {epoch}"
                break
            if callback is not None and callback(history):
                history.stopped = f"the callback stopped training after epoch {epoch}"
                break
    finally:
        bar.close()
        for writer in writers.values():
            writer.close()
    return history


def _log_epoch(writers: dict[str, Any], history: History, epoch: int) -> None:
    """One TensorBoard point per tag and run for this epoch (step = epoch index)."""
    if "train" in writers:
        writers["train"].add_scalar("epoch_loss", history.loss[-1], epoch)
        if history.accuracy:
            writers["train"].add_scalar("epoch_accuracy", history.accuracy[-1], epoch)
    if "validation" in writers:
        writers["validation"].add_scalar("epoch_loss", history.val_loss[-1], epoch)
        if history.val_accuracy:
            writers["validation"].add_scalar("epoch_accuracy", history.val_accuracy[-1], epoch)


def fit_indices(
    model: nn.Module,
    batch_loss: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    n: int,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    threads: int | None = 1,
    on_epoch: Callable[[int, list[float]], None] | None = None,
) -> list[float]:
    """The small loop behind the experiments of assignments 05-09: Adam on
    ``batch_loss(model, idx)``, where idx: (B,) are the indices of one mini-batch of the n
    training examples, for ``epochs`` passes in a seeded random order. Returns each step's loss.

    :func:`fit` is the loop the course teaches (any data set, TensorBoard, a History); this one
    leaves the data to ``batch_loss``, so one loop serves images, dicts of targets, clips and
    volumes alike. ``threads``: torch threads while training (one is faster than several for
    networks this small; None leaves the setting alone), restored afterwards. ``on_epoch``:
    called with the epoch number and that epoch's step losses.
    """
    if epochs < 0 or batch_size < 1 or n < 1:
        raise ValueError(f"need epochs >= 0, batch_size >= 1 and n >= 1, got {epochs}, "
                         f"{batch_size}, {n}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        losses: list[float] = []
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen)
            first = len(losses)
            for s in range(0, n, batch_size):
                loss = batch_loss(model, order[s:s + batch_size])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.item()))
            if on_epoch is not None:
                on_epoch(epoch, losses[first:])
        model.eval()
        return losses
    finally:
        torch.set_num_threads(previous)
