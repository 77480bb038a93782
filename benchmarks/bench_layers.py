"""Time the NumPy reference CNN layers (sit471.reference.layers) against torch on the CPU.

Usage: python benchmarks/bench_layers.py [--out FILE]

Prints one markdown table (and writes it to FILE with --out). Every timing is the fastest of
several runs after one warm-up run; "A / B" is the ratio of the two timings in that row, so
for "ours vs torch" rows a value above 1 means the reference is that many times slower.
"""

import argparse
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # so it runs from a checkout
from sit471.reference import layers as L  # noqa: E402

CONV_X, CONV_W = (64, 8, 28, 28), (16, 8, 3, 3)  # stride 1, pad 1
NAIVE_X = (8, 8, 28, 28)  # the naive loops are too slow for N = 64: 1/8 of the batch
POOL_X = (64, 16, 28, 28)  # 2x2 windows, stride 2
MIB = 2**20


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)  # the least disturbed run (this shares the CPUs with BLAS threads)


def peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / MIB


def conv_rows(dtype: type, rng: np.random.Generator) -> list[tuple]:
    x, w = rng.standard_normal(CONV_X).astype(dtype), rng.standard_normal(CONV_W).astype(dtype)
    b = rng.standard_normal(CONV_W[0]).astype(dtype)
    dout = rng.standard_normal((CONV_X[0], CONV_W[0], *CONV_X[2:])).astype(dtype)

    def ours() -> None:
        L.conv_backward(dout, L.conv_forward(x, w, b, stride=1, pad=1)[1])

    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    dout_t = torch.from_numpy(dout)

    def theirs() -> None:
        out = TF.conv2d(xt, wt, bt, stride=1, padding=1)
        torch.autograd.grad(out, (xt, wt, bt), dout_t)

    t_ours, t_torch = best_ms(ours, 10), best_ms(theirs, 10)
    m_cols, m_all = peak_mib(lambda: L.im2col(x, 3, 3, stride=1, pad=1)), peak_mib(ours)
    m_x, dt = x.nbytes / MIB, np.dtype(dtype).name
    return [
        (f"conv fwd+bwd {CONV_X}: ours (im2col) vs torch", dt, t_ours, t_torch, "ms"),
        (f"peak memory: im2col of x {CONV_X} (3x3, pad 1) vs x", dt, m_cols, m_x, "MiB"),
        ("peak memory: our conv fwd+bwd vs x", dt, m_all, m_x, "MiB"),
    ]


def naive_row(rng: np.random.Generator) -> tuple:
    x, w, b = rng.standard_normal(NAIVE_X), rng.standard_normal(CONV_W), np.zeros(CONV_W[0])
    naive = best_ms(lambda: L.conv_forward_naive(x, w, b, stride=1, pad=1), 3)
    fast = best_ms(lambda: L.conv_forward(x, w, b, stride=1, pad=1), 10)
    return (f"conv fwd {NAIVE_X}: naive loops vs im2col (= speed-up)", "float64", naive, fast, "ms")


def pool_row(dtype: type, rng: np.random.Generator) -> tuple:
    x = rng.standard_normal(POOL_X).astype(dtype)
    dout = rng.standard_normal((*POOL_X[:2], POOL_X[2] // 2, POOL_X[3] // 2)).astype(dtype)

    def ours() -> None:
        L.maxpool_backward(dout, L.maxpool_forward(x, size=2, stride=2)[1])

    xt, dout_t = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dout)

    def theirs() -> None:
        torch.autograd.grad(TF.max_pool2d(xt, kernel_size=2, stride=2), xt, dout_t)

    t_ours, t_torch = best_ms(ours, 10), best_ms(theirs, 10)
    what = f"maxpool 2x2/2 fwd+bwd {POOL_X}: ours vs torch"
    return (what, np.dtype(dtype).name, t_ours, t_torch, "ms")


def machine() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy: no dict mode
        blas = "unknown"
    return (
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs (torch uses {torch.get_num_threads()} threads); "
        f"Python {platform.python_version()}, numpy {np.__version__} (BLAS: {blas}), "
        f"torch {torch.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    rows = [
        *conv_rows(np.float32, rng),
        *conv_rows(np.float64, rng),
        naive_row(rng),
        pool_row(np.float32, rng),
        pool_row(np.float64, rng),
    ]
    lines = [
        "# Reference CNN layers vs torch (CPU)",
        "",
        machine(),
        "",
        "Timings: fastest of 10 runs (3 for the naive loops) after one warm-up run. "
        "The naive loops get a batch of 8 instead of 64 (they take ~0.4 s even so). "
        "Memory: tracemalloc peak of the NumPy allocations.",
        "",
        "| measurement (A vs B) | dtype | A | B | A / B |",
        "|---|---|---:|---:|---:|",
    ]
    for what, dtype, a, b, unit in sorted(rows, key=lambda row: row[4] != "ms"):  # times first
        lines.append(f"| {what} | {dtype} | {a:.2f} {unit} | {b:.2f} {unit} | {a / b:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
