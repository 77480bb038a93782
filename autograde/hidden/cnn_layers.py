"""Hidden tests of assignment 03 (CNN layers from scratch), decided by the grader.

Each test draws its inputs from the run's generator (the shapes are fixed lists below; the
values are fresh each run); the notebook's probe returns the student's outputs; the check
compares them with ``sit471.reference.layers`` and, where today's tests did, with torch. The
checks also cover what the visible tests check (the caches, ValueError on a window that does
not fit, int results, overflow, output shapes), so a kernel that skips its visible tests
gains nothing. The network's test runs the student's ``cnn_loss`` with stand-ins for the
layers that return the reference's intermediate results (sent with the case), so it judges how
``cnn_loss`` connects the layers and never charges a layer's mistake a second time.

torch is imported on first use (about a second, once per grading
worker); the checks themselves take milliseconds.
"""

from __future__ import annotations

import functools

import numpy as np

from autograde.verdict import HiddenTests
from sit471.checks import check_array, check_scalar
from sit471.cnn import check_cnn_wiring
from sit471.reference import layers as ref

hidden = HiddenTests()

# (N, C, H, W, F, HH, WW, stride, pad) of the convolution tests
CONV_NAIVE = [(1, 1, 5, 5, 1, 3, 3, 1, 0), (2, 3, 7, 6, 4, 3, 2, 2, 1), (1, 2, 7, 6, 3, 2, 4, 3, 2),
              (3, 1, 4, 5, 2, 1, 1, 1, 2), (2, 2, 9, 9, 2, 5, 3, 2, 0), (1, 3, 4, 4, 5, 4, 4, 1, 0)]
CONV_FAST = CONV_NAIVE[:5] + [(4, 3, 8, 8, 6, 3, 3, 1, 1)]
CONV_BACKWARD = CONV_NAIVE[:5] + [(2, 3, 6, 6, 4, 3, 3, 1, 1)]
# ((N, C, H, W), size, stride) of the pooling tests
POOL = [((1, 1, 4, 4), 2, 2), ((2, 3, 7, 7), 3, 2), ((2, 2, 5, 9), 3, 1),
        ((1, 4, 6, 9), 3, 3), ((3, 1, 7, 4), 1, 3), ((2, 2, 8, 8), 4, 2)]
# (N, K) of the softmax tests
SOFTMAX = [(1, 10), (5, 4), (8, 2), (32, 10)]


@functools.cache
def _torch():
    import torch
    import torch.nn.functional as tf

    return torch, tf


def _t(a: np.ndarray, grad: bool = False):
    torch, _ = _torch()
    return torch.tensor(np.asarray(a), requires_grad=grad)


def _s(shape) -> str:
    """(2, 3, 7, 6) -> '2x3x7x6': shapes short enough to leave room for the message."""
    return "x".join(str(int(d)) for d in shape)


def _conv_case(rng, N, C, H, W, F, HH, WW, s, p):
    return dict(x=rng.normal(size=(N, C, H, W)), w=rng.normal(size=(F, C, HH, WW)),
                b=rng.normal(size=F), stride=s, pad=p)


def _where(case) -> str:
    return (f"x {_s(case['x'].shape)}, w {_s(case['w'].shape)}, stride {case['stride']}, "
            f"pad {case['pad']}")


def _check_cache(cache, expected: list, names: str, where: str) -> None:
    """cache (sent as a list) holds ``expected`` (None: anything) in that order."""
    assert isinstance(cache, list) and len(cache) == len(expected), (
        f"the cache for {where} should be the tuple ({names})")
    for k, (got, want) in enumerate(zip(cache, expected, strict=True)):
        if want is None:
            continue
        if isinstance(got, np.ndarray) and got.size == 1 and not isinstance(want, np.ndarray):
            got = got.item()
        if isinstance(want, np.ndarray):
            check_array(got, want, f"cache[{k}] for {where} (should be {names.split(', ')[k]})")
        else:
            assert isinstance(got, (int, float)) and got == want, (
                f"cache[{k}] for {where} is {got!r}, expected {want} "
                f"(the cache is ({names}))")


# ----------------------------------------------------------------------------- output size


