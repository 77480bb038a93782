"""Figures for assignment 03, "CNNs from scratch" (no exercise answers in here).

* :func:`show_images` draws a row (or grid) of small images: filters, feature maps, digits.
* :func:`show_sliding_window` draws where a window sits on a padded input and which output
  cell it fills.
* :func:`receptive_fields` and :func:`show_receptive_fields` follow how far one unit sees
  back into the input through a stack of convolutions and poolings.
* :func:`show_training` draws a training history: the loss per step, accuracy per epoch.

Every function returns its matplotlib ``Figure``; call ``plt.show()`` to display it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def show_images(
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    title: str | None = None,
    ncols: int | None = None,
    symmetric: bool = False,
    shared: bool = True,
    scale: float = 1.3,
) -> Figure:
    """Draw images (M, h, w) side by side, ``ncols`` to a row (default: all in one row).

    ``symmetric`` centres the colour scale on 0 (red positive, blue negative), which suits
    weights; otherwise gray from the smallest to the largest value, which suits inputs and
    activations. With ``shared`` (the default) all panels use one scale, so that their
    brightness can be compared; otherwise each panel is scaled on its own.
    """
    images = np.asarray(images, dtype=float)
    if images.ndim != 3:
        raise ValueError(f"images must be (M, h, w), got shape {images.shape}")
    m = len(images)
    ncols = min(m, ncols or m)
    nrows = -(-m // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(scale * ncols, scale * nrows + 0.4), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < m:
            ax.imshow(images[k], **_style(images if shared else images[k], symmetric))
            if titles is not None:
                ax.set_title(titles[k], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _style(values: np.ndarray, symmetric: bool) -> dict:
    if symmetric:
        top = float(np.abs(values).max()) or 1.0
        return {"cmap": "RdBu_r", "vmin": -top, "vmax": top}
    low, high = float(values.min()), float(values.max())
    return {"cmap": "gray", "vmin": low, "vmax": high if high > low else low + 1}


def _grid(ax: plt.Axes, rows: int, cols: int) -> None:
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_xticks(np.arange(-0.5, cols), minor=True)
    ax.set_yticks(np.arange(-0.5, rows), minor=True)
    ax.grid(which="minor", color="0.6", lw=0.6)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_aspect("equal")


def show_sliding_window(
    side: int = 5,
    k: int = 3,
    stride: int = 1,
    pad: int = 1,
    positions: Sequence[tuple[int, int]] = ((0, 0), (0, 1), (1, 1)),
) -> Figure:
    """Top row: a ``side x side`` input padded by ``pad`` (gray), with the ``k x k`` window
    of each output position in ``positions``; bottom row: the output grid, that cell filled.

    The output is ``(side + 2*pad - k) // stride + 1`` cells on a side.
    """
    full = side + 2 * pad
    out = (full - k) // stride + 1
    fig, axes = plt.subplots(
        2,
        len(positions),
        figsize=(2.6 * len(positions), 5.2),
        squeeze=False,
        height_ratios=(full, max(out, 1)),
    )
    for col, (r, c) in enumerate(positions):
        top, bottom = axes[0, col], axes[1, col]
        _grid(top, full, full)
        for i in range(full):
            for j in range(full):
                if not (pad <= i < pad + side and pad <= j < pad + side):
                    top.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color="0.85"))
        top.add_patch(
            Rectangle((c * stride - 0.5, r * stride - 0.5), k, k, fill=False, ec="tab:red", lw=2.5)
        )
        top.set_title(f"window for output ({r}, {c})", fontsize=9)
        _grid(bottom, out, out)
        bottom.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, color="tab:red", alpha=0.7))
        bottom.set_title(f"output {out}x{out}", fontsize=9)
    fig.suptitle(
        f"input {side}x{side}, padding {pad} (gray), kernel {k}x{k}, stride {stride}", fontsize=10
    )
    fig.tight_layout()
    return fig


def receptive_fields(layers: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Receptive field of one unit after each layer of a stack.

    layers: ``(name, kernel, stride)`` in order. Returns ``(name, size, jump)`` per layer:
    ``size`` is the side of the input patch one unit sees and ``jump`` the distance in input
    pixels between neighbouring units. Starting from size 1 and jump 1 (the input pixels),
    each layer does ``size += (kernel - 1) * jump`` and then ``jump *= stride``.
    """
    size, jump, table = 1, 1, []
    for name, kernel, stride in layers:
        size += (kernel - 1) * jump
        jump *= stride
        table.append((name, size, jump))
    return table


def show_receptive_fields(layers: Sequence[tuple[str, int, int]], side: int) -> Figure:
    """Draw, on a ``side x side`` input, the patch that the top-left unit of each layer sees."""
    table = receptive_fields(layers)
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    _grid(ax, side, side)
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, len(table)))
    outlines = []
    for (name, size, _), colour in zip(table[::-1], colours[::-1], strict=True):  # largest first
        ax.add_patch(Rectangle((-0.5, -0.5), size, size, color=colour, alpha=0.35))
        outlines.append(
            ax.add_patch(
                Rectangle(
                    (-0.5, -0.5),
                    size,
                    size,
                    fill=False,
                    ec=colour,
                    lw=2,
                    label=f"{name}: {size}x{size}",
                )
            )
        )
    ax.add_patch(Rectangle((-0.5, -0.5), 1, 1, color="black"))
    ax.legend(handles=outlines[::-1], loc="lower right", fontsize=8)  # in layer order
    ax.set_title("what one unit sees of the input, layer by layer", fontsize=10)
    fig.tight_layout()
    return fig


def show_training(history: dict[str, Sequence[float]]) -> Figure:
    """Loss per step (``history["loss"]``) and, when present, accuracy per epoch
    (``history["train_acc"]``, ``history["val_acc"]``)."""
    loss = np.asarray(history["loss"], dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(loss, lw=0.6, alpha=0.5, label="each mini-batch")
    window = max(1, len(loss) // 20)
    if len(loss) >= window > 1:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax1.plot(np.arange(window - 1, len(loss)), smooth, lw=2, label=f"mean of {window}")
    ax1.set_yscale("log")
    ax1.set_xlabel("step (mini-batch)")
    ax1.set_ylabel("cross-entropy loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    for key, label in (("train_acc", "training set"), ("val_acc", "validation set")):
        if key in history and len(history[key]):
            acc = 100 * np.asarray(history[key], dtype=float)
            ax2.plot(np.arange(1, len(acc) + 1), acc, marker="o", label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    if ax2.lines:
        ax2.legend()
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig
