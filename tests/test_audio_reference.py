"""sit471.reference.audio against torch.stft, brute force and known values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from sit471.reference import audio as ref


@pytest.mark.parametrize("n, n_fft, hop", [(1000, 256, 64), (513, 512, 1), (2048, 100, 100),
                                           (777, 64, 33)])
def test_stft_equals_torch(n, n_fft, hop):
    x = np.random.default_rng(n).normal(size=n)
    got = ref.stft(x, n_fft, hop)
    want = torch.stft(torch.from_numpy(x), n_fft, hop_length=hop,
                      window=torch.hann_window(n_fft, dtype=torch.float64), center=False,
                      return_complex=True).numpy().T
    assert got.shape == want.shape == (1 + (n - n_fft) // hop, n_fft // 2 + 1)
    np.testing.assert_allclose(got, want, atol=1e-9)
    rect = torch.stft(torch.from_numpy(x), n_fft, hop_length=hop,
                      window=torch.ones(n_fft, dtype=torch.float64), center=False,
                      return_complex=True).numpy().T
    np.testing.assert_allclose(ref.stft(x, n_fft, hop, window=None), rect, atol=1e-9)


def test_stft_errors():
    with pytest.raises(ValueError, match="one-dimensional"):
        ref.stft(np.zeros((2, 100)), 16, 4)
    with pytest.raises(ValueError, match="larger than the window"):
        ref.stft(np.zeros(100), 16, 17)
    with pytest.raises(ValueError, match="shorter than one frame"):
        ref.stft(np.zeros(10), 16, 4)
    with pytest.raises(ValueError, match="one-dimensional"):
        ref.log_mel_spectrogram(np.zeros((100, 1)), 8000, 32, 8, 4)


def test_stft_of_a_sine_peaks_at_its_bin():
    sr, n_fft = 8000, 256
    t = np.arange(4000) / sr
    x = np.sin(2 * np.pi * 20 * sr / n_fft * t)
    mag = np.abs(ref.stft(x, n_fft, 64))
    assert (mag.argmax(axis=1) == 20).all()
    np.testing.assert_allclose(mag[:, 20], n_fft / 4, rtol=1e-6)  # Hann: half of n_fft / 2


def test_mel_filterbank_properties():
    sr, n_fft, n_mels = 22050, 1024, 40
    fb = ref.mel_filterbank(sr, n_fft, n_mels, 30.0, 8000.0)
    assert fb.shape == (n_mels, n_fft // 2 + 1)
    assert (fb >= 0).all()
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    centres = freqs[fb.argmax(axis=1)]
    assert (np.diff(centres) >= 0).all()
    assert (fb[:, freqs < 30] == 0).all() and (fb[:, freqs > 8000] == 0).all()
    edges = ref.mel_to_hz(np.linspace(ref.hz_to_mel(30), ref.hz_to_mel(8000), n_mels + 2))
    # each triangle has unit area in Hz (bins sum * bin width approximates it for wide ones)
    width = sr / n_fft
    wide = (edges[2:] - edges[:-2]) > 20 * width
    np.testing.assert_allclose(fb[wide].sum(axis=1) * width, 1.0, rtol=0.02)
    # the peak value of a triangle is 2 / (hi - lo), reached at its centre frequency
    fine = ref.mel_filterbank(48000, 48000, 3, 100, 4000)  # bins every 1 Hz
    e = ref.mel_to_hz(np.linspace(ref.hz_to_mel(100), ref.hz_to_mel(4000), 5))
    np.testing.assert_allclose(fine.max(axis=1), 2 / (e[2:] - e[:-2]), rtol=1e-3)
    np.testing.assert_allclose(ref.mel_to_hz(ref.hz_to_mel(1000.0)), 1000.0)
    np.testing.assert_allclose(ref.hz_to_mel(1000.0), 1000.0, rtol=1e-3)
    with pytest.raises(ValueError):
        ref.mel_filterbank(sr, n_fft, 10, 100, sr)


def test_log_mel_spectrogram():
    sr, n_fft, hop = 22050, 1024, 220
    x = np.random.default_rng(1).normal(size=sr)
    s = ref.log_mel_spectrogram(x, sr, n_fft, hop, 80)
    assert s.shape == (1 + len(x) // hop, 80)
    pad = np.pad(x, (n_fft // 2, n_fft // 2))
    want = torch.stft(torch.from_numpy(x), n_fft, hop_length=hop,
                      window=torch.hann_window(n_fft, dtype=torch.float64), center=True,
                      pad_mode="constant", return_complex=True).abs().numpy().T
    np.testing.assert_allclose(np.abs(ref.stft(pad, n_fft, hop)), want, atol=1e-9)
    np.testing.assert_allclose(s, np.log1p(want @ ref.mel_filterbank(sr, n_fft, 80, 30).T))
    assert (ref.log_mel_spectrogram(np.zeros(5000), sr, n_fft, hop, 8) == 0).all()


def test_spectral_flux():
    spec = np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 5.0], [0.0, 0.0]])
    np.testing.assert_allclose(ref.spectral_flux(spec), [0.0, 1.0, 4.0, 0.0])
    with pytest.raises(ValueError):
        ref.spectral_flux(np.zeros(5))


def test_pick_peaks():
    a = np.array([0.0, 0.9, 0.1, 0.5, 0.2, 0.8, 0.85, 0.1, 0.3])
    assert ref.pick_peaks(a, 0.0, 1).tolist() == [1, 3, 6, 8]
    assert ref.pick_peaks(a, 0.4, 1).tolist() == [1, 3, 6]
    assert ref.pick_peaks(a, 0.0, 3).tolist() == [1, 6]  # 3 is too close to 1 (the higher)
    assert ref.pick_peaks(a, 0.0, 6).tolist() == [1, 8]
    assert ref.pick_peaks(np.array([0.0, 1.0, 1.0, 0.0]), 0.5, 2).tolist() == [1]
    assert ref.pick_peaks(np.array([0.0, 1.0, 1.0, 0.0]), 0.5, 1).tolist() == [1, 2]
    assert ref.pick_peaks(np.zeros(0), 0.5, 2).dtype == np.int64
    assert ref.pick_peaks(np.array([1.0, 0.0, 2.0]), 0.5, 1).tolist() == [0, 2]  # edges count
    with pytest.raises(ValueError):
        ref.pick_peaks(np.zeros((3, 3)), 0.5, 2)


def test_pick_peaks_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(50):
        a = rng.random(int(rng.integers(1, 40)))
        d = int(rng.integers(1, 6))
        got = ref.pick_peaks(a, 0.3, d)
        assert (np.diff(got) >= d).all() and (a[got] >= 0.3).all()
        # every local maximum above the threshold is kept or lies near a higher kept peak
        for t in range(len(a)):
            if a[t] >= 0.3 and a[t] >= a[max(t - 1, 0)] and a[t] >= a[min(t + 1, len(a) - 1)]:
                assert t in got or any(abs(t - k) < d and a[k] >= a[t] for k in got)


def _hit(r: float, e: float, w: float) -> bool:
    """mir_eval's documented rule (util.match_events): r lies in [e - w, e + w], in floats."""
    return e - w <= r <= e + w


