"""Metrics of the paper (section 4, Table 1), computed from stored distances.

Per attack: accuracy at the norm's threshold = fraction of samples whose smallest
adversarial distance is above it. Per norm ("All Lp attacks"): per sample, the
minimum over all attacks of that norm; its median and the accuracy at the
threshold. "Minimal accuracy": the lowest per-attack accuracy over all attacks.
"Union accuracy" (beyond the paper): per sample, robust only if no attack of *any*
norm found an adversarial within that norm's threshold; never above the lowest
per-norm worst case, and lower wherever the norms break different samples. The
minimal accuracy is a minimum over single attacks, a different and weaker number.
A distance is 0 for a misclassified clean sample and inf where the attack found
nothing, so accuracies include clean errors, as in the paper.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..store import Store
from ..attacks.spec import is_black_box, is_ensemble
from ..core.norms import Norm, ThreatModel


# Attacks that project onto the eps-ball in float32 land up to a few ulps outside it (an L-inf
# perturbation of 0.3 measures 0.30000004 in float64). Such a sample is broken *at* eps.
RELATIVE_TOLERANCE = 1e-5


def robust_at(dist: np.ndarray, eps) -> np.ndarray:
    """Per sample, robust at ``eps`` (a number, or one per row of ``dist``): distance larger than ``eps`` beyond
    float32 rounding."""
    return np.asarray(dist, dtype=np.float64) > np.asarray(eps, dtype=np.float64) * (1 + RELATIVE_TOLERANCE)


def accuracy_at(dist: np.ndarray, eps: float) -> float:
    """Fraction of samples robust at ``eps``."""
    return float(np.mean(robust_at(dist, eps))) if np.size(dist) else float("nan")


Z95 = 1.959963984540054     # two-sided 95% quantile of the standard normal


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default).

    Chosen over the normal approximation because it stays inside [0, 1] and keeps its
    coverage at 0% and 100%, which is where robust accuracies often sit (an attack that
    breaks everything, a binarized model that nothing breaks). ``(nan, nan)`` for n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (0.0 if successes <= 0 else max(0.0, centre - half)), (1.0 if successes >= n else min(1.0, centre + half))


def accuracy_interval(accuracy: float, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of an accuracy measured on ``n`` samples."""
    if n <= 0 or math.isnan(accuracy):
        return float("nan"), float("nan")
    return wilson_interval(round(accuracy * n), n)


def overlap(a: tuple[float, int], b: tuple[float, int]) -> bool:
    """Whether two accuracies (each with its sample count) lie within each other's 95% intervals:
    then the data cannot tell them apart."""
    lo_a, hi_a = accuracy_interval(*a)
    lo_b, hi_b = accuracy_interval(*b)
    return lo_b <= a[0] <= hi_b and lo_a <= b[0] <= hi_a


