"""Before a run continues: every finished shard's adversarials must be on disk and be what the store says.

A shard whose adversarials file is missing, damaged, or another's (its samples or distances differ from the
store's rows) is reopened (:meth:`dim.store.Store.reopen_shard`) and computed again by the same call; seeds are a
function of (seed, model, attack, shard), so it stores what it stored before. Only the small ``sample`` and
``distance`` arrays are read, except where a merged file must be split to recompute part of it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..attacks.spec import AttackSpec
from ..fileio import check_no_links
from ..progress import log
from ..store import Store
from .artifacts import ArtifactError, atomic_npz, load_adversarials, merged_path, read_npz, shard_path


def _shard_samples(shard: int, n: int, batch_size: int) -> np.ndarray:
    return np.arange(shard * batch_size, min((shard + 1) * batch_size, n))


def _disagreement(data: dict[str, np.ndarray] | None, rows: dict[int, float], samples: np.ndarray) -> str | None:
    """Why the file's data for ``samples`` is not the store's rows (None if it is)."""
    if data is None:
        return "its adversarials file is missing"
    where = {int(s): float(d) for s, d in zip(data["sample"], data["distance"])}
    if any(int(s) not in where for s in samples):
        return "its samples are missing from the adversarials file"
    if any(int(s) not in rows or not (where[int(s)] == rows[int(s)]) for s in samples):
        return "the adversarials file holds other distances than the store (another model's or attack's file?)"
    return None


def reopen_mismatched(store: Store, run_dir: Path, models: Sequence[str], specs: Sequence[AttackSpec], n: int,
                      batch_size: int) -> list[str]:
    """Reopen every finished shard of ``models`` x ``specs`` whose adversarials do not match the store; returns a
    line per reopened shard (also logged)."""
    n_shards = (n + batch_size - 1) // batch_size
    notes: list[str] = []
    for model in models:
        for spec in specs:
            done = [k for k in range(n_shards) if store.shard_status(model, spec.name, k) == "done"]
            if not done:
                continue
            rows = {r.sample: r.distance for r in store.rows(model, spec.name)}
            try:
                data, damaged = load_adversarials(run_dir, model, spec.name, keys=("sample", "distance")), None
            except ArtifactError as exc:
                data, damaged = None, str(exc)
            bad = {k: damaged or _disagreement(data, rows, _shard_samples(k, n, batch_size)) for k in done}
            bad = {k: why for k, why in bad.items() if why}
            if not bad:
                continue
            merged = merged_path(run_dir, model, spec.name)
            if merged is not None:
                bad = _split_merged(run_dir, model, spec.name, merged, done, bad, n, batch_size)
            for k, why in bad.items():
                store.reopen_shard(model, spec.name, k, _shard_samples(k, n, batch_size), why)
                notes.append(f"{model} / {spec.name} / shard {k}: recomputing, {why}")
                log(notes[-1])
    return notes


def _split_merged(run_dir: Path, model: str, attack: str, merged: Path, done: list[int], bad: dict[int, str],
                  n: int, batch_size: int) -> dict[int, str]:
    """Keep the good shards of a merged file as shard files and remove the merged file, so that the reopened
    shards merge with them again; a file that cannot be read whole takes every shard with it."""
    try:
        full = read_npz(merged) if len(bad) < len(done) else None
    except ArtifactError as exc:
        full, bad = None, {k: bad.get(k, str(exc)) for k in done}
    if full is not None:
        where = {int(s): i for i, s in enumerate(full["sample"])}
        for k in done:
            if k in bad:
                continue
            idx = [where[int(s)] for s in _shard_samples(k, n, batch_size)]
            atomic_npz(shard_path(run_dir, model, attack, k), within=run_dir, **{f: v[idx] for f, v in full.items()})
    else:
        bad = {k: bad.get(k, "its merged adversarials file is recomputed whole") for k in done}
    check_no_links(merged, run_dir).unlink()
    return bad
