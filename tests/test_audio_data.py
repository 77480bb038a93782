"""sit471.audio: the seeded drum generator, the CNN helpers, the sweep, the plots."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from sit471 import audio
from sit471.reference import audio as ref

matplotlib.use("Agg")


def test_beat_audio_is_seeded_and_has_known_beats():
    a, b, c = audio.beat_audio(3), audio.beat_audio(3), audio.beat_audio(4)
    np.testing.assert_array_equal(a["audio"], b["audio"])
    np.testing.assert_array_equal(a["beats"], b["beats"])
    assert not np.array_equal(a["beats"], c["beats"])
    assert a["sr"] == 22050 and a["audio"].shape == (6 * 22050,)
    assert (np.diff(a["beats"]) > 0).all() and a["beats"][-1] < 6.0
    for seed in range(20):
        clip = audio.beat_audio(seed, duration=4.0)
        assert 78 <= clip["tempo"] <= 162
        period = 60 / clip["tempo"]
        assert np.abs(np.diff(clip["beats"]) / period - 1).max() < 0.05  # small drift only
        # more onsets than beats: off-beat hi-hats are not beats
        assert len(clip["onsets"]) >= 2 * len(clip["beats"]) - 1
        assert set(np.round(clip["beats"], 9)) <= set(np.round(clip["onsets"], 9))


def test_noise_level_and_normalisation():
    quiet, loud = audio.beat_audio(5, noise=0.0), audio.beat_audio(5, noise=0.5)
    assert np.abs(quiet["audio"]).max() == pytest.approx(1.0)
    np.testing.assert_allclose(np.std(loud["audio"] - quiet["audio"]), 0.5, rtol=0.02)


def test_context_windows_and_targets():
    spec = np.arange(20, dtype=float).reshape(10, 2)
    w = audio.context_windows(spec, 5)
    assert w.shape == (10, 1, 5, 2) and w.dtype == np.float32
    np.testing.assert_array_equal(w[4, 0], spec[2:7])
    np.testing.assert_array_equal(w[0, 0, :3], np.repeat(spec[:1], 3, axis=0))  # edge padding
    y = audio.beat_targets(np.array([0.0, 0.05]), 10)
    assert y.tolist() == [1, 1, 0, 0, 1, 1, 1, 0, 0, 0]
    assert audio.tempo_from_beats(np.array([0.0, 0.5, 1.0, 1.5])) == pytest.approx(120)
    assert np.isnan(audio.tempo_from_beats(np.array([1.0])))


def test_click_track_and_frame_times():
    clip = audio.beat_audio(1, duration=2.0, noise=0.0)
    clicked = audio.click_track(clip["audio"], np.array([0.5]))
    changed = np.flatnonzero(clicked != clip["audio"])
    assert changed[0] == round(0.5 * audio.SR) + 1 or changed[0] == round(0.5 * audio.SR)
    assert audio.frame_times(3).tolist() == [0.0, audio.HOP / audio.SR, 2 * audio.HOP / audio.SR]


def test_small_sweep_runs_and_cnn_learns_something():
    tools = {name: getattr(ref, name) for name in ("log_mel_spectrogram", "spectral_flux",
                                                  "pick_peaks", "beat_f_measure")}
    results = audio.sweep(tools, train=6, test=2, epochs=2, noise_levels=(0.0, 0.4),
                          seeds=(0, 1), verbose=False)
    rows = results["rows"]
    assert [(r["noise"], r["method"]) for r in rows] == [(0.0, "flux"), (0.0, "cnn"),
                                                         (0.4, "flux"), (0.4, "cnn")]
    assert all(0 <= r["f"] <= 1 for r in rows)
    assert rows[1]["f"] > 0.5  # even a tiny CNN finds most beats in clean audio
    # f is the mean over every test clip of every seed; the differences pair the same clips
    for r in rows:
        assert len(r["f_seeds"]) == 2 and abs(np.mean(r["f_seeds"]) - r["f"]) < 1e-12
    for d, flux, cnn in zip(results["differences"], rows[0::2], rows[1::2], strict=True):
        assert abs(d["cnn_minus_flux"] - (cnn["f"] - flux["f"])) < 1e-12
        assert d["low"] <= d["cnn_minus_flux"] <= d["high"]
    table = audio.format_table(results)
    assert table.count("\n") == 10 and "CNN" in table and "95 % interval" in table


def test_plots_draw():
    import matplotlib.pyplot as plt

    clip = audio.beat_audio(2, duration=2.0)
    spec = ref.log_mel_spectrogram(clip["audio"], audio.SR, audio.N_FFT, audio.HOP, audio.N_MELS)
    act = audio.normalised_flux(spec, ref.spectral_flux)
    fig = audio.plot_clip(clip, spec=spec, activations={"flux": act},
                          detected={"flux": audio.detect(act, 0.5, ref.pick_peaks)})
    assert len(fig.axes) == 3
    fig = audio.plot_sweep({"rows": [{"noise": n, "method": m, "f": 0.5, "f_std": 0.1}
                                     for n in (0, 1) for m in ("flux", "cnn")]})
    assert len(fig.axes) == 1
    fig = audio.plot_sweep({"rows": [], "differences": [
        {"noise": n, "cnn_minus_flux": 0.1, "low": 0.0, "high": 0.2} for n in (0, 1)]})
    assert len(fig.axes) == 2  # with the paired differences: a second panel
    assert audio.listen(clip["audio"]) is not None
    plt.close("all")
