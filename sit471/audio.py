"""Assignment 08 helpers: music-like audio with known beats, a small beat CNN, plots, sound.

Nothing here answers a graded exercise: the notebook's own functions are passed in where a
spectrogram, flux, peaks or an F-measure are needed (so all of it runs in a student install).

* ``beat_audio(seed, ...)`` synthesises a few seconds of drums at 22,050 Hz: a kick and a snare
  on every beat (kick on beats 1 and 3 of a bar, snare on 2 and 4), hi-hats on the beats and on
  the off-beats, now and then an extra kick on an off-beat, a soft chord, then white noise.
  Tempo 80-160 BPM with a small drift. Returns the signal and the beat times (seconds).
* ``context_windows(spec, context)``: (frames, bands) -> (frames, 1, context, bands) images.
* ``BeatCNN``, ``train_beat_cnn``, ``beat_activation``: the image CNN on spectrogram windows.
* ``sweep(tools, ...)``: CNN vs spectral-flux baseline at several noise levels (F-measure,
  ±70 ms), over several training seeds, with the paired differences and their 95 % intervals
  (Student's t over the seeds' mean differences).
  The staff make the notebook's ``beats.json`` with the reference answers, from the repository:
  ``python -m sit471.reference.experiments audio`` (5 seeds: 507 s on a busy machine).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from sit471.trainer import fit_indices
from sit471.transfer import mean_ci

SR = 22050
N_FFT = 1024
HOP = 220  # 22050 / 220 = 100.2 frames per second
N_MELS = 80
FMIN = 30.0
FPS = SR / HOP
CONTEXT = 15
MIN_GAP = 0.25  # seconds between two beats at least (240 BPM)
NOISE_LEVELS = (0.0, 0.1, 0.2, 0.4, 0.8)
SEEDS = (0, 1, 2, 3, 4)  # training seeds of the sweep

Features = Callable[..., np.ndarray]


# ----------------------------------------------------------------------------- the audio


def _kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.3 * sr)) / sr
    freq = 50 + 110 * np.exp(-t / 0.03)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.2 * sr)) / sr
    return (0.6 * rng.normal(size=len(t)) * np.exp(-t / 0.05)
            + 0.5 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.06))


def _hat(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.06 * sr)) / sr
    return np.diff(rng.normal(size=len(t) + 1)) * 0.5 * np.exp(-t / 0.015)


def _add(y: np.ndarray, sound: np.ndarray, at: float, sr: int, gain: float) -> None:
    start = int(round(at * sr))
    if 0 <= start < len(y):
        stop = min(len(y), start + len(sound))
        y[start:stop] += gain * sound[: stop - start]


def beat_audio(seed: int, duration: float = 6.0, noise: float = 0.1, sr: int = SR,
               tempo: float | None = None) -> dict:
    """A seeded drum clip with known beats.

    Returns {"audio": (samples,) float64 with peak 1 before the noise, "sr", "beats": beat
    times in seconds (sorted), "onsets": every drum hit (beats, off-beat hats and kicks),
    "tempo": the mean tempo in BPM}. noise is the standard deviation of the white noise added
    after normalisation.
    """
    rng = np.random.default_rng(seed)
    tempo = float(rng.uniform(80, 160)) if tempo is None else float(tempo)
    period = 60.0 / tempo
    beats, t, drift = [], float(rng.uniform(0.05, period)), 1.0
    while t < duration - 0.05:
        beats.append(t)
        drift = float(np.clip(drift + rng.normal(0, 0.006), 0.97, 1.03))
        t += period * drift
    y = np.zeros(int(duration * sr))
    onsets = list(beats)
    for k, b in enumerate(beats):
        nxt = beats[k + 1] if k + 1 < len(beats) else b + period
        off = (b + nxt) / 2
        if k % 2 == 0:
            _add(y, _kick(sr, rng), b, sr, rng.uniform(0.8, 1.0))
        else:
            _add(y, _snare(sr, rng), b, sr, rng.uniform(0.6, 0.8))
        _add(y, _hat(sr, rng), b, sr, rng.uniform(0.3, 0.4))
        _add(y, _hat(sr, rng), off, sr, rng.uniform(0.4, 0.6))
        onsets.append(off)
        if rng.random() < 0.3:  # a syncopated kick between two beats
            at = off if rng.random() < 0.5 else b + 0.75 * (nxt - b)
            _add(y, _kick(sr, rng), at, sr, rng.uniform(0.5, 0.8))
            onsets.append(at)
    # a soft chord that changes every bar and fades in (no sharp onsets of its own)
    time_axis = np.arange(len(y)) / sr
    bar = 4 * period
    for start in np.arange(beats[0], duration, bar):
        root = 110 * 2 ** (rng.integers(0, 12) / 12)
        seg = (time_axis >= start) & (time_axis < start + bar)
        tt = time_axis[seg] - start
        env = np.minimum(1, tt / 0.3) * 0.08
        y[seg] += env * sum(np.sin(2 * np.pi * root * r * tt) for r in (1, 1.26, 1.5))
    y /= np.abs(y).max()
    y += noise * rng.normal(size=len(y))
    return {"audio": y, "sr": sr, "beats": np.array(beats), "onsets": np.sort(onsets),
            "tempo": 60.0 / float(np.mean(np.diff(beats)))}


def frame_times(n_frames: int, hop: int = HOP, sr: int = SR) -> np.ndarray:
    """Time in seconds of each frame centre (frames centred on samples 0, hop, 2 hop, ...)."""
    return np.arange(n_frames) * hop / sr


def beat_targets(beats: np.ndarray, n_frames: int, hop: int = HOP, sr: int = SR,
                 widen: int = 1) -> np.ndarray:
    """(frames,) float32: 1 at the frame nearest each beat and at `widen` frames either side."""
    y = np.zeros(n_frames, dtype=np.float32)
    for b in beats:
        k = int(round(b * sr / hop))
        y[max(0, k - widen): k + widen + 1] = 1.0
    return y


def tempo_from_beats(beat_times: np.ndarray) -> float:
    """Tempo in BPM from the median interval between beats (nan with fewer than 2 beats)."""
    beat_times = np.sort(np.asarray(beat_times, dtype=float))
    if len(beat_times) < 2:
        return float("nan")
    return 60.0 / float(np.median(np.diff(beat_times)))


# ----------------------------------------------------------------------------- the CNN


def context_windows(spec: np.ndarray, context: int = CONTEXT) -> np.ndarray:
    """(frames, bands) -> (frames, 1, context, bands): the frames around each frame, edges
    padded with the first / last frame."""
    half = context // 2
    padded = np.pad(spec, ((half, context - 1 - half), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, context, axis=0)
    return np.ascontiguousarray(windows.transpose(0, 2, 1)[:, None], dtype=np.float32)


class BeatCNN(nn.Module):
    """(N, 1, context, bands) spectrogram windows -> (N,) beat logits for the centre frames."""

    def __init__(self, context: int = CONTEXT, bands: int = N_MELS):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d((1, 4)),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d((1, 4)),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d((3, 1)),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(16 * (context // 3) * (bands // 16), 32),
            nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features((x - self.mean) / self.std)).squeeze(1)


def clip_features(clip: dict, features: Features) -> np.ndarray:
    """Log-mel spectrogram (frames, N_MELS) of a clip with the course's settings."""
    return np.asarray(features(clip["audio"], clip["sr"], N_FFT, HOP, N_MELS, FMIN),
                      dtype=np.float32)