def _best_matching(ref_t, est_t, w):
    best = 0
    for k in range(min(len(ref_t), len(est_t)), 0, -1):
        for rs in itertools.combinations(range(len(ref_t)), k):
            for es in itertools.permutations(range(len(est_t)), k):
                if all(_hit(ref_t[r], est_t[e], w) for r, e in zip(rs, es, strict=True)):
                    return k
    return best


def test_matching_is_maximal_one_to_one():
    rng = np.random.default_rng(4)
    for _ in range(200):
        r = np.round(rng.random(int(rng.integers(0, 5))), 2)
        e = np.round(rng.random(int(rng.integers(0, 5))), 2)
        assert ref.match_beats(r, e, 0.1) == _best_matching(r, e, 0.1), (r, e)


def test_beat_f_measure_known_values():
    r = np.array([1.0, 2.0, 3.0, 4.0])
    assert ref.beat_f_measure(r, r) == (1.0, 1.0, 1.0)
    f, p, rec = ref.beat_f_measure(r, np.array([1.069, 2.071, 3.0]))
    assert (p, rec) == (2 / 3, 0.5) and f == pytest.approx(2 * p * rec / (p + rec))
    # one estimate between two references may match only one of them
    assert ref.beat_f_measure(np.array([1.0, 1.1]), np.array([1.05]))[1:] == (1.0, 0.5)
    # duplicate estimates: only one of them matches
    assert ref.beat_f_measure(np.array([1.0]), np.array([1.0, 1.0]))[1:] == (0.5, 1.0)
    assert ref.beat_f_measure(np.array([]), np.array([])) == (0.0, 0.0, 0.0)
    assert ref.beat_f_measure(r, np.array([])) == (0.0, 0.0, 0.0)
    assert ref.beat_f_measure(np.array([]), r) == (0.0, 0.0, 0.0)
    assert ref.beat_f_measure(r, r[::-1])[0] == 1.0  # order does not matter
    with pytest.raises(ValueError, match="one-dimensional"):
        ref.beat_f_measure(np.zeros((2, 2)), r)


