"""The flip attacks against binarized models in every norm, at the paper's thresholds: BinFlip (one checked flip
per step) and, with ``--knapsack``, knapsack flips (many flips per step, by straight-through gain per unit of cost).

    python benchmarks/bench_binflip.py MODEL_DIR [MODEL_DIR ...] [--n 100]
    python benchmarks/bench_binflip.py models/bidim models/bicnn --n 200 --knapsack

Runs the adaptive suite's BinFlip spec of each norm (and the ``knapsack-flips`` suite's) on the first N test images
of each model directory (biCNN, biDIM, ...), verifies every candidate on the real model, and writes
``results/binflip_n<N>.json`` (``binflip_knapsack_n<N>.json`` with ``--knapsack``): robust accuracy with its 95%
interval and seconds per attack, and with both attacks, per norm, the accuracy against the two together (a sample
counts as robust only if neither fooled it).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from common import write_result
from dim import data, load_model
from dim.attacks.suites import ADAPTIVE, KNAPSACK_FLIPS
from dim.evaluation.metrics import accuracy_at, accuracy_interval
from dim.core.verify import verify
from dim.evaluation.units import attack_runner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dirs", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--knapsack", action="store_true", help="also the knapsack-flips suite, and both together")
    args = ap.parse_args()
    x, y = data.load_split("mnist", "test", limit=args.n)
    specs = [s for s in ADAPTIVE if s.attack == "binflip"] + (list(KNAPSACK_FLIPS) if args.knapsack else [])
    out: dict[str, dict] = {}
    for d in args.model_dirs:
        model = load_model(d)
        name = model.card["model"]
        out[name] = {"clean_accuracy_card": model.card["clean_accuracy"], "weights_sha256": model.card.get("weights_sha256")}
        worst: dict[str, np.ndarray] = {}
        for spec in specs:
            t0 = time.perf_counter()
            got = verify(model, x, y, attack_runner(spec)(spec, model, x, y, 0), spec.norm)
            acc = accuracy_at(got.distance, spec.threshold)
            key = spec.norm.value
            worst[key] = got.distance if key not in worst else np.minimum(worst[key], got.distance)
            out[name][spec.name] = {"robust_accuracy": acc, "interval_95": list(accuracy_interval(acc, len(y))),
                                    "threshold": spec.threshold, "params": spec.params,
                                    "seconds": round(time.perf_counter() - t0, 1)}
            print(name, spec.name, f"{acc:.3f}", flush=True)
        if args.knapsack:
            out[name]["both_per_norm"] = {}
            for spec in (s for s in specs if s.attack == "binflip"):
                acc = accuracy_at(worst[spec.norm.value], spec.threshold)
                out[name]["both_per_norm"][spec.norm.value] = {
                    "robust_accuracy": acc, "interval_95": list(accuracy_interval(acc, len(y)))}
    write_result(f"binflip{'_knapsack' if args.knapsack else ''}_n{args.n}",
                 {"n": args.n, "threads": torch.get_num_threads(), "models": out})


if __name__ == "__main__":
    main()
