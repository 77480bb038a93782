"""Train the source network of assignment 04 and write sit471/weights/source_cnn.pt and .md.

    .venv/bin/python benchmarks/make_source_cnn.py          # about 10 s on one CPU core

Seeded and single-threaded, so a rerun on the same torch version gives the same weights.
The recipe: sit471.transfer.small_cnn(5) with torch's default initialisation after
torch.manual_seed(SEED), trained on the training images of the digits 0-4 (sit471.transfer.
source_data) by SGD (learning rate SOURCE_LR, momentum 0.9, weight decay 5e-4) for STEPS
mini-batches of 32, each epoch in a new seeded order. The test accuracy is measured on the
held-out test images of the digits 0-4 and written into the .md file, which
tests/test_source_weights.py checks the shipped file against.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sit471.transfer import (
    MOMENTUM,
    RECIPE,
    SOURCE_LR,
    SPLIT_SEED,
    WEIGHTS,
    accuracy,
    small_cnn,
    source_data,
    train,
)

SEED = 0
STEPS = 800
BATCH = 32
WEIGHT_DECAY = 5e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = source_data()
    torch.manual_seed(SEED)
    model = small_cnn(5)
    opt = torch.optim.SGD(model.parameters(), lr=SOURCE_LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    losses = train(model, opt, data["x_train"], data["y_train"], STEPS, BATCH, seed=SEED)
    seconds = time.perf_counter() - start
    accs = {part: accuracy(model, data[f"x_{part}"], data[f"y_{part}"])
            for part in ("train", "val", "test")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, args.out)
    n_params = sum(p.numel() for p in model.parameters())
    counts = {part: len(data[f"y_{part}"]) for part in ("train", "val", "test")}
    n_test = counts["test"]
    right = round(accs["test"] * n_test)
    recipe = f"""# The source network of assignment 04: `source_cnn.pt`

Made by `benchmarks/make_source_cnn.py` (seeded, single-threaded; {seconds:.0f} s on one CPU
core). Load it with `sit471.transfer.load_source_cnn()`.

- Architecture: `sit471.transfer.small_cnn(num_classes=5)`, {n_params:,} parameters
  (`features.conv1/2/3`: 3x3 convolutions with 16, 32, 32 filters, ReLU, two 2x2 max-pools;
  `classifier.fc1`: 128 -> 64, ReLU; `classifier.head`: 64 -> 5).
- Source task: the handwritten digits 0-4 of scikit-learn's bundled 8x8 digits,
  `sit471.data.digits(seed={SPLIT_SEED})` split; {counts['train']} training,
  {counts['val']} validation and {counts['test']} test images. Pixels in [0, 1].
- Training: torch.manual_seed({SEED}), torch's default initialisation; SGD, learning rate
  {SOURCE_LR}, momentum {MOMENTUM}, weight decay {WEIGHT_DECAY}; {STEPS} steps of
  {BATCH} images (about {STEPS * BATCH / counts['train']:.0f} epochs), each epoch in a new
  seeded order (`sit471.transfer.train`). Final training loss {losses[-1]:.4f}.
- torch {torch.__version__}.

## Measured accuracy

| split | images | accuracy |
|---|---:|---:|
| train | {counts['train']} | {100 * accs['train']:.2f} % |
| validation | {counts['val']} | {100 * accs['val']:.2f} % |
| test | {n_test} | {100 * accs['test']:.2f} % |

source test accuracy: {right} / {n_test}
"""
    recipe_path = args.out.with_suffix(".md") if args.out != WEIGHTS else RECIPE
    recipe_path.write_text(recipe)
    print(recipe)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) and {recipe_path}")


if __name__ == "__main__":
    main()