@dataclass(frozen=True)
class PairedDifference:
    """Two models (A, B) measured on the same samples: accuracy of A minus that of B, with what pairing tells.

    Unpaired intervals of two accuracies overlap long before the data stop telling the models apart: most
    samples are robust (or broken) under both, and only the discordant ones, robust under one model alone
    (``only_a``, ``only_b``), carry the difference. ``interval`` is Newcombe's hybrid score interval for
    paired proportions (1998, method 10: each accuracy's Wilson interval, combined through the correlation of
    the paired outcomes); ``p_value`` the exact McNemar test (two-sided binomial test of ``only_a`` among the
    discordant samples at 1/2)."""
    accuracy_a: float
    accuracy_b: float
    n: int
    only_a: int
    only_b: int
    difference: float
    interval: tuple[float, float]
    p_value: float


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the probability, if either model were as likely as the other to hold a
    discordant sample, of a split at least as uneven as ``only_a`` : ``only_b`` (exact integer arithmetic)."""
    m = only_a + only_b
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, k) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2 ** m)


def paired_difference(robust_a: np.ndarray, robust_b: np.ndarray, z: float = Z95) -> PairedDifference:
    """:class:`PairedDifference` of two per-sample outcomes (booleans, the same samples in the same order)."""
    ra, rb = np.asarray(robust_a, dtype=bool), np.asarray(robust_b, dtype=bool)
    if ra.shape != rb.shape or ra.ndim != 1:
        raise ValueError(f"paired outcomes must be two vectors of the same samples, got shapes {ra.shape} and "
                         f"{rb.shape}")
    n = int(ra.size)
    if n == 0:
        raise ValueError("paired outcomes of no sample")
    both, only_a = int((ra & rb).sum()), int((ra & ~rb).sum())
    only_b, neither = int((~ra & rb).sum()), int((~ra & ~rb).sum())
    pa, pb = (both + only_a) / n, (both + only_b) / n
    la, ua = wilson_interval(both + only_a, n, z)
    lb, ub = wilson_interval(both + only_b, n, z)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins else 0.0
    diff = pa - pb
    below = math.sqrt(max((pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2, 0.0))
    above = math.sqrt(max((ua - pa) ** 2 - 2 * phi * (ua - pa) * (pb - lb) + (pb - lb) ** 2, 0.0))
    return PairedDifference(pa, pb, n, only_a, only_b, diff, (max(-1.0, diff - below), min(1.0, diff + above)),
                            mcnemar_exact(only_a, only_b))


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
    adaptive: bool = False  # beyond the paper's protocol (the adaptive suite)
    black_box: bool = False  # uses no gradient of the model
    ensemble: bool = False   # white-box and black-box attacks together (AutoAttack)
    refines: str | None = None  # the attack this one repeats with more steps/restarts
    not_applicable: bool = False  # every shard skipped (e.g. BPDA on a model without binarization)
    n: int = 0                    # samples with a result (what the accuracy is measured on)

    @property
    def interval(self) -> tuple[float, float]:
        return accuracy_interval(self.accuracy, self.n)


@dataclass
class NormResult:
    norm: Norm
    accuracy: float
    median: float
    attacks: list[str]
    distances: np.ndarray = field(repr=False)

    @property
    def n(self) -> int:
        """Samples with a result from at least one of the attacks."""
        return int(np.count_nonzero(~np.isnan(self.distances)))

    @property
    def interval(self) -> tuple[float, float]:
        return accuracy_interval(self.accuracy, self.n)


ROBUST, CLEAN_ERROR = "robust", "clean error"


@dataclass
class UnionResult:
    """Robust in every norm at once: per sample, the worst case of each norm above its threshold.

    Counted over the samples that have a result in every norm of ``norms`` (``n``). ``broken_by`` says why the
    others are not: per sample, the set of norms whose worst case lies within the threshold (``"L0+L1"``), or
    ``"robust"``, or ``"clean error"`` for a sample misclassified before any attack; the counts add up to ``n``.
    Where most samples fall to several norms, the union is set by how close the samples lie to the decision
    boundary, not by one norm that training neglected."""
    accuracy: float
    n: int
    norms: list[Norm]
    broken_by: dict[str, int] = field(default_factory=dict)

    @property
    def interval(self) -> tuple[float, float]:
        return accuracy_interval(self.accuracy, self.n)


def broken_by(broken: np.ndarray, norms: list[Norm], clean_correct: np.ndarray | None = None) -> dict[str, int]:
    """``broken`` (norms, samples) booleans -> samples per set of norms that broke them (module's
    :class:`UnionResult`), the most frequent first."""
    keys = ["+".join(nm.value for nm, b in zip(norms, col) if b) or ROBUST for col in broken.T]
    if clean_correct is not None:
        keys = [k if ok else CLEAN_ERROR for k, ok in zip(keys, clean_correct)]
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return most_frequent_first(counts)


def most_frequent_first(counts: dict[str, int]) -> dict[str, int]:
    """``counts`` ordered by count, the largest first (ties by name)."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def robust_per_sample(norms: dict[Norm, NormResult], threat: ThreatModel) -> tuple[np.ndarray, np.ndarray]:
    """Which samples have a result in every norm of ``norms`` (``have``, per sample), and for those, whether each
    norm's worst case lies above its threshold ((norms, have.sum()) booleans, rows in the order of ``norms``)."""
    table = np.stack([nr.distances for nr in norms.values()])                   # (norms, samples)
    have = ~np.isnan(table).any(axis=0)
    eps = np.array([threat.threshold(nm) for nm in norms])[:, None]
    return have, robust_at(table[:, have], eps)


def union_accuracy(norms: dict[Norm, NormResult], threat: ThreatModel,
                   clean_correct: np.ndarray | None = None) -> UnionResult | None:
    """The union accuracy over every norm in ``norms`` (None when there is none); ``clean_correct`` (per sample)
    lets :attr:`UnionResult.broken_by` tell clean errors apart from samples every norm broke."""
    if not norms:
        return None
    have, robust_per_norm = robust_per_sample(norms, threat)
    robust = robust_per_norm.all(axis=0)
    acc = float(robust.mean()) if robust.size else float("nan")
    return UnionResult(acc, int(have.sum()), list(norms),
                       broken_by(~robust_per_norm, list(norms), None if clean_correct is None else clean_correct[have]))


@dataclass
class ModelResult:
    model: str
    name: str
    paper_name: str
    clean_accuracy: float
    n: int
    attacks: dict[str, AttackResult]
    norms: dict[Norm, NormResult]            # the paper's protocol: its attacks only ("All Lp attacks")
    minimal_accuracy: float
    minimal_attack: str | None
    norms_all: dict[Norm, NormResult] = field(default_factory=dict)   # incl. adaptive attacks
    minimal_accuracy_all: float = float("nan")
    minimal_attack_all: str | None = None
    distances: dict[str, np.ndarray] = field(default_factory=dict, repr=False)   # per attack, per sample
    threat: ThreatModel = field(default_factory=ThreatModel.paper)               # the run's thresholds
    union: UnionResult | None = None          # robust in every norm at once, the paper's protocol
    union_all: UnionResult | None = None      # the same, incl. adaptive attacks

    @property
    def clean_interval(self) -> tuple[float, float]:
        return accuracy_interval(self.clean_accuracy, self.n)

    def minimal_interval(self, incl_adaptive: bool) -> tuple[float, float]:
        """The 95% interval of the minimal accuracy (that of the attack that reached it)."""
        attack = self.minimal_attack_all if incl_adaptive else self.minimal_attack
        return self.attacks[attack].interval if attack in self.attacks else (float("nan"), float("nan"))

    @property
    def has_adaptive(self) -> bool:
        return any(a.adaptive for a in self.attacks.values())


