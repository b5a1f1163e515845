"""Tables in the layout of the paper's Tables 1 and 2, rendered from stored results.

A table is data (:class:`Table`: header + rows of strings); Markdown, CSV and
LaTeX are three renderings of the same data.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

from ..evaluation.metrics import ModelResult
from ..core.norms import Norm
from ..names import md, tex
from ..provenance import commits_of
from .paper import PAPER_COUNTERPART, TABLES

NORM_ORDER = (Norm.L2, Norm.LINF, Norm.L0, Norm.L1)  # the paper's order


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    section_rows: set[int]  # indices of rows that are section headings
    # per row: its norm ("" for clean and minimal accuracy) and family ("paper", "adaptive", "black box",
    # "worst case", "summary", "section"): what the HTML page filters by
    row_meta: list[dict[str, str]] = field(default_factory=list)


def commits_text(prov: dict, quote: str = "") -> str:
    """The run's git commit(s): one, or every commit a resumed run was computed with, the current one last."""
    commits = commits_of(prov) or ["unknown"]
    text = ", ".join(f"{quote}{c}{quote}" for c in commits)
    text = text if len(commits) == 1 else f"{text} (resumed across {len(commits)} commits; the last is current)"
    for run, theirs in sorted((prov.get("donor_commits") or {}).items()):
        text += f"; shards copied from {run} were computed with " + ", ".join(f"{quote}{c}{quote}" for c in theirs)
    return text


def fmt_acc(acc: float) -> str:
    """An accuracy in percent with one decimal where it has one (``15.5%``, ``16%``): rounding to whole points
    would show 15.5% of 200 images as 16%, more robustness than was measured."""
    if acc is None or (isinstance(acc, float) and math.isnan(acc)):
        return "-"
    return f"{100 * acc:.1f}".removesuffix(".0") + "%"


def fmt_interval(interval: tuple[float, float]) -> str:
    """A 95% interval in percentage points, ``[43-57]``; empty when there is none."""
    lo, hi = interval
    if math.isnan(lo) or math.isnan(hi):
        return ""
    return f"[{100 * lo:.0f}-{100 * hi:.0f}]"


def fmt_acc_ci(acc: float, interval: tuple[float, float]) -> str:
    """An accuracy with its 95% interval, ``45% [38-52]``."""
    ci = fmt_interval(interval)
    return fmt_acc(acc) + (f" {ci}" if ci and fmt_acc(acc) != "-" else "")


def fmt_sets(counts: dict[str, int]) -> str:
    """Samples per set of norms (a union's ``broken_by``), ``L0 + L1 47, L1 22``; ``-`` for none."""
    return ", ".join(f"{k.replace('+', ' + ')} {v}" for k, v in counts.items()) or "-"


def fmt_dist(d: float) -> str:
    if d is None or math.isnan(d):
        return "-"
    if math.isinf(d):
        return "inf"
    return f"{d:.2g}" if d < 10 else f"{d:.0f}"


def _paper_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return f"{value[0]}/{value[1]}%"
    return f"{value}%"


def _attack_cell(a) -> str:
    if a is None:
        return "-"
    if a.not_applicable:
        return "n/a"
    return "failed" if math.isnan(a.accuracy) else fmt_acc(a.accuracy)


