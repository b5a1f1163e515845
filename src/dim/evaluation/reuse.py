"""Reuse finished shards of another run instead of recomputing them (``dim evaluate --reuse RUN``).

The typical case: ``runs/paper-dim`` holds the adaptive attacks on the first 200
test images, and a new run evaluates the same attacks on the first 500. A shard
of the new run is the same unit of work as a shard of the old one when the model
is the same (the SHA-256 of its ``card.json``, which pins the weights and the
inference settings), the attack has the same parameters, the run has the same
seed, batch size and dataset, and the shard covers the same images (the old run's
data hash equals the hash of the new run's first ``n`` images). The runner seeds
every shard by (seed, model, attack, shard), so such a shard would be recomputed
bit for bit; copying it saves the compute and changes no result.

Nothing is trusted blindly: every copied adversarial is verified again against the
model of this run (clipped, finite, misclassified, distance recomputed), and a
shard whose stored distances do not reproduce is run afresh. An attack that starts
from the best adversarial of earlier attacks (Brendel-Bethge) is the same unit of
work only when it starts from the same points: its shard is copied once those
attacks of this run are committed and their best adversarials hash to what the
donor's shard started from (recorded when it ran; for runs stored before that
record, as the donor's own stored adversarials give them).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..attacks.spec import AttackSpec
from ..provenance import commits_of
from ..store import ResultRow, Store
from .artifacts import best_so_far, load_adversarials
from ..core.verify import verify

# Fields of a run's config that must agree for any of its shards to be reused.
SAME = ("seed", "batch_size", "dataset")


@dataclass
class Donor:
    """An earlier run whose finished shards may stand in for this run's."""
    run_dir: Path
    store: Store
    n: int
    attacks: dict[str, dict[str, Any]]
    cards: dict[str, str | None]                     # model key -> card_sha256
    commits: list[str] = field(default_factory=list)   # the git commits it was computed with, oldest first
    _loaded: tuple[tuple[str, str], Any] | None = field(default=None, repr=False)

    def attack_data(self, key: str, attack: str) -> tuple[dict[str, np.ndarray] | None, dict[int, ResultRow]]:
        """The stored adversarials and result rows of (model, attack), read once for all its shards.

        The runner goes through an attack's shards one after the other, so only the
        current (model, attack) is kept: memory stays that of one attack.
        """
        if self._loaded is None or self._loaded[0] != (key, attack):
            self._loaded = ((key, attack), (load_adversarials(self.run_dir, key, attack),
                                            {r.sample: r for r in self.store.rows(key, attack)}))
        return self._loaded[1]

    def close(self) -> None:
        self.store.close()


def data_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """The hash a run's config records for its images and labels."""
    return hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(y).tobytes()).hexdigest()


def open_donor(run_dir: Path | str, config: dict[str, Any], x: np.ndarray, y: np.ndarray) -> Donor:
    """Open ``run_dir`` as a donor for a run with ``config`` on ``x``/``y``, or say why it cannot be one."""
    run_dir = Path(run_dir)
    store = Store.of_run(run_dir, read_only=True)
    try:
        theirs = store.get_meta("config") or {}
        differ = [k for k in SAME if theirs.get(k) != config.get(k)]
        if differ:
            raise ValueError(f"--reuse {run_dir}: that run differs in {differ} "
                             f"({ {k: theirs.get(k) for k in differ} } vs { {k: config.get(k) for k in differ} }); "
                             "its shards are not the same units of work")
        n = int(theirs.get("n", 0))
        if n > len(y) or data_sha256(x[:n], y[:n]) != theirs.get("data_sha256"):
            raise ValueError(f"--reuse {run_dir}: that run evaluated other images than the first {n} of this one")
        attacks = {a["name"]: a for a in theirs.get("attacks", [])}
        cards = {m["model"]: m["card_sha256"] for m in store.models()}
        commits = commits_of(store.get_meta("provenance") or {}) or ["unknown"]
    except Exception:
        store.close()
        raise
    return Donor(run_dir, store, n, attacks, cards, commits)


def reusable(donor: Donor, key: str, card_sha256: str | None, spec_dict: dict[str, Any], spec: AttackSpec,
             shard: int, hi: int) -> bool:
    """Whether ``donor`` holds this (model, attack, shard) as a finished, identical unit of work."""
    return (card_sha256 is not None and donor.cards.get(key) == card_sha256
            and donor.attacks.get(spec.name) == spec_dict
            and hi <= donor.n and donor.store.shard_status(key, spec.name, shard) == "done")


def starts_key(key: str, attack: str, shard: int) -> str:
    """The store's meta key for the hash of the points a starting-point unit started from."""
    return f"starts/{key}/{attack}/{shard}"


