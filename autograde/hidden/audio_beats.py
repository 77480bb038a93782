"""Hidden tests of assignment 08 (beat detection in audio), decided by the grader.

Each test draws its inputs from the run's generator; the notebook's probe calls the student's
function on them and returns the outputs (or, for inputs that must be refused, which exception
was raised); the check compares them with ``sit471.reference.audio``, which tests/ holds to
``torch.stft`` and to brute force. The checks also cover what the visible tests check (shapes,
complex output, ValueError on bad input, silence, empty lists), so a kernel that skips its
visible tests gains nothing. Wrong answers are named where a likely mistake explains them:
each such "mistake" is recomputed here from the reference pieces on the same inputs.
"""

from __future__ import annotations

import numpy as np

from autograde.verdict import HiddenTests
from sit471.checks import check_array
from sit471.reference import audio as ref

hidden = HiddenTests()

SR, N_FFT, HOP, N_MELS = 22050, 1024, 220, 80  # sit471.audio's settings (the clip case)


def _as_real(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z)
    return np.stack([z.real, z.imag], axis=-1)


def _raised(got: dict, where: str) -> None:
    """A probe that reports an exception on an input the reference accepts fails here."""
    if "raised" in got:
        raise AssertionError(f"{where} raised {got['raised']}: {got.get('message', '')}"[:300])


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and bool(np.isfinite(a).all() and np.allclose(a, b, rtol=rtol,
                                                                           atol=atol))


def _short(values) -> str:
    values = list(values)
    return str(values) if len(values) <= 8 else f"[{', '.join(map(str, values[:8]))}, ...]"


# --------------------------------------------------------------------------------- stft


@hidden.cases("test_stft")
def _(rng):
    sizes = [(int(rng.integers(900, 1100)), 256, int(rng.integers(40, 90))),
             (int(rng.integers(512, 516)), 512, 1),          # hop 1: every sample starts a frame
             (int(rng.integers(20, 25)) * 100, 100, 100),    # hop == n_fft: frames do not overlap
             (int(rng.integers(700, 800)), 63, int(rng.integers(20, 40))),  # odd n_fft
             (4410, 1024, 220),
             (128, 128, int(rng.integers(1, 129)))]          # exactly one frame
    cases = [dict(x=rng.normal(size=n) * float(rng.uniform(0.1, 3)), n_fft=f, hop=h)
             for n, f, h in sizes]
    n_fft = int(rng.integers(8, 32))
    cases += [  # must raise ValueError
        dict(x=rng.normal(size=int(rng.integers(1, n_fft))), n_fft=n_fft, hop=4),
        dict(x=rng.normal(size=(int(rng.integers(40, 120)), n_fft)), n_fft=n_fft, hop=4),
        dict(x=rng.normal(size=(int(rng.integers(40, 120)), 1)), n_fft=n_fft, hop=4),
        dict(x=rng.normal(size=200), n_fft=n_fft, hop=n_fft + int(rng.integers(1, 8)))]
    return cases


def _stft_bad_input(x: np.ndarray, n_fft: int, hop: int) -> str | None:
    if x.ndim != 1:
        return f"x has shape {x.shape} (not one-dimensional)"
    if hop > n_fft:
        return f"hop ({hop}) > n_fft ({n_fft})"
    if len(x) < n_fft:
        return f"the signal ({len(x)} samples) is shorter than one frame ({n_fft})"
    return None


