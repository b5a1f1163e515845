"""The four threat models of the paper: norms, thresholds and epsilon grids.

``Norm.threshold`` and ``Norm.grid`` are the paper's MNIST values. A dataset of
another shape has its own :class:`ThreatModel` (thresholds scaled to its size, or
given by the user), which the runner binds to every attack and the metrics read from
the run's config.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np


class Norm(str, enum.Enum):
    L0 = "L0"
    L1 = "L1"
    L2 = "L2"
    LINF = "Linf"

    @property
    def threshold(self) -> float:
        """The paper's thresholds (Table 1): eps_L0 = 12 pixels, eps_L1 = 8, eps_L2 = 1.5, eps_Linf = 0.3."""
        return THRESHOLDS[self]

    @property
    def grid(self) -> tuple[float, ...]:
        """Epsilons at which fixed-epsilon attacks run; the threshold is always on the grid."""
        return GRIDS[self]

    @property
    def label(self) -> str:
        return {"L0": "L0", "L1": "L1", "L2": "L2", "Linf": "L∞"}[self.value]


THRESHOLDS = {Norm.L0: 12.0, Norm.L1: 8.0, Norm.L2: 1.5, Norm.LINF: 0.3}
GRIDS = {
    Norm.L0: (1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0),
    Norm.L1: (1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0),
    Norm.L2: (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0),
    Norm.LINF: (0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5),
}


MNIST_SHAPE = (1, 28, 28)


def scaled_thresholds(input_shape: tuple[int, int, int]) -> dict["Norm", float]:
    """The paper's MNIST thresholds carried to images of ``input_shape`` = (C, H, W).

    The same perturbation budget per pixel: L0 counts pixels (12 of 784 -> the same
    fraction of H*W), L1 grows with the number of values d = C*H*W, L2 with sqrt(d)
    (a perturbation of the same size per value), L-inf is per value and stays 0.3.
    """
    c, h, w = input_shape
    d, d0 = c * h * w, math.prod(MNIST_SHAPE)
    pixels, pixels0 = h * w, MNIST_SHAPE[1] * MNIST_SHAPE[2]
    return {Norm.L0: max(1.0, float(round(THRESHOLDS[Norm.L0] * pixels / pixels0))),
            Norm.L1: THRESHOLDS[Norm.L1] * d / d0, Norm.L2: THRESHOLDS[Norm.L2] * math.sqrt(d / d0),
            Norm.LINF: THRESHOLDS[Norm.LINF]}


@dataclass(frozen=True)
class ThreatModel:
    """The threshold of every norm, and the epsilon grids of fixed-epsilon attacks scaled to it."""
    thresholds: Mapping[Norm, float]

    def threshold(self, norm: Norm) -> float:
        return float(self.thresholds[norm])

    def grid(self, norm: Norm) -> tuple[float, ...]:
        """The paper's grid for ``norm`` times threshold / paper threshold (L0: whole pixels)."""
        scale = self.threshold(norm) / THRESHOLDS[norm]
        if scale == 1.0:
            return GRIDS[norm]
        grid = [self.threshold(norm) if e == THRESHOLDS[norm] else e * scale for e in GRIDS[norm]]
        if norm is Norm.L0:
            grid = sorted({max(1.0, float(round(e))) for e in grid} | {self.threshold(norm)})
        return tuple(grid)

    @property
    def is_paper(self) -> bool:
        return all(self.threshold(n) == THRESHOLDS[n] for n in Norm)

    def as_dict(self) -> dict[str, float]:
        return {n.value: self.threshold(n) for n in Norm}

    @classmethod
    def paper(cls) -> "ThreatModel":
        return cls(dict(THRESHOLDS))

    @classmethod
    def from_dict(cls, values: Mapping[str, float] | None) -> "ThreatModel":
        """From ``{"L2": 1.5, ...}``; norms it does not name keep the paper's threshold."""
        return cls.paper().with_overrides(values or {})

    @classmethod
    def for_shape(cls, input_shape: tuple[int, int, int], overrides: Mapping[str, float] | None = None) -> "ThreatModel":
        """Thresholds scaled to ``input_shape`` (the paper's for 1 x 28 x 28), then ``overrides``."""
        return cls(scaled_thresholds(tuple(input_shape))).with_overrides(overrides or {})

    def with_overrides(self, values: Mapping[str, float]) -> "ThreatModel":
        out = dict(self.thresholds)
        for key, value in values.items():
            try:
                norm = Norm(key)
            except ValueError:
                raise ValueError(f"threshold for unknown norm {key!r}; expected one of "
                                 f"{[n.value for n in Norm]}") from None
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"threshold {key}={value!r}: expected a positive number")
            out[norm] = float(value)
        return ThreatModel(out)


def distances(x: np.ndarray, x_adv: np.ndarray, norm: Norm) -> np.ndarray:
    """Per-sample distance ``||x_adv - x||`` for images ``(N, C, H, W)``.

    L0 counts changed pixels (a pixel counts once, whatever the number of
    channels), with a tolerance of 1e-6 so that float round-off is not a change.
    """
    diff = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), x.shape[1], -1)
    if norm is Norm.L0:
        return (np.abs(diff).max(axis=1) > 1e-6).sum(axis=1).astype(np.float64)
    flat = diff.reshape(len(x), -1)
    if norm is Norm.L1:
        return np.abs(flat).sum(axis=1)
    if norm is Norm.L2:
        return np.sqrt((flat ** 2).sum(axis=1))
    return np.abs(flat).max(axis=1)
