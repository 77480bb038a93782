"""Assignment 08 (beat detection): common mistakes are caught with a message that names them;
the notebook quotes the cached experiment it ships with.

Each mistake is put into one answer of the source notebook (in a kernel that has run the
notebook, figure and exploration cells left out), and the test cell that must catch it has to
fail with a message that names the mistake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import matplotlib
import nbformat
import numpy as np
import pytest
from conftest import COURSE, MistakeKernel, mistake_kernel, mistake_tests, nbgrader_meta

matplotlib.use("Agg")

FOLDER = COURSE / "source" / "08_audio_beats"
NOTEBOOK = FOLDER / "audio_beats.ipynb"
SKIPPED = {"listen", "zoom", "mel_fig", "picture", "baseline", "cnn", "experiment"}
LAST_TEST = "test_beat_f_measure"
RFFT = "return np.fft.rfft(x[index] * window, axis=1)"
EDGES = ("mels = np.linspace(mel(fmin), mel(fmax), n_mels + 2)\n"
         "    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)")
FLUX = "np.maximum(0.0, np.diff(spec, axis=0)).sum(axis=1)"
LOOP = """    i = j = matches = 0
    while i < len(ref) and j < len(est):
        if est[j] - window <= ref[i] <= est[j] + window:
            matches += 1
            i += 1
            j += 1
        elif est[j] < ref[i]:
            j += 1
        else:
            i += 1
