"""Per model and threshold: the paper's published number, ours under the paper's protocol, and ours including
the adaptive attacks with its 95% interval, from results cards.

    python benchmarks/paper_vs_adaptive.py CARD_OR_FOLDER... [--name paper_vs_adaptive]

The table is `dim compare`'s (:mod:`dim.report.compare`); this script stores it with the benchmarks' results.

Reads the cards `dim report` writes (``results/*.json``, or a snapshot's ``cards/`` folder), one per model; a
model named twice keeps its last card. Writes ``results/<name>.json`` (the numbers, with each card's run, suite
and samples) and ``results/<name>.md`` (the same as a Markdown table). A cell whose run still misses attacks of
that norm says so: its accuracy can only fall when they finish.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common import RESULTS, write_result

from dim.attacks.suites import get_suite
from dim.report.compare import CardError, compare, load_cards, to_markdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cards", type=Path, nargs="+", help="card files or folders of cards")
    ap.add_argument("--name", default="paper_vs_adaptive")
    ap.add_argument("--suite", default=None,
                    help="the attacks each run was meant to finish (default: each card's suite, which a run "
                         "evaluated under a filtered suite such as 'paper+adaptive:L2 AutoAttack' states exactly)")
    ap.add_argument("--strongest", type=int, default=3,
                    help="also name, per model and norm, this many attacks that leave the least accuracy (0: none)")
    args = ap.parse_args()
    if args.strongest < 0:
        ap.error("--strongest: a count of attacks, 0 or more")
    if args.suite:
        try:
            get_suite(args.suite)
        except ValueError as exc:
            ap.error(f"--suite: {exc}")
    try:
        rows = compare(load_cards(args.cards), args.suite, args.strongest)
    except CardError as exc:
        ap.error(str(exc))
    table = to_markdown(rows)
    write_result(args.name, {"rows": rows, "markdown": table}, echo=False)
    (RESULTS / f"{args.name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
