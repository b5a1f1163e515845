"""The Markdown renderer: the report's summary, sanity checks, timing, suite and provenance sections.

Pure functions of a :class:`~dim.report.view.ReportView`: nothing here reads the store.
"""
from __future__ import annotations

import math

from .suite_text import describe_attack
from ..core.device import describe
from ..evaluation import checks, metrics
from ..core.norms import Norm
from ..names import md
from ..provenance import devices_of
from . import tables
from .view import ReportView, indistinguishable, samples_text


def suite_markdown(view: ReportView) -> str:
    cfg = view.config
    lines = [f"## Attack suite `{cfg.get('suite', '?')}` ({len(view.attacks)} attacks)", "",
             "| # | attack | norm | foolbox class / adapter | parameters |", "|---|---|---|---|---|"]
    for i, a in enumerate(view.attacks, 1):
        s = a["spec"]
        lines.append(f"| {i} | {md(a['attack'])} | {a['norm']} | {md(s['attack'])} | {md(describe_attack(s))} |")
    counts = {n.value: sum(1 for a in view.attacks if a["norm"] == n.value) for n in Norm}
    lines += ["", "Attacks per norm: " + ", ".join(f"{k} {v}" for k, v in counts.items()), ""]
    return "\n".join(lines)


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


UNION_TEXT = ("*Union*: the share of samples that no attack of any norm fooled within that norm's threshold, the "
              "robustness against an attacker who may pick the norm per image (with adaptive attacks where they ran). "
              "*Minimal accuracy* is the paper's number: the lowest accuracy of any single attack. The union is never "
              "higher than the weakest norm's worst case and is lower wherever the norms break different samples.")


def breakdown_markdown(results: list[metrics.ModelResult], top: int = 3) -> list[str]:
    """Why the samples outside the union are there: per model, how many samples were misclassified before any
    attack, how many one norm alone broke (which), how many several norms broke (the most frequent sets). Where
    several norms break most of them, the union sits just under the weakest norm, and no single norm's training
    lifts it."""
    rows = []
    for r in results:
        union = r.union_all if r.has_adaptive else r.union
        if union is None or not union.broken_by or len(union.norms) < 2:
            continue
        counts = union.broken_by
        attacked = {k: v for k, v in counts.items() if k not in (metrics.ROBUST, metrics.CLEAN_ERROR)}
        alone = {k: v for k, v in attacked.items() if "+" not in k}
        several = {k: v for k, v in attacked.items() if "+" in k}
        rows.append(f"| {md(r.model)} | {union.n} | {counts.get(metrics.ROBUST, 0)} | "
                    f"{counts.get(metrics.CLEAN_ERROR, 0)} | {sum(alone.values())} ({tables.fmt_sets(alone)}) | "
                    f"{sum(several.values())} ({tables.fmt_sets(dict(list(several.items())[:top]))}) |")
    if not rows:
        return []
    return ["", "**Which norms break each sample** (per sample, the norms whose worst case lies within the "
            "threshold; the union counts the robust ones):", "",
            "| model | samples | robust in every norm | misclassified before any attack | broken by one norm alone "
            f"| broken by several norms (the {top} most frequent sets) |", "|---|---|---|---|---|---|", *rows]


