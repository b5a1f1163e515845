"""The JSON renderers: ``metrics.json`` and one card per model, pure functions of the report's view."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from ..evaluation import metrics
from ..core.norms import Norm
from ..fileio import atomic_write_text
from ..names import file_name
from ..provenance import commits_of, devices_of
from .view import ReportView


def _clean(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def _number(v: float) -> float | None:
    """A float as strict JSON: None (null) where it is NaN (no value) or infinite (a median distance of
    infinity: no adversarial found for at least half the samples)."""
    return v if math.isfinite(v) else None


def _protocol_json(r: metrics.ModelResult, incl_adaptive: bool) -> dict:
    norms = r.norms_all if incl_adaptive else r.norms
    minimal = r.minimal_accuracy_all if incl_adaptive else r.minimal_accuracy
    return {"per_norm": {n.value: {"accuracy": nr.accuracy, "interval_95": _interval_json(nr.interval),
                                   "median_distance": _number(nr.median), "threshold": r.threat.threshold(n),
                                   "attacks": nr.attacks} for n, nr in norms.items()},
            "union": union_json(r.union_all if incl_adaptive else r.union, strict=True),
            "minimal_accuracy": _number(minimal),
            "minimal_interval_95": _interval_json(r.minimal_interval(incl_adaptive)),
            "minimal_attack": r.minimal_attack_all if incl_adaptive else r.minimal_attack}


def metrics_json(results: list[metrics.ModelResult]) -> list[dict]:
    """One entry per model, for scripts: ``robust`` first (every attack of the run, adaptive ones included: the
    numbers to quote), then ``paper_protocol`` (the paper's attacks only), then each attack. Strict JSON: a value
    that does not exist (an attack that did not apply) or is infinite (a median distance where no adversarial was
    found for half the samples) is null."""
    return [{"model": r.model, "name": r.name, "paper_name": r.paper_name, "n": r.n,
             "clean_accuracy": r.clean_accuracy, "clean_interval_95": _interval_json(r.clean_interval),
             "robust": {"protocol": "every attack of the run, adaptive ones included (the numbers to quote)",
                        **_protocol_json(r, True)},
             "paper_protocol": {"protocol": "the paper's attacks only", **_protocol_json(r, False)},
             "attacks": {a.attack: {"norm": a.norm.value, "accuracy": _number(a.accuracy),
                                    "interval_95": _interval_json(a.interval), "median_distance": _number(a.median),
                                    "adaptive": a.adaptive, "not_applicable": a.not_applicable,
                                    "complete": a.complete, "failed_shards": a.failed_shards,
                                    "seconds": a.seconds} for a in r.attacks.values()}}
            for r in results]


def _interval_json(interval: tuple[float, float]) -> list | None:
    return None if any(math.isnan(v) for v in interval) else [round(v, 4) for v in interval]


def union_json(u: metrics.UnionResult | None, strict: bool = False) -> dict | None:
    """The union accuracy (robust in every norm at once) as a card stores it (``strict``: as metrics.json does)."""
    if u is None:
        return None
    return {"accuracy": _number(u.accuracy) if strict else _clean(u.accuracy), "interval_95": _interval_json(u.interval),
            "n": u.n, "norms": [n.value for n in u.norms], **({"broken_by": u.broken_by} if u.broken_by else {})}


def _norm_json(norms: dict[Norm, metrics.NormResult], threat) -> dict:
    return {n.value: {"accuracy": nr.accuracy, "interval_95": _interval_json(nr.interval), "n": nr.n,
                      "median_distance": _clean(nr.median), "threshold": threat.threshold(n),
                      "attacks": nr.attacks} for n, nr in norms.items()}


def content_sha256(card: dict) -> str:
    """The SHA-256 of a card's content (everything but this hash and the fields a reader adds, which start with
    ``_``), in canonical JSON: ``dim compare`` flags a card whose numbers were changed after it was written."""
    body = {k: v for k, v in card.items() if k != "content_sha256" and not k.startswith("_")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_cards(view: ReportView, target: Path, within: Path | None = None) -> list[Path]:
    """One JSON card per model: what was run on it, the numbers to quote, and the checks."""
    results, outcomes, cfg, prov, models = view.results, view.outcomes, view.config, view.provenance, view.models
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in results:
        m = models[r.model]
        card = {
            "model": r.model, "name": r.name, "paper_name": r.paper_name, "card_sha256": m["card_sha256"],
            "model_card": {k: m["card"].get(k) for k in ("config", "train_seconds", "clean_accuracy", "test_samples",
                                                         "recipe", "factory", "weights_from", "device")
                           if k in m["card"]},
            "evaluation": {"suite": cfg.get("suite"), "n": r.n, "seed": cfg.get("seed"),
                           "dataset": cfg.get("dataset", "mnist"), "data_sha256": cfg.get("data_sha256"),
                           "git_commit": prov.get("git_commit"), "git_commits": commits_of(prov),
                           "donor_git_commits": prov.get("donor_commits") or {},
                           "packages": prov.get("packages"),
                           "devices": devices_of(prov),
                           **({"images": cfg["images"]} if cfg.get("images") else {})},   # not the first n
            "clean_accuracy": r.clean_accuracy, "clean_interval_95": _interval_json(r.clean_interval),
            "interval": "95% Wilson score interval of each accuracy on its n samples (sampling error only)",
            "paper_protocol": {"per_norm": _norm_json(r.norms, r.threat), "minimal_accuracy": _clean(r.minimal_accuracy),
                               "minimal_interval_95": _interval_json(r.minimal_interval(False)),
                               "minimal_attack": r.minimal_attack, "union": union_json(r.union)},
            "incl_adaptive": {"per_norm": _norm_json(r.norms_all, r.threat),
                              "minimal_accuracy": _clean(r.minimal_accuracy_all),
                              "minimal_interval_95": _interval_json(r.minimal_interval(True)),
                              "minimal_attack": r.minimal_attack_all, "union": union_json(r.union_all)},
            "attacks": {a.attack: {"norm": a.norm.value, "accuracy": _clean(a.accuracy),
                                   "interval_95": _interval_json(a.interval), "adaptive": a.adaptive,
                                   "black_box": a.black_box, "not_applicable": a.not_applicable,
                                   "complete": a.complete, "seconds": round(a.seconds, 2)}
                        for a in r.attacks.values()},
            "checks": {k: o.as_dict() for k, o in outcomes[r.model].items()},
        }
        card["content_sha256"] = content_sha256(card)
        path = target / f"{file_name(r.model)}.json"
        atomic_write_text(path, json.dumps(card, indent=2, sort_keys=True) + "\n", within=within)
        paths.append(path)
    return paths
