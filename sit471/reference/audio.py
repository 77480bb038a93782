"""Reference answers for assignment 08 (beat detection in audio). Graders only.

Shapes: a signal ``x`` is 1-D ``(samples,)``; a spectrogram is ``(frames, bins)`` (time first,
so that row ``t`` is the spectrum of frame ``t``); a mel filterbank is ``(n_mels, bins)`` with
``bins = n_fft // 2 + 1``. Times are in seconds, frame indices are integers.

* ``stft`` equals ``torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), center=False,
  return_complex=True).T``: frame ``t`` holds samples ``t*hop ... t*hop + n_fft - 1``, and there
  are ``1 + (samples - n_fft) // hop`` frames.
* ``mel_filterbank`` uses the HTK mel scale ``2595 log10(1 + f / 700)``: ``n_mels + 2`` edge
  frequencies equally spaced in mel from ``fmin`` to ``fmax``; filter ``m`` is a triangle that
  rises from edge ``m`` to 1 at edge ``m + 1`` and falls to 0 at edge ``m + 2``, evaluated at the
  bin frequencies ``k * sr / n_fft`` and scaled by ``2 / (f[m+2] - f[m])`` so that every
  triangle has unit area in Hz.
* ``log_mel_spectrogram`` pads the signal with ``n_fft // 2`` zeros on both sides (so frame
  ``t`` is centred on sample ``t * hop``), takes ``|stft|``, applies the filterbank and
  compresses with ``log(1 + mel)``: ``1 + samples // hop`` frames for an even ``n_fft``,
  ``1 + (samples - 1) // hop`` for an odd one.
* ``spectral_flux``: ``flux[0] = 0``, ``flux[t] = sum_b max(0, spec[t, b] - spec[t-1, b])``.
* ``pick_peaks``: frames with ``a[t] >= threshold`` that are local maxima (``>=`` both
  neighbours that exist); then, from the highest to the lowest (ties: earlier first), a peak is
  kept when it is at least ``min_distance`` frames from every peak kept before. Sorted indices.
* ``beat_f_measure``: mir_eval's ``beat.f_measure`` rule. An estimate ``e`` and a reference
  ``r`` match when ``e - window <= r <= e + window``, with ``e - window`` and ``e + window``
  computed in floating point as mir_eval does (``abs(e - r) <= window`` is the same in exact
  arithmetic but not in floats: estimate 0.21 matches reference 0.28 since 0.21 + 0.07 == 0.28,
  while 0.28 - 0.21 == 0.07000000000000003). Matching is one-to-one: matches = the largest
  possible number of disjoint pairs (greedy in time order finds it, since both window ends grow
  with ``e``). precision = matches / estimates, recall = matches / references,
  F = 2 P R / (P + R); each is 0 when its denominator is 0 (so empty lists give 0).
"""

from __future__ import annotations

import numpy as np


def _signal(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"the signal must be one-dimensional (samples,), got shape {x.shape}")
    return x


