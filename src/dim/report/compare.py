"""Models of several runs side by side, from their JSON cards (``dim compare``).

A run's report compares the models of that run. Cards outlive runs and travel (``results/*.json``
holds one per model of this project's runs), so a model evaluated today, by anyone, can stand
beside the committed ones: per model and threshold the paper's published number, ours under
the paper's protocol, and ours including the adaptive attacks with its 95% interval. A cell is
marked incomplete where the card's run still misses attacks of that norm (unfinished, or in
its suite and never started): its accuracy can only fall when they finish. With ``strongest``, each
cell also names the attacks that leave the least accuracy: a worst case set by one black-box or BPDA
attack reads differently from one that every gradient attack agrees on.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from ..attacks.suites import get_suite
from ..core.norms import Norm
from ..names import md
from .paper import PAPER_COUNTERPART, TABLE1_MODELS, TABLE2_MODELS, TABLES
from .published import PUBLISHED, Published
from .cards import content_sha256
from .tables import fmt_acc, fmt_acc_ci

NORMS = (Norm.L2, Norm.LINF, Norm.L0, Norm.L1)
ADAPTIVE_MARK = "\u2020"    # beside an adaptive attack's name in the table of the strongest attacks


class CardError(ValueError):
    """A file given as a card is not one."""


def load_cards(paths: Sequence[Path | str]) -> list[dict[str, Any]]:
    """The cards in ``paths`` (files, or folders of ``*.json``), in order, every one of them: two cards of the same
    model name (from two runs) are two rows, never merged. Each card is checked against its content hash
    (``_edited``: True where it was changed after it was written, None where it carries no hash)."""
    paths = [Path(p) for p in paths]
    files = [f for p in paths for f in (sorted(p.glob("*.json")) if p.is_dir() else [p])]
    if not files:
        raise CardError(f"no card (*.json) in {', '.join(map(str, paths))}")
    out, seen = [], set()
    for f in files:
        if f.resolve() in seen:      # the same file named twice (a folder and a file in it) is one card
            continue
        seen.add(f.resolve())
        try:
            card = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CardError(f"{f}: not a readable JSON card ({exc})") from None
        if not isinstance(card, dict) or "incl_adaptive" not in card or "model" not in card:
            raise CardError(f"{f}: not a results card (no 'model' / 'incl_adaptive'; cards are written by "
                            "`dim report RUN --cards DIR`)")
        edited = None if "content_sha256" not in card else card["content_sha256"] != content_sha256(card)
        out.append({**card, "_file": str(f), "_edited": edited})
    return out


def paper_number(paper_name: str, row: str) -> float | None:
    """The paper's accuracy (0-1) in ``row`` (``All L2``, ``Clean accuracy``, ...) for the model it calls
    ``paper_name``, from the first of its tables that has it; None where the paper gives none."""
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
            "attacks": len(block.get("attacks", [])), "threshold": block.get("threshold")}


def strongest_attacks(card: dict, norm: str, k: int) -> list[dict[str, Any]]:
    """The ``k`` attacks of ``norm`` in ``card`` that leave the lowest accuracy at the threshold, lowest first
    (ties by name); attacks that do not apply to the model (BPDA on a model that does not binarize) or hold
    no number are left out."""
    found = [{"attack": name, "accuracy": _num(a.get("accuracy")), "adaptive": bool(a.get("adaptive")),
              "black_box": bool(a.get("black_box")), "complete": bool(a.get("complete", True))}
             for name, a in card.get("attacks", {}).items()
             if a.get("norm") == norm and not a.get("not_applicable")]
    found = [a for a in found if not math.isnan(a["accuracy"])]
    return sorted(found, key=lambda a: (a["accuracy"], a["attack"]))[:max(int(k), 0)]


def group_of(card: dict) -> dict[str, Any]:
    """What a card must share with another to sit in the same table: dataset, suite and thresholds; and whether
    the paper's numbers apply (MNIST at the paper's thresholds)."""
    evaluation = card.get("evaluation", {})
    thresholds = {n: block.get("threshold") for n, block in card.get("incl_adaptive", {}).get("per_norm", {}).items()
                  if isinstance(block, dict)}
    dataset = evaluation.get("dataset", "mnist")
    paper = dataset == "mnist" and all(t is None or math.isclose(t, Norm(n).threshold)
                                       for n, t in thresholds.items())
    return {"dataset": dataset, "suite": evaluation.get("suite"), "thresholds": dict(sorted(thresholds.items())),
            "paper_columns": paper}


def row_of(card: dict, suite: str | None = None, strongest: int = 0) -> dict[str, Any]:
    """One model's row: clean accuracy and, per norm, the paper's number, ours under the paper's protocol and
    ours including the adaptive attacks (and its ``strongest`` attacks). A norm is incomplete where an attack
    of the card is unfinished or an attack of ``suite`` (default: the card's own) never started."""
    attacks = card.get("attacks", {})
    pending = {a.get("norm") for a in attacks.values() if not a.get("complete", True)}
    evaluation = card.get("evaluation", {})
    suite = suite or evaluation.get("suite")
    if suite:   # attacks of the run's suite never started have no entry in the card
        try:
            pending |= {s.norm.value for s in get_suite(suite) if s.name not in attacks}
        except ValueError:   # a suite file that is not here: the card's own attacks are all there is to go by
            pass
    paper_name = card.get("paper_name") or card["model"]
    group = group_of(card)
    paper = paper_number if group["paper_columns"] else (lambda *_: None)   # the paper's MNIST setting only
    row = {"model": card["model"], "paper_name": paper_name, "card": card.get("_file"),
           "edited": card.get("_edited"), "group": group,
           "clean": _num(card.get("clean_accuracy")), "clean_interval_95": card.get("clean_interval_95"),
           "clean_paper": paper(paper_name, "Clean accuracy"), "suite": evaluation.get("suite"),
           "n": evaluation.get("n"), "per_norm": {}}
    row["union"] = {"paper_protocol": _cell(card.get("paper_protocol", {}).get("union")),
                    "incl_adaptive": _cell(card.get("incl_adaptive", {}).get("union")),
                    "complete": not pending}
    for norm in NORMS:
        row["per_norm"][norm.value] = {
            "paper": paper(paper_name, f"All {norm.value}"),
            "paper_protocol": _cell(card.get("paper_protocol", {}).get("per_norm", {}).get(norm.value)),
            "incl_adaptive": _cell(card.get("incl_adaptive", {}).get("per_norm", {}).get(norm.value)),
            "complete": norm.value not in pending,
            "strongest": strongest_attacks(card, norm.value, strongest),
        }
    return row


def paper_order(row: dict) -> tuple[int, bool, str]:
    """The paper's column order (Table 1, then Table 2), other models last; a model under another objective
    right after its original."""
    order = list(dict.fromkeys(TABLE1_MODELS + TABLE2_MODELS))
    label = PAPER_COUNTERPART.get(row["paper_name"], row["paper_name"])
    return (order.index(label) if label in order else len(order), row["paper_name"] in PAPER_COUNTERPART,
            row["model"])


def compare(cards: Sequence[dict], suite: str | None = None, strongest: int = 0) -> list[dict[str, Any]]:
    """The rows of ``cards`` in the paper's order, each norm with its ``strongest`` attacks."""
    return sorted((row_of(c, suite, strongest) for c in cards), key=paper_order)


def _acc_ci(acc: float, interval: list | None) -> str:
    return fmt_acc_ci(acc, tuple(interval)) if interval else fmt_acc(acc)


def _md_cell(c: dict) -> str:
    ours = c["incl_adaptive"]
    if ours is None or math.isnan(ours["accuracy"]):
        text = "-"
    else:
        text = f"**{_acc_ci(ours['accuracy'], ours['interval_95'])}**"
        pp = c["paper_protocol"]
        if pp and not math.isnan(pp["accuracy"]):
            # an arrow only where adaptive attacks of this norm ran: the same attacks are one number
            text = text if pp["attacks"] == ours["attacks"] else f"{fmt_acc(pp['accuracy'])} -> {text}"
        else:
            text = "adaptive only: " + text
    if c["paper"] is not None:
        text += f" (paper {fmt_acc(c['paper'])})"
    return text + ("" if c["complete"] else " *(incomplete)*")


def _union_cell(row: dict) -> str:
    """The union accuracy (incl. adaptive); on a card written before it was measured, its upper bound."""
    u = row["union"]
    ours = u["incl_adaptive"]
    if ours is None:    # never above the weakest norm's worst case
        worst = [c["incl_adaptive"]["accuracy"] for c in row["per_norm"].values()
                 if c["incl_adaptive"] and not math.isnan(c["incl_adaptive"]["accuracy"])]
        return f"<= {fmt_acc(min(worst))} (not measured)" if worst else "-"
    if math.isnan(ours["accuracy"]):
        return "-"
    pp = u["paper_protocol"]
    adaptive_ran = any(c["paper_protocol"] and c["incl_adaptive"]
                       and c["paper_protocol"]["attacks"] != c["incl_adaptive"]["attacks"]
                       for c in row["per_norm"].values())
    text = f"**{_acc_ci(ours['accuracy'], ours['interval_95'])}**"
    if not pp or math.isnan(pp["accuracy"]):
        text = "adaptive only: " + text
    elif adaptive_ran:
        text = f"{fmt_acc(pp['accuracy'])} -> {text}"
    return text + ("" if u["complete"] else " *(incomplete)*")


def _threshold(rows: list[dict], norm: Norm) -> str:
    """The threshold of a norm's column: the cards' own, where they agree; else the paper's MNIST one."""
    seen = {block["threshold"] for r in rows for block in (r["per_norm"][norm.value]["incl_adaptive"],)
            if block and block.get("threshold") is not None}
    return f"{seen.pop():g}" if len(seen) == 1 else f"{norm.threshold:g}"


def _header(rows: list[dict], first: list[str], last: Sequence[str] = ()) -> list[str]:
    """A Markdown table's head: the ``first`` columns, then one per norm with its threshold, then ``last``."""
    head = first + [f"{n.value} ({_threshold(rows, n)})" for n in NORMS] + list(last)
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def _model_cell(row: dict) -> str:
    text = f"{md(row['paper_name'])} (`{md(row['model'])}`)"
    if row.get("_twin"):         # another card of the same model name: say which file this one is
        text += f" from `{md(row['card'])}`"
    if row.get("edited"):
        text += " **EDITED: its content no longer matches its hash; not a measured result**"
    return text


def _short(attack: str, norm: Norm) -> str:
    """An attack's name without its norm (the column says it): ``L2 AutoAttack`` -> ``AutoAttack``."""
    prefix = f"{norm.value} "
    return attack[len(prefix):] if attack.startswith(prefix) and len(attack) > len(prefix) else attack


def strongest_markdown(rows: list[dict]) -> str:
    """Per model and norm, the attacks that leave the least accuracy (an empty string when no row has any)."""
    if not any(r["per_norm"][n.value].get("strongest") for r in rows for n in NORMS):
        return ""
    lines = _header(rows, ["model"])
    for r in rows:
        cells = [_model_cell(r)]
        for n in NORMS:
            found = r["per_norm"][n.value].get("strongest") or []
            cells.append("; ".join(f"{md(_short(a['attack'], n))}{ADAPTIVE_MARK if a['adaptive'] else ''} "
                                   f"{fmt_acc(a['accuracy'])}{'' if a['complete'] else ' (unfinished)'}"
                                   for a in found) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + ("\n\nThe attacks that leave the least accuracy at each threshold, lowest first "
                               f"({ADAPTIVE_MARK}: adaptive, beyond the paper's suite).\n")


def groups(rows: list[dict]) -> list[list[dict]]:
    """The rows in tables of their own: one per dataset, suite and thresholds (the cards of one table were measured
    the same way), in the order of their first row."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        g = r["group"]
        out.setdefault(json.dumps([g["dataset"], g["suite"], g["thresholds"]]), []).append(r)
    return list(out.values())


# An L0 threshold below this many pixels lets an attack change one pixel: the column then says little.
L0_MEANINGFUL = 2


def _group_text(rows: list[dict]) -> str:
    """What a table's cards share, and what that means for reading it."""
    g = rows[0]["group"]
    sizes = sorted({r["n"] for r in rows if r.get("n") is not None})
    eps = ", ".join(f"{n} {t:g}" for n, t in g["thresholds"].items() if t is not None)
    text = (f"**{md(g['dataset'])}**, suite `{md(g['suite'])}`, " + (f"{' or '.join(f'{n:,}' for n in sizes)} images, " if sizes
                                                                     else "") + f"thresholds {eps or 'unknown'}.")
    if not g["paper_columns"]:
        text += " No paper numbers: this is not the paper's setting (MNIST at its thresholds)."
    l0 = g["thresholds"].get("L0")
    if l0 is not None and l0 < L0_MEANINGFUL:
        text += (f" **L0 at {l0:g} pixel(s)**: on images this small the scaled L0 threshold lets an attack change "
                 "about one pixel, so the L0 column says little about robustness.")
    return text


def _table_markdown(rows: list[dict]) -> str:
    lines = _header(rows, ["model", "clean"], ["all norms (union)"])
    for r in rows:
        clean = _acc_ci(r["clean"], r["clean_interval_95"])
        if r["clean_paper"] is not None:
            clean += f" (paper {fmt_acc(r['clean_paper'])})"
        cells = [_model_cell(r), clean] + [_md_cell(r["per_norm"][n.value]) for n in NORMS] + [_union_cell(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(rows: list[dict]) -> str:
    """One table per group of comparable cards (:func:`groups`), each headed by what its cards share when there
    are several, then what the cells mean, then the strongest attacks."""
    names = [r["model"] for r in rows]
    for r in rows:
        r["_twin"] = names.count(r["model"]) > 1
    tables = groups(rows)
    several = len(tables) > 1
    body = "\n\n".join((_group_text(t) + "\n\n" if several or not t[0]["group"]["paper_columns"]
                         or t[0]["group"]["thresholds"].get("L0", L0_MEANINGFUL) < L0_MEANINGFUL else "")
                        + _table_markdown(t) for t in tables)
    extra = "\n".join(x for x in (strongest_markdown(t) for t in tables) if x)
    edited = [r for r in rows if r.get("edited")]
    warning = (f"\n**{len(edited)} card(s) were changed after they were written** (their content does not match "
               "the hash they carry): " + ", ".join(f"`{md(r['card'])}`" for r in edited) + ".\n") if edited else ""
    return body + (
        "\n\nEach cell: ours under the paper's protocol (its attacks only) -> **ours including the adaptive attacks** "
        "[95% Wilson interval], then the paper's published accuracy over all its attacks of that norm. "
        "A cell without an arrow: no adaptive attack of that norm was part of the run's protocol. "
        "*(incomplete)*: attacks of that norm still to run; the number can only fall. *All norms (union)*: the share "
        "of samples no attack of any norm fooled within its threshold (the paper's *minimal accuracy*, the lowest "
        "accuracy of a single attack, is a weaker number); `<= x (not measured)`: the card predates the union metric, whose value is at most the weakest norm's.\n") + warning + (
        f"\n{extra}" if extra else "")


def _published_cell(entry: Published, norm: Norm) -> str:
    if norm.value not in entry.norms:
        return "not measured"
    eps, acc = entry.norms[norm.value]
    return f"{'not listed' if acc is None else f'{acc:.1f}%'} (eps {eps:g})"


def published_markdown(entries: Sequence[Published] = PUBLISHED) -> str:
    """The published multi-norm results, each cell with its own threshold, and what they were measured with."""
    lines = ["| published (not measured here) | clean | " + " | ".join(n.value for n in NORMS)
             + " | all its norms (union) | images, attacks |", "|" + "---|" * (len(NORMS) + 4)]
    for e in entries:
        cells = [f"{md(e.label)} ({md(e.source)})", f"{e.clean:.1f}%", *(_published_cell(e, n) for n in NORMS),
                 f"**{e.union:.1f}%**", f"first {e.images:,} test images; {md(e.attacks)}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + (
        "\n\nPublished numbers at their own thresholds (each cell: the accuracy, then the threshold), on their own "
        "images and attacks: context for the rows above, not comparable cell by cell; the union is over the norms "
        "each one lists.\n")


def render(paths: Sequence[Path | str], suite: str | None = None, strongest: int = 0,
           published: bool = False) -> tuple[list[dict[str, Any]], str]:
    """``dim compare``: the rows of the cards in ``paths`` and their Markdown (with the published multi-norm results
    under them when ``published``)."""
    rows = compare(load_cards(paths), suite, strongest)
    text = to_markdown(rows)
    return rows, text + (f"\n{published_markdown()}" if published else "")
