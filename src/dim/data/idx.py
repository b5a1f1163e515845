"""The IDX container format (MNIST's file layout), raw or gzip-compressed, and the error every data module raises."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

# IDX type codes (third byte of the magic number) -> numpy dtype (big endian).
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DataError(Exception):
    """A data file or source is unusable; the message names the file and the problem."""


def open_bytes(path: Path) -> bytes:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read ({exc}); the file is corrupt or truncated") from exc


def parse_idx(raw: bytes, name: str = "<bytes>", expected_shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Parse IDX bytes (the MNIST container format) into a numpy array.

    ``expected_shape`` may use ``None`` for "any size" (e.g. ``(None, 28, 28)``).
    """
    if len(raw) < 4:
        raise DataError(f"{name}: truncated: {len(raw)} bytes, an IDX header needs at least 4")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{name}: wrong magic number {raw[:4].hex()}: expected 0000 followed by an "
                        f"IDX type code ({', '.join(f'{k:02x}' for k in _IDX_DTYPES)}) and the number of dimensions")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{name}: truncated header: {ndim} dimensions need {header} bytes, file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    need = int(np.prod(shape)) * dtype.itemsize
    have = len(raw) - header
    if have < need:
        raise DataError(f"{name}: truncated: header declares shape {shape} ({need} data bytes), file has {have}")
    if have > need:
        raise DataError(f"{name}: {have - need} unexpected trailing bytes after shape {shape}")
    if expected_shape is not None:
        ok = len(shape) == len(expected_shape) and all(e is None or e == s for e, s in zip(expected_shape, shape))
        if not ok:
            want = tuple("N" if e is None else e for e in expected_shape)
            raise DataError(f"{name}: wrong shape {shape}, expected {want}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: Path, expected_shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Read an IDX file, raw or ``.gz``."""
    return parse_idx(open_bytes(path), str(path), expected_shape)


def sha256_bytes(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()




def idx_header(path: Path) -> tuple[int, ...]:
    """The shape an IDX file declares, from its first bytes only (the whole file is checked when loaded)."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            raw = fh.read(4 + 4 * 4)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read ({exc}); the file is corrupt or truncated") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise DataError(f"{path}: wrong magic number {raw[:4].hex()}: not an IDX file")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated header")
    return tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))


def find_in_folder(folder: Path, fname: str) -> Path | None:
    for cand in (folder / fname, folder / f"{fname}.gz"):
        if cand.is_file():
            return cand
    return None
