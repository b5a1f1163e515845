"""Compare two models evaluated on the same test images, sample by sample: is one really more robust?

    python benchmarks/paired_union.py --a runs/new-200 runs/new-400 --b runs/old-200 runs/old-400 --label new_vs_old

Two accuracies measured on the same images are not independent: most images are robust (or broken) under both
models, and only the images robust under one model alone carry the difference between them. Their unpaired 95%
intervals therefore overlap long after the data already tell the models apart (or, just as often, suggest a
difference that pairing shows to be noise). This reads the runs' stores (``runs/<name>/results.sqlite``), where
each image's worst case per norm is kept, pairs the images of A and B, and reports per figure (clean, every
norm's worst case, the union of the norms, under ``--protocol``) both accuracies, how many images only A or only
B holds, the difference with Newcombe's paired interval and the exact McNemar p-value
(:func:`dim.evaluation.metrics.paired_difference`).

``--a`` and ``--b`` each take one or more runs of one model on disjoint ranges of images (``dim evaluate --start S
--n N``); each range of A must have a run of B on the same images (dataset, range and content hash of the images),
every run the same suite and thresholds, and every sample a result in every norm (a complete run). Writes
``results/paired_<label>.json``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS, write_result

from dim.evaluation.metrics import ModelResult, PairedDifference, compute, paired_difference, robust_per_sample
from dim.report.view import incomplete_units
from dim.store import Store, StoreError

PROTOCOLS = {"incl_adaptive": "norms_all", "paper_protocol": "norms"}   # ModelResult's worst cases of each
SAME = ("dataset", "suite", "threat_model", "seed")     # run settings the two sides must share


class PairingError(ValueError):
    """Runs that cannot be compared sample by sample."""


@dataclass
class Run:
    """One run's config and, for the model compared, its metrics, labels, clean predictions and weights' hash."""
    path: Path
    config: dict[str, Any]
    result: ModelResult
    labels: np.ndarray
    clean_pred: np.ndarray
    card_sha256: str | None


def read_run(run: Path, model: str | None) -> Run:
    """The run's config and the metrics of its model ``model`` (the only one, when None)."""
    if not (run / "results.sqlite").is_file():
        raise PairingError(f"{run}: no results.sqlite (not a run directory of `dim evaluate`)")
    store = Store.of_run(run, read_only=True)
    try:
        config = store.get_meta("config") or {}
        results = compute(store)
        names = [r.model for r in results]
        if model is None and len(results) != 1:
            raise PairingError(f"{run}: holds {len(results)} models ({', '.join(names)}); name one with "
                               f"--model-a/--model-b")
        chosen = [r for r in results if model is None or r.model == model]
        if not chosen:
            raise PairingError(f"{run}: no model {model!r} (it holds {', '.join(names)})")
        missing = incomplete_units(chosen, store.attacks()).get(chosen[0].model)
        if missing:
            listed = ", ".join(f"{name} ({why})" for name, _, why in missing[:4])
            raise PairingError(f"{run}: {len(missing)} attack(s) of its suite without a complete result on "
                               f"{chosen[0].model}: {listed}{', ...' if len(missing) > 4 else ''} (finish the run "
                               f"first: `dim evaluate` it again)")
        labels, clean = store.samples(chosen[0].model)
        card = {m["model"]: m["card_sha256"] for m in store.models()}[chosen[0].model]
    finally:
        store.close()
    return Run(run, config, chosen[0], labels, clean, card)


def images_key(config: dict[str, Any], run: Path) -> tuple[str, int, int, str]:
    """What identifies a run's images: dataset, first index, count and their content hash."""
    images = config.get("images") or {}
    if "random_subset_seed" in images:
        raise PairingError(f"{run}: a random subset of images; pair runs over ranges (dim evaluate --start/--n)")
    try:
        return config["dataset"], int(images.get("start", 0)), int(config["n"]), config["data_sha256"]
    except KeyError as e:
        raise PairingError(f"{run}: its config lacks {e} (a run of an older dim?)") from None


def outcomes(run: Run, protocol: str) -> dict[str, np.ndarray]:
    """Per figure (``clean``, each norm, ``union``), whether each sample is correct / robust."""
    norms = getattr(run.result, PROTOCOLS[protocol])
    if not norms:
        raise PairingError(f"{run.path}: model {run.result.model} has no worst case under {protocol}")
    _, per_norm = robust_per_sample(norms, run.result.threat)    # a complete run has every sample in every norm
    out = {"clean": run.labels == run.clean_pred}
    for nm, row in zip(norms, per_norm):
        out[nm.value] = row
    out["union"] = per_norm.all(axis=0)
    return out


def as_json(d: PairedDifference) -> dict[str, Any]:
    r = lambda v: round(v, 4)  # noqa: E731
    return {"accuracy_a": r(d.accuracy_a), "accuracy_b": r(d.accuracy_b), "n": d.n, "only_a": d.only_a,
            "only_b": d.only_b, "difference": r(d.difference), "interval_95": [r(d.interval[0]), r(d.interval[1])],
            "p_value": float(f"{d.p_value:.4g}")}


