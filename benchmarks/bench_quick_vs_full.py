"""How far the `quick` preset's worst case lies from the full adaptive worst case.

    python benchmarks/bench_quick_vs_full.py QUICK_RUN FULL_RUN [--models bicnn bidim] [--norms L2 Linf]

Both runs must hold the same models on the same images: the quick preset trains with the full recipes and
seed, so its bicnn/bidim are the models of the full run (checked: the cards' weights_sha256 are equal).
Per model and norm: the quick worst case (over the attacks of today's quick suite only), the full worst
case including the adaptive attacks, the gap in points, each with its 95% interval, and the full run's
attacks of that norm not yet done.
Writes ``results/quick_vs_full_n<N>.json``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common import write_result

from dim.attacks.suites import get_suite
from dim.evaluation import metrics
from dim.core.norms import Norm
from dim.evaluation.status import run_status
from dim.store import Store

TARGET_POINTS = 5.0


def _results(run: Path, attacks: list[str] | None = None
             ) -> tuple[dict[str, metrics.ModelResult], dict[str, str | None], dict[str, dict[str, str]]]:
    """Metrics per model, weights hash per model, and per model the attacks with shards not yet done (-> norm)."""
    store = Store.of_run(run, read_only=True)
    try:
        results = {r.model: r for r in metrics.compute(store, attacks)}
        weights = {m["model"]: m["card"].get("weights_sha256") or m.get("card_sha256") for m in store.models()}
        norms = {a["attack"]: a["norm"] for a in store.attacks()}
    finally:
        store.close()
    unfinished = {st.model: {a: norms[a] for a in (*st.pending_attacks, *st.failed_attacks)}
                  for st in run_status(run)}
    return results, weights, unfinished


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("quick_run", type=Path)
    ap.add_argument("full_run", type=Path)
    ap.add_argument("--models", nargs="+", default=["bicnn", "bidim"])
    ap.add_argument("--norms", nargs="+", default=["L2", "Linf"])
    ap.add_argument("--name", default=None, help="results file name (default quick_vs_full_n<N>)")
    args = ap.parse_args()
    quick, quick_cards, _ = _results(args.quick_run, [s.name for s in get_suite("quick")])
    full, full_cards, full_pending = _results(args.full_run)
    rows, n = {}, None
    for m in args.models:
        if m not in quick or m not in full:
            ap.error(f"model {m!r} is not in both runs (quick: {sorted(quick)}, full: {sorted(full)})")
        if quick_cards[m] != full_cards[m]:
            ap.error(f"model {m!r} differs between the runs (weights sha256 {quick_cards[m]} vs {full_cards[m]})")
        if quick[m].n != full[m].n:
            ap.error(f"model {m!r}: {quick[m].n} images in the quick run, {full[m].n} in the full run")
        n = quick[m].n
        for name in args.norms:
            norm = Norm(name)
            q, f = quick[m].norms_all.get(norm), full[m].norms_all.get(norm)
            if q is None or f is None:
                ap.error(f"{m} {name}: no attack of that norm in {'the quick' if q is None else 'the full'} run")
            missing = sorted(a for a, nm in full_pending[m].items() if nm == norm.value)
            rows.setdefault(m, {})[name] = {
                "quick": q.accuracy, "quick_interval_95": [round(v, 4) for v in q.interval],
                "quick_attacks": q.attacks,
                "full": f.accuracy, "full_interval_95": [round(v, 4) for v in f.interval],
                "gap_points": round(100 * (q.accuracy - f.accuracy), 2),
                "within_target": abs(q.accuracy - f.accuracy) * 100 <= TARGET_POINTS + 1e-9,
                "full_attacks_done": len(f.attacks), "full_attacks_pending": missing,
                "full_strongest": min(((a, full[m].attacks[a].accuracy) for a in f.attacks),
                                      key=lambda t: t[1])[0],
            }
    write_result(args.name or f"quick_vs_full_n{n}", {
        "quick_run": str(args.quick_run), "full_run": str(args.full_run), "n": n,
        "target_points": TARGET_POINTS, "per_model": rows,
        "all_within_target": all(v["within_target"] for r in rows.values() for v in r.values()),
        "full_complete_for_these_norms": all(not v["full_attacks_pending"] for r in rows.values()
                                             for v in r.values()),
    })


if __name__ == "__main__":
    main()
