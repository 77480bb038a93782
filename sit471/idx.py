"""Read MNIST from its standard IDX files, from a directory you give. Nothing is downloaded.

The IDX format (http://yann.lecun.com/exdb/mnist/), all integers big-endian:

    bytes 0-1   0x00 0x00
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                           0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    then        d sizes, each a uint32
    then        the data, row-major (last index fastest), prod(sizes) items of the type

Files may also be gzip-compressed (as distributed: ``train-images-idx3-ubyte.gz``); they are
recognised by their content, whatever their name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The four standard MNIST file names (each may also end in .gz).
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if it is gzip (recognised by its first two bytes)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"file {path} looks gzip-compressed but cannot be decompressed: {err}"
        ) from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse one IDX file (plain or gzip) into an array of the sizes its header gives.

    A file with d dimensions of sizes (s1, ..., sd) gives an array of shape (s1, ..., sd):
    MNIST images (N, 28, 28) uint8, labels (N,) uint8. The dtype follows the type code, in
    the machine's native byte order. Raises ValueError for a wrong magic number, an unknown
    type code, or a file shorter or longer than its header says.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"file {path} is too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"file {path} is not an IDX file: wrong magic number 0x{data[:4].hex()} "
            "(an IDX file starts with two zero bytes, a type code and the number of dimensions)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"file {path} has an unknown IDX type code 0x{code:02X} (known: {known})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"file {path} is truncated: its header needs {header} bytes, found {len(data)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise ValueError(
            f"file {path} is truncated: expected {expected} bytes of data, found {found}"
        )
    if found > expected:
        raise ValueError(
            f"file {path} has {found - expected} unexpected bytes after its data "
            f"(expected {expected} bytes of data, found {found})"
        )
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    # Native byte order and a writable copy (frombuffer over bytes is read-only).
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _find(directory: Path, name: str) -> Path:
    """``directory/name`` or ``directory/name.gz``, whichever exists (plain first)."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    names = "\n".join(f"    {n}" for n in MNIST_FILES.values())
    raise FileNotFoundError(
        f"MNIST file {name} (or {name}.gz) not found in {directory}. Nothing is downloaded: "
        f"put the four MNIST IDX files, plain or .gz, in that directory "
        f"(or pass the directory that holds them):\n{names}"
    )


def load_mnist(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load the four MNIST IDX files from ``directory`` (standard names, with or without .gz).

    Returns a dict with
        train_images (N, 28, 28) uint8,  train_labels (N,) uint8,
        test_images  (M, 28, 28) uint8,  test_labels  (M,) uint8
    (N = 60,000 and M = 10,000 for the full data set). Raises FileNotFoundError naming the
    missing file, and ValueError if a file is malformed or images and labels disagree in
    number.
    """
    directory = Path(directory).expanduser()
    paths = {key: _find(directory, name) for key, name in MNIST_FILES.items()}
    out = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = out[f"{split}_images"], out[f"{split}_labels"]
        if images.ndim != 3:
            raise ValueError(
                f"{paths[f'{split}_images']} should hold images of shape (N, rows, cols), "
                f"found shape {images.shape}"
            )
        if labels.ndim != 1:
            raise ValueError(
                f"{paths[f'{split}_labels']} should hold labels of shape (N,), "
                f"found shape {labels.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"{split} images and labels disagree: {len(images)} images in "
                f"{paths[f'{split}_images']} but {len(labels)} labels in "
                f"{paths[f'{split}_labels']}"
            )
    return out
