"""``dim report RUN_DIR``: tables, curves and a summary page, all rendered from the store."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..attacks.suites import is_black_box, is_ensemble
from ..core.device import describe
from ..names import file_name, md
from ..evaluation import checks, metrics
from ..fileio import atomic_write_bytes, atomic_write_text
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
                 f"distance={s['norm']}" if s.get("distance_param") else "",
                 "adaptive" if s.get("adaptive") else "", f"refines {s['refines']}" if s.get("refines") else "",
                 "black box" if is_black_box(s["attack"]) else "",
                 "white + black box" if is_ensemble(s["attack"]) else ""]
        params += "".join(f"; {f}" for f in flags if f)
        lines.append(f"| {i} | {md(a['attack'])} | {a['norm']} | {md(s['attack'])} | {md(params)} |")
    counts = {n.value: sum(1 for a in store.attacks() if a["norm"] == n.value) for n in Norm}
    lines += ["", "Attacks per norm: " + ", ".join(f"{k} {v}" for k, v in counts.items()), ""]
    return "\n".join(lines)


def incomplete_units(results: list[metrics.ModelResult], store: Store) -> dict[str, list[tuple[str, Norm, str]]]:
    """Per model, the (attack, norm, why) units of the run's suite without a complete result."""
    suite = [(a["attack"], Norm(a["norm"])) for a in store.attacks()]
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


def _eps_text(threat) -> str:
    text = ", ".join(f"eps_{n.value} = {threat.threshold(n):.4g}" for n in Norm)
    return text + ("" if threat.is_paper else " (this dataset's thresholds, not the paper's MNIST ones)")


def _norm_cell(r: metrics.ModelResult, n: Norm) -> str:
    """``paper-protocol accuracy (median)``, then ``-> strongest`` when adaptive attacks add something; the number
    to quote carries its 95% interval."""
    base, full = r.norms.get(n), r.norms_all.get(n)
    if base is None and full is None:
        return "-"
    if base is None:
        return f"{tables.fmt_acc_ci(full.accuracy, full.interval)} ({tables.fmt_dist(full.median)}, adaptive only)"
    if r.has_adaptive and full is not None and full.attacks != base.attacks:
        return (f"{tables.fmt_acc(base.accuracy)} ({tables.fmt_dist(base.median)}) -> **{tables.fmt_acc(full.accuracy)}**"
                f" {tables.fmt_interval(full.interval)}")
    return f"{tables.fmt_acc_ci(base.accuracy, base.interval)} ({tables.fmt_dist(base.median)})"


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