def training_clips(n: int = 40, seed: int = 1000, duration: float = 6.0,
                   noise_levels: Sequence[float] = NOISE_LEVELS) -> list[dict]:
    """n clips (seeds seed, seed + 1, ...), noise drawn uniformly from 0 to the largest level."""
    rng = np.random.default_rng(seed)
    return [beat_audio(seed + i, duration, float(rng.uniform(0, max(noise_levels))))
            for i in range(n)]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with n torch threads, then restore the kernel's setting (even on error)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_beat_cnn(clips: Sequence[dict], features: Features, epochs: int = 4,
                   seed: int = 0, threads: int = 1, verbose: bool = True) -> BeatCNN:
    """Train BeatCNN on every frame of the clips (binary cross-entropy, positives weighted by
    #negatives / #positives to undo the class imbalance). Adam, batch 256. CPU, seeded.
    Uses ``threads`` torch threads while it trains; the caller's thread count is restored."""
    with torch_threads(threads):
        return _train_beat_cnn(clips, features, epochs, seed, verbose)


def _train_beat_cnn(clips: Sequence[dict], features: Features, epochs: int, seed: int,
                    verbose: bool) -> BeatCNN:
    torch.manual_seed(seed)
    specs = [clip_features(c, features) for c in clips]
    x = torch.from_numpy(np.concatenate([context_windows(s) for s in specs]))
    y = torch.from_numpy(np.concatenate([beat_targets(c["beats"], len(s))
                                         for c, s in zip(clips, specs, strict=True)]))
    model = BeatCNN()
    model.mean.fill_(float(x.mean()))
    model.std.fill_(float(x.std()))
    pos_weight = (len(y) - y.sum()) / y.sum()
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    sizes = [min(256, len(y) - s) for s in range(0, len(y), 256)]

    def report(epoch: int, losses: list[float]) -> None:
        if verbose:
            total = sum(value * size for value, size in zip(losses, sizes, strict=True))
            print(f"epoch {epoch + 1}/{epochs}: loss {total / len(y):.4f} "
                  f"(positives {100 * float(y.mean()):.1f} % of the frames, weighted "
                  f"{float(pos_weight):.1f}x)")

    fit_indices(model, lambda m, idx: loss_fn(m(x[idx]), y[idx]), len(y), epochs=epochs,
                batch_size=256, lr=2e-3, seed=seed, threads=None, on_epoch=report)
    return model