"""
HIT = "est[j] - window <= ref[i] <= est[j] + window"
ANY = "    matches = sum(bool(np.any(np.abs(est - r) <= window)) for r in ref)\n"

# (answer cell, text in its solution, replacement, test cell that must fail, message pattern)
MISTAKES_08 = [
    ("stft", RFFT, "return np.fft.rfft(x[index], axis=1)", "test_stft",
     "as with no window at all: multiply each frame by the Hann window"),
    ("stft", "window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)",
     "window = np.hanning(n_fft)", "test_stft", r"symmetric Hann window \(np.hanning\)"),
    ("stft", "frames = 1 + (len(x) - n_fft) // hop", "frames = (len(x) - n_fft) // hop",
     "test_stft", "every frame must fit entirely inside the signal"),
    ("stft", RFFT, "return np.fft.fft(x[index] * window, axis=1)", "test_stft",
     "use np.fft.rfft"),
    ("stft", RFFT, RFFT + ".T", "test_stft", r"time should come first, \(frames, bins\)"),
    ("stft", "if hop > n_fft:", "if False:", "test_stft",
     "should raise ValueError when hop > n_fft"),
    ("stft", "if x.ndim != 1:", "if False:", "test_stft",
     "when x is not one-dimensional"),
    ("mel_filterbank", " * 2.0 / (hi - lo)", "", "test_mel_filterbank",
     "each triangle has height 1: normalise"),
    ("mel_filterbank", EDGES, "edges = np.linspace(fmin, fmax, n_mels + 2)",
     "test_mel_filterbank", "equally spaced in Hz: space them equally in mel"),
    ("mel_filterbank", "n_mels + 2)", "n_mels)", "test_mel_filterbank",
     "n_mels - 2 filters: take n_mels \\+ 2 edge"),
    ("mel_filterbank", "return np.maximum(0.0, np.minimum(rise, fall)) * 2.0 / (hi - lo)",
     "return (np.maximum(0.0, np.minimum(rise, fall)) * 2.0 / (hi - lo)).T", "test_mel_filterbank",
     r"shape \(bins, n_mels\)"),
    ("log_mel_spectrogram", "np.abs(stft(np.pad(x, (pad, pad)), n_fft, hop))",
     "np.abs(stft(x, n_fft, hop))", "test_log_mel_spectrogram",
     "pad the signal with n_fft // 2 zeros"),
    ("log_mel_spectrogram", "np.log1p(magnitude @", "np.log1p(magnitude ** 2 @",
     "test_log_mel_spectrogram", r"the power \|stft\|\*\*2 was used"),
    ("log_mel_spectrogram", "np.log1p(magnitude @", "np.log(magnitude @",
     "test_log_mel_spectrogram", r"silence should give 0 everywhere \(log\(1 \+ 0\)\)"),
    ("spectral_flux", FLUX, "np.diff(spec, axis=0).sum(axis=1)", "test_spectral_flux",
     "not half-wave rectified"),
    ("spectral_flux", FLUX, "np.abs(np.diff(spec, axis=0)).sum(axis=1)", "test_spectral_flux",
     "absolute differences were used"),
    ("spectral_flux", "flux = np.zeros(len(spec))\n    flux[1:] = " + FLUX + "\n    return flux",
     "return " + FLUX, "test_spectral_flux", "frames - 1 values"),
    ("pick_peaks", "if all(abs(t - k) >= min_distance for k in kept):", "if True:",
     "test_pick_peaks", "kept peaks closer than min_distance"),
    ("pick_peaks", 'candidates[np.argsort(-a[candidates], kind="stable")]', "candidates",
     "test_pick_peaks", "decide from the highest candidate down"),
    ("pick_peaks", "[a[1:], [-np.inf]]", "[a[1:], [np.inf]]", "test_pick_peaks",
     "compare with the one neighbour that exists"),
    ("pick_peaks", "(a >= threshold) & ", "", "test_pick_peaks",
     r"expected \[1, 3, 6\] \(threshold\)"),
    ("beat_f_measure", LOOP, ANY, "test_beat_f_measure",
     "counted for both: each estimate may match at most one reference beat"),
    ("beat_f_measure", "precision = matches / len(est) if len(est) else 0.0",
     "precision = matches / len(est)", "test_beat_f_measure", "divided by zero"),
    ("beat_f_measure", "ref = np.sort(np.asarray(reference, dtype=float))",
     "ref = np.asarray(reference, dtype=float)", "test_beat_f_measure", "sort both lists first"),
    ("beat_f_measure", "return f, precision, recall", "return f, recall, precision",
     "test_beat_f_measure", "precision and recall swapped"),
    ("beat_f_measure", HIT, HIT.replace("window", "0.05"), "test_beat_f_measure",
     "should match it: the tolerance is 70 ms"),
    ("beat_f_measure", HIT, "abs(est[j] - ref[i]) <= window", "test_beat_f_measure",
     r"F = 0 for estimate 0.21, beat 0.28: 0.28 - 0.21 = 0.07000000000000003 in floats"),
    ("beat_f_measure", HIT, "ref[i] - window <= est[j] <= ref[i] + window", "test_beat_f_measure",
     r"estimate 0.21, beat 0.28: .* test e - window <= r <= e \+ window"),
    ("beat_f_measure", HIT, HIT.replace("<=", "<"), "test_beat_f_measure",
     r"estimate 0.21, beat 0.28: .* e \+ window \(<=\)"),
]

# Mistakes that the visible tests miss (they pass on the visible tests' shapes and values):
# only the grader's half, on this run's inputs, catches them.
GRADER_ONLY_08 = [
    ("stft", "if hop > n_fft:", "if hop >= n_fft:", "test_stft",
     r"stft\(\d+ samples, n_fft (\d+), hop \1\) raised ValueError"),
    ("mel_filterbank", "freqs = np.arange(n_fft // 2 + 1) * sr / n_fft",
     "freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)", "test_mel_filterbank",
     r"mel_filterbank\(12000, \d+, .* the bin frequencies are not k \* sr / n_fft"),
    ("log_mel_spectrogram", "fmax = sr / 2 if fmax is None else fmax", "fmax = sr / 2",
     "test_log_mel_spectrogram", r"log_mel_spectrogram\(\d+ samples, sr 16000.* fmax was ignored"),
    ("pick_peaks", "(a >= left)", "(a > left)", "test_pick_peaks",
     r"pick_peaks\(threshold .* on a plateau every frame >= both neighbours is a candidate"),
]
MISTAKES_08 += GRADER_ONLY_08


def _grade_id(cell: nbformat.NotebookNode) -> str:
    return nbgrader_meta(cell).get("grade_id", "")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[MistakeKernel]:
    with mistake_kernel(NOTEBOOK, LAST_TEST, SKIPPED, tmp_path_factory.mktemp("nb08")) as k:
        yield k


# the common-mistake tests, the same for every assignment (conftest.mistake_tests)
globals().update(mistake_tests(NOTEBOOK, MISTAKES_08, GRADER_ONLY_08))


# ----------------------------------------------------------------------------- the experiment


def test_cached_experiment_is_complete_and_quoted_by_the_notebook():
    from sit471.audio import NOISE_LEVELS, SEEDS, format_table

    results = json.loads((FOLDER / "beats.json").read_text())
    rows = results["rows"]
    assert [r["noise"] for r in rows] == [n for n in NOISE_LEVELS for _ in range(2)]
    assert all(0 <= r[k] <= 1 for r in rows for k in ("f", "precision", "recall"))
    assert results["settings"]["test_clips"] >= 10
    assert results["settings"]["seeds"] == list(SEEDS) and len(SEEDS) >= 3
    assert all(len(r["f_seeds"]) == len(SEEDS) for r in rows)
    text = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells)
    for row in format_table(results).splitlines()[2:]:
        assert row in text, f"the notebook does not quote the cached result {row}"
    diff = {d["noise"]: d for d in results["differences"]}
    assert list(diff) == list(NOISE_LEVELS)
    for d in diff.values():
        assert d["low"] <= d["cnn_minus_flux"] <= d["high"]
    # the notebook's claim: in strong noise the CNN wins, by more than the paired interval
    assert diff[max(diff)]["low"] > 0.2


def test_cached_interval_counts_the_seeds_and_the_clips():
    """The CNN - flux interval is a t-interval over the seeds' own mean differences (each seed:
    its own training clips, network and test clips), not over the pooled clips, and each seed's
    difference is the difference of its two mean F-measures on the same clips."""
    from sit471.audio import SEEDS
    from sit471.transfer import mean_ci

    results = json.loads((FOLDER / "beats.json").read_text())
    rows = {(r["noise"], r["method"]): r for r in results["rows"]}
    for d in results["differences"]:
        assert len(d["seeds"]) == len(SEEDS)
        per_seed = np.subtract(rows[d["noise"], "cnn"]["f_seeds"],
                               rows[d["noise"], "flux"]["f_seeds"])
        assert np.allclose(d["seeds"], per_seed)
        mean, half = mean_ci(d["seeds"])
        assert np.isclose(d["low"], mean - half) and np.isclose(d["high"], mean + half)


def test_sweep_question_is_hand_graded_after_the_experiment():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ids = [_grade_id(c) for c in nb.cells]
    cell = nb.cells[ids.index("sweep_answer")]
    meta = nbgrader_meta(cell)
    assert cell.cell_type == "markdown" and meta["grade"] and meta["solution"]
    assert meta["points"] == 2 and not meta.get("locked")
    assert ids.index("experiment") < ids.index("sweep_answer") < ids.index("findings_md")
    release = nbformat.read(COURSE / "release" / FOLDER.name / NOTEBOOK.name, as_version=4)
    stub = next(c for c in release.cells if _grade_id(c) == "sweep_answer")
    assert stub.source.strip() == "YOUR ANSWER HERE"


def test_sweep_checks_its_inputs_before_training():
    from sit471 import audio

    with pytest.raises(ValueError, match="pick_peaks"):
        audio.sweep({"log_mel_spectrogram": len, "spectral_flux": len, "beat_f_measure": len})
    tools = dict.fromkeys(("log_mel_spectrogram", "spectral_flux", "pick_peaks",
                           "beat_f_measure"), len)
    with pytest.raises(ValueError, match="seed"):
        audio.sweep(tools, seeds=())


# -------------------------------------------------------- the grader's F-measure at the edge


def _student(rule):
    """A student's beat_f_measure with the given hit rule (greedy, one-to-one), as the probe
    would send it."""
    def probe(reference, estimated, window=0.07):
        ref, est = np.sort(reference), np.sort(estimated)
        i = j = m = 0
        while i < len(ref) and j < len(est):
            if rule(ref[i], est[j], window):
                m, i, j = m + 1, i + 1, j + 1
            elif est[j] < ref[i]:
                j += 1
            else:
                i += 1
        p = m / len(est) if len(est) else 0.0
        r = m / len(ref) if len(ref) else 0.0
        return {"score": np.array([2 * p * r / (p + r) if p + r else 0.0, p, r])}
    return probe


def _mir_eval_student(reference, estimated, window=0.07):
    mir_eval = pytest.importorskip("mir_eval")
    ref, est = np.sort(reference), np.sort(estimated)
    if not len(ref) or not len(est):
        return {"score": np.zeros(3)}
    m = len(mir_eval.util.match_events(ref, est, window))
    return {"score": np.array([mir_eval.beat.f_measure(ref, est, window), m / len(est),
                               m / len(ref)])}


def _failures(probe, seed):
    from autograde.hidden.audio_beats import hidden

    cases = hidden.make_cases(seed)["test_beat_f_measure"]
    failures = []
    for case in cases:
        kw = {"window": case["window"]} if "window" in case else {}
        try:
            hidden.checkers["test_beat_f_measure"](
                case, probe(case["reference"], case["estimated"], **kw))
        except AssertionError as exc:
            failures.append(str(exc))
    return failures


@pytest.mark.parametrize("seed", [0, 1, 2, 12345])
def test_grader_agrees_with_mir_eval_at_the_window_edge(seed):
    """mir_eval's own answer passes every hidden case; abs(e - r) <= w fails on the decimal
    edge case (beats exactly 70 ms apart on a 10-ms grid) with a message naming the edge."""
    assert _failures(_mir_eval_student, seed) == []
    assert _failures(_student(lambda r, e, w: e - w <= r <= e + w), seed) == []
    by_abs = _failures(_student(lambda r, e, w: abs(e - r) <= w), seed)
    assert by_abs and all("abs(e - r) <= window was used: at the edge "
                          "(0.28 - 0.21 = 0.07000000000000003)" in m for m in by_abs), by_abs
    around_r = _failures(_student(lambda r, e, w: r - w <= e <= r + w), seed)
    assert around_r and all("r - window <= e <= r + window was used" in m for m in around_r)
    strict = _failures(_student(lambda r, e, w: e - w < r < e + w), seed)
    assert any("|e - r| < window was used" in m for m in strict), strict


# ------------------------------------------------------------------------ the library's CNN


def test_train_beat_cnn_restores_the_thread_count():
    """train_beat_cnn trains on `threads` torch threads and gives the kernel its own setting
    back, also when a function it was given raises."""
    import torch

    from sit471 import audio
    from sit471.reference.audio import log_mel_spectrogram

    clips = audio.training_clips(2, duration=1.0)
    seen = []

    def features(*args):
        seen.append(torch.get_num_threads())
        return log_mel_spectrogram(*args)

    def broken(*args):
        raise ValueError("a student's bug")

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        audio.train_beat_cnn(clips, features, epochs=1, threads=1, verbose=False)
        assert seen == [1, 1] and torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="a student's bug"):
            audio.train_beat_cnn(clips, broken, epochs=1, threads=1, verbose=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
