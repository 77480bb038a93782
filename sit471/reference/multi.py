"""Reference answers for assignment 07: multi-channel input and multi-branch networks.

    late_fusion(logits_list, weights=None)   weighted mean of per-stream softmaxes      (N, K)
    motion_field(frame0, frame1, window=5)   Lucas-Kanade flow on small windows   (..., 2, H, W)
    rgb_to_lab(img), lab_to_rgb(lab)         sRGB in [0, 1] <-> CIELAB (D65), shape (..., 3)
    quantize_ab(ab, grid=10)                 (a, b) -> index of its cell on a grid   (...,) int64
    dequantize_ab(index, grid=10)            index -> the centre of its cell        (..., 2)
    cross_modal_forward(x, modality, encoders, shared, head)
                                             modality encoder -> shared layers -> (embedding,
                                             logits)
    band_ablation(predict, x, y)             accuracy drop when each band is replaced by its
                                             mean                                        (C,)

Inputs of the wrong shape or value range raise ValueError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

AB_RANGE = 110.0  # a and b are quantised on [-110, 110)
WHITE_D65 = (0.95047, 1.0, 1.08883)
RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
              (0.2126729, 0.7151522, 0.0721750),
              (0.0193339, 0.1191920, 0.9503041))


def late_fusion(logits_list: Sequence[torch.Tensor],
                weights: Sequence[float] | None = None) -> torch.Tensor:
    """Average the class probabilities of several streams: sum_s w_s softmax(logits_s).

    logits_list  S tensors (N, K) of scores; weights  S numbers >= 0 (default equal), scaled to
    sum to 1. Returns probabilities (N, K) whose rows sum to 1.
    """
    if len(logits_list) == 0:
        raise ValueError("late_fusion needs at least one stream")
    logits = [torch.as_tensor(z) for z in logits_list]
    shape = logits[0].shape
    if len(shape) != 2 or any(z.shape != shape for z in logits):
        raise ValueError(f"every stream must give scores (N, K) of the same shape, got "
                         f"{[tuple(z.shape) for z in logits]}")
    if weights is None:
        weights = [1.0] * len(logits)
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.shape != (len(logits),) or bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ValueError(f"need one weight >= 0 per stream (not all 0), got {list(weights)}")
    w = w / w.sum()
    probs = [torch.softmax(z.to(torch.float64), dim=1) for z in logits]
    out = sum(wi * p for wi, p in zip(w, probs, strict=True))
    return out.to(logits[0].dtype if logits[0].is_floating_point() else torch.float32)


def _gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences along x (width) and y (height), one-sided at the border."""
    ix = torch.zeros_like(img)
    iy = torch.zeros_like(img)
    ix[..., 1:-1] = (img[..., 2:] - img[..., :-2]) / 2
    ix[..., 0] = img[..., 1] - img[..., 0]
    ix[..., -1] = img[..., -1] - img[..., -2]
    iy[..., 1:-1, :] = (img[..., 2:, :] - img[..., :-2, :]) / 2
    iy[..., 0, :] = img[..., 1, :] - img[..., 0, :]
    iy[..., -1, :] = img[..., -1, :] - img[..., -2, :]
    return ix, iy