def starts_sha256(points: np.ndarray) -> str:
    """The hash of a unit's starting points (NaN rows, where no earlier attack found one, included)."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    return hashlib.sha256(repr(points.shape).encode() + points.tobytes()).hexdigest()


def donor_starts(donor: Donor, key: str, specs, spec: AttackSpec, shard: int, samples: np.ndarray,
                 shape: tuple[int, ...]) -> str | None:
    """The hash of the starting points of the donor's (key, spec, shard): as recorded when it ran, else as the
    donor's stored adversarials give them, provided the donor ran the same attacks of that norm before it."""
    recorded = donor.store.get_meta(starts_key(key, spec.name, shard))
    if recorded is not None:
        return recorded

    def before(names_norms) -> list[str]:
        names = [name for name, _ in names_norms]
        return [name for name, norm in names_norms[:names.index(spec.name)] if norm == spec.norm.value]
    ours = [(s.name, s.norm.value) for s in specs]
    theirs = [(name, a["norm"]) for name, a in donor.attacks.items()]
    if spec.name not in donor.attacks or before(ours) != before(theirs):
        return None
    return starts_sha256(best_so_far(donor.run_dir, key, specs, spec, samples, shape))


def copy_shard(donor: Donor, key: str, spec: AttackSpec, model, xs: np.ndarray, ys: np.ndarray,
               clean: np.ndarray, samples: np.ndarray) -> tuple[dict[str, np.ndarray], list[ResultRow], float] | str:
    """The donor's shard, re-verified on ``model``: (adversarial arrays, rows, seconds), or why it cannot be copied.

    The donor's rows, its adversarials file and this run's re-verification must tell one story, sample by sample:
    a finite distance exactly where a stored adversarial verifies again at that distance with the stored label,
    and "none found" (infinite distance, the clean prediction, no adversarial in the file) everywhere else. A row
    that claims "none found" while its file, its label or the file's own distances say otherwise is refused, so
    that a damaged or edited donor never turns broken samples into robust ones.
    """
    try:
        adv, rows = donor.attack_data(key, spec.name)
    except Exception as exc:   # a damaged file is a reason to recompute, never a crash of the run
        return f"its adversarials file cannot be read ({type(exc).__name__}: {exc})"
    if adv is None:
        return "it has no adversarials file for this attack"
    if any(int(s) not in rows for s in samples):
        return "its store lacks rows of this shard"
    where = {int(s): i for i, s in enumerate(adv["sample"])}
    if any(int(s) not in where for s in samples):
        return "its adversarials file lacks samples of this shard"
    idx = np.array([where[int(s)] for s in samples])
    stored = np.array([rows[int(s)].distance for s in samples])
    stored_pred = np.array([rows[int(s)].pred for s in samples])
    cand = adv["x_adv"][idx]
    in_file = np.isfinite(cand.reshape(len(cand), -1)).all(axis=1)
    file_dist = np.asarray(adv["distance"])[idx] if "distance" in adv else stored
    # Verified as execution verifies: the clean-correct samples in one batch (a model's logits can differ in
    # the last bit with the batch size, enough to move a point that a boundary attack left on the boundary);
    # a clean misclassification is stored as the clean image at distance 0.
    correct = clean == ys
    got = verify(model, xs[correct], ys[correct], cand[correct], spec.norm)
    distance = np.where(correct, np.inf, 0.0)
    distance[correct] = got.distance
    pred = clean.copy()
    pred[correct] = np.where(np.isfinite(got.distance), got.pred, clean[correct])
    checks = (
        (np.array_equal(np.isfinite(stored), np.isfinite(file_dist))
         and np.allclose(stored[np.isfinite(stored)], file_dist[np.isfinite(stored)], rtol=0, atol=0),
         "its store and its adversarials file give different distances"),
        (np.array_equal(np.isfinite(stored[correct]), in_file[correct]),
         "its rows say 'none found' where its file holds an adversarial, or the reverse"),
        (np.array_equal(np.isfinite(distance), np.isfinite(stored)),
         "its stored adversarials do not verify again where its rows say they do"),
        (np.allclose(distance[np.isfinite(stored)], stored[np.isfinite(stored)], rtol=1e-5, atol=1e-6),
         "its stored distances do not reproduce"),
        (np.array_equal(pred, stored_pred), "its stored labels are not the model's on these images"),
    )
    for ok, why in checks:
        if not ok:
            return why
    x_adv = np.full(xs.shape, np.nan, np.float32)
    x_adv[~correct] = xs[~correct]
    x_adv[correct] = got.x_adv
    seconds = float(sum(rows[int(s)].seconds for s in samples))
    arrays = dict(sample=samples, distance=stored, pred=pred, x_adv=x_adv)
    out = [ResultRow(key, spec.name, int(s), float(d), int(p), rows[int(s)].seconds)
           for s, d, p in zip(samples, stored, pred)]
    return arrays, out, seconds
