"""Inference throughput of a model at batch 256 against a plain matmul of the same FLOP count.

    python benchmarks/bench_throughput.py models/bench/dim

The matmul is ``(256, n) @ (n, n)`` with ``n`` chosen so that it does the same
multiply-adds as one forward pass of the model on 256 images: the ratio of the two
rates says how close the batched internal models run to what this machine's BLAS
does on one large, well-shaped matmul. Writes ``results/throughput_<model>.json``.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn as nn
from common import median_seconds, write_result

import dim
from dim.models.dim import BatchedLinear

BATCH = 256


def linear_macs_per_image(model: nn.Module) -> int:
    """Multiply-adds of every linear map in the model, for one image (a SharedInputLinear
    holds one nn.Linear, so counting nn.Linear and BatchedLinear covers everything)."""
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise NotImplementedError("conv layers need a shape-aware count")
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, BatchedLinear)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = dim.load_model(args.model_dir)
    x = torch.rand(BATCH, 1, 28, 28)
    with torch.inference_mode():
        t_model = median_seconds(lambda: model(x), repeats=15)
    macs = linear_macs_per_image(model)
    n = round(math.sqrt(macs))
    a, b = torch.rand(BATCH, n), torch.rand(n, n)
    with torch.inference_mode():
        t_mm = median_seconds(lambda: a @ b, repeats=15)
    flops = 2 * macs * BATCH
    name = model.card["model"]
    write_result(f"throughput_{name}", {
        "model": name, "batch": BATCH, "threads": args.threads,
        "images_per_second": BATCH / t_model, "model_seconds_per_batch": t_model,
        "macs_per_image": macs, "model_gflops": flops / t_model / 1e9,
        "matmul_shape": [BATCH, n, n], "matmul_gflops": 2 * BATCH * n * n / t_mm / 1e9,
        "fraction_of_matmul_rate": (flops / t_model) / (2 * BATCH * n * n / t_mm),
    })


if __name__ == "__main__":
    main()