def norm_results(per_attack: dict[str, AttackResult], dists: dict[str, np.ndarray],
                 keep=lambda a: True, threat: ThreatModel | None = None) -> dict[Norm, NormResult]:
    """Per norm, the per-sample worst case over the attacks ``keep`` selects, at ``threat``'s thresholds."""
    threat = threat or ThreatModel.paper()
    out = {}
    for nm in Norm:
        names = [k for k, a in per_attack.items() if a.norm is nm and keep(a) and k in dists]
        if names:
            wc = worst_case(np.stack([dists[k] for k in names]))
            out[nm] = NormResult(nm, accuracy_at(wc[~np.isnan(wc)], threat.threshold(nm)), median_distance(wc), names,
                                 wc)
    return out


def minimal(per_attack: dict[str, AttackResult], keep=lambda a: True) -> tuple[float, str | None]:
    finite = [a for a in per_attack.values() if keep(a) and not np.isnan(a.accuracy)]
    if not finite:
        return float("nan"), None
    worst = min(finite, key=lambda r: r.accuracy)
    return worst.accuracy, worst.attack


def run_threat_model(store: Store) -> ThreatModel:
    """The thresholds a run is measured at: its config's ``threat_model``, else the paper's."""
    return ThreatModel.from_dict((store.get_meta("config") or {}).get("threat_model"))


def compute(store: Store, attacks: list[str] | None = None) -> list[ModelResult]:
    """Metrics for every model in the store (optionally over a subset of attacks)."""
    threat = run_threat_model(store)
    specs = [a for a in store.attacks() if attacks is None or a["attack"] in attacks]
    failed: dict[tuple[str, str], int] = {}
    skipped: set[tuple[str, str]] = set()
    for sh in store.shards():
        if sh["status"] == "failed":
            failed[(sh["model"], sh["attack"])] = failed.get((sh["model"], sh["attack"]), 0) + 1
        elif sh["status"] == "skipped":
            skipped.add((sh["model"], sh["attack"]))
    seconds = store.attack_seconds()
    out = []
    for m in store.models():
        labels, clean = store.samples(m["model"])
        n = len(labels)
        per_attack: dict[str, AttackResult] = {}
        dists: dict[str, np.ndarray] = {}
        for a in specs:
            norm = Norm(a["norm"])
            flags = {"adaptive": bool(a["spec"].get("adaptive", False)),
                     "black_box": is_black_box(a["spec"].get("attack", "")),
                     "ensemble": is_ensemble(a["spec"].get("attack", "")), "refines": a["spec"].get("refines")}
            d = store.distances(m["model"], a["attack"], n)
            have = ~np.isnan(d)
            if not have.any():
                if (m["model"], a["attack"]) in skipped:
                    per_attack[a["attack"]] = AttackResult(a["attack"], norm, float("nan"), float("nan"), True, 0,
                                                           0.0, not_applicable=True, **flags)
                elif failed.get((m["model"], a["attack"])):
                    per_attack[a["attack"]] = AttackResult(a["attack"], norm, float("nan"), float("nan"), False,
                                                           failed[(m["model"], a["attack"])], 0.0, **flags)
                continue
            per_attack[a["attack"]] = AttackResult(
                a["attack"], norm, accuracy_at(d[have], threat.threshold(norm)), median_distance(d[have]),
                bool(have.all()),
                failed.get((m["model"], a["attack"]), 0), seconds.get((m["model"], a["attack"]), 0.0), **flags,
                n=int(have.sum()))
            dists[a["attack"]] = d
        paper_protocol = lambda a: not a.adaptive  # noqa: E731
        min_acc, min_attack = minimal(per_attack, paper_protocol)
        min_all, min_all_attack = minimal(per_attack)
        norms_paper = norm_results(per_attack, dists, paper_protocol, threat)
        norms_all = norm_results(per_attack, dists, threat=threat)
        correct = labels == clean
        out.append(ModelResult(m["model"], m["name"], m["paper_name"], float(np.mean(correct)), n,
                               per_attack, norms_paper, min_acc, min_attack, norms_all, min_all, min_all_attack,
                               dists, threat, union_accuracy(norms_paper, threat, correct),
                               union_accuracy(norms_all, threat, correct)))
    return out
