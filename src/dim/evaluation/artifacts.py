"""The adversarials of a run on disk: ``RUN/adversarials/<model>/<attack>.npz``.

A shard's adversarials are written (by the driver, when it commits the shard) to
``<model>/<attack>/shard_NNNNN.npz`` and merged into ``<attack>.npz`` once every
shard of (model, attack) is done. Each file holds ``sample``, ``distance``,
``pred`` and ``x_adv`` (NaN rows: no adversarial). Readers take the merged file,
else whatever shards exist. Only the driver writes here; workers never see these files.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ..attacks.spec import AttackSpec
from ..fileio import atomic_write
from ..names import file_name

ADV_DIR = "adversarials"
INPUTS = "inputs.npz"        # the run's clean images and labels (x, y), written once by the driver


def load_inputs(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The clean images and labels a run evaluated, if it recorded them (runs before this file existed did not)."""
    path = Path(run_dir) / INPUTS
    if not path.is_file():
        return None
    with np.load(path) as z:
        return z["x"], z["y"]


def slug(text: str) -> str:
    """A model or attack name as the file name of its adversarials: no separator survives (``L2 DDN`` ->
    ``L2_DDN``, as in runs stored so far); a name that would be empty, ``.`` or ``..`` gets
    :func:`dim.names.file_name`."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")
    return s if s not in ("", ".", "..") else file_name(text)


def atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


def adversarial_path(run_dir: Path, model: str, attack: str) -> Path:
    return Path(run_dir) / ADV_DIR / slug(model) / f"{slug(attack)}.npz"


def shard_path(run_dir: Path, model: str, attack: str, shard: int) -> Path:
    return Path(run_dir) / ADV_DIR / slug(model) / slug(attack) / f"shard_{shard:05d}.npz"


def load_adversarials(run_dir: Path, model: str, attack: str) -> dict[str, np.ndarray] | None:
    """The stored adversarials of (model, attack): merged file, else whatever shards exist."""
    merged = adversarial_path(run_dir, model, attack)
    if merged.is_file():
        with np.load(merged) as z:
            return {k: z[k] for k in z.files}
    parts = sorted(shard_path(run_dir, model, attack, 0).parent.glob("shard_*.npz"))
    if not parts:
        return None
    loaded = [dict(np.load(p)) for p in parts]
    return {k: np.concatenate([p[k] for p in loaded]) for k in loaded[0]}


def merge_shards(run_dir: Path, model: str, attack: str) -> None:
    """One file per (model, attack), sorted by sample, once all its shards are done."""
    data = load_adversarials(run_dir, model, attack)
    if data is None:
        return
    order = np.argsort(data["sample"])
    atomic_npz(adversarial_path(run_dir, model, attack), **{k: v[order] for k, v in data.items()})
    shutil.rmtree(shard_path(run_dir, model, attack, 0).parent, ignore_errors=True)


def best_so_far(run_dir: Path, model: str, suite: Sequence[AttackSpec], spec: AttackSpec,
                samples: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Best stored adversarial per sample among the attacks of the same norm before ``spec`` in
    ``suite`` (NaN rows where none): the starting points of a Brendel-Bethge-style attack."""
    best = np.full((len(samples), *shape), np.nan, np.float32)
    best_d = np.full(len(samples), np.inf)
    pos = {int(s): i for i, s in enumerate(samples)}
    for other in suite:
        if other.name == spec.name:
            break
        if other.norm is not spec.norm:
            continue
        data = load_adversarials(run_dir, model, other.name)
        if data is None:
            continue
        for s, d, xa in zip(data["sample"], data["distance"], data["x_adv"]):
            i = pos.get(int(s))
            if i is not None and np.isfinite(d) and d > 0 and d < best_d[i]:
                best_d[i], best[i] = d, xa
    return best
