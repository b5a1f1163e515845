"""Published results of models trained against several threat models at once (MNIST), as data.

``dim compare --published`` prints them under the measured rows, each labelled with its own thresholds, images
and attacks. They were not measured by this project, under other thresholds and weaker attack sets than ours (no
L0, no AutoAttack): context for our numbers, never a row of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Published:
    """One published model: accuracies in percent; ``norms`` maps a norm to (threshold, accuracy or None where the
    source gives none)."""
    label: str
    source: str
    clean: float
    union: float
    images: int
    attacks: str
    norms: dict[str, tuple[float, float | None]] = field(default_factory=dict)


PUBLISHED: tuple[Published, ...] = (
    Published("MSD (Maini et al. 2020), ICML version", "the paper's MNIST table", clean=98.3, union=58.4,
              images=1000, attacks="their PGD variants with 10 restarts, foolbox attacks and DDN; no L0",
              norms={"Linf": (0.3, None), "L2": (2.0, None), "L1": (10, None)}),
    Published("MSD (Maini et al. 2020), first version", "the README of locuslab/robust_union", clean=98.0,
              union=58.7, images=1000, attacks="their PGD variants with 10 restarts and foolbox attacks; no L0",
              norms={"Linf": (0.3, 63.7), "L2": (1.5, 82.7), "L1": (12, 62.3)}),
)
