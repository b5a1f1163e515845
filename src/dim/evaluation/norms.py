"""The four threat models of the paper: norms, thresholds and epsilon grids."""
from __future__ import annotations

import enum

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
