"""Inference time per image: ABS (paper settings and the fast setting) against DIM, in one run.

    python benchmarks/bench_inference_time.py --abs models/bench/abs --dim models/bench/dim

The paper claims DIM is much faster than ABS, whose inference optimises latents at
test time. Each model classifies the same 100 test images (one batch, 2 threads);
the figure is the median over repeats of the batch time divided by 100. Writes
``results/inference_time.json`` with the per-image times and the ABS/DIM ratios.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import median_seconds, write_result

import dim
from dim import data
from dim.models.abs import FAST


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--abs", type=Path, required=True)
    ap.add_argument("--dim", type=Path, required=True)
    ap.add_argument("--cnn", type=Path, default=None)
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(2)
    x, _ = data.load_split("mnist", "test", limit=args.n)
    x = torch.from_numpy(x)
    models = {"dim": dim.load_model(args.dim), "abs_paper": dim.load_model(args.abs),
              "abs_fast": dim.load_model(args.abs, overrides=FAST)}
    if args.cnn:
        models["cnn"] = dim.load_model(args.cnn)
    per_image = {}
    for name, model in models.items():
        repeats = 3 if name.startswith("abs") else 15
        with torch.no_grad():
            per_image[name] = median_seconds(lambda: model(x), repeats=repeats, warmup=1) / len(x)
    write_result("inference_time", {
        "images": len(x), "threads": 2, "seconds_per_image": per_image,
        "abs_settings": {"paper": {k: models["abs_paper"].cfg.__dict__[k] for k in FAST}, "fast": FAST},
        "ratio_abs_paper_over_dim": per_image["abs_paper"] / per_image["dim"],
        "ratio_abs_fast_over_dim": per_image["abs_fast"] / per_image["dim"],
    })


if __name__ == "__main__":
    main()
