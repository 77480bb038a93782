"""Tests for sit471.idx: IDX parsing and loading MNIST from a local directory."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from sit471.idx import MNIST_FILES, load_mnist, read_idx

# Written independently of sit471.idx: type code and big-endian struct format per dtype.
CODES = {
    "u1": (0x08, "B"),
    "i1": (0x09, "b"),
    "i2": (0x0B, "h"),
    "i4": (0x0C, "i"),
    "f4": (0x0D, "f"),
    "f8": (0x0E, "d"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of ``array`` built with struct, item by item."""
    code, fmt = CODES[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    flat = array.reshape(-1).tolist()
    return header + struct.pack(f">{len(flat)}{fmt}", *flat)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def fake_mnist(directory: Path, n_train=5, n_test=3, compress=False, seed=0) -> dict:
    """A directory of tiny MNIST-named IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    for key, array in arrays.items():
        name = MNIST_FILES[key] + (".gz" if compress else "")
        write_idx(directory / name, array, compress)
    return arrays


def test_header_layout_matches_the_mnist_description():
    # The first 8 bytes of MNIST's training labels: magic 0x00000801, then 60000.
    header = idx_bytes(np.zeros(60000, dtype=np.uint8))[:8]
    assert header == bytes.fromhex("00000801 0000ea60")


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_every_type(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4, 2)) * 50).astype(dtype)
    result = read_idx(write_idx(tmp_path / "a.idx", array, compress))
    assert result.shape == (3, 4, 2)
    assert result.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(result, array)
    result[0, 0, 0] = 1  # a writable array


def test_round_trip_shapes(tmp_path):
    for shape in [(7,), (2, 3), (1, 2, 3, 4), (0, 28, 28)]:
        array = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
        np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "s", array)), array)
    scalar = read_idx(write_idx(tmp_path / "z", np.array(5, dtype=np.uint8)))
    assert scalar.shape == () and scalar == 5


def test_gzip_recognised_by_content_and_str_path(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = write_idx(tmp_path / "no-gz-suffix", array, compress=True)
    np.testing.assert_array_equal(read_idx(str(path)), array)


@pytest.mark.parametrize("magic, message", [
    (b"\x01\x02\x08\x01", "not an IDX file: wrong magic number 0x01020801"),
    (b"\x00\x00\x07\x01", "unknown IDX type code 0x07"),
], ids=["wrong_magic", "unknown_type_code"])
def test_a_bad_header_is_refused_with_its_reason(tmp_path, magic, message):
    path = tmp_path / "bad"
    path.write_bytes(magic + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def test_wrong_magic_inside_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"PK\x03\x04 not idx"))
    with pytest.raises(ValueError, match="wrong magic number"):
        read_idx(path)


def test_truncated_data(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    path = tmp_path / "short"
    path.write_bytes(data[:-100])
    expected = f"file {re.escape(str(path))} is truncated: expected 3136 bytes of data, found 3036"
    with pytest.raises(ValueError, match=expected):
        read_idx(path)


def test_truncated_gzip_data(tmp_path):
    data = idx_bytes(np.zeros(10, dtype=">i4"))
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(data[:-1]))
    with pytest.raises(ValueError, match="is truncated: expected 40 bytes of data, found 39"):
        read_idx(path)


def test_truncated_header_and_gzip_stream(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 5))  # 3 dims, 1 size given
    with pytest.raises(ValueError, match="is truncated: its header needs 16 bytes, found 8"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short for an IDX header"):
        read_idx(path)
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8)))[:-12])
    with pytest.raises(ValueError, match="cannot be decompressed"):
        read_idx(path)


def test_extra_bytes_rejected(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)) + b"\x00\x00")
    with pytest.raises(ValueError, match="2 unexpected bytes after its data"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist(tmp_path, compress):
    written = fake_mnist(tmp_path, compress=compress)
    data = load_mnist(tmp_path)
    assert set(data) == {"train_images", "train_labels", "test_images", "test_labels"}
    assert data["train_images"].shape == (5, 28, 28) and data["train_images"].dtype == np.uint8
    assert data["train_labels"].shape == (5,) and data["test_images"].shape == (3, 28, 28)
    for key, array in written.items():
        np.testing.assert_array_equal(data[key], array)


def test_load_mnist_mixed_plain_and_gzip(tmp_path):
    written = fake_mnist(tmp_path, compress=True)
    write_idx(tmp_path / MNIST_FILES["test_labels"], written["test_labels"])
    (tmp_path / (MNIST_FILES["test_labels"] + ".gz")).unlink()
    np.testing.assert_array_equal(load_mnist(str(tmp_path))["test_labels"], written["test_labels"])


def test_load_mnist_missing_file(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    pattern = (
        r"t10k-labels-idx1-ubyte \(or t10k-labels-idx1-ubyte\.gz\) not found in "
        + re.escape(str(tmp_path))
        + r"\. Nothing is downloaded: put the four MNIST IDX files"
    )
    with pytest.raises(FileNotFoundError, match=pattern):
        load_mnist(tmp_path)


def test_load_mnist_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte .*not found in"):
        load_mnist(tmp_path / "nowhere")


def test_load_mnist_counts_must_agree(tmp_path):
    fake_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="train images and labels disagree: 5 images .* 4 labels"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_swapped_files(tmp_path):
    written = fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", written["test_labels"])
    with pytest.raises(ValueError, match=r"images of shape \(N, rows, cols\)"):
        load_mnist(tmp_path)