def build(results: list[ModelResult], layout: str, paper: bool = True) -> Table:
    """Table ``layout`` ("table1" or "table2") with our numbers and, with ``paper`` (MNIST at the paper's
    thresholds), the paper's beside them."""
    order, published = TABLES[layout]
    if not paper:
        published = {}
    by_label = {r.paper_name: r for r in results}
    cols = [lab for lab in order if lab in by_label]
    extra = [r.paper_name for r in results if r.paper_name not in order and layout == "table1"]
    cols += extra
    header = ["Attack"] + [c for lab in cols for c in ((lab, f"{PAPER_COUNTERPART.get(lab, lab)} (paper)") if paper
                                                       else (lab,))]
    rows: list[list[str]] = []
    sections: set[int] = set()

    meta: list[dict[str, str]] = []

    def add(label: str, ours: list[str], key: str | None, norm: Norm | None = None, family: str = "summary") -> None:
        theirs = published.get(key or label, {})
        rows.append([label] + [c for lab, o in zip(cols, ours)
                               for c in ((o, _paper_cell(theirs.get(PAPER_COUNTERPART.get(lab, lab)))) if paper
                                         else (o,))])
        meta.append({"norm": norm.value if norm else "", "family": family})

    def section(label: str, norm: Norm) -> None:
        sections.add(len(rows))
        rows.append([label] + [""] * (len(header) - 1))
        meta.append({"norm": norm.value, "family": "section"})

    black_box = {a.attack for r in results for a in r.attacks.values() if a.black_box}

    add("Clean accuracy", [fmt_acc(by_label[c].clean_accuracy) for c in cols], "Clean accuracy")
    attack_names: list[tuple[str, Norm, bool]] = []
    for r in results:
        for a in r.attacks.values():
            if (a.attack, a.norm, a.adaptive) not in attack_names:
                attack_names.append((a.attack, a.norm, a.adaptive))
    any_adaptive = any(ad for _, _, ad in attack_names)

    def attack_rows(names: list[str], adaptive: bool) -> None:
        for name in names:
            family = "black box" if name in black_box else "adaptive" if adaptive else "paper"
            add(name, [_attack_cell(by_label[c].attacks.get(name)) for c in cols], name, norm, family)

    def norm_row(label: str, key: str | None, pick) -> None:
        cells = []
        for c in cols:
            nr = pick(by_label[c]).get(norm)
            cells.append("-" if nr is None else f"{fmt_dist(nr.median)}/{fmt_acc_ci(nr.accuracy, nr.interval)}")
        add(label, cells, key, norm, "worst case")

    for norm in NORM_ORDER:
        paper_names = [a for a, n, ad in attack_names if n is norm and not ad]
        adaptive_names = [a for a, n, ad in attack_names if n is norm and ad]
        if not paper_names and not adaptive_names:
            continue
        eps = results[0].threat.threshold(norm) if results else norm.threshold
        section(f"{norm.label} (eps = {eps:.4g})", norm)
        attack_rows(paper_names, False)
        if paper_names:
            norm_row(f"All {norm.label} attacks", f"All {norm.value}", lambda r: r.norms)
        if adaptive_names:
            section(f"{norm.label} adaptive attacks (beyond the paper)", norm)
            attack_rows(adaptive_names, True)
            norm_row(f"All {norm.label} attacks incl. adaptive", None, lambda r: r.norms_all)
    add("Minimal accuracy", [fmt_acc_ci(by_label[c].minimal_accuracy, by_label[c].minimal_interval(False))
                             for c in cols], "Minimal accuracy")
    if any_adaptive:
        add("Minimal accuracy incl. adaptive", [fmt_acc_ci(by_label[c].minimal_accuracy_all,
                                                           by_label[c].minimal_interval(True)) for c in cols], None)
    add("Union accuracy (all norms at once)", [_union_cell(by_label[c].union) for c in cols], None)
    if any_adaptive:
        add("Union accuracy incl. adaptive", [_union_cell(by_label[c].union_all) for c in cols], None)
    title = {"table1": "Table 1: models of the paper", "table2": "Table 2: ablations"}[layout]
    if not paper:
        title += " (no paper numbers: not the paper's setting, MNIST at its thresholds)"
    return Table(title, header, rows, sections, meta)


def _union_cell(u) -> str:
    return "-" if u is None else fmt_acc_ci(u.accuracy, u.interval)


def to_markdown(t: Table) -> str:
    lines = ["| " + " | ".join(md(h) for h in t.header) + " |", "|" + "|".join("---" for _ in t.header) + "|"]
    for i, row in enumerate(t.rows):
        # names (the first column, the header) are escaped; the other cells are numbers we formatted
        cells = [md(row[0])] + list(row[1:])
        if i in t.section_rows:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.header)
    w.writerows(t.rows)
    return buf.getvalue()


_tex = tex


def to_latex(t: Table) -> str:
    lines = [r"\begin{tabular}{l" + "r" * (len(t.header) - 1) + "}", r"\toprule",
             " & ".join(_tex(h) for h in t.header) + r" \\", r"\midrule"]
    for i, row in enumerate(t.rows):
        if i in t.section_rows:
            lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{len(t.header)}}}{{l}}{{\textit{{{_tex(row[0])}}}}} \\")
        else:
            lines.append(" & ".join(_tex(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
