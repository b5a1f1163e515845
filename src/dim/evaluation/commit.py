"""Commit: the driver alone writes a unit's result into the run (SQLite rows, ``.npz``, reuse marks).

Each unit is one store transaction, written after its adversarials file, so a run
killed at any moment holds a unit entirely or not at all; a unit whose rows exist
is never stored again (:meth:`dim.store.Store.finish_shard` replaces a failed
attempt's state, and the plan never lists a finished unit).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch.nn as nn

from ..progress import log
from ..store import ResultRow, Store
from ..attacks.spec import spec_dict
from .artifacts import atomic_npz, shard_path
from .reuse import Donor, copy_shard, donor_starts, reusable, starts_key, starts_sha256
from .units import AttackUnit, ChecksUnit, Unit, UnitResult


def commit(store: Store, run_dir: Path, unit: Unit, result: UnitResult) -> None:
    if isinstance(unit, ChecksUnit):
        if result.status == "done":
            store.set_meta(f"checks/{unit.model}", result.checks)
        else:
            first_line = (result.error or "").partition("\n")[0]
            log(f"{unit.label} could not run (retried by the next run of this command): {first_line}")
        return
    model, attack, shard = unit.key
    if result.status != "done":
        store.fail_shard(model, attack, shard, result.error or "", result.seconds,
                         status="skipped" if result.status == "skipped" else "failed", device=result.device)
        return
    atomic_npz(shard_path(run_dir, model, attack, shard), within=run_dir, sample=unit.samples, distance=result.distance,
               pred=result.pred, x_adv=result.x_adv)
    if unit.starting_points is not None:   # what it started from, so that a later run can tell it reuses it
        store.set_meta(starts_key(model, attack, shard), starts_sha256(unit.starting_points))
    per_sample = result.seconds / len(unit.samples)
    rows = [ResultRow(model, attack, int(s), float(d), int(p), per_sample)
            for s, d, p in zip(unit.samples, result.distance, result.pred)]
    store.finish_shard(model, attack, shard, rows, result.seconds, device=result.device)


def commit_reused(store: Store, run_dir: Path, donors: Sequence[Donor], unit: AttackUnit, model: nn.Module,
                  card_sha256: str | None, specs: Sequence = (),
                  starts_of: Callable[[], str] | None = None) -> bool:
    """Copy ``unit`` from the first donor run that holds it and whose adversarials verify again on
    ``model``; False if none does (the unit is then executed). A unit that starts from earlier
    adversarials is copied only from a donor whose shard started from points hashing to ``starts_of()``
    (this run's, computed once a donor holds the unit; ``specs``: this run's suite)."""
    sd = spec_dict(unit.spec)
    hi = int(unit.samples[-1]) + 1
    starts = None
    for donor in donors:
        if not reusable(donor, unit.model, card_sha256, sd, unit.spec, unit.shard, hi):
            continue
        if unit.spec.starting_points:
            if starts_of is None:
                return False
            starts = starts or starts_of()
            if starts != donor_starts(donor, unit.model, specs, unit.spec, unit.shard, unit.samples,
                                      unit.x.shape[1:]):
                continue
        got = copy_shard(donor, unit.model, unit.spec, model, unit.x, unit.y, unit.clean, unit.samples)
        if isinstance(got, str):
            log(f"{unit.label}: not copied from {donor.run_dir}: {got}; recomputing")
            continue
        arrays, rows, seconds = got
        store.mark_reused(unit.model, unit.spec.name, unit.shard, str(donor.run_dir))
        if starts is not None:
            store.set_meta(starts_key(unit.model, unit.spec.name, unit.shard), starts)
        atomic_npz(shard_path(run_dir, unit.model, unit.spec.name, unit.shard), within=run_dir, **arrays)
        store.finish_shard(unit.model, unit.spec.name, unit.shard, rows, seconds,
                           device=donor.store.shard_device(unit.model, unit.spec.name, unit.shard))
        return True
    return False