def hann(n: int) -> np.ndarray:
    """Periodic Hann window of length n (the one torch.hann_window gives)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def stft(x: np.ndarray, n_fft: int, hop: int, window: str | np.ndarray | None = "hann"
         ) -> np.ndarray:
    """Short-time Fourier transform without padding: x (samples,) -> complex (frames, bins).

    frames = 1 + (samples - n_fft) // hop, bins = n_fft // 2 + 1.
    window: "hann" (periodic), None (rectangular) or an array of length n_fft.
    """
    x = _signal(x)
    if int(n_fft) != n_fft or n_fft < 1 or int(hop) != hop or hop < 1:
        raise ValueError(f"n_fft and hop must be positive integers, got {n_fft} and {hop}")
    if hop > n_fft:
        raise ValueError(f"hop ({hop}) is larger than the window (n_fft={n_fft}): "
                         "samples between frames would be skipped")
    if len(x) < n_fft:
        raise ValueError(f"the signal ({len(x)} samples) is shorter than one frame ({n_fft})")
    if window is None:
        w = np.ones(n_fft)
    elif isinstance(window, str):
        if window != "hann":
            raise ValueError(f"unknown window {window!r}")
        w = hann(n_fft)
    else:
        w = np.asarray(window, dtype=np.float64)
        if w.shape != (n_fft,):
            raise ValueError(f"the window must have shape ({n_fft},), got {w.shape}")
    frames = 1 + (len(x) - n_fft) // hop
    index = hop * np.arange(frames)[:, None] + np.arange(n_fft)[None, :]
    return np.fft.rfft(x[index] * w, axis=1)


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sr: float, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular filters of unit area, equally spaced in mel: (n_mels, n_fft // 2 + 1)."""
    fmax = sr / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sr / 2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    if n_mels < 1:
        raise ValueError(f"n_mels must be at least 1, got {n_mels}")
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None, :] - lo) / (mid - lo)
    fall = (hi - freqs[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(rise, fall)) * 2.0 / (hi - lo)


def log_mel_spectrogram(x: np.ndarray, sr: float, n_fft: int, hop: int, n_mels: int,
                        fmin: float = 30.0, fmax: float | None = None) -> np.ndarray:
    """log(1 + mel magnitude) of frames centred on samples 0, hop, 2 hop, ...: (frames, n_mels).

    The signal is padded with n_fft // 2 zeros at both ends (as torch.stft and librosa do with
    center=True), so sample n_fft // 2 of frame t is sample t * hop and
    frames = 1 + (samples + 2 * (n_fft // 2) - n_fft) // hop, that is
    1 + samples // hop for an even n_fft and 1 + (samples - 1) // hop for an odd one.
    """
    x = _signal(x)
    pad = n_fft // 2
    spec = np.abs(stft(np.pad(x, (pad, pad)), n_fft, hop))
    return np.log1p(spec @ mel_filterbank(sr, n_fft, n_mels, fmin, fmax).T)


def spectral_flux(spec: np.ndarray) -> np.ndarray:
    """Half-wave rectified frame-to-frame increase summed over bins: (frames, bins) -> (frames,)."""
    spec = np.asarray(spec, dtype=np.float64)
    if spec.ndim != 2:
        raise ValueError(f"spec must have shape (frames, bins), got {spec.shape}")
    flux = np.zeros(len(spec))
    flux[1:] = np.maximum(0.0, np.diff(spec, axis=0)).sum(axis=1)
    return flux


def pick_peaks(activation: np.ndarray, threshold: float, min_distance: int) -> np.ndarray:
    """Frame indices (sorted, int64) of the peaks of a 1-D activation."""
    a = _signal(activation)
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    left = np.concatenate([[-np.inf], a[:-1]])
    right = np.concatenate([a[1:], [-np.inf]])
    candidates = np.flatnonzero((a >= threshold) & (a >= left) & (a >= right))
    order = candidates[np.argsort(-a[candidates], kind="stable")]
    kept: list[int] = []
    for t in order:
        if all(abs(t - k) >= min_distance for k in kept):
            kept.append(int(t))
    return np.array(sorted(kept), dtype=np.int64)


def _events(values: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a one-dimensional list of times, got shape {v.shape}")
    return np.sort(v)


def match_beats(reference: np.ndarray, estimated: np.ndarray, window: float = 0.07) -> int:
    """Largest number of one-to-one pairs (r, e) with e - window <= r <= e + window (mir_eval)."""
    ref, est = _events(reference, "reference"), _events(estimated, "estimated")
    i = j = matches = 0
    while i < len(ref) and j < len(est):
        if est[j] - window <= ref[i] <= est[j] + window:
            matches += 1
            i += 1
            j += 1
        elif est[j] < ref[i]:
            j += 1
        else:
            i += 1
    return matches


def beat_f_measure(reference: np.ndarray, estimated: np.ndarray, window: float = 0.07
                   ) -> tuple[float, float, float]:
    """(F-measure, precision, recall) of estimated beat times against reference beat times."""
    matches = match_beats(reference, estimated, window)
    n_ref, n_est = len(np.asarray(reference).ravel()), len(np.asarray(estimated).ravel())
    precision = matches / n_est if n_est else 0.0
    recall = matches / n_ref if n_ref else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(f), float(precision), float(recall)
