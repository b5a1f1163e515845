"""Evaluate models with a suite (resumable) and record the time per attack.

    python benchmarks/bench_eval_suite.py --suite paper --n 200 --run runs/paper-dim models/bench/dim models/bench/bidim
    python benchmarks/bench_eval_suite.py --suite quick --start 200 --n 200 --run runs/next models/dim   # images 200-399

Reruns resume where the last one stopped. Writes
``results/eval_<suite>_n<N>.json`` with seconds per attack per model (from the
store: the sum of its shards' times) and the total.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import write_result

from dim.attacks.suites import get_suite
from dim.evaluation.status import run_status
from dim.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dirs", nargs="*", type=Path, help="models to evaluate (none with --snapshot)")
    ap.add_argument("--suite", default="paper")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--start", type=int, default=0, help="evaluate test images START .. START+N-1")
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--no-checks", action="store_true", help="skip the model sanity checks")
    ap.add_argument("--name", default=None, help="results file name (default eval_<suite>_n<N>)")
    ap.add_argument("--snapshot", action="store_true",
                    help="do not evaluate: record what the store holds now (a finished run, or one still going)")
    args = ap.parse_args()
    if not args.snapshot:
        if not args.model_dirs:
            ap.error("name the models to evaluate, or pass --snapshot to record the run as it is")
        subprocess.run([sys.executable, "-m", "dim", "evaluate", *map(str, args.model_dirs), "--suite", args.suite,
                        "--n", str(args.n), "--start", str(args.start), "--run", str(args.run), "--batch-size", str(args.batch_size)]
                       + (["--no-checks"] if args.no_checks else []), check=True)
    store = Store(args.run / "results.sqlite")
    try:
        per = store.attack_seconds()
        shards = store.shards()
    finally:
        store.close()
    names = {s.name for s in get_suite(args.suite)}          # a run whose suite grew: this suite's part only
    per = {key: sec for key, sec in per.items() if key[1] in names}
    shards = [s for s in shards if s["attack"] in names]
    models = sorted({m for m, _ in per})
    table = {m: {a: round(s, 2) for (mm, a), s in per.items() if mm == m} for m in models}
    total = sum(per.values())
    write_result(args.name or f"eval_{args.suite.replace('+', '_')}_n{args.n}", {
        "suite": args.suite, "n": args.n, **({"start": args.start} if args.start else {}), "run": str(args.run), "seconds_per_attack": table,
        "seconds_per_model": {m: round(sum(v.values()), 1) for m, v in table.items()},
        "total_seconds": round(total, 1), "failed_shards": [s for s in shards if s["status"] == "failed"],
        "recorded_without_evaluating": args.snapshot,
        "complete": all(not set(st.pending_attacks) & names for st in run_status(args.run)),
        "shards": {st: sum(1 for s in shards if s["status"] == st) for st in ("done", "failed", "skipped")},
    })


if __name__ == "__main__":
    main()