def _fits(side: int, k: int, stride: int, pad: int) -> bool:
    span = side + 2 * pad - k
    return span >= 0 and span % stride == 0


@hidden.cases("test_conv_output_size")
def _(rng):
    fixed = [(1, 1, 1, 0), (9, 5, 2, 0), (6, 1, 5, 0), (13, 4, 3, 0), (10, 3, 1, 4), (11, 7, 2, 2)]
    drawn = []
    while len(drawn) < 6:  # random sizes that fit: side = k - 2 pad + stride * m
        k, stride, pad, m = (int(v) for v in (rng.integers(1, 8), rng.integers(1, 6),
                                              rng.integers(0, 4), rng.integers(0, 12)))
        side = k - 2 * pad + stride * m
        if side >= 1:
            drawn.append((side, k, stride, pad))
    bad = [(9, 4, 2, 0), (2, 3, 1, 0), (7, 2, 4, 1)]
    while len(bad) < 6:  # random sizes that do not fit
        side, k, stride, pad = (int(v) for v in (rng.integers(1, 20), rng.integers(1, 12),
                                                 rng.integers(1, 6), rng.integers(0, 3)))
        if not _fits(side, k, stride, pad):
            bad.append((side, k, stride, pad))
    return [dict(side=a, k=b, stride=c, pad=d) for a, b, c, d in fixed + drawn + bad]


@hidden.check("test_conv_output_size")
def _(case, got):
    side, k, stride, pad = case["side"], case["k"], case["stride"], case["pad"]
    call = f"conv_output_size(side={side}, k={k}, stride={stride}, pad={pad})"
    if not _fits(side, k, stride, pad):
        assert "raised" in got and got["raised"] == "ValueError", (
            f"{call} returned {got.get('out')!r}; it should raise ValueError: ({side} + 2*{pad} "
            f"- {k}) / {stride} + 1 is not a whole positive number"
            if "raised" not in got else f"{call} raised {got['raised']}, expected ValueError")
        return
    assert "raised" not in got, f"{call} raised {got['raised']}, but the window fits"
    torch, tf = _torch()
    expected = tf.conv2d(torch.zeros(1, 1, side, side), torch.zeros(1, 1, k, k), stride=stride,
                         padding=pad).shape[-1]
    out = got["out"]
    assert got["type"] != "NoneType", f"{call} returned None: did you forget `return`?"
    assert got["type"] == "int", (
        f"{call} should be an int, got {out!r} ({got['type']}); use // to divide")
    out = int(out)
    if out == (side + pad - k) // stride + 1 != expected:
        raise AssertionError(f"{call} gave {out}, expected {expected}: the padding is added on "
                             "both sides (side + 2 * pad)")
    if out == (side + 2 * pad - k) // stride != expected:
        raise AssertionError(f"{call} gave {out}, expected {expected}: count the first position "
                             "too (+ 1)")
    assert out == expected, f"{call} gave {out}, expected {expected}"


# ----------------------------------------------------------------------------- convolution


def _conv_mistakes(case, expected):
    x, w, b, s, p = (case[k] for k in ("x", "w", "b", "stride", "pad"))
    return {"the kernel was flipped (use w as it is)":
            ref.conv_forward(x, w[:, :, ::-1, ::-1], b, s, p)[0],
            "the bias is missing": expected - b[None, :, None, None],
            "only the first input channel was used (sum over all channels)":
            ref.conv_forward(x[:, :1], w[:, :1], b, s, p)[0]}


def _check_conv_out(case, out, extra=None):
    x, w, b, s, p = (case[k] for k in ("x", "w", "b", "stride", "pad"))
    expected = ref.conv_forward(x, w, b, s, p)[0]
    where = _where(case)
    check_array(out, expected, f"out for {where}",
                mistakes={**_conv_mistakes(case, expected), **(extra or {})})
    _, tf = _torch()
    check_array(out, tf.conv2d(_t(x), _t(w), _t(b), stride=s, padding=p).numpy(),
                f"out for {where} (compared with torch conv2d)")


@hidden.cases("test_conv_forward_naive")
def _(rng):
    return [_conv_case(rng, *shape) for shape in CONV_NAIVE]