def pair(runs_a: list[Path], runs_b: list[Path], protocol: str = "incl_adaptive", model_a: str | None = None,
         model_b: str | None = None) -> dict[str, Any]:
    """The paired comparison of model A's runs with model B's (module docstring)."""
    sides = {"a": [read_run(p, model_a) for p in runs_a], "b": [read_run(p, model_b) for p in runs_b]}
    first = sides["a"][0]
    by_images: dict[str, dict[tuple, Run]] = {}
    for name, runs in sides.items():
        for run in runs:
            for field in SAME:
                if run.config.get(field) != first.config.get(field):
                    raise PairingError(f"{run.path}: {field} {run.config.get(field)!r} differs from "
                                       f"{first.config.get(field)!r} in {first.path}")
            if run.card_sha256 != runs[0].card_sha256:
                raise PairingError(f"{run.path}: another model than in {runs[0].path} (weights card "
                                   f"{str(run.card_sha256)[:12]}, not {str(runs[0].card_sha256)[:12]})")
        by_images[name] = {}
        for run in runs:
            key = images_key(run.config, run.path)
            if key in by_images[name]:
                raise PairingError(f"{run.path}: the same images as {by_images[name][key].path} (each range once)")
            by_images[name][key] = run
        spans = sorted((k[1], k[1] + k[2], r.path) for k, r in by_images[name].items())
        for (_, end, p0), (start, _, p1) in zip(spans, spans[1:]):
            if start < end:
                raise PairingError(f"{p1}: its images overlap those of {p0}")
    unmatched = set(by_images["a"]) ^ set(by_images["b"])
    if unmatched:
        where = sorted(str((by_images["a"].get(k) or by_images["b"][k]).path) for k in unmatched)
        raise PairingError(f"no run of the other model on the same images for: {', '.join(where)}")
    ranges, joined_a, joined_b = [], {}, {}
    for key in sorted(by_images["a"], key=lambda k: k[1]):
        ra, rb = by_images["a"][key], by_images["b"][key]      # the content hash covers images and labels
        oa, ob = outcomes(ra, protocol), outcomes(rb, protocol)
        if set(oa) != set(ob):
            raise PairingError(f"{ra.path} and {rb.path}: worst cases in different norms ({sorted(oa)} / "
                               f"{sorted(ob)})")
        ranges.append({"images": [key[1], key[1] + key[2] - 1], "n": key[2], "data_sha256": key[3],
                       "run_a": str(ra.path), "run_b": str(rb.path),
                       "union": as_json(paired_difference(oa["union"], ob["union"]))})
        for k in oa:
            joined_a.setdefault(k, []).append(oa[k])
            joined_b.setdefault(k, []).append(ob[k])
    figures = {k: as_json(paired_difference(np.concatenate(joined_a[k]), np.concatenate(joined_b[k])))
               for k in joined_a}
    return {"protocol": protocol, "dataset": first.config.get("dataset"), "suite": first.config.get("suite"),
            "threat_model": first.config.get("threat_model"),
            "a": {"model": first.result.model, "card_sha256": first.card_sha256, "runs": [str(p) for p in runs_a]},
            "b": {"model": sides["b"][0].result.model, "card_sha256": sides["b"][0].card_sha256,
                  "runs": [str(p) for p in runs_b]},
            "n": sum(r["n"] for r in ranges), "ranges": ranges, "figures": figures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", nargs="+", type=Path, required=True, help="runs of model A (disjoint image ranges)")
    ap.add_argument("--b", nargs="+", type=Path, required=True, help="runs of model B on the same images")
    ap.add_argument("--model-a", help="A's model in its runs, where a run holds several")
    ap.add_argument("--model-b", help="B's model in its runs, where a run holds several")
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="incl_adaptive",
                    help="worst cases over every attack (default) or the paper's attacks only")
    ap.add_argument("--label", required=True, help="results file: paired_<label>.json")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the results file")
    args = ap.parse_args()
    try:
        result = pair(args.a, args.b, args.protocol, args.model_a, args.model_b)
    except (PairingError, StoreError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    write_result(f"paired_{args.label}", result, results=args.results, echo=False)
    print(f"{'figure':<8} {'A':>7} {'B':>7} {'only A':>7} {'only B':>7} {'A - B':>7}  95% interval     p")
    for k, f in result["figures"].items():
        lo, hi = f["interval_95"]
        print(f"{k:<8} {f['accuracy_a']:>7.1%} {f['accuracy_b']:>7.1%} {f['only_a']:>7} {f['only_b']:>7} "
              f"{f['difference']:>+7.1%}  [{lo:+.1%}, {hi:+.1%}]  {f['p_value']:.3g}")


if __name__ == "__main__":
    main()
