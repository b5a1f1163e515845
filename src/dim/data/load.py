"""Loading a split as arrays the models take, checked again against the dataset's shape and classes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .catalogue import SPLIT_FILES, Dataset, dataset_dir, get_spec
from .idx import DataError, find_in_folder, open_bytes, read_idx, sha256_bytes


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
    paths = [find_in_folder(folder, n) for n in (img_name, lab_name)]
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
    return {f: sha256_bytes(open_bytes(find_in_folder(spec.folder, f)))
            for pair in SPLIT_FILES.values() for f in pair}
