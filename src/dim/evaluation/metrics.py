"""Metrics of the paper (section 4, Table 1), computed from stored distances.

Per attack: accuracy at the norm's threshold = fraction of samples whose smallest
adversarial distance is above it. Per norm ("All Lp attacks"): per sample, the
minimum over all attacks of that norm; its median and the accuracy at the
threshold. "Minimal accuracy": the lowest per-attack accuracy over all attacks.
A distance is 0 for a misclassified clean sample and inf where the attack found
nothing, so accuracies include clean errors, as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..store import Store
from .norms import Norm


def accuracy_at(dist: np.ndarray, eps: float) -> float:
    """Fraction of samples robust at ``eps`` (distance strictly larger than ``eps``)."""
    dist = np.asarray(dist, dtype=np.float64)
    return float(np.mean(dist > eps)) if dist.size else float("nan")


def worst_case(table: np.ndarray) -> np.ndarray:
    """Per-sample minimum over attacks (rows); NaN entries (no result) are ignored."""
    table = np.atleast_2d(np.asarray(table, dtype=np.float64))
    with np.errstate(all="ignore"):
        return np.fmin.reduce(table, axis=0)


def median_distance(dist: np.ndarray) -> float:
    dist = np.asarray(dist, dtype=np.float64)
    dist = dist[~np.isnan(dist)]
    return float(np.median(dist)) if dist.size else float("nan")


def accuracy_curve(dist: np.ndarray, eps: np.ndarray) -> np.ndarray:
    dist = np.asarray(dist, dtype=np.float64)
    return np.array([accuracy_at(dist, e) for e in eps])


@dataclass
class AttackResult:
    attack: str
    norm: Norm
    accuracy: float
    median: float
    complete: bool          # every sample has a row
    failed_shards: int
    seconds: float


@dataclass
class NormResult:
    norm: Norm
    accuracy: float
    median: float
    attacks: list[str]
    distances: np.ndarray = field(repr=False)


@dataclass
class ModelResult:
    model: str
    name: str
    paper_name: str
    clean_accuracy: float
    n: int
    attacks: dict[str, AttackResult]
    norms: dict[Norm, NormResult]
    minimal_accuracy: float
    minimal_attack: str | None


def compute(store: Store, attacks: list[str] | None = None) -> list[ModelResult]:
    """Metrics for every model in the store (optionally over a subset of attacks)."""
    specs = [a for a in store.attacks() if attacks is None or a["attack"] in attacks]
    failed: dict[tuple[str, str], int] = {}
    for sh in store.shards():
        if sh["status"] == "failed":
            failed[(sh["model"], sh["attack"])] = failed.get((sh["model"], sh["attack"]), 0) + 1
    seconds = store.attack_seconds()
    out = []
    for m in store.models():
        labels, clean = store.samples(m["model"])
        n = len(labels)
        per_attack: dict[str, AttackResult] = {}
        tables: dict[Norm, list[np.ndarray]] = {nm: [] for nm in Norm}
        names: dict[Norm, list[str]] = {nm: [] for nm in Norm}
        for a in specs:
            norm = Norm(a["norm"])
            d = store.distances(m["model"], a["attack"], n)
            have = ~np.isnan(d)
            if not have.any():
                if failed.get((m["model"], a["attack"])):
                    per_attack[a["attack"]] = AttackResult(a["attack"], norm, float("nan"), float("nan"), False,
                                                           failed[(m["model"], a["attack"])], 0.0)
                continue
            per_attack[a["attack"]] = AttackResult(
                a["attack"], norm, accuracy_at(d[have], norm.threshold), median_distance(d[have]), bool(have.all()),
                failed.get((m["model"], a["attack"]), 0), seconds.get((m["model"], a["attack"]), 0.0))
            tables[norm].append(d)
            names[norm].append(a["attack"])
        norms = {}
        for nm in Norm:
            if tables[nm]:
                wc = worst_case(np.stack(tables[nm]))
                norms[nm] = NormResult(nm, accuracy_at(wc[~np.isnan(wc)], nm.threshold), median_distance(wc),
                                       names[nm], wc)
        finite = {k: v for k, v in per_attack.items() if not np.isnan(v.accuracy)}
        worst = min(finite.values(), key=lambda r: r.accuracy) if finite else None
        out.append(ModelResult(m["model"], m["name"], m["paper_name"], float(np.mean(labels == clean)), n,
                               per_attack, norms, worst.accuracy if worst else float("nan"),
                               worst.attack if worst else None))
    return out
