"""``dim report RUN_DIR``: tables, curves and a summary page, all rendered from the store."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..evaluation import metrics
from ..fileio import atomic_write_text
from ..evaluation.norms import Norm
from ..store import Store
from . import tables
from .paper import TABLES


def suite_markdown(store: Store) -> str:
    cfg = store.get_meta("config", {})
    lines = [f"## Attack suite `{cfg.get('suite', '?')}` ({len(store.attacks())} attacks)", "",
             "| # | attack | norm | foolbox class / adapter | parameters |", "|---|---|---|---|---|"]
    for i, a in enumerate(store.attacks(), 1):
        s = a["spec"]
        params = ", ".join(f"{k}={v}" for k, v in s["params"].items()) or "foolbox defaults"
        flags = [f"x{s['repeats']}" if s.get("repeats", 1) > 1 else "", "targeted" if s.get("targeted") else "",
                 "starts from best adversarial so far" if s.get("starting_points") else "",
                 f"distance={s['norm']}" if s.get("distance_param") else ""]
        params += "".join(f"; {f}" for f in flags if f)
        lines.append(f"| {i} | {a['attack']} | {a['norm']} | {s['attack']} | {params} |")
    counts = {n.value: sum(1 for a in store.attacks() if a["norm"] == n.value) for n in Norm}
    lines += ["", "Attacks per norm: " + ", ".join(f"{k} {v}" for k, v in counts.items()), ""]
    return "\n".join(lines)


def summary_markdown(results: list[metrics.ModelResult], store: Store) -> str:
    cfg = store.get_meta("config", {})
    lines = ["# Robustness report", "",
             f"Suite `{cfg.get('suite')}`, {cfg.get('n')} test samples, seed {cfg.get('seed')}. "
             "Accuracy at eps_L0 = 12, eps_L1 = 8, eps_L2 = 1.5, eps_Linf = 0.3; worst case per sample over "
             "all attacks of each norm; every adversarial was clipped, checked and re-classified by us.", "",
             "| model | clean | " + " | ".join(f"{n.label} worst-case (median dist)" for n in tables.NORM_ORDER)
             + " | minimal accuracy (attack) |",
             "|---|---|" + "---|" * len(tables.NORM_ORDER) + "---|"]
    for r in results:
        cells = []
        for n in tables.NORM_ORDER:
            nr = r.norms.get(n)
            cells.append("-" if nr is None else f"{tables.fmt_acc(nr.accuracy)} ({tables.fmt_dist(nr.median)})")
        lines.append(f"| {r.model} | {tables.fmt_acc(r.clean_accuracy)} | " + " | ".join(cells)
                     + f" | {tables.fmt_acc(r.minimal_accuracy)} ({r.minimal_attack or '-'}) |")
    masked = [r.model for r in results if _is_binarized(r.name)]
    if masked:
        lines += ["", f"**Warning: {', '.join(masked)} binarize their input.** Their binarization has a zero "
                  "gradient almost everywhere, so gradient attacks run with the exact gradient cannot move them and "
                  "the numbers above overstate their robustness (gradient masking). Evaluate them with the "
                  "straight-through (BPDA) gradient too: `dim.set_gradient_mode(model, 'straight_through')`."]
    failed = [s for s in store.shards() if s["status"] == "failed"]
    if failed:
        lines += ["", f"**{len(failed)} attack shard(s) failed** (excluded from the numbers above):", ""]
        for s in failed[:20]:
            first = (s["error"] or "").splitlines()[0] if s["error"] else ""
            lines.append(f"- {s['model']} / {s['attack']} / shard {s['shard']}: {first}")
    incomplete = [(r.model, a.attack) for r in results for a in r.attacks.values() if not a.complete]
    if incomplete:
        lines += ["", f"{len(incomplete)} (model, attack) pairs are incomplete (run not finished or shards failed)."]
    return "\n".join(lines) + "\n"


def _is_binarized(name: str) -> bool:
    from ..models import create_model, has_binarization, list_models
    return name in list_models() and has_binarization(create_model(name))


def timing_markdown(results: list[metrics.ModelResult]) -> str:
    lines = ["## Time per attack (seconds per 100 samples)", "", "| attack | " + " | ".join(r.model for r in results)
             + " |", "|---|" + "---|" * len(results)]
    names = list(dict.fromkeys(a for r in results for a in r.attacks))
    for name in names:
        cells = []
        for r in results:
            a = r.attacks.get(name)
            cells.append("-" if a is None or not a.seconds else f"{100 * a.seconds / max(r.n, 1):.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(results: list[metrics.ModelResult], out: Path) -> list[Path]:
    """Accuracy versus epsilon per norm, worst case over attacks, one line per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    for norm in tables.NORM_ORDER:
        have = [r for r in results if norm in r.norms]
        if not have:
            continue
        grid = np.linspace(0, norm.grid[-1], 200)
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for r in have:
            ax.plot(grid, 100 * metrics.accuracy_curve(r.norms[norm].distances, grid), label=r.paper_name)
        ax.axvline(norm.threshold, color="grey", ls=":", lw=1)
        ax.set_xlabel(f"{norm.label} perturbation size")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"All {norm.label} attacks (worst case per sample)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"accuracy_vs_eps_{norm.value}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def build_report(run_dir: Path | str, plots: bool = True) -> Path:
    """Write ``RUN_DIR/report/``: summary, suite, Table 1/2 (md, csv, tex), curves, metrics JSON."""
    run_dir = Path(run_dir)
    db = run_dir / "results.sqlite"
    if not db.is_file():
        raise FileNotFoundError(f"{db}: no results store; run 'dim evaluate ... --run {run_dir}' first")
    store = Store(db)
    try:
        results = metrics.compute(store)
        out = run_dir / "report"
        out.mkdir(exist_ok=True)
        parts = [summary_markdown(results, store)]
        for layout, (order, _) in TABLES.items():
            present = [r for r in results if r.paper_name in order]
            if layout == "table2" and len(present) < 2:
                continue
            t = tables.build(results, layout)
            atomic_write_text(out / f"{layout}.md", tables.to_markdown(t))
            atomic_write_text(out / f"{layout}.csv", tables.to_csv(t))
            atomic_write_text(out / f"{layout}.tex", tables.to_latex(t))
            parts += [f"## {t.title} (ours, and the paper's published numbers)", "", tables.to_markdown(t)]
        parts += [timing_markdown(results), suite_markdown(store)]
        if plots:
            imgs = plot_curves(results, out)
            parts += ["## Accuracy versus perturbation size", ""] + [f"![{p.stem}]({p.name})" for p in imgs]
        atomic_write_text(out / "report.md", "\n".join(parts) + "\n")
        atomic_write_text(out / "metrics.json", json.dumps(_metrics_json(results), indent=2, sort_keys=True) + "\n")
    finally:
        store.close()
    return out


def _clean(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def _metrics_json(results: list[metrics.ModelResult]) -> list[dict]:
    return [{"model": r.model, "name": r.name, "paper_name": r.paper_name, "n": r.n,
             "clean_accuracy": r.clean_accuracy, "minimal_accuracy": _clean(r.minimal_accuracy),
             "minimal_attack": r.minimal_attack,
             "norms": {n.value: {"accuracy": nr.accuracy, "median": _clean(nr.median), "attacks": nr.attacks}
                       for n, nr in r.norms.items()},
             "attacks": {a.attack: {"norm": a.norm.value, "accuracy": _clean(a.accuracy), "median": _clean(a.median),
                                    "complete": a.complete, "failed_shards": a.failed_shards,
                                    "seconds": a.seconds} for a in r.attacks.values()}}
            for r in results]