@torch.no_grad()
def beat_activation(model: BeatCNN, spec: np.ndarray) -> np.ndarray:
    """(frames, bands) log-mel spectrogram -> (frames,) beat probability per frame."""
    model.eval()
    return torch.sigmoid(model(torch.from_numpy(context_windows(spec)))).numpy().astype(float)


def normalised_flux(spec: np.ndarray, flux: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Spectral flux of spec scaled to a maximum of 1 (so one threshold fits every clip)."""
    f = np.asarray(flux(spec), dtype=float)
    return f / f.max() if f.max() > 0 else f


def detect(activation: np.ndarray, threshold: float, peaks: Callable[..., np.ndarray]
           ) -> np.ndarray:
    """Beat times (s) of the peaks of an activation, at least MIN_GAP apart."""
    idx = np.asarray(peaks(activation, threshold, int(round(MIN_GAP * FPS))), dtype=int)
    return frame_times(len(activation))[idx] if len(idx) else np.zeros(0)


def _sweep_seed(tools: dict[str, Callable], train: int, test: int, epochs: int,
                noise_levels: Sequence[float], seed: int, verbose: bool) -> dict:
    """One training seed: thresholds chosen on its training clips, then per noise level and
    method the (F, precision, recall, tempo error) of every test clip, (test, 4)."""
    feats, flux, peaks, fmeasure = (tools["log_mel_spectrogram"], tools["spectral_flux"],
                                    tools["pick_peaks"], tools["beat_f_measure"])
    clips = training_clips(train, seed=1000 + 100 * seed, noise_levels=noise_levels)
    model = train_beat_cnn(clips, feats, epochs=epochs, seed=seed, verbose=verbose)
    specs = [clip_features(c, feats) for c in clips]
    grid = np.round(np.arange(0.1, 0.95, 0.05), 2)

    def activations(spec_list: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        return {"cnn": [beat_activation(model, s) for s in spec_list],
                "flux": [normalised_flux(s, flux) for s in spec_list]}

    def mean_f(acts: list[np.ndarray], cl: Sequence[dict], th: float) -> float:
        return float(np.mean([fmeasure(c["beats"], detect(a, th, peaks))[0]
                              for a, c in zip(acts, cl, strict=True)]))

    acts = activations(specs)
    thresholds = {m: float(max(grid, key=lambda th: mean_f(acts[m], clips, th))) for m in acts}
    scores: dict[float, dict[str, np.ndarray]] = {}
    for level in noise_levels:
        test_clips = [beat_audio(50_000 + 1000 * seed + i, 6.0, level) for i in range(test)]
        test_acts = activations([clip_features(c, feats) for c in test_clips])
        scores[level] = {}
        for method in ("flux", "cnn"):
            rows = []
            for a, c in zip(test_acts[method], test_clips, strict=True):
                found = detect(a, thresholds[method], peaks)
                rows.append([*fmeasure(c["beats"], found),
                             abs(tempo_from_beats(found) - c["tempo"]) / c["tempo"]])
            scores[level][method] = np.nan_to_num(np.array(rows, dtype=float), nan=1.0)
        if verbose:
            print(f"seed {seed}, noise {level}: " + ", ".join(
                f"{m} F={scores[level][m][:, 0].mean():.3f}" for m in ("flux", "cnn")))
    return {"thresholds": thresholds, "scores": scores}


def sweep(tools: dict[str, Callable], train: int = 40, test: int = 20, epochs: int = 4,
          noise_levels: Sequence[float] = NOISE_LEVELS, seeds: Sequence[int] = SEEDS,
          verbose: bool = True) -> dict:
    """CNN vs spectral-flux baseline as the noise grows, over several training seeds.

    tools: {"log_mel_spectrogram", "spectral_flux", "pick_peaks", "beat_f_measure"} (the
    notebook passes its own). For each seed: a CNN trained on its own ``train`` clips, both
    thresholds chosen on those clips, ``test`` new clips per noise level. Rows per noise level
    and method: F-measure (mean over all test clips of all seeds; ``f_std`` the standard
    deviation of the per-seed means, ``f_seeds`` those means), precision, recall, the share of
    clips whose tempo is within 4 %. ``differences``: CNN minus flux F-measure on the same clips,
    one mean per seed (``seeds``: over that seed's test clips), their mean and its 95 %
    t-interval over the seeds (each seed has its own training clips, network and test clips, so
    the interval counts both sources of variation); the shares of all clips where each is better.
    """
    missing = [n for n in ("log_mel_spectrogram", "spectral_flux", "pick_peaks",
                           "beat_f_measure") if not callable(tools.get(n))]
    if missing:
        raise ValueError(f"the sweep needs the functions {missing}")
    if train < 1 or test < 1 or epochs < 1 or len(seeds) == 0 or len(noise_levels) == 0:
        raise ValueError("need train, test, epochs >= 1 and at least one seed and noise level")
    start = time.perf_counter()
    runs = [_sweep_seed(tools, train, test, epochs, noise_levels, s, verbose) for s in seeds]
    rows, differences = [], []
    for level in noise_levels:
        for method in ("flux", "cnn"):
            per_seed = [r["scores"][level][method] for r in runs]
            every = np.concatenate(per_seed)
            means = [float(s[:, 0].mean()) for s in per_seed]
            rows.append({"noise": level, "method": method, "f": float(every[:, 0].mean()),
                         "f_std": float(np.std(means, ddof=1)) if len(means) > 1 else 0.0,
                         "f_seeds": means, "precision": float(every[:, 1].mean()),
                         "recall": float(every[:, 2].mean()),
                         "tempo_within_4pct": float(np.mean(every[:, 3] <= 0.04))})
        per_clip = [r["scores"][level]["cnn"][:, 0] - r["scores"][level]["flux"][:, 0]
                    for r in runs]
        # one paired difference per seed (the mean over its own test clips): a t-interval over
        # the seeds counts both a new training run and a new draw of clips
        per_seed = [float(d.mean()) for d in per_clip]
        mean, half = mean_ci(per_seed)
        every = np.concatenate(per_clip)
        differences.append({"noise": level, "cnn_minus_flux": mean, "low": mean - half,
                            "high": mean + half, "seeds": per_seed,
                            "cnn_better_clips": float(np.mean(every > 0)),
                            "flux_better_clips": float(np.mean(every < 0))})
    return {"settings": {"train_clips": train, "test_clips": test, "epochs": epochs,
                         "seeds": list(seeds), "duration": 6.0,
                         "thresholds": [r["thresholds"] for r in runs], "window": 0.07,
                         "seconds": round(time.perf_counter() - start, 1)},
            "rows": rows, "differences": differences}


METHOD_NAMES = {"flux": "spectral flux", "cnn": "CNN"}


def format_table(results: dict) -> str:
    """Two markdown tables of a sweep: one row per noise level and method, then the paired
    differences CNN minus flux with their 95 % intervals."""
    n = len(results["settings"]["seeds"])
    lines = [f"| noise (std) | method | F-measure (± std over {n} seeds) | precision | recall | "
             "tempo within 4 % |", "|---:|---|---:|---:|---:|---:|"]
    for r in results["rows"]:
        lines.append(f"| {r['noise']:.2f} | {METHOD_NAMES[r['method']]} | "
                     f"{r['f']:.3f} ± {r['f_std']:.3f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {100 * r['tempo_within_4pct']:.0f} % |")
    lines += ["", f"| noise (std) | F of CNN minus F of flux, same clips (mean of the {n} "
              f"seeds' differences, 95 % interval: Student's t over the seeds) | clips where "
              "the CNN is better / worse |",
              "|---:|---:|---:|"]
    for d in results["differences"]:
        lines.append(f"| {d['noise']:.2f} | {d['cnn_minus_flux']:+.3f} [{d['low']:+.3f}, "
                     f"{d['high']:+.3f}] | {100 * d['cnn_better_clips']:.0f} % / "
                     f"{100 * d['flux_better_clips']:.0f} % |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- show and listen


def plot_sweep(results: dict):
    """F-measure against noise level, one line per method (error bars: the spread of the
    seeds' means); with ``differences``, a second panel of F(CNN) - F(flux) on the same clips
    with its 95 % interval. Returns the figure."""
    import matplotlib.pyplot as plt

    diffs = results.get("differences")
    fig, axes = plt.subplots(1, 2 if diffs else 1, figsize=(11 if diffs else 6, 3.5),
                             squeeze=False)
    ax = axes[0, 0]
    for method in ("flux", "cnn"):
        rows = [r for r in results["rows"] if r["method"] == method]
        ax.errorbar([r["noise"] for r in rows], [r["f"] for r in rows],
                    yerr=[r["f_std"] for r in rows], marker="o", capsize=3,
                    label=METHOD_NAMES[method])
    ax.set_xlabel("noise standard deviation (signal peak = 1)")
    ax.set_ylabel("beat F-measure (±70 ms)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    if diffs:
        ax = axes[0, 1]
        mean = np.array([d["cnn_minus_flux"] for d in diffs])
        ax.errorbar([d["noise"] for d in diffs], mean,
                    yerr=[mean - [d["low"] for d in diffs], [d["high"] for d in diffs] - mean],
                    marker="o", capsize=3, color="tab:green")
        ax.axhline(0, color="k", lw=1)
        ax.set_xlabel("noise standard deviation")
        ax.set_ylabel("F(CNN) − F(flux), same clips")
        ax.set_title("paired difference, 95 % t-interval over the seeds", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_clip(clip: dict, spec: np.ndarray | None = None, activations: dict | None = None,
              detected: dict | None = None, seconds: float | None = None):
    """Waveform (beats as red lines), optional spectrogram picture and activation curves."""
    import matplotlib.pyplot as plt

    rows = 1 + (spec is not None) + (activations is not None)
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.2 * rows), sharex=True, squeeze=False)
    axes = axes[:, 0]
    end = seconds or len(clip["audio"]) / clip["sr"]
    t = np.arange(len(clip["audio"])) / clip["sr"]
    axes[0].plot(t, clip["audio"], lw=0.4, color="0.3")
    axes[0].set_ylabel("amplitude")
    for i, ax in enumerate(axes):
        for b in clip["beats"]:
            ax.axvline(b, color="red", lw=0.8, alpha=0.6 if i != 1 or spec is None else 0.3)
    k = 1
    if spec is not None:
        ft = frame_times(len(spec))
        axes[k].imshow(spec.T, origin="lower", aspect="auto", cmap="magma",
                       vmin=np.percentile(spec, 5), vmax=np.percentile(spec, 99),
                       extent=(ft[0], ft[-1] + 1 / FPS, 0, spec.shape[1]))
        axes[k].set_ylabel("mel band")
        k += 1
    if activations is not None:
        for name, act in activations.items():
            axes[k].plot(frame_times(len(act)), act, label=name)
            for b in (detected or {}).get(name, []):
                axes[k].plot(b, 1.02, "v", color=axes[k].lines[-1].get_color())
        axes[k].set_ylabel("activation")
        axes[k].legend(loc="upper right")
    axes[-1].set_xlabel("time (s); red lines: true beats")
    axes[-1].set_xlim(0, end)
    fig.tight_layout()
    return fig


def click_track(audio: np.ndarray, times: np.ndarray, sr: int = SR, gain: float = 0.5
                ) -> np.ndarray:
    """The audio with a short 1.5 kHz click added at each time (s), to hear detected beats."""
    t = np.arange(int(0.03 * sr)) / sr
    click = np.sin(2 * np.pi * 1500 * t) * np.exp(-t / 0.006)
    y = np.array(audio, dtype=float)
    for at in np.asarray(times, dtype=float):
        _add(y, click, at, sr, gain * np.abs(y).max())
    return y


def listen(audio: np.ndarray, sr: int = SR):
    """An IPython audio player for the signal (normalised by IPython)."""
    from IPython.display import Audio

    return Audio(np.asarray(audio, dtype=float), rate=sr)
