"""Pool the cards of one model evaluated on disjoint ranges of test images into one result on all of them.

    python benchmarks/pool_cards.py first200/cards/m.json next200/cards/m.json --label m_n400

What pooling adds up and what it refuses: :mod:`dim.report.pool`. Writes ``results/pooled_<label>.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import RESULTS, write_result

from dim.report.pool import pool_cards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cards", nargs="+", type=Path, help="cards of one model on disjoint image ranges")
    ap.add_argument("--label", required=True, help="results file: pooled_<label>.json")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the results file")
    args = ap.parse_args()
    try:
        result = pool_cards(args.cards)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    write_result(f"pooled_{args.label}", result, results=args.results)


if __name__ == "__main__":
    main()