def summary_markdown(results: list[metrics.ModelResult], store: Store,
                     outcomes: dict[str, dict[str, checks.Outcome]]) -> str:
    cfg = store.get_meta("config", {})
    adaptive = any(r.has_adaptive for r in results)
    lines = ["# Robustness report", "",
             f"Suite `{cfg.get('suite')}`, {cfg.get('n')} test samples of {cfg.get('dataset', 'mnist')}, seed "
             f"{cfg.get('seed')}. Accuracy at {_eps_text(metrics.run_threat_model(store))}; worst case per sample over "
             "all attacks of each norm (median smallest adversarial distance in brackets); every adversarial was "
             "clipped, checked and re-classified by us."]
    missing = incomplete_units(results, store)
    if missing:
        units = [f"{md(m)} / {md(a)} ({why})" for m, items in missing.items() for a, _, why in items]
        lines += ["", f"**Incomplete run: {len(units)} (model, attack) unit(s) are missing or failed**, and every "
                  "number marked *(incomplete)* below is computed without them (an upper bound on accuracy): "
                  + "; ".join(units[:30]) + ("; ..." if len(units) > 30 else "")
                  + ". Rerun the same `dim evaluate` to finish and retry them."]
    if adaptive:
        lines += ["", "Each cell: the paper's protocol (its attacks only) `->` **the worst case including the "
                  "adaptive attacks** (AutoAttack, BPDA, attacks on the model's own scores, Square): the second "
                  "number is the one to quote."]
    lines += ["", "| model | clean | " + " | ".join(f"{n.label}" for n in tables.NORM_ORDER)
              + " | minimal accuracy (attack) | sanity checks |",
              "|---|---|" + "---|" * len(tables.NORM_ORDER) + "---|---|"]
    for r in results:
        gaps = {norm for _, norm, _ in missing.get(r.model, [])}
        cells = [_norm_cell(r, n) for n in tables.NORM_ORDER]
        cells = [c + (" *(incomplete)*" if n in gaps and c != "-" else "") for c, n in zip(cells, tables.NORM_ORDER)]
        minimal = (f"{tables.fmt_acc_ci(r.minimal_accuracy_all, r.minimal_interval(True))} "
                   f"({md(r.minimal_attack_all or '-')})" if r.has_adaptive
                   else f"{tables.fmt_acc_ci(r.minimal_accuracy, r.minimal_interval(False))} "
                        f"({md(r.minimal_attack or '-')})")
        minimal += " *(incomplete)*" if gaps else ""
        lines.append(f"| {md(r.model)} | {tables.fmt_acc_ci(r.clean_accuracy, r.clean_interval)} | " + " | ".join(cells)
                     + f" | {minimal} | {_checks_cell(outcomes[r.model])} |")
    lines += ["", f"Brackets: the 95% Wilson interval of an accuracy on the {max((r.n for r in results), default=0)} "
              "samples (sampling error only: another draw of test images would land there 19 times in 20)."]
    same = indistinguishable(results)
    if same:
        lines += ["", "**Not told apart by this sample** (each worst case lies within the other's 95% interval; "
                  "evaluate more images to separate them):", ""] + same
    cards = {m["model"]: m["card"] for m in store.models()}
    derived = [(r.model, cards.get(r.model, {}).get("weights_from") or {}) for r in results]
    derived = [(m, w) for m, w in derived if w.get("overrides")]
    if derived:
        lines += [""] + [f"- **{md(m)}** is {md(w.get('model'))}'s weights with the inference setting "
                         + md(", ".join(f"{k}={v}" for k, v in w["overrides"].items())) + "." for m, w in derived]
    if any(math.isinf(nr.median) for r in results for nr in (*r.norms.values(), *r.norms_all.values())):
        lines += ["", "A median of `inf`: more than half of the samples have no adversarial from any attack of "
                  "that norm (fixed-epsilon attacks only search up to their largest epsilon), so the median "
                  "smallest adversarial distance lies beyond the largest distance searched."]
    reused = store.reused_shards()
    if reused:
        donors = sorted(set(reused.values()))
        lines += ["", f"{len(reused)} shard(s) were copied from {', '.join(donors)} (identical units of work: "
                  "same model card, attack, seed and images) and re-verified on the model instead of recomputed."]
    probs = [r.model for r in results if (store.get_meta(f"outputs/{r.model}") or {}).get("probabilities")]
    if probs:
        lines += ["", f"**Warning: {', '.join(md(p) for p in probs)} return(s) probabilities, not logits** (every row of outputs in "
                  "[0, 1] sums to 1). Cross-entropy and margin attacks are built for logits and lose their gradient "
                  "on saturated probabilities, so gradient-attack numbers may overstate robustness; pass the "
                  "logits (before softmax) to evaluate it."]
    warnings_ = [(r.model, checks.CHECKS[c], o) for r in results for c, o in outcomes[r.model].items()
                 if o.status == checks.WARN]
    if warnings_:
        lines += ["", "**Sanity-check warnings** (details and what to do: section *Sanity checks*):", ""]
        lines += [f"- **{md(m)}**: {c.title} -- failed: {md(o.value)}." for m, c, o in warnings_]
    masked = [r.model for r in results if _is_binarized(r.name)]
    if masked:
        verb, its, them, their = ("binarize", "Their", "them", "their") if len(masked) > 1 else \
            ("binarizes", "Its", "it", "its")
        lines += ["", f"**Warning: {', '.join(md(m) for m in masked)} {verb} {their} input.** {its} binarization has a zero "
                  f"gradient almost everywhere, so gradient attacks run with the exact gradient cannot move {them} and "
                  f"those numbers overstate {their} robustness (gradient masking). The adaptive suite attacks {them} "
                  f"through the straight-through gradient (BPDA); without it, treat {their} numbers as upper bounds."]
    failed = [s for s in store.shards() if s["status"] == "failed"]
    if failed:
        lines += ["", f"**{len(failed)} attack shard(s) failed** (excluded from the numbers above):", ""]
        for s in failed[:20]:
            first = (s["error"] or "").splitlines()[0] if s["error"] else ""
            lines.append(f"- {md(s['model'])} / {md(s['attack'])} / shard {s['shard']}: {md(first)}")
    return "\n".join(lines) + "\n"