@hidden.check("test_conv_forward_naive")
def _(case, got):
    _check_conv_out(case, got["out"])
    _check_cache(got["cache"], [case["x"], case["w"], None, case["stride"], case["pad"]],
                 "x, w, b, stride, pad", _where(case))


def _window_starts_ignore_stride(x, HH, WW, stride, pad):
    """im2col's mistaken columns when the windows start at k instead of k * stride."""
    N, C, H, W = x.shape
    H_out, W_out = ref._out_size(H, HH, stride, pad), ref._out_size(W, WW, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.zeros((C, HH, WW, N, H_out, W_out))
    for i in range(HH):
        for j in range(WW):
            cols[:, i, j] = xp[:, :, i:i + H_out, j:j + W_out].transpose(1, 0, 2, 3)
    return cols.reshape(C * HH * WW, -1)


@hidden.cases("test_im2col")
def _(rng):
    shapes = [((1, 1, 5, 5), 3, 3, 1, 0), ((2, 3, 7, 6), 3, 2, 2, 1), ((1, 2, 7, 6), 2, 4, 3, 2),
              ((3, 1, 4, 5), 1, 1, 1, 2), ((2, 2, 9, 9), 5, 3, 2, 0)]
    return [dict(x=rng.normal(size=shape), HH=HH, WW=WW, stride=s, pad=p)
            for shape, HH, WW, s, p in shapes]


@hidden.check("test_im2col")
def _(case, got):
    x, HH, WW, s, p = (case[k] for k in ("x", "HH", "WW", "stride", "pad"))
    N, C, H, W = x.shape
    expected = ref.im2col(x, HH, WW, s, p)
    six = expected.reshape(C, HH, WW, N, ref._out_size(H, HH, s, p), ref._out_size(W, WW, s, p))
    mistakes = {
        "the columns are ordered (output row, output column, example); the example must come "
        "first": six.transpose(0, 1, 2, 4, 5, 3).reshape(expected.shape),
        "the rows are ordered (kernel row, kernel column, channel); the channel must come "
        "first": six.transpose(1, 2, 0, 3, 4, 5).reshape(expected.shape)}
    if s > 1:
        mistakes["the stride was ignored: window r starts at row r * stride"] = (
            _window_starts_ignore_stride(x, HH, WW, s, p))
    check_array(got, expected, f"im2col of x {_s(x.shape)}, {HH}x{WW} window, stride {s}, pad {p}",
                mistakes=mistakes)


@hidden.cases("test_conv_forward")
def _(rng):
    return [_conv_case(rng, *shape) for shape in CONV_FAST]


@hidden.check("test_conv_forward")
def _(case, got):
    x, w = case["x"], case["w"]
    N, F = x.shape[0], w.shape[0]
    expected = ref.conv_forward(x, w, case["b"], case["stride"], case["pad"])[0]
    swapped = expected.transpose(1, 0, 2, 3).reshape(expected.shape)
    _check_conv_out(case, got["out"], extra={
        "(F, N, H_out, W_out) was reshaped to (N, F, ...) without swapping the axes "
        "(transpose(1, 0, 2, 3))": swapped} if N > 1 and F > 1 else None)
    _check_cache(got["cache"], [x, None, None, case["stride"], case["pad"]],
                 "x, w, b, stride, pad", _where(case))


@hidden.cases("test_conv_backward")
def _(rng):
    cases = []
    for shape in CONV_BACKWARD:
        case = _conv_case(rng, *shape)
        out = ref.conv_forward(case["x"], case["w"], case["b"], case["stride"], case["pad"])[0]
        cases.append(dict(case, dout=rng.normal(size=out.shape)))
    return cases


@hidden.check("test_conv_backward")
def _(case, got):
    x, w, b, s, p, dout = (case[k] for k in ("x", "w", "b", "stride", "pad", "dout"))
    where = _where(case)
    assert isinstance(got, list) and len(got) == 3, "conv_backward must return a tuple (dx, dw, db)"
    dx = got[0]
    if isinstance(dx, np.ndarray):
        assert dx.size > 0, (f"dx is empty (shape {dx.shape}) for {where}: with pad = 0 a slice "
                             "like [pad:-pad] selects nothing; cut the padding off with "
                             "[pad:pad + H]")
        padded = x.shape[:2] + (x.shape[2] + 2 * p, x.shape[3] + 2 * p)
        assert p == 0 or dx.shape != padded, (
            f"dx has the shape of the padded input {padded} for {where}; cut the padding off: "
            "dx has the shape of x")
    cache = (x, w, b, s, p, None)
    expected = ref.conv_backward(dout, cache)
    mistakes = [
        {"the kernel was not rotated by 180 degrees: stamp w as it is onto each window":
         ref.conv_backward(dout, (x, w[:, :, ::-1, ::-1], b, s, p, None))[0]},
        {},
        {"db was averaged instead of summed": dout.mean(axis=(0, 2, 3))}]
    tx, tw, tb = _t(x, True), _t(w, True), _t(b, True)
    _torch()[1].conv2d(tx, tw, tb, stride=s, padding=p).backward(_t(dout))
    for name, g, e, m, t in zip(["dx", "dw", "db"], got, expected, mistakes,
                                [tx.grad, tw.grad, tb.grad], strict=True):
        check_array(g, e, f"{name} for {where}", mistakes=m)
        check_array(g, t.numpy(), f"{name} for {where} (compared with torch autograd)")


# ----------------------------------------------------------------------------- ReLU


@hidden.cases("test_relu")
def _(rng):
    cases = []
    for shape in [(7,), (3, 4), (2, 3, 4, 5)]:
        x = rng.normal(size=shape)
        x.flat[rng.choice(x.size, size=max(1, x.size // 6), replace=False)] = 0.0  # ties at 0
        cases.append(dict(x=x, dout=rng.normal(size=shape)))
    return cases


@hidden.check("test_relu")
def _(case, got):
    x, dout = case["x"], case["dout"]
    where = f"shape {_s(x.shape)}"
    out, cache = ref.relu_forward(x)
    check_array(got["out"], out, f"relu_forward on {where}")
    check_array(got["cache"], x, f"the cache of relu_forward on {where} (should be x)")
    dx = ref.relu_backward(dout, cache)
    check_array(got["dx"], dx, f"relu_backward on {where}",
                mistakes={"the slope at x = 0 should be 0 (use x > 0, not x >= 0)":
                          dout * (x >= 0),
                          "dout was multiplied by the ReLU output instead of its 0/1 slope":
                          dout * out})
    torch, _ = _torch()
    t = _t(x, True)
    torch.relu(t).backward(_t(dout))
    check_array(got["dx"], t.grad.numpy(), f"relu_backward on {where} (compared with torch)")


# ----------------------------------------------------------------------------- max pooling


def _pool_case(rng, shape, size, stride):
    return dict(x=rng.normal(size=shape), size=size, stride=stride)


def _pool_where(case) -> str:
    return f"x {_s(case['x'].shape)}, size {case['size']}, stride {case['stride']}"


@hidden.cases("test_maxpool_forward")
def _(rng):
    return [_pool_case(rng, *shape) for shape in POOL]


@hidden.check("test_maxpool_forward")
def _(case, got):
    x, k, s = case["x"], case["size"], case["stride"]
    where = _pool_where(case)
    expected = ref.maxpool_forward(x, k, s)[0]
    mistakes = {"the channels were pooled together (each channel is pooled on its own)":
                np.broadcast_to(expected.max(axis=1, keepdims=True), expected.shape)}
    check_array(got["out"], expected, f"out for {where}",
                mistakes=mistakes if x.shape[1] > 1 else None)
    _, tf = _torch()
    check_array(got["out"], tf.max_pool2d(_t(x), kernel_size=k, stride=s).numpy(),
                f"out for {where} (compared with torch max_pool2d)")
    _check_cache(got["cache"], [x, k, s], "x, size, stride", where)


def _pool_mistakes(x, size, stride, dout):
    """dx for the usual mistakes of maxpool_backward."""
    N, C, H, W = x.shape
    H_out, W_out = dout.shape[2:]
    shape = (N * C, 1, H, W)
    flat = np.broadcast_to(dout.reshape(1, -1), (size * size, dout.size))
    overwrite = np.zeros(x.shape)
    for r in range(H_out):
        for c in range(W_out):
            window = x[:, :, r * stride:r * stride + size, c * stride:c * stride + size]
            i, j = np.unravel_index(window.reshape(N, C, -1).argmax(axis=2), (size, size))
            n, ch = np.indices((N, C))
            overwrite[n, ch, r * stride + i, c * stride + j] = dout[:, :, r, c]
    return {
        "the gradient was spread evenly over each window (average pooling); send all of it to "
        "the window's maximum": ref.col2im(flat / size**2, shape, size, size, stride, 0
                                           ).reshape(x.shape),
        "every pixel got its window's full gradient; only the maximum should":
        ref.col2im(flat, shape, size, size, stride, 0).reshape(x.shape),
        "where windows overlap, add the gradients (+=) instead of overwriting them": overwrite,
    }


@hidden.cases("test_maxpool_backward")
def _(rng):
    cases = []
    for shape in POOL:
        case = _pool_case(rng, *shape)
        out = ref.maxpool_forward(case["x"], case["size"], case["stride"])[0]
        cases.append(dict(case, dout=rng.normal(size=out.shape)))
    return cases


@hidden.check("test_maxpool_backward")
def _(case, got):
    x, k, s, dout = case["x"], case["size"], case["stride"], case["dout"]
    where = _pool_where(case)
    expected = ref.maxpool_backward(dout, ref.maxpool_forward(x, k, s)[1])
    check_array(got, expected, f"dx for {where}", mistakes=_pool_mistakes(x, k, s, dout))
    _, tf = _torch()
    t = _t(x, True)
    tf.max_pool2d(t, kernel_size=k, stride=s).backward(_t(dout))
    check_array(got, t.grad.numpy(), f"dx for {where} (compared with torch autograd)")


# ----------------------------------------------------------------------------- affine

AFFINE = [((1, 5), 3), ((4, 2, 3, 3), 6), ((3, 1, 5), 1)]


def _affine_case(rng, xs, M):
    return dict(x=rng.normal(size=xs), w=rng.normal(size=(int(np.prod(xs[1:])), M)),
                b=rng.normal(size=M))


@hidden.cases("test_affine_forward")
def _(rng):
    return [_affine_case(rng, xs, M) for xs, M in AFFINE]


@hidden.check("test_affine_forward")
def _(case, got):
    x, w, b = case["x"], case["w"], case["b"]
    where = f"x {_s(x.shape)}, w {_s(w.shape)}"
    expected = ref.affine_forward(x, w, b)[0]
    check_array(got["out"], expected, f"out for {where}",
                mistakes={"the bias is missing": expected - b,
                          "x was flattened the wrong way round (use x.reshape(N, -1))":
                          x.reshape(-1, x.shape[0]).T @ w + b})
    _check_cache(got["cache"], [x, None, None], "x, w, b", where)


@hidden.cases("test_affine_backward")
def _(rng):
    return [dict(_affine_case(rng, xs, M), dout=rng.normal(size=(xs[0], M))) for xs, M in AFFINE]


@hidden.check("test_affine_backward")
def _(case, got):
    x, w, b, dout = case["x"], case["w"], case["b"], case["dout"]
    where = f"x {_s(x.shape)}, w {_s(w.shape)}"
    assert isinstance(got, list) and len(got) == 3, "affine_backward must return (dx, dw, db)"
    expected = ref.affine_backward(dout, ref.affine_forward(x, w, b)[1])
    mistakes = [{}, {}, {"db was averaged over the examples instead of summed": dout.mean(0)}]
    for name, g, e, m in zip(["dx", "dw", "db"], got, expected, mistakes, strict=True):
        check_array(g, e, f"{name} for {where}", mistakes=m)


# ----------------------------------------------------------------------------- loss


@hidden.cases("test_softmax_cross_entropy")
def _(rng):
    cases = [dict(scores=rng.normal(size=(N, K)) * 4, y=rng.integers(0, K, size=N))
             for N, K in SOFTMAX]
    # huge scores: exp overflows unless each row's largest score is subtracted first
    cases.append(dict(scores=rng.normal(size=(4, 5)) * rng.uniform(800, 3000),
                      y=rng.integers(0, 5, size=4)))
    return cases


@hidden.check("test_softmax_cross_entropy")
def _(case, got):
    s, y = case["scores"], case["y"]
    N, K = s.shape
    where = f"{N} examples, {K} classes"
    big = np.abs(s).max() > 100
    if got.get("overflow"):
        raise AssertionError(f"softmax_cross_entropy overflows for scores of size "
                             f"{np.abs(s).max():.0f}: subtract each row's largest score before exp")
    loss, dscores = got["loss"], got["dscores"]
    assert np.all(np.isfinite(np.asarray(loss, dtype=float))), (
        f"the loss is {loss} for scores of size {np.abs(s).max():.0f}: compute "
        "log p = shifted - log(sum(exp(shifted))) instead of log(p)")
    eloss, ed = ref.softmax_cross_entropy(s, y)
    check_scalar(loss, eloss, f"the loss for {where}", rtol=1e-7,
                 mistakes={"the losses were summed instead of averaged": eloss * N})
    check_array(dscores, ed, f"dscores for {where}", atol=1e-12 if big else 1e-10,
                mistakes={"dscores was not divided by N (the loss is a mean)": ed * N})
    torch, tf = _torch()
    t = _t(s, True)
    tl = tf.cross_entropy(t, torch.from_numpy(np.asarray(y, dtype=np.int64)))
    tl.backward()
    check_scalar(loss, tl.item(), f"the loss for {where} (compared with torch)")
    check_array(dscores, t.grad.numpy(), f"dscores for {where} (compared with torch)",
                atol=1e-12 if big else 1e-10)


# ----------------------------------------------------------------------------- the network


def network_values(p: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """The reference's intermediate results of the network conv 3x3 pad 1 -> ReLU -> max-pool
    2x2 -> affine -> softmax cross-entropy, named as sit471.cnn's stand-ins return them."""
    h, c1 = ref.conv_forward(x, p["w1"], p["b1"], 1, 1)
    a, c2 = ref.relu_forward(h)
    q, c3 = ref.maxpool_forward(a, 2, 2)
    scores, c4 = ref.affine_forward(q, p["w2"], p["b2"])
    loss, dscores = ref.softmax_cross_entropy(scores, y)
    dp, dw2, db2 = ref.affine_backward(dscores, c4)
    da = ref.maxpool_backward(dp, c3)
    dh = ref.relu_backward(da, c2)
    dx, dw1, db1 = ref.conv_backward(dh, c1)
    return dict(h=h, a=a, p=q, scores=scores, loss=loss, dscores=dscores, dp=dp, dw2=dw2,
                db2=db2, da=da, dh=dh, dx=dx, dw1=dw1, db1=db1)


@hidden.cases("test_cnn_loss")
def _(rng):
    cases = []
    for N, C, S, F, K in [(1, 1, 8, 4, 10), (5, 2, 6, 3, 4), (4, 3, 4, 5, 2)]:
        p = {"w1": rng.normal(size=(F, C, 3, 3)), "b1": rng.normal(size=F),
             "w2": rng.normal(size=(F * (S // 2) ** 2, K)), "b2": rng.normal(size=K)}
        x, y = rng.normal(size=(N, C, S, S)), rng.integers(0, K, size=N)
        cases.append(dict(params=p, x=x, y=y, values=network_values(p, x, y)))
    return cases


@hidden.check("test_cnn_loss")
def _(case, got):
    """The student's cnn_loss ran with stand-ins that return the reference's intermediate
    results (case["values"]): its wiring is judged, not the layers (they have their own tests)."""
    p, x, y, values = case["params"], case["x"], case["y"], case["values"]
    (N, C, S, _), F, K = x.shape, p["w1"].shape[0], p["b2"].shape[0]
    where = f" (N={N}, C={C}, {S}x{S}, F={F}, K={K})"
    assert isinstance(got, dict) and set(got) == {"scores", "loss"}, "the probe's result is broken"
    for key, labels in (("scores", None), ("loss", y)):
        run = got[key]
        try:
            check_cnn_wiring(run["result"], run["calls"], p, x, labels, values)
        except AssertionError as exc:
            raise AssertionError(f"{exc}{where}") from None
