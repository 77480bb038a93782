"""Train the source network of assignment 04 and write sit471/weights/source_cnn.pt and .md.

    .venv/bin/python benchmarks/make_source_cnn.py          # about 2 minutes on one CPU core

Seeded and single-threaded, so a rerun on the same torch version gives the same weights.
The recipe: sit471.transfer.small_cnn(64) with torch's default initialisation after
torch.manual_seed(SEED), trained on the 16,000 training images of the 64 source glyph classes
(sit471.transfer.source_data) by SGD (momentum 0.9, weight decay 5e-4, batches of 64) in
three phases of falling learning rate (PHASES), each epoch in a new seeded order. The
accuracies on the training, validation and test images are written into the .md file, which
tests/test_source_weights.py checks the shipped file against (the validation accuracy is
recomputed there from the weights).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sit471.transfer import (
    MOMENTUM,
    RECIPE,
    SOURCE_CLASSES,
    SOURCE_GLYPH_SEED,
    SOURCE_PER_CLASS,
    SPLIT_SEED,
    WEIGHTS,
    accuracy,
    small_cnn,
    source_data,
    train,
)

SEED = 0
BATCH = 64
WEIGHT_DECAY = 5e-4
PHASES = ((0.05, 2400), (0.01, 1000), (0.002, 400))  # (learning rate, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = source_data()
    drawn = time.perf_counter() - start
    torch.manual_seed(SEED)
    model = small_cnn(SOURCE_CLASSES)
    opt = torch.optim.SGD(model.parameters(), lr=PHASES[0][0], momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    losses = []
    for k, (lr, steps) in enumerate(PHASES):
        for g in opt.param_groups:
            g["lr"] = lr
        losses += train(model, opt, data["x_train"], data["y_train"], steps, BATCH, seed=SEED + k)
        print(f"phase {k}: lr {lr}, {steps} steps, loss {sum(losses[-100:]) / 100:.3f}")
    seconds = time.perf_counter() - start
    accs = {part: accuracy(model, data[f"x_{part}"], data[f"y_{part}"])
            for part in ("train", "val", "test")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, args.out)
    n_params = sum(p.numel() for p in model.parameters())
    counts = {part: len(data[f"y_{part}"]) for part in ("train", "val", "test")}
    right = {part: round(accs[part] * counts[part]) for part in counts}
    epochs = sum(s for _, s in PHASES) * BATCH / counts["train"]
    phases = ", ".join(f"{s} steps at {lr}" for lr, s in PHASES)
    recipe = f"""# The source network of assignment 04: `source_cnn.pt`

Made by `benchmarks/make_source_cnn.py` (seeded, single-threaded; {seconds:.0f} s on one CPU
core, of which {drawn:.0f} s drawing the images). Load it with
`sit471.transfer.load_source_cnn()`.

- Architecture: `sit471.transfer.small_cnn(num_classes={SOURCE_CLASSES})`, {n_params:,}
  parameters (`features.conv1/2/3`: 3x3 convolutions with 16, 32, 32 filters, ReLU, each
  followed by a max-pool: 28 -> 14 -> 7 -> 2x2; `classifier.fc1`: 128 -> 64, ReLU;
  `classifier.head`: 64 -> {SOURCE_CLASSES}).
- Source task: {SOURCE_CLASSES} classes of synthetic 28x28 glyphs (two or three pen strokes
  each, shapes from `sit471.transfer.glyphs({SOURCE_CLASSES}, seed={SOURCE_GLYPH_SEED})`, images
  drawn by `sit471.transfer.render` with split seed {SPLIT_SEED}): {SOURCE_PER_CLASS['train']}
  training, {SOURCE_PER_CLASS['val']} validation and {SOURCE_PER_CLASS['test']} test images
  per class ({counts['train']:,} / {counts['val']:,} / {counts['test']:,}). Pixels in [0, 1].
  Chance is {100 / SOURCE_CLASSES:.1f} %.
- Training: torch.manual_seed({SEED}), torch's default initialisation; SGD, momentum
  {MOMENTUM}, weight decay {WEIGHT_DECAY}, batches of {BATCH}: {phases} (about {epochs:.0f}
  epochs), each phase's epochs in a new seeded order (`sit471.transfer.train`). Final training
  loss (mean of the last 100 steps) {sum(losses[-100:]) / 100:.4f}.
- torch {torch.__version__}.

## Measured accuracy

| split | images | accuracy |
|---|---:|---:|
| train | {counts['train']} | {100 * accs['train']:.2f} % |
| validation | {counts['val']} | {100 * accs['val']:.2f} % |
| test | {counts['test']} | {100 * accs['test']:.2f} % |

source validation accuracy: {right['val']} / {counts['val']}
source test accuracy: {right['test']} / {counts['test']}
"""
    recipe_path = args.out.with_suffix(".md") if args.out != WEIGHTS else RECIPE
    recipe_path.write_text(recipe)
    print(recipe)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) and {recipe_path}")


if __name__ == "__main__":
    main()