def provenance_markdown(store: Store) -> str:
    """Where and with what the run was computed: commit, packages, every device and its shards."""
    prov = store.get_meta("provenance", {})
    lines = ["## Provenance", "", f"- git commit: `{prov.get('git_commit', 'unknown')}`, created "
             f"{prov.get('created', '?')}",
             "- packages: " + ", ".join(f"{k} {v}" for k, v in sorted((prov.get("packages") or {}).items()))]
    devices = prov.get("devices") or ([prov["device"]] if prov.get("device") else [])
    if devices:
        lines.append("- device(s) the run was computed on: " + "; ".join(describe(d) for d in devices))
    per_device = store.shard_devices()
    if per_device:
        lines.append("- finished shards per device: " + "; ".join(
            f"{d or 'not recorded (an earlier version)'}: {n}" for d, n in per_device.items()))
    cards = {m["model"]: m["card"].get("device") for m in store.models()}
    trained = [f"{md(m)}: {md(describe(d))}" for m, d in cards.items() if d]
    if trained:
        lines.append("- models trained on: " + "; ".join(trained))
    return "\n".join(lines) + "\n"


def _checks_cell(outcomes: dict[str, checks.Outcome]) -> str:
    count = {st: sum(1 for o in outcomes.values() if o.status == st) for st in (checks.PASS, checks.WARN, checks.NA)}
    text = f"{count[checks.PASS]} passed" + (f", {count[checks.NA]} n/a" if count[checks.NA] else "")
    return f"**{count[checks.WARN]} warning(s)**, " + text if count[checks.WARN] else text


def checks_markdown(results: list[metrics.ModelResult], outcomes: dict[str, dict[str, checks.Outcome]]) -> str:
    names = list(checks.CHECKS)
    lines = ["## Sanity checks", "", "| model | " + " | ".join(checks.CHECKS[c].title for c in names) + " |",
             "|---|" + "---|" * len(names)]
    mark = {checks.PASS: "pass", checks.WARN: "**WARN**", checks.NA: "n/a"}
    for r in results:
        o = outcomes[r.model]
        lines.append(f"| {md(r.model)} | " + " | ".join(f"{mark[o[c].status]}: {md(o[c].value)}" for c in names)
                     + " |")
    lines += [""]
    for c in checks.CHECKS.values():
        lines += [f"- **{c.title}.** {c.why} *If it fails:* {c.remedy}"]
    return "\n".join(lines) + "\n"


def _is_binarized(name: str) -> bool:
    from ..models import create_model, has_binarization, list_models
    return name in list_models() and has_binarization(create_model(name))


