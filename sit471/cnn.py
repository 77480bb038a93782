"""Figures for assignment 03, "CNNs from scratch" (no exercise answers in here).

* :func:`show_images` draws a row (or grid) of small images: filters, feature maps, digits.
* :func:`show_sliding_window` draws where a window sits on a padded input and which output
  cell it fills.
* :func:`receptive_fields` and :func:`show_receptive_fields` follow how far one unit sees
  back into the input through a stack of convolutions and poolings.
* :func:`show_training` draws a training history: the loss per step, accuracy per epoch.
* :func:`run_with_stand_ins` and :func:`check_cnn_wiring` test how ``cnn_loss`` connects the
  layers, with stand-ins that compute nothing in place of the layers (so a mistake in one
  layer is charged to that layer's test only, not to the network's as well).

Every function returns its matplotlib ``Figure``; call ``plt.show()`` to display it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

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


# ----------------------------------------------------------------------------- cnn_loss's wiring

#: The layer calls of ``cnn_loss``, in order: (layer, its argument names, what each must be).
#: What a layer must get is named by the key of another layer's output in ``values`` (below),
#: by a key of ``params``, by "x" or "y", by a number, or "cache of LAYER".
NETWORK = (
    ("conv_forward", ("x", "w", "b", "stride", "pad"), ("x", "w1", "b1", 1, 1)),
    ("relu_forward", ("x",), ("h",)),
    ("maxpool_forward", ("x", "size", "stride"), ("a", 2, 2)),
    ("affine_forward", ("x", "w", "b"), ("p", "w2", "b2")),
    ("softmax_cross_entropy", ("scores", "y"), ("scores", "y")),
    ("affine_backward", ("dout", "cache"), ("dscores", "cache of affine_forward")),
    ("maxpool_backward", ("dout", "cache"), ("dp", "cache of maxpool_forward")),
    ("relu_backward", ("dout", "cache"), ("da", "cache of relu_forward")),
    ("conv_backward", ("dout", "cache"), ("dh", "cache of conv_forward")),
)
#: What each stand-in returns: keys of ``values`` (a cache is a token naming its layer).
RETURNS = {
    "conv_forward": ("h", "cache"), "relu_forward": ("a", "cache"),
    "maxpool_forward": ("p", "cache"), "affine_forward": ("scores", "cache"),
    "softmax_cross_entropy": ("loss", "dscores"), "affine_backward": ("dp", "dw2", "db2"),
    "maxpool_backward": ("da",), "relu_backward": ("dh",), "conv_backward": ("dx", "dw1", "db1"),
}
#: Plain words for the keys of ``values``, for messages.
WHAT = {
    "h": "conv_forward's output", "a": "relu_forward's output", "p": "maxpool_forward's output",
    "scores": "affine_forward's output", "dscores": "softmax_cross_entropy's dscores",
    "dp": "affine_backward's dx", "da": "maxpool_backward's dx", "dh": "relu_backward's dx",
    "x": "the images x", "y": "the labels y", "w1": "params['w1']", "b1": "params['b1']",
    "w2": "params['w2']", "b2": "params['b2']",
}
_DEFAULTS = {"conv_forward": {"stride": 1, "pad": 0}, "maxpool_forward": {"size": 2, "stride": 2}}


class _Cache:
    """What a stand-in forward returns as its cache: a token that only says whose it is."""

    def __init__(self, layer: str):
        self.layer = layer

    def __repr__(self) -> str:
        return f"<the cache of {self.layer}>"


def stand_in_values(params: Mapping[str, np.ndarray], x: np.ndarray, seed: int = 0) -> dict:
    """Random arrays with the shapes of the network's intermediate results, for stand-ins.

    params: w1 (F, C, 3, 3), b1 (F,), w2 (D, K), b2 (K,); x: (N, C, H, W) with H, W even.
    Keys: h, a (N, F, H, W), p, dp (N, F, H/2, W/2), scores, dscores (N, K), loss (a
    number), dw2, db2, da, dh, dx, dw1, db1 (shaped like what they are the gradients of).
    """
    rng = np.random.default_rng(seed)
    (N, _, H, W), F, K = np.shape(x), len(params["b1"]), len(params["b2"])
    shapes = {"h": (N, F, H, W), "a": (N, F, H, W), "p": (N, F, H // 2, W // 2),
              "scores": (N, K), "dscores": (N, K), "dp": (N, F, H // 2, W // 2),
              "dw2": np.shape(params["w2"]), "db2": (K,), "da": (N, F, H, W),
              "dh": (N, F, H, W), "dx": np.shape(x), "dw1": np.shape(params["w1"]), "db1": (F,)}
    values = {key: rng.normal(size=shape) for key, shape in shapes.items()}
    values["loss"] = float(rng.uniform(0.5, 3.0))
    return values


def _record(value: Any) -> Any:
    """An argument as data that can be sent to the grader: arrays copied, caches named."""
    if isinstance(value, _Cache):
        return f"cache of {value.layer}"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    try:
        return np.array(value, dtype=float)
    except (TypeError, ValueError):
        return f"a {type(value).__name__}"


def run_with_stand_ins(
    cnn_loss: Callable, params: dict, x: np.ndarray, y: np.ndarray | None, values: Mapping
) -> tuple[Any, dict[str, list]]:
    """Call ``cnn_loss(params, x)`` (``y`` None) or ``cnn_loss(params, x, y)`` with stand-ins
    in place of the nine layer functions it looks up by name; return (its result, the calls).

    Each stand-in computes nothing: it returns the arrays of ``values`` named in
    :data:`RETURNS` (fresh copies) and records its arguments. ``calls`` maps each layer to the
    list of its calls, each a list of its arguments in order (``conv_forward_naive`` counts as
    ``conv_forward``). The real functions are put back afterwards, also on an error.
    """
    namespace = getattr(cnn_loss, "__globals__", None)
    if namespace is None:
        raise TypeError("cnn_loss should be a function defined in the notebook")
    calls: dict[str, list] = {layer: [] for layer, _, _ in NETWORK}

    def stand_in(layer: str, names: Sequence[str]) -> Callable:
        def layer_function(*args, **kwargs):
            bound = dict(_DEFAULTS.get(layer, {}))
            bound.update(zip(names, args, strict=False))  # extra arguments: ignored
            bound.update(kwargs)
            calls[layer].append([_record(bound.get(name)) for name in names])
            out = tuple(_Cache(layer) if key == "cache" else np.copy(values[key])
                        for key in RETURNS[layer])
            if layer == "softmax_cross_entropy":
                out = (float(values["loss"]), out[1])
            return out[0] if len(out) == 1 else out

        layer_function.__name__ = layer
        return layer_function

    stand_ins = {layer: stand_in(layer, names) for layer, names, _ in NETWORK}
    stand_ins["conv_forward_naive"] = stand_ins["conv_forward"]
    missing = object()
    saved = {name: namespace.get(name, missing) for name in stand_ins}
    namespace.update(stand_ins)
    try:
        result = cnn_loss(params, x) if y is None else cnn_loss(params, x, y)
    finally:
        for name, old in saved.items():
            if old is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = old
    return result, calls


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, str) or isinstance(got, str):
        return got == want
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=1e-12, atol=1e-12))


def check_cnn_wiring(
    result: Any, calls: Mapping[str, list], params: Mapping, x: np.ndarray,
    y: np.ndarray | None, values: Mapping,
) -> None:
    """Assert that ``cnn_loss``, run by :func:`run_with_stand_ins`, passed every layer the
    right inputs and returned what the layers returned; the message names the first wrong
    connection. Without labels it must return the scores; with them, (loss, grads)."""
    known = {**values, **{k: params[k] for k in ("w1", "b1", "w2", "b2")}, "x": x, "y": y}
    layers = NETWORK[:4] if y is None else NETWORK
    for layer, names, wanted in layers:
        if not calls.get(layer):
            hint = {"relu_backward": ": the ReLU's backward pass is missing (the gradient "
                    "must pass back through the ReLU)"}.get(layer, "")
            raise AssertionError(f"cnn_loss never called {layer}{hint}")
        got = calls[layer][-1]
        for name, arg, want in zip(names, got, wanted, strict=True):
            named = isinstance(want, str) and not want.startswith("cache")
            if not _same(arg, known[want] if named else want):
                raise AssertionError(f"cnn_loss called {layer} with {name} = "
                                     f"{_describe(arg, known)}; it should be "
                                     f"{WHAT[want] if named else _describe(want, {})}")
    if y is None:
        if not _same_array(result, values["scores"]):
            raise AssertionError("cnn_loss(params, x) without labels should return the scores, "
                                 "affine_forward's output, and nothing else")
        return
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise AssertionError("cnn_loss with labels should return (loss, grads)")
    loss, grads = result
    if not _same_array(loss, values["loss"]):
        raise AssertionError("the loss cnn_loss returned is not softmax_cross_entropy's loss")
    if not (isinstance(grads, Mapping) and set(grads) == {"w1", "b1", "w2", "b2"}):
        raise AssertionError("grads should be a dict with the keys ['b1', 'b2', 'w1', 'w2']")
    for key, source in (("w1", "conv_backward's dw"), ("b1", "conv_backward's db"),
                        ("w2", "affine_backward's dw"), ("b2", "affine_backward's db")):
        if not _same_array(grads[key], values["d" + key]):
            raise AssertionError(f"grads[{key!r}] should be {source}")


def _describe(arg: Any, known: Mapping) -> str:
    """An argument in words: the intermediate result it is, if it is one."""
    if isinstance(arg, str) and arg.startswith("cache of "):
        return f"the {arg}"
    if not isinstance(arg, np.ndarray):
        return repr(arg)
    for key, what in WHAT.items():
        if known.get(key) is not None and _same(arg, known[key]):
            return what
    return f"an array of shape {arg.shape} that is none of the layers' results"


def _same_array(got: Any, want: Any) -> bool:
    try:
        return _same(_record(got), want)
    except (TypeError, ValueError):
        return False
