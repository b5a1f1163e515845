"""The run spec: every option of an evaluation, in one object from the CLI or the API to the runner.

``dim evaluate``, ``dim reproduce`` and :func:`dim.evaluate` build a :class:`RunSpec`;
:func:`dim.pipeline.run_evaluation` and :func:`dim.evaluation.runner.evaluate_models`
read it. Adding an option means adding a field here, not threading a keyword through
three modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..attacks.suites import get_suite

from ..attacks.spec import AttackSpec
from ..core.device import DeviceLike
from ..data import SPLIT_FILES


SPLITS = tuple(SPLIT_FILES)      # the dataset splits a run can evaluate


@dataclass(frozen=True)
class RunSpec:
    """What to evaluate, where, how, and on what executor.

    ``model_dirs`` (model directories or model files) and ``factories`` name the models (the API passes live models
    beside the spec instead). ``suite`` is a suite name (``paper+adaptive``) or
    attack specs. ``only`` restricts this call to the attacks matching its
    shell-style patterns; ``reuse`` names donor runs. ``executor`` is a key of
    :data:`dim.evaluation.executors.EXECUTORS`; ``ray_address`` joins an existing
    Ray cluster (default ``$RAY_ADDRESS``, else a local one), and ``gpu_share`` is the
    fraction of a GPU each unit asks Ray for when the device is CUDA.
    """
    run_dir: Path
    suite: str | tuple[AttackSpec, ...] = "quick"
    model_dirs: tuple[Path, ...] = ()
    factories: tuple[str, ...] = ()
    names: tuple[str, ...] = ()          # labels of the models, in order (directories and files, then factories)
    n: int = 200
    start: int = 0                       # evaluate test images start .. start + n - 1
    subset_seed: int | None = None       # or n test images drawn at random (without replacement) with this seed
    split: str = "test"                  # or "train": the images the model learned from (to measure the gap)
    batch_size: int = 100
    seed: int = 0
    dataset: str | None = None          # recorded in the run's config when given (CLI runs)
    data_dir: Path | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    only: tuple[str, ...] = ()
    reuse: tuple[Path, ...] = ()
    checks: bool = True
    report: bool = True
    device: DeviceLike = None
    executor: str = "serial"
    ray_address: str | None = None
    gpu_share: float = 1.0
    threads: int | None = None          # CPU threads per unit (serial and Ray alike: the same floats everywhere)
    show: bool | None = None            # progress bars (default: unless $DIM_NO_PROGRESS)
    suite_name: str | None = None       # the name recorded for a suite given as attack specs

    def __post_init__(self) -> None:
        from .executors import EXECUTORS
        # lists from the CLI, tuples in the spec; paths as Path
        for name, kind in (("model_dirs", Path), ("reuse", Path), ("factories", str), ("names", str), ("only", str)):
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name) or ()))
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        if not isinstance(self.suite, str):
            object.__setattr__(self, "suite", tuple(self.suite))
        object.__setattr__(self, "thresholds", dict(self.thresholds or {}))
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.start < 0:
            raise ValueError(f"start must be 0 or more, got {self.start}")
        if self.start and self.subset_seed is not None:
            raise ValueError("choose images by --start or by --random-subset, not both")
        if self.split not in SPLITS:
            raise ValueError(f"split {self.split!r}: expected one of {list(SPLITS)}")
        if self.n < 1 or self.batch_size < 1:
            raise ValueError(f"n and batch_size must be positive, got n={self.n}, batch_size={self.batch_size}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor {self.executor!r}: expected one of {sorted(EXECUTORS)}")
        if not 0 < self.gpu_share <= 1 and not (self.gpu_share > 1 and float(self.gpu_share).is_integer()):
            raise ValueError(f"gpu share {self.gpu_share}: expected a fraction in (0, 1] or a whole number of GPUs")

    @classmethod
    def of(cls, **options: Any) -> "RunSpec":
        """A spec from keyword options, refusing a misspelt one by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown run option(s) {unknown}; expected some of {sorted(known)}")
        return cls(**options)

    def attacks(self) -> tuple[AttackSpec, ...]:
        return tuple(get_suite(self.suite) if isinstance(self.suite, str) else self.suite)

    def image_indices(self, available: int) -> np.ndarray:
        """Which images (indices into the split of ``available``) this spec evaluates, in order."""
        if self.subset_seed is not None:
            if self.n > available:
                raise ValueError(f"--n {self.n}: the {self.split} set has only {available} images")
            return np.sort(np.random.default_rng(self.subset_seed).choice(available, self.n, replace=False))
        if self.start + self.n > available:
            raise ValueError(f"images {self.start}..{self.start + self.n - 1}: the {self.split} set has only "
                             f"{available}")
        return np.arange(self.start, self.start + self.n)

    def image_selection(self) -> dict[str, Any] | None:
        """What the run's config records about the choice of images (None: the first n test images, as always)."""
        chosen: dict[str, Any] = ({"random_subset_seed": self.subset_seed} if self.subset_seed is not None
                                  else {"start": self.start} if self.start else {})
        if self.split != "test":
            chosen["split"] = self.split
        return chosen or None

    @property
    def recorded_suite_name(self) -> str:
        return self.suite if isinstance(self.suite, str) else (self.suite_name or "custom")