def summary_markdown(view: ReportView) -> str:
    results, outcomes, cfg = view.results, view.outcomes, view.config
    adaptive = any(r.has_adaptive for r in results)
    lines = ["# Robustness report", "",
             f"Suite `{cfg.get('suite')}`, {samples_text(cfg)}, seed "
             f"{cfg.get('seed')}. Accuracy at {_eps_text(view.threat)}; worst case per sample over "
             "all attacks of each norm (median smallest adversarial distance in brackets); every adversarial was "
             "clipped, checked and re-classified by us."]
    missing = view.missing
    if missing:
        units = [f"{md(m)} / {md(a)} ({why})" for m, items in missing.items() for a, _, why in items]
        lines += ["", f"**Incomplete run: {len(units)} (model, attack) unit(s) are missing or failed**, and every "
                  "number marked *(incomplete)* below is computed without them (an upper bound on accuracy): "
                  + "; ".join(units[:30]) + ("; ..." if len(units) > 30 else "")
                  + ". Rerun the same `dim evaluate` to finish and retry them."]
    if adaptive:
        lines += ["", "Each cell: the paper's protocol (its attacks only) `->` **the worst case including the "
                  "adaptive attacks** (AutoAttack, BPDA, BinFlip, attacks on the model's own scores, Square, and the "
                  "sparse L1/L0 attacks): the second "
                  "number is the one to quote."]
    lines += ["", "| model | clean | " + " | ".join(f"{n.label}" for n in tables.NORM_ORDER)
              + " | all norms at once (union) | minimal accuracy (attack) | sanity checks |",
              "|---|---|" + "---|" * len(tables.NORM_ORDER) + "---|---|---|"]
    for r in results:
        gaps = {norm for _, norm, _ in missing.get(r.model, [])}
        cells = [_norm_cell(r, n) for n in tables.NORM_ORDER]
        cells = [c + (" *(incomplete)*" if n in gaps and c != "-" else "") for c, n in zip(cells, tables.NORM_ORDER)]
        minimal = (f"{tables.fmt_acc_ci(r.minimal_accuracy_all, r.minimal_interval(True))} "
                   f"({md(r.minimal_attack_all or '-')})" if r.has_adaptive
                   else f"{tables.fmt_acc_ci(r.minimal_accuracy, r.minimal_interval(False))} "
                        f"({md(r.minimal_attack or '-')})")
        minimal += " *(incomplete)*" if gaps else ""
        union = r.union_all if r.has_adaptive else r.union
        union_text = tables.fmt_acc_ci(union.accuracy, union.interval) if union else "-"
        union_text += " *(incomplete)*" if gaps and union else ""
        lines.append(f"| {md(r.model)} | {tables.fmt_acc_ci(r.clean_accuracy, r.clean_interval)} | " + " | ".join(cells)
                     + f" | {union_text} | {minimal} | {_checks_cell(outcomes[r.model])} |")
    lines += ["", UNION_TEXT]
    lines += breakdown_markdown(results)
    lines += ["", f"Brackets: the 95% Wilson interval of an accuracy on the {max((r.n for r in results), default=0)} "
              "samples (sampling error only: another draw of test images would land there 19 times in 20)."]
    same = indistinguishable(results)
    if same:
        lines += ["", "**Not told apart by this sample** (each worst case lies within the other's 95% interval; "
                  "evaluate more images to separate them):", ""] + same
    cards = {k: m["card"] for k, m in view.models.items()}
    derived = [(r.model, cards.get(r.model, {}).get("weights_from") or {}) for r in results]
    derived = [(m, w) for m, w in derived if w.get("overrides")]
    if derived:
        lines += [""] + [f"- **{md(m)}** is {md(w.get('model'))}'s weights with the inference setting "
                         + md(", ".join(f"{k}={v}" for k, v in w["overrides"].items())) + "." for m, w in derived]
    if any(math.isinf(nr.median) for r in results for nr in (*r.norms.values(), *r.norms_all.values())):
        lines += ["", "A median of `inf`: more than half of the samples have no adversarial from any attack of "
                  "that norm (fixed-epsilon attacks only search up to their largest epsilon), so the median "
                  "smallest adversarial distance lies beyond the largest distance searched."]
    reused = view.reused
    if reused:
        donors = sorted(set(reused.values()))
        lines += ["", f"{len(reused)} shard(s) were copied from {', '.join(donors)} (identical units of work: "
                  "same model card, attack, seed and images) and re-verified on the model instead of recomputed."]
    probs = [r.model for r in results if (view.outputs.get(r.model) or {}).get("probabilities")]
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
    masked = [r.model for r in results if view.binarized.get(r.model)]
    if masked:
        verb, its, them, their = ("binarize", "Their", "them", "their") if len(masked) > 1 else \
            ("binarizes", "Its", "it", "its")
        lines += ["", f"**Warning: {', '.join(md(m) for m in masked)} {verb} {their} input.** {its} binarization has a zero "
                  f"gradient almost everywhere, so gradient attacks run with the exact gradient cannot move {them} and "
                  f"those numbers overstate {their} robustness (gradient masking). The adaptive suite attacks {them} "
                  f"through the straight-through gradient (BPDA); without it, treat {their} numbers as upper bounds."]
    failed = [s for s in view.shards if s["status"] == "failed"]
    if failed:
        lines += ["", f"**{len(failed)} attack shard(s) failed** (excluded from the numbers above):", ""]
        for s in failed[:20]:
            first = (s["error"] or "").splitlines()[0] if s["error"] else ""
            lines.append(f"- {md(s['model'])} / {md(s['attack'])} / shard {s['shard']}: {md(first)}")
    return "\n".join(lines) + "\n"


def provenance_markdown(view: ReportView) -> str:
    """Where and with what the run was computed: commit, packages, every device and its shards."""
    prov = view.provenance
    lines = ["## Provenance", "", f"- git commit: {tables.commits_text(prov, '`')}, created {prov.get('created', '?')}",
             "- packages: " + ", ".join(f"{k} {v}" for k, v in sorted((prov.get("packages") or {}).items()))]
    devices = devices_of(prov)
    if devices:
        lines.append("- device(s) the run was computed on: " + "; ".join(describe(d) for d in devices))
    per_device = view.shard_devices
    if per_device:
        lines.append("- finished shards per device: " + "; ".join(
            f"{d or 'not recorded (an earlier version)'}: {n}" for d, n in per_device.items()))
    cards = {k: m["card"].get("device") for k, m in view.models.items()}
    trained = [f"{md(m)}: {md(describe(d))}" for m, d in cards.items() if d]
    if trained:
        lines.append("- models trained on: " + "; ".join(trained))
    return "\n".join(lines) + "\n"


def _checks_cell(outcomes: dict[str, checks.Outcome]) -> str:
    count = {st: sum(1 for o in outcomes.values() if o.status == st) for st in (checks.PASS, checks.WARN, checks.NA)}
    text = f"{count[checks.PASS]} passed" + (f", {count[checks.NA]} n/a" if count[checks.NA] else "")
    return f"**{count[checks.WARN]} warning(s)**, " + text if count[checks.WARN] else text


def checks_markdown(view: ReportView) -> str:
    results, outcomes = view.results, view.outcomes
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


def timing_markdown(view: ReportView) -> str:
    results = view.results
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
