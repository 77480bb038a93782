"""NumPy reference layers for assignment 03, "CNNs from scratch".

Contract (the same for every layer below):

* ``*_forward(...)`` returns ``(out, cache)``; ``cache`` holds what the backward pass needs.
* ``*_backward(dout, cache)`` returns the gradients of the loss with respect to the forward's
  inputs, in the forward's argument order (a single array when there is one input).
  ``dout`` has the shape of ``out``; each gradient has the shape of its input.

Shapes: images ``x`` are ``(N, C, H, W)``, conv weights ``w`` are ``(F, C, HH, WW)`` and
conv biases ``b`` are ``(F,)``. A window of size ``K`` slid with stride ``S`` over a side of
length ``H`` zero-padded by ``P`` on both ends fits ``H_out = (H + 2P - K) / S + 1`` times;
that must be a whole positive number, otherwise a ``ValueError`` says what does not fit.
"""

import numpy as np

# ----------------------------------------------------------------------------- checks


def _check_4d(name: str, a: np.ndarray, layout: str) -> None:
    if a.ndim != 4:
        raise ValueError(f"{name} must be 4-D {layout}, got shape {a.shape}")


def _out_size(side: int, k: int, stride: int, pad: int) -> int:
    """Return ``(side + 2*pad - k) / stride + 1``, or raise if it is not a whole positive number."""
    if stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    span = side + 2 * pad - k
    if span < 0 or span % stride:
        raise ValueError(
            f"a window of {k} with stride {stride} and pad {pad} does not fit a side of {side}: "
            f"({side} + 2*{pad} - {k}) / {stride} + 1 is not a whole positive number"
        )
    return span // stride + 1


def _check_conv_args(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> None:
    _check_4d("x", x, "(N, C, H, W)")
    _check_4d("w", w, "(F, C, HH, WW)")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but w expects {w.shape[1]}")
    if b.shape != (w.shape[0],):
        raise ValueError(
            f"b has shape {b.shape} but w has {w.shape[0]} filters, so b must be ({w.shape[0]},)"
        )


# ----------------------------------------------------------------------------- im2col


def im2col(x: np.ndarray, HH: int, WW: int, stride: int, pad: int) -> np.ndarray:
    """Unfold every ``HH x WW`` window of ``x`` into a column.

    x: (N, C, H, W) -> cols: (C*HH*WW, N*H_out*W_out).
    Row ``(c, i, j)`` holds pixel ``(i, j)`` of channel ``c`` of each window, matching
    ``w.reshape(F, -1)``; columns run over ``(n, row, col)`` of the output.
    """
    _check_4d("x", x, "(N, C, H, W)")
    N, C, H, W = x.shape
    H_out, W_out = _out_size(H, HH, stride, pad), _out_size(W, WW, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((C, HH, WW, N, H_out, W_out), dtype=x.dtype)
    for i in range(HH):  # one strided slice per kernel position
        for j in range(WW):
            patch = xp[:, :, i : i + stride * H_out : stride, j : j + stride * W_out : stride]
            cols[:, i, j] = patch.transpose(1, 0, 2, 3)
    return cols.reshape(C * HH * WW, N * H_out * W_out)


def col2im(
    cols: np.ndarray, x_shape: tuple[int, ...], HH: int, WW: int, stride: int, pad: int
) -> np.ndarray:
    """Fold columns back into an image, adding up pixels that several windows share.

    cols: (C*HH*WW, N*H_out*W_out) -> x: ``x_shape`` = (N, C, H, W).
    This is the adjoint (transpose) of :func:`im2col`, not its inverse.
    """
    N, C, H, W = x_shape
    H_out, W_out = _out_size(H, HH, stride, pad), _out_size(W, WW, stride, pad)
    if cols.shape != (C * HH * WW, N * H_out * W_out):
        raise ValueError(
            f"cols has shape {cols.shape} but x_shape {tuple(x_shape)} with a "
            f"{HH}x{WW} window needs {(C * HH * WW, N * H_out * W_out)}"
        )
    cols = cols.reshape(C, HH, WW, N, H_out, W_out)
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    for i in range(HH):
        for j in range(WW):
            patch = cols[:, i, j].transpose(1, 0, 2, 3)
            xp[:, :, i : i + stride * H_out : stride, j : j + stride * W_out : stride] += patch
    return xp[:, :, pad : pad + H, pad : pad + W]


# ----------------------------------------------------------------------------- convolution


def conv_forward_naive(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0
) -> tuple[np.ndarray, tuple]:
    """Convolution (cross-correlation, as in PyTorch) with explicit loops.

    x: (N, C, H, W), w: (F, C, HH, WW), b: (F,) -> out: (N, F, H_out, W_out),
    H_out = (H + 2*pad - HH) / stride + 1 and W_out likewise.
    """
    _check_conv_args(x, w, b)
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out, W_out = _out_size(H, HH, stride, pad), _out_size(W, WW, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.empty((N, F, H_out, W_out), dtype=np.result_type(x, w, b))
    for n in range(N):
        for f in range(F):
            for r in range(H_out):
                for c in range(W_out):
                    window = xp[n, :, r * stride : r * stride + HH, c * stride : c * stride + WW]
                    out[n, f, r, c] = np.sum(window * w[f]) + b[f]
    return out, (x, w, b, stride, pad, None)


def conv_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0
) -> tuple[np.ndarray, tuple]:
    """Convolution as one matrix product: ``w.reshape(F, -1) @ im2col(x)``.

    Same shapes and result as :func:`conv_forward_naive`.
    """
    _check_conv_args(x, w, b)
    N = x.shape[0]
    F, _, HH, WW = w.shape
    cols = im2col(x, HH, WW, stride, pad)
    out = w.reshape(F, -1) @ cols + b[:, None]  # (F, N*H_out*W_out)
    H_out, W_out = _out_size(x.shape[2], HH, stride, pad), _out_size(x.shape[3], WW, stride, pad)
    out = out.reshape(F, N, H_out, W_out).transpose(1, 0, 2, 3)
    return np.ascontiguousarray(out), (x, w, b, stride, pad, cols)


def conv_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of a convolution; accepts the cache of either forward.

    dout: (N, F, H_out, W_out) -> dx: (N, C, H, W), dw: (F, C, HH, WW), db: (F,).
    """
    x, w, _, stride, pad, cols = cache
    F, _, HH, WW = w.shape
    if cols is None:  # the naive forward keeps no columns
        cols = im2col(x, HH, WW, stride, pad)
    dout_mat = dout.transpose(1, 0, 2, 3).reshape(F, -1)  # (F, N*H_out*W_out), like cols
    db = dout.sum(axis=(0, 2, 3))
    dw = (dout_mat @ cols.T).reshape(w.shape)
    dx = col2im(w.reshape(F, -1).T @ dout_mat, x.shape, HH, WW, stride, pad)
    return dx, dw, db


# ----------------------------------------------------------------------------- max pooling


def maxpool_forward(x: np.ndarray, size: int = 2, stride: int = 2) -> tuple[np.ndarray, tuple]:
    """Max over each ``size x size`` window (no padding).

    x: (N, C, H, W) -> out: (N, C, H_out, W_out), H_out = (H - size) / stride + 1.
    Each channel is pooled on its own, so we treat it as an image with one channel.
    """
    _check_4d("x", x, "(N, C, H, W)")
    N, C, H, W = x.shape
    H_out, W_out = _out_size(H, size, stride, 0), _out_size(W, size, stride, 0)
    cols = im2col(x.reshape(N * C, 1, H, W), size, size, stride, 0)  # (size*size, N*C*H_out*W_out)
    argmax = cols.argmax(axis=0)  # first maximum of each window, as in PyTorch
    out = cols[argmax, np.arange(cols.shape[1])].reshape(N, C, H_out, W_out)
    return out, (x.shape, size, stride, argmax)


def maxpool_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Send each window's gradient to its arg-max; overlapping windows add up.

    dout: (N, C, H_out, W_out) -> dx: (N, C, H, W).
    """
    (N, C, H, W), size, stride, argmax = cache
    dcols = np.zeros((size * size, argmax.size), dtype=dout.dtype)
    dcols[argmax, np.arange(argmax.size)] = dout.reshape(-1)
    return col2im(dcols, (N * C, 1, H, W), size, size, stride, 0).reshape(N, C, H, W)


# ----------------------------------------------------------------------------- ReLU


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """out = max(x, 0), any shape."""
    return np.maximum(x, 0), x


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dx = dout where x > 0, else 0 (same shape as x)."""
    return dout * (cache > 0)


# ----------------------------------------------------------------------------- affine


def affine_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Fully connected layer on flattened examples.

    x: (N, d1, ..., dk) with D = d1*...*dk, w: (D, M), b: (M,) -> out: (N, M).
    """
    x_flat = x.reshape(x.shape[0], -1)
    if w.ndim != 2 or x_flat.shape[1] != w.shape[0]:
        raise ValueError(
            f"x has {x_flat.shape[1]} features per example but w has shape "
            f"{w.shape}, expected ({x_flat.shape[1]}, M)"
        )
    if b.shape != (w.shape[1],):
        raise ValueError(
            f"b has shape {b.shape} but w has {w.shape[1]} outputs, so b must be ({w.shape[1]},)"
        )
    return x_flat @ w + b, (x, w)


def affine_backward(
    dout: np.ndarray, cache: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, M) -> dx: (N, d1, ..., dk), dw: (D, M), db: (M,)."""
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    return dx, dw, dout.sum(axis=0)


# ----------------------------------------------------------------------------- loss


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy loss over the batch and its gradient.

    scores: (N, K) class scores, y: (N,) integer labels in [0, K)
    -> loss (float), dscores: (N, K).
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (N, K), got shape {scores.shape}")
    N, K = scores.shape
    y = np.asarray(y)
    if y.shape != (N,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be {N} integer labels, got shape {y.shape} of {y.dtype}")
    if y.min() < 0 or y.max() >= K:
        raise ValueError(
            f"y has labels out of range: got {y.min()}..{y.max()}, scores has {K} classes [0, {K})"
        )
    shifted = scores - scores.max(axis=1, keepdims=True)  # avoids overflow in exp
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(N)
    loss = -log_probs[rows, y].mean()
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1
    return float(loss), dscores / N
