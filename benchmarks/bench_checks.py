"""Seconds the model sanity checks add to ``dim evaluate``, per model and per check.

    python benchmarks/bench_checks.py models/bench/cnn models/bench/bicnn models/bench/dim models/bench/bidim

The checks run once per model (on up to 100 correctly classified samples of the
first ``--n`` test images), so their cost is a fixed amount per model. Writes
``results/checks_time.json``; ``--busy`` records that other jobs shared the
machine (the figures are then upper bounds).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import write_result

from dim.checkpoint import load_model
from dim.data import load_split
from dim.evaluation.checks import MODEL_CHECKS, check_samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dirs", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--busy", action="store_true", help="other jobs shared the machine during the measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = load_split("mnist", "test", limit=args.n)
    per_model = {}
    for d in args.model_dirs:
        model = load_model(d)
        xs, ys = check_samples(model, x, y)       # the samples dim evaluate runs the checks on
        times = {}
        for c in MODEL_CHECKS:
            t0 = time.perf_counter()
            c.on_model(model, xs, ys, 0)
            times[c.name] = round(time.perf_counter() - t0, 2)
        per_model[model.card["model"]] = {"seconds": round(sum(times.values()), 1), "per_check": times}
    write_result("checks_time", {"n": args.n, "threads": args.threads, "machine_shared": args.busy,
                                 "models": per_model,
                                 "total_seconds": round(sum(m["seconds"] for m in per_model.values()), 1)})


if __name__ == "__main__":
    main()
