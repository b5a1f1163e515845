"""Train models with their default recipes through the CLI and record wall time and accuracy.

    python benchmarks/bench_train.py dim bidim im single_im dn_single_im

Each model is trained by ``dim train`` in a fresh process (start-up included in the
wall time); inference variants (``bidim``, ...) are derived from their base model's
directory. Writes ``results/train_<model>.json`` per model and ``results/train.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import write_result

from dim.models import get_entry

# Clean-accuracy targets and training-time budgets of the issues (seconds, this 2-core machine).
TARGETS = {"dim": 0.98, "bidim": 0.975, "cnn": 0.99, "madry": 0.98, "abs": 0.985}
MAX_SECONDS = {"dim": 300, "madry": 3600}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--out", type=Path, default=Path("models/bench"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    summary = {}
    for name in args.models:
        entry = get_entry(name)
        cmd = [sys.executable, "-m", "dim", "train", name, "--out", str(args.out / name), "--seed", str(args.seed)]
        if entry.weights_from:
            cmd += ["--from", str(args.out / entry.weights_from)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        card = json.loads((args.out / name / "card.json").read_text())
        row = {"model": name, "wall_seconds": round(wall, 1), "train_seconds": card["train_seconds"],
               "clean_accuracy": card["clean_accuracy"], "test_samples": card["test_samples"],
               "config": card["config"], "max_seconds": MAX_SECONDS.get(name),
               "within_time": wall <= MAX_SECONDS[name] if name in MAX_SECONDS else None, "accuracy_target": TARGETS.get(name),
               "meets_accuracy": card["clean_accuracy"] >= TARGETS[name] if name in TARGETS else None}
        write_result(f"train_{name}", row)
        summary[name] = {k: row[k] for k in ("wall_seconds", "clean_accuracy", "within_time", "meets_accuracy")}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
