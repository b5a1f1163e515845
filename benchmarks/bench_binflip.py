"""BinFlip against binarized models in every norm, at the paper's thresholds.

    python benchmarks/bench_binflip.py MODEL_DIR [MODEL_DIR ...] [--n 100]

Runs the adaptive suite's BinFlip spec of each norm on the first N test images of each
model directory (biCNN, biDIM, ...), verifies every candidate on the real model, and
writes ``results/binflip_n<N>.json``: robust accuracy with its 95% interval and seconds.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import write_result
from dim import data, load_model
from dim.attacks.suites import ADAPTIVE
from dim.evaluation.metrics import accuracy_at, accuracy_interval
from dim.core.verify import verify
from dim.evaluation.units import attack_runner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dirs", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    x, y = data.load_split("mnist", "test", limit=args.n)
    specs = [s for s in ADAPTIVE if s.attack == "binflip"]
    out: dict[str, dict] = {}
    for d in args.model_dirs:
        model = load_model(d)
        name = model.card["model"]
        out[name] = {"clean_accuracy_card": model.card["clean_accuracy"], "weights_sha256": model.card.get("weights_sha256")}
        for spec in specs:
            t0 = time.perf_counter()
            got = verify(model, x, y, attack_runner(spec)(spec, model, x, y, 0), spec.norm)
            acc = accuracy_at(got.distance, spec.threshold)
            out[name][spec.name] = {"robust_accuracy": acc, "interval_95": list(accuracy_interval(acc, len(y))),
                                    "threshold": spec.threshold, "params": spec.params,
                                    "seconds": round(time.perf_counter() - t0, 1)}
            print(name, spec.name, f"{acc:.3f}", flush=True)
    write_result(f"binflip_n{args.n}", {"n": args.n, "threads": torch.get_num_threads(), "models": out})


if __name__ == "__main__":
    main()