@hidden.check("test_stft")
def _(case, got):
    x, n_fft, hop = case["x"], case["n_fft"], case["hop"]
    bad = _stft_bad_input(x, n_fft, hop)
    if bad is not None:
        if got.get("raised") == "ValueError":
            return
        if "raised" in got:
            raise AssertionError(f"stft raised {got['raised']} when {bad}; raise ValueError")
        raise AssertionError(f"stft should raise ValueError when {bad}")
    where = f"stft({len(x)} samples, n_fft {n_fft}, hop {hop})"
    _raised(got, where)
    want = ref.stft(x, n_fft, hop)
    frames, bins = want.shape
    S = np.asarray(got["real"], dtype=float) + 1j * np.asarray(got["imag"], dtype=float)
    if S.shape == (bins, frames) and bins != frames:
        raise AssertionError(f"{where} has shape {S.shape}: time should come first, "
                             "(frames, bins)")
    if S.ndim == 2 and S.shape[1] != bins:
        raise AssertionError(f"{where} has {S.shape[1]} frequency bins, expected n_fft // 2 + 1 "
                             f"= {bins}: use np.fft.rfft")
    if S.ndim == 2 and S.shape[0] != frames:
        raise AssertionError(f"{where} gave {S.shape[0]} frames, expected 1 + (samples - n_fft) "
                             f"// hop = {frames}: every frame must fit inside the signal")
    if not got["complex"]:
        raise AssertionError(f"{where} is not complex: return np.fft.rfft's complex values")
    if _close(_as_real(S), _as_real(want), rtol=1e-6, atol=1e-8):
        return  # the mistakes below are worked out only for a wrong answer
    check_array(_as_real(S), _as_real(want), where, rtol=1e-6, atol=1e-8,
                mistakes={"no window was applied": _as_real(ref.stft(x, n_fft, hop, window=None)),
                          "the symmetric Hann window (np.hanning): use the periodic one":
                          _as_real(ref.stft(x, n_fft, hop, window=np.hanning(n_fft)))})


# ------------------------------------------------------------------------ mel filterbank


@hidden.cases("test_mel_filterbank")
def _(rng):
    return [dict(sr=22050, n_fft=1024, n_mels=int(rng.integers(30, 60)),
                 fmin=float(rng.uniform(0, 60)), fmax=11025.0),
            dict(sr=16000, n_fft=512, n_mels=int(rng.integers(20, 50)), fmin=0.0,
                 fmax=float(rng.uniform(4000, 8000))),
            dict(sr=8000, n_fft=256, n_mels=int(rng.integers(5, 20)),
                 fmin=float(rng.uniform(50, 200)), fmax=float(rng.uniform(2500, 4000))),
            dict(sr=12000, n_fft=int(rng.integers(150, 200)) * 2 + 1,  # odd n_fft
                 n_mels=int(rng.integers(10, 30)), fmin=float(rng.uniform(0, 100)),
                 fmax=float(rng.uniform(4000, 6000))),
            dict(sr=44100, n_fft=2048, n_mels=1, fmin=float(rng.uniform(20, 100)),
                 fmax=float(rng.uniform(10000, 22050)))]


def _triangles(edges: np.ndarray, freqs: np.ndarray, unit_area: bool = True) -> np.ndarray:
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return tri * 2.0 / (hi - lo) if unit_area else tri


@hidden.check("test_mel_filterbank")
def _(case, got):
    sr, n_fft, n_mels, fmin, fmax = (case[k] for k in ("sr", "n_fft", "n_mels", "fmin", "fmax"))
    where = f"mel_filterbank({sr}, {n_fft}, {n_mels}, {fmin:.1f}, {fmax:.1f})"
    want = ref.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    fb = np.asarray(got, dtype=float)
    bins = n_fft // 2 + 1
    if fb.shape == (bins, n_mels) and bins != n_mels:
        raise AssertionError(f"{where} has shape {fb.shape} (bins, n_mels): it should be "
                             f"(n_mels, bins) = {want.shape}")
    if fb.shape == (n_mels - 2, bins):
        raise AssertionError(f"{where} gave n_mels - 2 = {n_mels - 2} filters: take n_mels + 2 "
                             "edge frequencies")
    if _close(fb, want, rtol=1e-6, atol=1e-12):
        return
    edges = ref.mel_to_hz(np.linspace(ref.hz_to_mel(fmin), ref.hz_to_mel(fmax), n_mels + 2))
    freqs = np.arange(bins) * sr / n_fft
    check_array(fb, want, where, rtol=1e-6, atol=1e-12, mistakes={
        "the triangles are not normalised to unit area (height 1)":
            _triangles(edges, freqs, unit_area=False),
        "the edges are equally spaced in Hz: space them equally in mel":
            _triangles(np.linspace(fmin, fmax, n_mels + 2), freqs),
        "the bin frequencies are not k * sr / n_fft (linspace(0, sr / 2) is only right "
        "for even n_fft)": _triangles(edges, np.linspace(0, sr / 2, bins))})