def timing_markdown(results: list[metrics.ModelResult]) -> str:
    lines = ["## Time per attack (seconds per 100 samples)", "", "| attack | " + " | ".join(md(r.model) for r in results)
             + " |", "|---|" + "---|" * len(results)]
    names = list(dict.fromkeys(a for r in results for a in r.attacks))
    for name in names:
        cells = []
        for r in results:
            a = r.attacks.get(name)
            cells.append("-" if a is None or not a.seconds else f"{100 * a.seconds / max(r.n, 1):.1f}")
        lines.append(f"| {md(name)} | " + " | ".join(cells) + " |")
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
        threat = have[0].threat
        grid = np.linspace(0, threat.grid(norm)[-1], 200)
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for r in have:
            ax.plot(grid, 100 * metrics.accuracy_curve(r.norms[norm].distances, grid), label=r.paper_name)
        ax.axvline(threat.threshold(norm), color="grey", ls=":", lw=1)
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


class ReportError(ValueError):
    """A report that cannot be written where asked; the message names the folder and the cause."""


def build_report(run_dir: Path | str, plots: bool = True, cards_dir: Path | str | None = None,
                 out_dir: Path | str | None = None, warn: Callable[[str], None] | None = None) -> Path:
    """Write the report (default ``RUN_DIR/report/``, else ``out_dir``): summary, checks, suite, Table 1/2
    (md, csv, tex), curves, metrics JSON, and one JSON card per model (``cards/``, and ``cards_dir`` if given).

    The store is only read, so a run on read-only media is reported with ``out_dir`` elsewhere. A report that
    would hold fewer models, attacks or images than the one it replaces keeps the old one beside it
    (``*.previous.*``) and says so through ``warn`` (default: a Python warning)."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    store = Store.of_run(run_dir, read_only=True)
    try:
        results = metrics.compute(store)
        outcomes = {r.model: checks.all_outcomes(r, store.get_meta(f"checks/{r.model}")) for r in results}
        try:
            _write_report(results, outcomes, store, out, plots, cards_dir, warn or _python_warning)
        except OSError as exc:
            where = exc.filename or out
            raise ReportError(f"{where}: cannot write the report ({exc.strerror or exc}); "
                              f"give 'dim report {run_dir} --out FOLDER' a folder you can write") from None
    finally:
        store.close()
    return out


def _python_warning(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def _content(entries: list[dict]) -> tuple[int, int, int]:
    """What a metrics.json holds: models, (model, attack) results, and the most images per model."""
    return (len(entries), sum(len(e.get("attacks", {})) for e in entries), max((e.get("n", 0) for e in entries),
                                                                               default=0))


def _keep_a_fuller_report(out: Path, new: list[dict], warn: Callable[[str], None]) -> None:
    """Before a report replaces one that held more, keep the old one as ``*.previous.*`` and say so."""
    try:
        old = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return
    if not isinstance(old, list):
        return
    before, after = _content(old), _content(new)
    if all(a >= b for a, b in zip(after, before)):
        return
    for name in ("report.md", "metrics.json"):
        if (out / name).is_file():
            stem, _, ext = name.rpartition(".")
            atomic_write_bytes(out / f"{stem}.previous.{ext}", (out / name).read_bytes())
    warn(f"{out}: the new report holds less than the one it replaces (models, attack results, images: "
         f"{before} before, {after} now); the old one is kept as report.previous.md and metrics.previous.json")


def _write_report(results, outcomes, store: Store, out: Path, plots: bool, cards_dir, warn) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = _metrics_json(results)
    _keep_a_fuller_report(out, summary, warn)
    parts = [summary_markdown(results, store, outcomes)]
    for layout, (order, _) in TABLES.items():
        present = [r for r in results if r.paper_name in order]
        if layout == "table2" and len(present) < 2:
            continue
        t = tables.build(results, layout)
        atomic_write_text(out / f"{layout}.md", tables.to_markdown(t))
        atomic_write_text(out / f"{layout}.csv", tables.to_csv(t))
        atomic_write_text(out / f"{layout}.tex", tables.to_latex(t))
        parts += [f"## {t.title} (ours, and the paper's published numbers)", "", tables.to_markdown(t)]
    parts += [checks_markdown(results, outcomes), timing_markdown(results), suite_markdown(store),
              provenance_markdown(store)]
    if plots:
        imgs = plot_curves(results, out)
        parts += ["## Accuracy versus perturbation size", ""] + [f"![{p.stem}]({p.name})" for p in imgs]
    atomic_write_text(out / "report.md", "\n".join(parts) + "\n")
    atomic_write_text(out / "metrics.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    for target in [out / "cards"] + ([Path(cards_dir)] if cards_dir else []):
        write_cards(results, outcomes, store, target)


def _clean(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def _metrics_json(results: list[metrics.ModelResult]) -> list[dict]:
    return [{"model": r.model, "name": r.name, "paper_name": r.paper_name, "n": r.n,
             "clean_accuracy": r.clean_accuracy, "minimal_accuracy": _clean(r.minimal_accuracy),
             "minimal_attack": r.minimal_attack,
             "norms": {n.value: {"accuracy": nr.accuracy, "interval_95": _interval_json(nr.interval),
                                 "median": _clean(nr.median), "attacks": nr.attacks}
                       for n, nr in r.norms.items()},
             "attacks": {a.attack: {"norm": a.norm.value, "accuracy": _clean(a.accuracy), "median": _clean(a.median),
                                    "complete": a.complete, "failed_shards": a.failed_shards,
                                    "seconds": a.seconds} for a in r.attacks.values()}}
            for r in results]


def _interval_json(interval: tuple[float, float]) -> list | None:
    return None if any(math.isnan(v) for v in interval) else [round(v, 4) for v in interval]


def _norm_json(norms: dict[Norm, metrics.NormResult], threat) -> dict:
    return {n.value: {"accuracy": nr.accuracy, "interval_95": _interval_json(nr.interval), "n": nr.n,
                      "median_distance": _clean(nr.median), "threshold": threat.threshold(n),
                      "attacks": nr.attacks} for n, nr in norms.items()}


def write_cards(results: list[metrics.ModelResult], outcomes: dict[str, dict[str, checks.Outcome]], store: Store,
                target: Path) -> list[Path]:
    """One JSON card per model: what was run on it, the numbers to quote, and the checks."""
    cfg, prov = store.get_meta("config", {}), store.get_meta("provenance", {})
    models = {m["model"]: m for m in store.models()}
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
                           "git_commit": prov.get("git_commit"), "packages": prov.get("packages"),
                           "devices": prov.get("devices") or ([prov["device"]] if prov.get("device") else [])},
            "clean_accuracy": r.clean_accuracy, "clean_interval_95": _interval_json(r.clean_interval),
            "interval": "95% Wilson score interval of each accuracy on its n samples (sampling error only)",
            "paper_protocol": {"per_norm": _norm_json(r.norms, r.threat), "minimal_accuracy": _clean(r.minimal_accuracy),
                               "minimal_interval_95": _interval_json(r.minimal_interval(False)),
                               "minimal_attack": r.minimal_attack},
            "incl_adaptive": {"per_norm": _norm_json(r.norms_all, r.threat),
                              "minimal_accuracy": _clean(r.minimal_accuracy_all),
                              "minimal_interval_95": _interval_json(r.minimal_interval(True)),
                              "minimal_attack": r.minimal_attack_all},
            "attacks": {a.attack: {"norm": a.norm.value, "accuracy": _clean(a.accuracy),
                                   "interval_95": _interval_json(a.interval), "adaptive": a.adaptive,
                                   "black_box": a.black_box, "not_applicable": a.not_applicable,
                                   "complete": a.complete, "seconds": round(a.seconds, 2)}
                        for a in r.attacks.values()},
            "checks": {k: o.as_dict() for k, o in outcomes[r.model].items()},
        }
        path = target / f"{file_name(r.model)}.json"
        atomic_write_text(path, json.dumps(card, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths
