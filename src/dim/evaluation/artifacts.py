"""The adversarials of a run on disk: ``RUN/adversarials/<model>/<attack>.npz``.

A shard's adversarials are written (by the driver, when it commits the shard) to
``<model>/<attack>/shard_NNNNN.npz`` and merged into ``<attack>.npz`` once every
shard of (model, attack) is done. Each file holds ``sample``, ``distance``,
``pred`` and ``x_adv`` (NaN rows: no adversarial). Readers take the merged file,
else whatever shards exist. Only the driver writes here; workers never see these files.

File names: a readable prefix of the name and a hash of the whole name (:func:`artifact_name`), so that two models
or attacks never share a file however alike their names (``a/b`` and ``a_b``, ``L2 DDN`` and ``L2/DDN``) and no
name is too long for a file system. Runs stored before wrote the bare prefix (:func:`legacy_slug`); they are still
read, and a resumed one writes its new shards under the new names and merges both.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from ..attacks.spec import AttackSpec
from ..fileio import atomic_write, check_no_links
from ..names import file_name

ADV_DIR = "adversarials"
INPUTS = "inputs.npz"        # the run's clean images and labels (x, y), written once by the driver


def load_inputs(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The clean images and labels a run evaluated, if it recorded them (runs before this file existed did not)."""
    path = Path(run_dir) / INPUTS
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return z["x"], z["y"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):   # damaged: as if it were not there
        return None


def artifact_name(text: str) -> str:
    """A model or attack name as the file name of its adversarials: ``L2 DDN`` -> ``L2_DDN-<12 hex digits>``
    (at most 60 characters of readable prefix; the hash is of the whole name, so distinct names never collide)."""
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-")[:60] or "name"
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def legacy_slug(text: str) -> str:
    """The file name runs stored before :func:`artifact_name` used (``L2 DDN`` -> ``L2_DDN``): read, never written."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")
    return s if s not in ("", ".", "..") else file_name(text)


def atomic_npz(path: Path, *, within: Path | None = None, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` atomically; ``within`` (the run): through no symbolic link below it."""
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays), within)


def adversarial_path(run_dir: Path, model: str, attack: str, name=artifact_name) -> Path:
    return Path(run_dir) / ADV_DIR / name(model) / f"{name(attack)}.npz"


def shard_path(run_dir: Path, model: str, attack: str, shard: int, name=artifact_name) -> Path:
    return Path(run_dir) / ADV_DIR / name(model) / name(attack) / f"shard_{shard:05d}.npz"


class ArtifactError(ValueError):
    """An adversarials file is damaged; the message names it and how to recompute it."""


FIELDS = ("sample", "distance", "pred", "x_adv")


def read_npz(path: Path, keys: Sequence[str] = FIELDS) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of one adversarials file, or :class:`ArtifactError` naming what is wrong with it."""
    try:
        with np.load(path) as z:
            out = {k: z[k] for k in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ArtifactError(f"{path}: damaged adversarials file ({type(exc).__name__}: {exc}); run the same "
                            "'dim evaluate' again: it recomputes what the file held") from None
    n = {len(v) for v in out.values()}
    if len(n) != 1:
        raise ArtifactError(f"{path}: damaged adversarials file (arrays of different lengths {sorted(n)}); run the "
                            "same 'dim evaluate' again: it recomputes what the file held")
    return out


def merged_path(run_dir: Path, model: str, attack: str) -> Path | None:
    """The merged adversarials file of (model, attack) that exists (current or earlier name), if any."""
    for name in (artifact_name, legacy_slug):
        merged = adversarial_path(run_dir, model, attack, name)
        if _exists(merged):
            return merged
    return None


def shard_files(run_dir: Path, model: str, attack: str) -> list[Path]:
    """The unmerged shard files of (model, attack), under the current names and the earlier ones."""
    return [p for name in (artifact_name, legacy_slug) if _exists(shard_path(run_dir, model, attack, 0, name).parent)
            for p in sorted(shard_path(run_dir, model, attack, 0, name).parent.glob("shard_*.npz"))]


def load_adversarials(run_dir: Path, model: str, attack: str,
                      keys: Sequence[str] = FIELDS) -> dict[str, np.ndarray] | None:
    """The stored adversarials of (model, attack): the merged file, else whatever shards exist (under the
    current names, and under the names of runs stored before them); :class:`ArtifactError` for a damaged file.
    ``keys``: the arrays to read (``sample`` and ``distance`` alone skip the images)."""
    keys = tuple(dict.fromkeys(("sample", *keys)))
    merged = merged_path(run_dir, model, attack)
    if merged is not None:
        return read_npz(merged, keys)
    parts = shard_files(run_dir, model, attack)
    if not parts:
        return None
    loaded = [read_npz(p, keys) for p in parts]
    data = {k: np.concatenate([p[k] for p in loaded]) for k in loaded[0]}
    _, first = np.unique(data["sample"], return_index=True)     # a shard stored under both names counts once
    return {k: v[first] for k, v in data.items()}


def _exists(path: Path) -> bool:
    """``path`` exists; a name too long for the file system (as a legacy name may be) does not."""
    try:
        return path.exists()
    except OSError:
        return False


def has_shards(run_dir: Path, model: str, attack: str) -> bool:
    """Whether (model, attack) has shard files not yet merged (under either naming)."""
    return any(_exists(shard_path(run_dir, model, attack, 0, name).parent) for name in (artifact_name, legacy_slug))


def merge_shards(run_dir: Path, model: str, attack: str) -> None:
    """One file per (model, attack), sorted by sample, once all its shards are done."""
    data = load_adversarials(run_dir, model, attack)
    if data is None:
        return
    order = np.argsort(data["sample"])
    atomic_npz(adversarial_path(run_dir, model, attack), within=run_dir, **{k: v[order] for k, v in data.items()})
    for name in (artifact_name, legacy_slug):
        shards = shard_path(run_dir, model, attack, 0, name).parent
        if _exists(shards):
            check_no_links(shards, run_dir)      # never delete through a link
            shutil.rmtree(shards, ignore_errors=True)


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