def _window_mean(img: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a window x window neighbourhood of each pixel (only pixels inside the image)."""
    shape = img.shape
    flat = img.reshape(-1, 1, shape[-2], shape[-1])
    out = F.avg_pool2d(flat, window, stride=1, padding=window // 2, count_include_pad=False)
    return out.reshape(shape)


def motion_field(frame0: torch.Tensor, frame1: torch.Tensor, window: int = 5,
                 eps: float = 1e-6) -> torch.Tensor:
    """Lucas-Kanade optical flow: the motion (u, v) in pixels per frame at every pixel.

    frame0, frame1  grayscale frames (..., H, W), H, W >= 2. In each window x window
    neighbourhood (window odd) the brightness constancy Ix u + Iy v + It = 0 is solved by least
    squares: [Sxx Sxy; Sxy Syy] [u; v] = -[Sxt; Syt], with S the window means of the products of
    Ix, Iy (central differences of the mean of the two frames) and It = frame1 - frame0. Where
    the determinant is <= eps (flat regions, the aperture problem) the motion is 0.
    Returns (..., 2, H, W): channel 0 is u (along the width, x), channel 1 is v (down, y).
    """
    f0 = torch.as_tensor(frame0)
    f1 = torch.as_tensor(frame1)
    if f0.shape != f1.shape or f0.dim() < 2 or f0.shape[-1] < 2 or f0.shape[-2] < 2:
        raise ValueError(f"frames must have the same shape (..., H, W) with H, W >= 2, got "
                         f"{tuple(f0.shape)} and {tuple(f1.shape)}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    dtype = f0.dtype if f0.is_floating_point() else torch.float32
    f0, f1 = f0.to(torch.float64), f1.to(torch.float64)
    ix, iy = _gradients((f0 + f1) / 2)
    it = f1 - f0
    sxx, syy, sxy = (_window_mean(p, window) for p in (ix * ix, iy * iy, ix * iy))
    sxt, syt = _window_mean(ix * it, window), _window_mean(iy * it, window)
    det = sxx * syy - sxy * sxy
    ok = det > eps
    safe = torch.where(ok, det, torch.ones_like(det))
    u = torch.where(ok, (-syy * sxt + sxy * syt) / safe, torch.zeros_like(det))
    v = torch.where(ok, (sxy * sxt - sxx * syt) / safe, torch.zeros_like(det))
    return torch.stack([u, v], dim=-3).to(dtype)


def _check_range(x: torch.Tensor, name: str, low: float, high: float) -> None:
    if x.numel() and (float(x.min()) < low - 1e-6 or float(x.max()) > high + 1e-6):
        raise ValueError(f"{name} values must lie in [{low:g}, {high:g}], got "
                         f"[{float(x.min()):.4g}, {float(x.max()):.4g}]")


def _float(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x if x.is_floating_point() else x.to(torch.float32)


def rgb_to_lab(img: torch.Tensor) -> torch.Tensor:
    """sRGB (..., 3) in [0, 1] -> CIELAB (..., 3): L in [0, 100], a and b about [-110, 110].

    1. undo the sRGB gamma: c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    2. linear RGB -> XYZ with the sRGB matrix (D65 white)
    3. divide by the white point (0.95047, 1, 1.08883); f(t) = t^(1/3) above (6/29)^3, else
       t / (3 (6/29)^2) + 4/29
    4. L = 116 f(Y) - 16, a = 500 (f(X) - f(Y)), b = 200 (f(Y) - f(Z))
    """
    rgb = _float(img)
    if rgb.dim() < 1 or rgb.shape[-1] != 3:
        raise ValueError(f"an RGB image has shape (..., 3), got {tuple(rgb.shape)}")
    _check_range(rgb, "RGB", 0.0, 1.0)
    dtype = rgb.dtype
    c = rgb.to(torch.float64).clamp(0, 1)
    lin = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ torch.tensor(RGB_TO_XYZ, dtype=torch.float64).T
    t = xyz / torch.tensor(WHITE_D65, dtype=torch.float64)
    d = 6 / 29
    f = torch.where(t > d ** 3, t.clamp(min=d ** 3) ** (1 / 3), t / (3 * d * d) + 4 / 29)
    lab = torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                       200 * (f[..., 1] - f[..., 2])], dim=-1)
    return lab.to(dtype)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB (..., 3) (L in [0, 100]) -> sRGB (..., 3), clipped to [0, 1] (the inverse of
    :func:`rgb_to_lab` for colours inside the sRGB gamut)."""
    lab = _float(lab)
    if lab.dim() < 1 or lab.shape[-1] != 3:
        raise ValueError(f"a Lab image has shape (..., 3), got {tuple(lab.shape)}")
    _check_range(lab[..., 0], "L", 0.0, 100.0)
    dtype = lab.dtype
    lab = lab.to(torch.float64)
    fy = (lab[..., 0] + 16) / 116
    f = torch.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], dim=-1)
    d = 6 / 29
    t = torch.where(f > d, f ** 3, 3 * d * d * (f - 4 / 29))
    xyz = t * torch.tensor(WHITE_D65, dtype=torch.float64)
    lin = xyz @ torch.linalg.inv(torch.tensor(RGB_TO_XYZ, dtype=torch.float64)).T
    lin = lin.clamp(0, 1)
    c = torch.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return c.clamp(0, 1).to(dtype)


