"""Units of work, their results and the plan that lists them: plan -> execute -> commit.

A unit is self-contained and picklable: the model by key (the executor holds the
model itself: live in-process, or its weights and card in Ray's object store), the
attack spec bound to the run's thresholds, the adapter that runs it, the shard's
images, labels and clean predictions, and its seed. Nothing in a unit points at
the run directory or the store, so it runs on any worker of any machine.

:func:`plan` reads the store (on the driver) and lists what is still to do, in the
order the serial executor runs it. An attack that starts from earlier attacks'
adversarials (``starting_points``) names, in ``after``, the units of the same
(model, shard) it waits for; the driver gives it their adversarials once they are
committed.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import numpy as np

from ..attacks.spec import AttackSpec
from ..store import Store
from ..core.norms import ThreatModel

UnitKey = tuple[str, str, int]     # (model, attack, shard); sanity checks: (model, CHECKS, -1)
CHECKS = "sanity checks"


def shard_seed(seed: int, model: str, attack: str, shard: int) -> int:
    """The seed of one shard: a function of its coordinates only, so any executor in any order stores the
    same rows."""
    return zlib.crc32(f"{seed}/{model}/{attack}/{shard}".encode())


def attack_runner(spec: AttackSpec) -> Callable[..., Any]:
    """The function that runs ``spec``: foolbox unless an adapter of ours is registered."""
    from ..attacks import ADAPTERS
    from ..attacks.foolbox_adapter import run_foolbox
    return ADAPTERS.get(spec.attack, run_foolbox)


@dataclass(frozen=True, eq=False)
class AttackUnit:
    """One attack on one shard of one model."""
    model: str
    spec: AttackSpec                   # bound to the run's threat model
    run: Callable[..., Any]            # the adapter, resolved on the driver (pickled by reference)
    shard: int
    samples: np.ndarray                # indices into the run's images
    x: np.ndarray
    y: np.ndarray
    clean: np.ndarray                  # the model's clean predictions on x
    seed: int
    after: tuple[str, ...] = ()        # attacks of the same (model, shard) whose adversarials it starts from
    starting_points: np.ndarray | None = None   # set by the driver once ``after`` are committed

    @property
    def key(self) -> UnitKey:
        return (self.model, self.spec.name, self.shard)

    @property
    def label(self) -> str:
        return f"{self.model} / {self.spec.name} / shard {self.shard}"


@dataclass(frozen=True, eq=False)
class ChecksUnit:
    """The model sanity checks of :mod:`dim.evaluation.checks` on one model."""
    model: str
    x: np.ndarray
    y: np.ndarray
    seed: int

    @property
    def key(self) -> UnitKey:
        return (self.model, CHECKS, -1)

    @property
    def label(self) -> str:
        return f"{self.model} / {CHECKS}"


Unit = Union[AttackUnit, ChecksUnit]


@dataclass
class UnitResult:
    """What executing a unit gave: ``done`` (arrays or checks), ``skipped`` (not applicable) or ``failed``."""
    key: UnitKey
    status: str
    seconds: float
    device: str | None = None
    error: str | None = None
    distance: np.ndarray | None = None
    pred: np.ndarray | None = None
    x_adv: np.ndarray | None = None
    checks: dict[str, Any] | None = field(default=None, repr=False)


def plan(store: Store, models: Sequence[Any], specs: Sequence[AttackSpec], todo: Sequence[AttackSpec],
         x: np.ndarray, y: np.ndarray, clean: dict[str, np.ndarray], *, batch_size: int, seed: int,
         threat: ThreatModel, checks: bool) -> list[Unit]:
    """The units still to do (finished and skipped shards are not; failed ones are retried), in serial order:
    per model its sanity checks, then its attacks shard by shard."""
    n_shards = (len(y) + batch_size - 1) // batch_size
    units: list[Unit] = []
    for m in models:
        if checks and store.get_meta(f"checks/{m.key}") is None:
            units.append(ChecksUnit(m.key, x, y, seed))
        planned: dict[int, list[AttackSpec]] = {s: [] for s in range(n_shards)}
        for spec in todo:
            run = attack_runner(spec)
            for shard in range(n_shards):
                if store.shard_status(m.key, spec.name, shard) in ("done", "skipped"):
                    continue
                lo, hi = shard * batch_size, min(len(y), (shard + 1) * batch_size)
                after = tuple(o.name for o in planned[shard] if o.norm is spec.norm) if spec.starting_points else ()
                units.append(AttackUnit(m.key, spec.bind(threat), run, shard, np.arange(lo, hi), x[lo:hi], y[lo:hi],
                                        clean[m.key][lo:hi], shard_seed(seed, m.key, spec.name, shard), after))
                planned[shard].append(spec)
    return units
