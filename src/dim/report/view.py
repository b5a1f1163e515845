"""The report's view: plain data built once from a run's store and metrics; every renderer reads only this.

Markdown, CSV, LaTeX, JSON cards and the HTML page are pure functions of a
:class:`ReportView`; :func:`build_view` is the one place where the report reads the store
(and the run's files: clean inputs and adversarials for the gallery).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation import checks, metrics
from ..core.norms import Norm, ThreatModel
from ..names import md
from ..store import Store
from . import tables
from .paper import TABLE1_MODELS, TABLE2_MODELS


@dataclass
class ReportView:
    run_dir: Path
    results: list[metrics.ModelResult]
    outcomes: dict[str, dict[str, checks.Outcome]]
    config: dict[str, Any]
    provenance: dict[str, Any]
    attacks: list[dict[str, Any]]                 # the suite, in order: attack, norm, spec
    shards: list[dict[str, Any]]
    models: dict[str, dict[str, Any]]             # model key -> the store's model record (card, card_sha256)
    reused: dict[tuple[str, str, int], str]
    shard_devices: dict[str, int]
    outputs: dict[str, dict[str, Any]]            # model key -> the output check's notes
    binarized: dict[str, bool]                    # recorded at evaluation (older runs: from the registry)
    threat: ThreatModel
    missing: dict[str, list[tuple[str, Norm, str]]] = field(default_factory=dict)

    @property
    def paper_setting(self) -> bool:
        """MNIST at the paper's thresholds: only there do the paper's published numbers stand beside ours (a run
        that records no dataset predates the record and was on MNIST)."""
        return self.threat.is_paper and self.config.get("dataset", "mnist") == "mnist"


def build_view(store: Store, run_dir: Path, suite: str | None = None) -> ReportView:
    """The report's data. ``suite`` limits it to that suite's attacks, and the report then names that suite as
    its protocol: a run whose suite grew (an adaptive run to which the paper's attacks were added) can still
    report the protocol it finished while the rest runs."""
    attacks = store.attacks()
    config = store.get_meta("config", {})
    shards = store.shards()
    reused = store.reused_shards()
    names = None
    if suite is not None:
        from ..attacks.suites import get_suite
        names = [s.name for s in get_suite(suite)]
        attacks = [a for a in attacks if a["attack"] in names]
        if not attacks:
            raise ValueError(f"{run_dir}: no attack of the suite {suite!r} was run here")
        config, shards = {**config, "suite": suite}, [s for s in shards if s["attack"] in names]
        reused = {key: donor for key, donor in reused.items() if key[1] in names}
    devices = Counter(s["device"] for s in shards if s["status"] == "done")   # of the shards reported
    results = metrics.compute(store, names)
    models = {m["model"]: m for m in store.models()}
    return ReportView(
        run_dir=Path(run_dir), results=results,
        outcomes={r.model: checks.all_outcomes(r, store.get_meta(f"checks/{r.model}")) for r in results},
        config=config, provenance=store.get_meta("provenance", {}), attacks=attacks,
        shards=shards, models=models, reused=reused,
        shard_devices={d: devices[d] for d in sorted(devices, key=lambda d: (d is not None, d or ""))},
        outputs={r.model: store.get_meta(f"outputs/{r.model}") or {} for r in results},
        binarized={r.model: _binarized(store, r) for r in results},
        threat=metrics.run_threat_model(store), missing=incomplete_units(results, attacks))


def _binarized(store: Store, r: metrics.ModelResult) -> bool:
    flag = store.get_meta(f"binarized/{r.model}")
    if flag is not None:
        return bool(flag)
    from ..models import create_model, has_binarization, list_models   # a run stored before the flag was recorded
    return r.name in list_models() and has_binarization(create_model(r.name))


def incomplete_units(results: list[metrics.ModelResult], attacks: list[dict]) -> dict[str, list[tuple[str, Norm, str]]]:
    """Per model, the (attack, norm, why) units of the run's suite without a complete result."""
    suite = [(a["attack"], Norm(a["norm"])) for a in attacks]
    out: dict[str, list[tuple[str, Norm, str]]] = {}
    for r in results:
        for name, norm in suite:
            a = r.attacks.get(name)
            if a is not None and (a.complete or a.not_applicable):
                continue
            why = ("not started" if a is None else
                   f"{a.failed_shards} shard(s) failed" if a.failed_shards else "unfinished")
            out.setdefault(r.model, []).append((name, norm, why))
    return out


def quoted(r: metrics.ModelResult, n: Norm) -> metrics.NormResult | None:
    """The worst case of a norm to quote: including adaptive attacks where there are any."""
    return r.norms_all.get(n) or r.norms.get(n)


def indistinguishable(results: list[metrics.ModelResult]) -> list[str]:
    """Per norm, the pairs of models whose quoted worst cases lie within each other's 95% intervals."""
    lines = []
    for n in tables.NORM_ORDER:
        have = [(r, q) for r in results if (q := quoted(r, n)) is not None and q.n]
        pairs = [f"{md(a.model)} {tables.fmt_acc(x.accuracy)} / {md(b.model)} {tables.fmt_acc(y.accuracy)}"
                 for i, (a, x) in enumerate(have) for b, y in have[i + 1:]
                 if metrics.overlap((x.accuracy, x.n), (y.accuracy, y.n))]
        if pairs:
            lines.append(f"- {n.label}: " + "; ".join(pairs))
    return lines


def layouts(results: list[metrics.ModelResult]) -> list[str]:
    """The paper's table layouts this run fills: Table 2 once one of its ablations or two of its models are
    there; Table 1 unless every model is an ablation of Table 2 only (whose published numbers are all in
    Table 2: in Table 1 their paper columns would stay empty)."""
    labels = [r.paper_name for r in results]    # as tables.build picks its columns
    ablations = set(TABLE2_MODELS) - set(TABLE1_MODELS)
    table2 = any(label in ablations for label in labels) or sum(label in TABLE2_MODELS for label in labels) >= 2
    table1 = not table2 or any(label not in ablations for label in labels)
    return [layout for layout, wanted in (("table1", table1), ("table2", table2)) if wanted]


def selection_text(cfg: dict) -> str:
    """How a run's images were chosen, where they are not the first n: `` (images 100 to 299)``, else ``""``."""
    images = cfg.get("images") or {}
    if "random_subset_seed" in images:
        return f" (drawn at random, seed {images['random_subset_seed']})"
    if images.get("start"):
        start = int(images["start"])
        return f" (images {start} to {start + int(cfg.get('n', 0)) - 1})"
    return ""


def samples_text(cfg: dict) -> str:
    """``200 test samples of mnist`` (``training samples`` for a run on the training split), and how they were
    chosen where they are not the first ones."""
    split = "training" if (cfg.get("images") or {}).get("split") == "train" else "test"
    return f"{cfg.get('n')} {split} samples of {cfg.get('dataset', 'mnist')}{selection_text(cfg)}"