# decimal times exactly one window apart: 0.28 - 0.21 == 0.07000000000000003 in floats, but
# 0.21 + 0.07 == 0.28, so mir_eval counts estimate 0.21 as a hit for reference 0.28
EDGE = [(0.28, 0.21, 0.07, 1), (0.21, 0.28, 0.07, 0), (0.5, 0.43, 0.07, 1), (1.0, 1.05, 0.05, 1),
        (1.05, 1.0, 0.05, 1)]


@pytest.mark.parametrize("r, e, w, hits", EDGE)
def test_beat_f_measure_at_the_window_edge(r, e, w, hits):
    assert ref.match_beats(np.array([r]), np.array([e]), w) == hits == _best_matching([r], [e], w)
    assert ref.beat_f_measure(np.array([r]), np.array([e]), w) == (hits, hits, hits)


def _edge_cases(seed: int, n: int):
    """Beats on a 10-ms grid and estimates a whole number of 10-ms frames off, many exactly one
    window (7 frames) early or late: decimal times whose differences are not exact in floats."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        r = np.unique(rng.integers(0, 3000, int(rng.integers(0, 30)))) / 100
        shift = rng.choice([-8, -7, -7, -6, 0, 6, 7, 7, 8], len(r))
        e = np.round(r + shift / 100, 2)[rng.random(len(r)) < 0.8]
        e = np.sort(np.concatenate([e, np.unique(rng.integers(0, 3000, 3)) / 100]))
        yield r, e, float(rng.choice([0.05, 0.07]))


def test_beat_f_measure_equals_mir_eval():
    mir_eval = pytest.importorskip("mir_eval")
    import warnings

    edge = 0
    for r, e, w in _edge_cases(0, 300):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mir_eval warns about empty lists
            want_f = mir_eval.beat.f_measure(r, e, f_measure_threshold=w)
            want_m = len(mir_eval.util.match_events(r, e, w)) if len(r) and len(e) else 0
        assert ref.match_beats(r, e, w) == want_m, (r, e, w)
        assert ref.beat_f_measure(r, e, w)[0] == pytest.approx(want_f, abs=1e-12), (r, e, w)
        edge += want_m != sum(1 for _ in _pairs_abs(r, e, w))
    assert edge > 50  # the cases do exercise the edge: |e - r| <= w would score many of them lower
    # seven 10-ms frames late: every estimate is a hit, as in mir_eval
    beats = np.round(np.arange(1, 100) * 0.5, 2)
    late = np.round(beats + 0.07, 2)
    assert ref.beat_f_measure(beats, late)[0] == mir_eval.beat.f_measure(beats, late) == 1.0


def test_matching_follows_the_documented_rule_on_decimal_times():
    for r, e, w in _edge_cases(1, 300):
        if len(r) <= 6 and len(e) <= 6:
            assert ref.match_beats(r, e, w) == _best_matching(r, e, w), (r, e, w)


def _pairs_abs(r, e, w):
    """Greedy one-to-one matching with |e - r| <= w (the rule this module used to have)."""
    i = j = 0
    while i < len(r) and j < len(e):
        if abs(e[j] - r[i]) <= w:
            yield i, j
            i, j = i + 1, j + 1
        elif e[j] < r[i]:
            j += 1
        else:
            i += 1


@pytest.mark.parametrize("n_fft", [63, 64, 101, 128])
def test_log_mel_frames_are_as_documented(n_fft):
    """The docstring's frame count, checked against torch.stft(center=True) for odd and even
    n_fft (an odd n_fft gives 1 + (samples - 1) // hop frames, not 1 + samples // hop)."""
    doc = " ".join(ref.log_mel_spectrogram.__doc__.split())
    assert "1 + samples // hop for an even n_fft" in doc
    assert "1 + (samples - 1) // hop for an odd one" in doc
    for samples in (640, 641, 650, 700):
        for hop in (10, 16, 32):
            got = ref.log_mel_spectrogram(np.ones(samples), 8000, n_fft, hop, 4)
            frames = 1 + samples // hop if n_fft % 2 == 0 else 1 + (samples - 1) // hop
            want = torch.stft(torch.ones(samples, dtype=torch.float64), n_fft, hop_length=hop,
                              window=torch.hann_window(n_fft, dtype=torch.float64), center=True,
                              pad_mode="constant", return_complex=True).shape[1]
            assert got.shape == (frames, 4) and frames == want, (samples, hop)