# ------------------------------------------------------------------- log-mel spectrogram


def _drum_clip(rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    """A clip like sit471.audio's (decaying low sines for kicks, noise bursts for hats), made
    here so that the grader never imports torch."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    period = 60 / float(rng.uniform(80, 160))
    for k, start in enumerate(np.arange(float(rng.uniform(0.05, period)), seconds - 0.1, period)):
        tail = np.clip(t - start, 0, None) * (t >= start)
        if k % 2 == 0:
            y += np.sin(2 * np.pi * (60 + 80 * np.exp(-tail * 30)) * tail) * np.exp(-tail * 8)
        else:
            y += rng.normal(size=len(t)) * np.exp(-tail * 25) * (t >= start) * 0.5
    return y / np.abs(y).max() + rng.normal(size=len(t)) * float(rng.uniform(0, 0.5))


@hidden.cases("test_log_mel_spectrogram")
def _(rng):
    def noise(n):
        return rng.normal(size=n) * float(rng.uniform(0.1, 3))

    return [dict(x=noise(int(rng.integers(8000, 12000))), sr=22050, n_fft=1024, hop=220,
                 n_mels=80, fmin=30.0, fmax=None),
            dict(x=noise(int(rng.integers(4000, 6000))), sr=16000, n_fft=512,
                 hop=int(rng.integers(100, 200)), n_mels=40, fmin=0.0,
                 fmax=float(rng.uniform(5000, 7900))),
            dict(x=noise(int(rng.integers(900, 1100))), sr=8000, n_fft=128,
                 hop=int(rng.integers(64, 128)), n_mels=7, fmin=float(rng.uniform(100, 300)),
                 fmax=None),
            dict(x=np.zeros(int(rng.integers(1000, 3000))), sr=8000, n_fft=256, hop=64,
                 n_mels=20, fmin=30.0, fmax=None),
            dict(x=_drum_clip(rng), sr=SR, n_fft=N_FFT, hop=HOP, n_mels=N_MELS)]  # defaults


@hidden.check("test_log_mel_spectrogram")
def _(case, got):
    x, sr, n_fft, hop, n_mels = (case[k] for k in ("x", "sr", "n_fft", "hop", "n_mels"))
    fmin, fmax = case.get("fmin", 30.0), case.get("fmax")
    where = f"log_mel_spectrogram({len(x)} samples, sr {sr}, n_fft {n_fft}, hop {hop})"
    want = ref.log_mel_spectrogram(x, sr, n_fft, hop, n_mels, fmin, fmax)
    L = np.asarray(got, dtype=float)
    frames = len(want)  # 1 + len(x) // hop for an even n_fft
    if L.shape == (n_mels, frames) and n_mels != frames:
        raise AssertionError(f"{where} has shape {L.shape} (n_mels, frames): time comes first")
    if L.shape == (1 + (len(x) - n_fft) // hop, n_mels):
        raise AssertionError(f"{where} has {L.shape[0]} frames, expected {frames}: pad the "
                             "signal with n_fft // 2 zeros on both sides first")
    if L.shape == want.shape and not np.isfinite(L).all():
        raise AssertionError(f"{where} has inf or NaN: use log(1 + mel), not log(mel)")
    if _close(L, want, rtol=1e-6, atol=1e-9):
        return
    pad = n_fft // 2
    mag = np.abs(ref.stft(np.pad(x, (pad, pad)), n_fft, hop))
    fb = ref.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    mistakes = {"the power |stft|**2 was used instead of |stft|": np.log1p(mag ** 2 @ fb.T),
                "the log was left out": mag @ fb.T,
                "np.log was used instead of log(1 + .)": np.log(np.maximum(mag @ fb.T, 1e-300))}
    if fmax is not None:
        mistakes["fmax was ignored (sr / 2 used)"] = np.log1p(
            mag @ ref.mel_filterbank(sr, n_fft, n_mels, fmin, None).T)
    if fmin != 30.0:
        mistakes["fmin was ignored (30 Hz used)"] = np.log1p(
            mag @ ref.mel_filterbank(sr, n_fft, n_mels, 30.0, fmax).T)
    check_array(L, want, where, rtol=1e-6, atol=1e-9, mistakes=mistakes)


# ------------------------------------------------------------------------ spectral flux


@hidden.cases("test_spectral_flux")
def _(rng):
    shapes = [(int(rng.integers(30, 80)), int(rng.integers(40, 100))),
              (1, int(rng.integers(1, 6))), (int(rng.integers(2, 10)), 1),
              (200, int(rng.integers(5, 20)))]
    return [dict(spec=rng.normal(size=s) * float(rng.uniform(0.5, 3))) for s in shapes]


@hidden.check("test_spectral_flux")
def _(case, got):
    spec = case["spec"]
    where = f"spectral_flux of a {spec.shape[0]} x {spec.shape[1]} spectrogram"
    flux = np.asarray(got, dtype=float)
    if flux.shape == (len(spec) - 1,):
        raise AssertionError(f"{where} has frames - 1 = {len(spec) - 1} values: one per "
                             "frame, with flux[0] = 0")
    if flux.shape == (spec.shape[1],) and spec.shape[0] != spec.shape[1]:
        raise AssertionError(f"{where} has one value per band: sum over the bands (axis 1)")
    diff = np.diff(spec, axis=0)
    check_array(flux, ref.spectral_flux(spec), where, rtol=1e-9, mistakes={
        "the differences are not half-wave rectified":
            np.concatenate([[0.0], diff.sum(axis=1)]),
        "absolute differences were used: only increases count":
            np.concatenate([[0.0], np.abs(diff).sum(axis=1)])})


# --------------------------------------------------------------------------- pick peaks


@hidden.cases("test_pick_peaks")
def _(rng):
    cases = []
    for trial in range(30):
        a = rng.random(int(rng.integers(1, 120)))
        if trial % 3 == 0:
            a = np.round(a, 1)  # plateaus and ties
        cases.append(dict(activation=a, threshold=float(rng.uniform(0, 0.8)),
                          min_distance=int(rng.integers(1, 12))))
    # plateaus of two or three equal frames, apart enough that min_distance 1 keeps them all
    a = np.zeros(int(rng.integers(40, 60)))
    for start in range(2, len(a) - 4, 6):
        a[start:start + int(rng.integers(2, 4))] = np.round(rng.uniform(0.3, 1.0), 2)
    cases += [dict(activation=a, threshold=0.1, min_distance=1),
              dict(activation=np.zeros(0), threshold=0.5, min_distance=2),
              dict(activation=np.full(int(rng.integers(2, 9)), float(rng.uniform(0, 0.4))),
                   threshold=0.5, min_distance=1)]
    return cases


def _peaks(a, threshold, min_distance, *, edge=-np.inf, strict=False, order="height",
           distance=True, use_threshold=True) -> list[int]:
    """The reference's peak picking with one rule changed (to name a student's mistake)."""
    a = np.asarray(a, dtype=float)
    if len(a) == 0:
        return []
    left, right = np.concatenate([[edge], a[:-1]]), np.concatenate([a[1:], [edge]])
    local = ((a > left) if strict else (a >= left)) & (a >= right)
    candidates = np.flatnonzero(local & ((a >= threshold) if use_threshold else True))
    if order == "height":
        candidates = candidates[np.argsort(-a[candidates], kind="stable")]
    kept: list[int] = []
    for t in candidates:
        if not distance or all(abs(t - k) >= min_distance for k in kept):
            kept.append(int(t))
    return sorted(kept)


@hidden.check("test_pick_peaks")
def _(case, got):
    a, th, d = case["activation"], case["threshold"], case["min_distance"]
    got = np.asarray(got)
    assert got.ndim == 1, f"pick_peaks gave shape {got.shape}: return a 1-D array of indices"
    assert got.size == 0 or np.issubdtype(got.dtype, np.integer), (
        f"pick_peaks gave dtype {got.dtype}: return integer frame indices")
    want = ref.pick_peaks(a, th, d).tolist()
    got = got.tolist()
    if got == want:
        return
    where = f"pick_peaks(threshold {th:.3f}, min_distance {d}) on {len(a)} frames"
    hints = []
    for hint, kwargs in [
        ("it kept peaks closer than min_distance", dict(distance=False)),
        ("decide from the highest candidate down, not left to right", dict(order="time")),
        ("at the edges compare with the one neighbour that exists", dict(edge=np.inf)),
        ("it ignored the threshold", dict(use_threshold=False)),
        ("on a plateau every frame >= both neighbours is a candidate (then min_distance "
         "decides, earlier first)", dict(strict=True)),
    ]:
        if got == _peaks(a, th, d, **kwargs):
            hints.append(hint)
    if hints:  # on some inputs two mistakes give the same peaks: name both
        raise AssertionError(f"{where}: {' or '.join(hints)}; gave {_short(got)}, expected "
                             f"{_short(want)}")
    raise AssertionError(f"{where} gave {_short(got)}, expected {_short(want)}")


# ----------------------------------------------------------------------- beat F-measure


@hidden.cases("test_beat_f_measure")
def _(rng):
    cases = []
    for trial in range(40):
        r = np.sort(rng.uniform(0, 10, int(rng.integers(0, 25))))
        hit = r[rng.random(len(r)) < 0.7]
        e = np.concatenate([hit + rng.normal(0, 0.05, len(hit)),
                            rng.uniform(0, 10, int(rng.integers(0, 8)))])
        e = e[rng.permutation(len(e))]
        if trial % 3 == 2:
            r = r[rng.permutation(len(r))]  # neither list has to come sorted
        if trial % 4 == 0 and len(e):
            e = np.concatenate([e, e[:2]])  # duplicates
        if trial % 4 == 1 and len(r):
            e = np.concatenate([e, r[:3] + 0.0699, r[3:6] - 0.0701])  # just inside / outside
        case = dict(reference=r, estimated=e)
        if trial % 5 == 0:
            case["window"] = 0.05
        elif trial % 5 == 1:
            case["window"] = 0.07
        cases.append(case)  # otherwise the default window
    # exactly `window` apart (dyadic numbers: no rounding): such an estimate matches
    r = np.sort(rng.choice(np.arange(8, 640), size=int(rng.integers(5, 12)), replace=False)) / 64
    e = r + np.where(rng.random(len(r)) < 0.5, 1, -1) / 16
    cases.append(dict(reference=r, estimated=e[rng.permutation(len(e))], window=0.0625))
    cases.append(_decimal_edge_case(rng))
    beats = np.sort(rng.uniform(0, 10, int(rng.integers(1, 10))))
    cases += [dict(reference=np.zeros(0), estimated=np.zeros(0)),
              dict(reference=beats, estimated=np.zeros(0)),
              dict(reference=np.zeros(0), estimated=beats)]
    return cases


def _decimal_edge_case(rng) -> dict:
    """Beats on a 10-ms grid, estimates exactly 7 frames (the window) early or late: decimal
    times, so ``abs(e - r) <= w``, ``r - w <= e <= r + w`` and ``e - w < r < e + w`` each
    score them differently from mir_eval's ``e - w <= r <= e + w`` (0.28 - 0.21 is
    0.07000000000000003, while 0.21 + 0.07 is 0.28)."""
    while True:
        r = np.sort(rng.choice(np.arange(10, 1000), size=12, replace=False)) / 100
        e = np.round(r + rng.choice([-0.07, 0.07], len(r)), 2)
        scores = {rule: _matches(r, e, 0.07, rule=rule) for rule in _RULES}
        if len(set(scores.values())) == len(scores):
            return dict(reference=r, estimated=e[rng.permutation(len(e))], window=0.07)


_RULES = {  # is reference r matched by estimate e within w?
    "mir_eval": lambda r, e, w: e - w <= r <= e + w,
    "strict": lambda r, e, w: e - w < r < e + w,
    "abs": lambda r, e, w: abs(e - r) <= w,
    "around_r": lambda r, e, w: r - w <= e <= r + w,
}


def _matches(ref_t, est_t, window, *, rule="mir_eval", sort=True) -> int:
    """One-to-one greedy matching as the reference does it, with one rule changed."""
    r = np.sort(ref_t) if sort else np.asarray(ref_t)
    e = np.sort(est_t) if sort else np.asarray(est_t)
    hit = _RULES[rule]
    i = j = n = 0
    while i < len(r) and j < len(e):
        if hit(r[i], e[j], window):
            n, i, j = n + 1, i + 1, j + 1
        elif e[j] < r[i]:
            j += 1
        else:
            i += 1
    return n


def _score(matches_p: int, matches_r: int, n_ref: int, n_est: int) -> list[float]:
    p = matches_p / n_est if n_est else 0.0
    r = matches_r / n_ref if n_ref else 0.0
    return [2 * p * r / (p + r) if p + r else 0.0, p, r]


@hidden.check("test_beat_f_measure")
def _(case, got):
    r, e = case["reference"], case["estimated"]
    w = case.get("window", 0.07)
    where = f"beat_f_measure({len(r)} beats, {len(e)} estimates, window {w})"
    if got.get("raised") == "ZeroDivisionError" and (len(r) == 0 or len(e) == 0):
        raise AssertionError(f"{where} divided by zero: a value whose denominator is 0 is 0")
    _raised(got, where)
    score = np.asarray(got["score"], dtype=float)
    assert score.shape == (3,), (
        f"{where} gave {score.size} values: return (f, precision, recall)")
    want = ref.beat_f_measure(r, e, w)
    if _close(score, np.array(want), rtol=1e-9, atol=1e-10):
        return
    n_ref, n_est = len(r), len(e)
    m = _matches(r, e, w)
    any_r = sum(bool(np.any((e - w <= t) & (t <= e + w))) for t in r)
    any_e = sum(bool(np.any((t - w <= r) & (r <= t + w))) for t in e)
    strict, unsorted = _matches(r, e, w, rule="strict"), _matches(r, e, w, sort=False)
    by_abs, around_r = _matches(r, e, w, rule="abs"), _matches(r, e, w, rule="around_r")
    for hint, pairs in [
        ("precision and recall swapped", [(m, m)]),
        ("abs(e - r) <= window was used: at the edge (0.28 - 0.21 = 0.07000000000000003) test "
         "e - window <= r <= e + window", [(by_abs, by_abs)]),
        ("r - window <= e <= r + window was used: at the edge test e - window <= r <= e + window",
         [(around_r, around_r)]),
        ("|e - r| < window was used: an estimate exactly window away matches (<=)",
         [(strict, strict)]),
        ("the lists were not sorted first", [(unsorted, unsorted)]),
        ("an estimate was counted for several beats (match one-to-one)",
         [(any_r, any_r), (m, any_r), (any_e, any_r)]),
        ("several estimates were counted for one beat (match one-to-one)",
         [(any_e, any_e), (any_e, m)]),
    ]:
        for mp, mr in pairs:
            wrong = _score(mp, mr, n_ref, n_est)
            if hint.startswith("precision"):
                wrong = [wrong[0], wrong[2], wrong[1]]
            if not np.allclose(wrong, want, rtol=1e-9) and np.allclose(score, wrong, rtol=1e-9):
                raise AssertionError(f"{where} is wrong; it looks like {hint}")
    check_array(score, want, where, rtol=1e-9)