def _bins(grid: float) -> int:
    if not grid > 0 or (2 * AB_RANGE / grid) % 1:
        raise ValueError(f"grid must be a positive divisor of {2 * AB_RANGE:g}, got {grid}")
    return int(round(2 * AB_RANGE / grid))


def quantize_ab(ab: torch.Tensor, grid: float = 10.0) -> torch.Tensor:
    """(a, b) pairs (..., 2) -> the index (...,) int64 of their cell on a grid over [-110, 110).

    With n = 220 / grid cells per axis, cell (i, j) = (floor((a + 110) / grid),
    floor((b + 110) / grid)), clamped to 0..n-1, has index i * n + j.
    """
    ab = _float(ab)
    if ab.dim() < 1 or ab.shape[-1] != 2:
        raise ValueError(f"ab has shape (..., 2), got {tuple(ab.shape)}")
    n = _bins(grid)
    cell = torch.floor((ab.to(torch.float64) + AB_RANGE) / grid).clamp(0, n - 1).long()
    return cell[..., 0] * n + cell[..., 1]


def dequantize_ab(index: torch.Tensor, grid: float = 10.0) -> torch.Tensor:
    """Index (...,) -> the centre (a, b) of its cell, (..., 2) float32 (-110 + (i + 0.5) grid)."""
    index = torch.as_tensor(index)
    n = _bins(grid)
    if index.is_floating_point() or (index.numel() and (int(index.min()) < 0
                                                        or int(index.max()) >= n * n)):
        raise ValueError(f"indices must be integers in 0..{n * n - 1}")
    cell = torch.stack([index // n, index % n], dim=-1).to(torch.float32)
    return -AB_RANGE + (cell + 0.5) * grid


def cross_modal_forward(x: torch.Tensor, modality: str, encoders: Mapping[str, nn.Module],
                        shared: nn.Module, head: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder of ``modality``, then the layers every modality shares, then the head.

    Returns (embedding, logits): embedding = shared(encoders[modality](x)) (the shared
    representation), logits = head(embedding).
    """
    if modality not in encoders:
        raise ValueError(f"no encoder for modality {modality!r}; known: {sorted(encoders)}")
    embedding = shared(encoders[modality](x))
    return embedding, head(embedding)


def band_ablation(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor) -> torch.Tensor:
    """How much each band matters: accuracy(x) - accuracy(x with band c replaced by its mean).

    predict  images (N, C, H, W) -> scores (N, K); x (N, C, H, W); y (N,) labels.
    The band's mean is taken over every image and pixel of x. Returns (C,) float32.
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.dim() != 4 or y.shape != (x.shape[0],):
        raise ValueError(f"need x (N, C, H, W) and y (N,), got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")

    def accuracy(images: torch.Tensor) -> float:
        with torch.no_grad():
            return float((predict(images).argmax(dim=1) == y).float().mean())

    base = accuracy(x)
    drops = []
    for c in range(x.shape[1]):
        ablated = x.clone()
        ablated[:, c] = x[:, c].mean()
        drops.append(base - accuracy(ablated))
    return torch.tensor(drops, dtype=torch.float32)
