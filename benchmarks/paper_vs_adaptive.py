"""Per model and threshold: the paper's published number, ours under the paper's protocol, and ours including
the adaptive attacks with its 95% interval, from results cards (the closing table of issue 16).

    python benchmarks/paper_vs_adaptive.py CARD_OR_FOLDER... [--name paper_vs_adaptive]

Reads the cards `dim report` writes (``results/*.json``, or a snapshot's ``cards/`` folder), one per model; a
model named twice keeps its last card. Writes ``results/<name>.json`` (the numbers, with each card's run, suite
and samples) and ``results/<name>.md`` (the same as a Markdown table). A cell whose run still misses attacks of
that norm says so: its accuracy can only fall when they finish.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from common import RESULTS, write_result

from dim.attacks.suites import get_suite
from dim.evaluation.norms import Norm
from dim.names import md
from dim.report.paper import PAPER_COUNTERPART, TABLE1_MODELS, TABLE2_MODELS, TABLES
from dim.report.tables import fmt_acc, fmt_acc_ci

NORMS = (Norm.L2, Norm.LINF, Norm.L0, Norm.L1)


def _cards(paths: list[Path]) -> list[dict]:
    files = [f for p in paths for f in (sorted(p.glob("*.json")) if p.is_dir() else [p])]
    if not files:
        raise SystemExit(f"error: no card (*.json) in {', '.join(map(str, paths))}")
    out: dict[str, dict] = {}
    for f in files:
        try:
            card = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"error: {f}: not a readable JSON card ({exc})") from None
        if not isinstance(card, dict) or "incl_adaptive" not in card or "model" not in card:
            raise SystemExit(f"error: {f}: not a results card (no 'model' / 'incl_adaptive'; written by "
                             "`dim report RUN --cards DIR`)")
        out[card["model"]] = {**card, "_file": str(f)}
    return list(out.values())


def paper_number(paper_name: str, row: str) -> float | None:
    """The paper's accuracy (0-1) in ``row`` (``All L2``, ``Clean accuracy``, ...) for the model it calls
    ``paper_name``, the first of its tables that has it; None where the paper gives none."""
    label = PAPER_COUNTERPART.get(paper_name, paper_name)
    for models, rows in TABLES.values():
        if label in models:
            value = rows.get(row, {}).get(label)
            if value is not None:
                return (value[1] if isinstance(value, tuple) else value) / 100
    return None


def _num(value: object) -> float:
    return float("nan") if value in (None, "nan") else float(value)


def _cell(block: dict | None) -> dict | None:
    if not block:
        return None
    return {"accuracy": _num(block["accuracy"]), "interval_95": block.get("interval_95"),
            "attacks": len(block.get("attacks", []))}


def rows_of(card: dict, suite: str | None = None) -> dict:
    """One model's row: clean accuracy and, per norm, paper / ours (paper protocol) / ours incl. adaptive.
    A norm is incomplete where an attack of the card is unfinished or one of ``suite`` (default: the card's)
    never started."""
    attacks = card.get("attacks", {})
    pending = {a.get("norm") for a in attacks.values() if not a.get("complete", True)}
    suite = suite or card.get("evaluation", {}).get("suite")
    if suite:   # attacks of the run's suite never started have no entry in the card
        pending |= {s.norm.value for s in get_suite(suite) if s.name not in attacks}
    paper_name = card.get("paper_name") or card["model"]
    row = {"model": card["model"], "paper_name": paper_name, "card": card["_file"],
           "clean": _num(card.get("clean_accuracy")), "clean_interval_95": card.get("clean_interval_95"),
           "clean_paper": paper_number(paper_name, "Clean accuracy"),
           "suite": card.get("evaluation", {}).get("suite"),
           "n": card.get("evaluation", {}).get("n"), "per_norm": {}}
    for norm in NORMS:
        row["per_norm"][norm.value] = {
            "paper": paper_number(paper_name, f"All {norm.value}"),
            "paper_protocol": _cell(card.get("paper_protocol", {}).get("per_norm", {}).get(norm.value)),
            "incl_adaptive": _cell(card.get("incl_adaptive", {}).get("per_norm", {}).get(norm.value)),
            "complete": norm.value not in pending,
        }
    return row


def _acc_ci(acc: float, interval: list | None) -> str:
    return fmt_acc_ci(acc, tuple(interval)) if interval else fmt_acc(acc)


def _md_cell(c: dict) -> str:
    ours = c["incl_adaptive"]
    if ours is None or math.isnan(ours["accuracy"]):
        text = "-"
    else:
        text = f"**{_acc_ci(ours['accuracy'], ours['interval_95'])}**"
        pp = c["paper_protocol"]
        text = (f"{fmt_acc(pp['accuracy'])} -> " if pp and not math.isnan(pp["accuracy"]) else "adaptive only: ") + text
    if c["paper"] is not None:
        text += f" (paper {fmt_acc(c['paper'])})"
    return text + ("" if c["complete"] else " *(incomplete)*")


def render_md(rows: list[dict]) -> str:
    head = ["model", "clean"] + [f"{n.value} ({n.threshold:g})" for n in NORMS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        clean = _acc_ci(r["clean"], r["clean_interval_95"])
        if r["clean_paper"] is not None:
            clean += f" (paper {fmt_acc(r['clean_paper'])})"
        cells = [f"{md(r['paper_name'])} (`{md(r['model'])}`)", clean] + [_md_cell(r["per_norm"][n.value])
                                                                        for n in NORMS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + (
        "\n\nEach cell: ours under the paper's protocol (its attacks only) -> **ours including the adaptive attacks** "
        "[95% Wilson interval], then the paper's published accuracy over all its attacks of that norm. "
        "*(incomplete)*: attacks of that norm still to run; the number can only fall.\n")


def _paper_order(row: dict) -> tuple[int, int, str]:
    """The paper's column order (Table 1, then Table 2); a model under another objective after its original."""
    order = list(dict.fromkeys(TABLE1_MODELS + TABLE2_MODELS))
    label = PAPER_COUNTERPART.get(row["paper_name"], row["paper_name"])
    return (order.index(label) if label in order else len(order), row["paper_name"] in PAPER_COUNTERPART,
            row["model"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cards", type=Path, nargs="+", help="card files or folders of cards")
    ap.add_argument("--name", default="paper_vs_adaptive")
    ap.add_argument("--suite", default=None,
                    help="the attacks each run was meant to finish (default: each card's suite, which a run "
                         "evaluated under a filtered suite such as 'paper+adaptive:L2 AutoAttack' states exactly)")
    args = ap.parse_args()
    if args.suite:
        try:
            get_suite(args.suite)
        except ValueError as exc:
            ap.error(f"--suite: {exc}")
    rows = sorted((rows_of(c, args.suite) for c in _cards(args.cards)), key=_paper_order)
    table = render_md(rows)
    write_result(args.name, {"rows": rows, "markdown": table}, echo=False)
    (RESULTS / f"{args.name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
