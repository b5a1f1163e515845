"""Ways tried to bring DIM's passes closer to the matmul rate, measured by ``bench_throughput.passes`` in one run.

    python benchmarks/bench_throughput_variants.py weights/dim_at

Variants (the model's weights and results are the same in each; only how the passes are computed differs):

- ``eager``: the model as it is.
- ``heads_in_batch_chunks_<c>``: the internal models and their sums computed on ``c`` images at a time, so that
  the (10, c, 784) reconstructions stay in the core's cache between the matmul, the sigmoid and the sum.
- ``torch_compile``: ``torch.compile`` (inductor: generated C++ kernels that fuse the elementwise work; needs a
  C++ compiler at run time, first call compiles).
- ``relu_before_transpose``: the internal models' first ReLU applied in place to the ``(B, K*h)`` output of their
  shared matmul before it is viewed as ``(K, B, h)``, so that autograd needs no strided copy of that view.
- ``plain_sum_denominator``: ``||D(x)||_1`` as a plain sum (the denoiser's sigmoid output is never negative), no
  ``abs`` and no ``sgn`` in the backward pass.

Writes ``results/throughput_variants_<model>.json``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from bench_throughput import passes
from common import write_result

import dim
from dim.core.device import device_info


def _chunked(model: nn.Module, chunk: int) -> nn.Module:
    """``model`` whose scores are computed ``chunk`` images at a time (the same arithmetic, per image)."""
    def scores(x: torch.Tensor) -> torch.Tensor:
        d = model.denoise(x)
        parts = [model.heads(d[i:i + chunk]).sum(-1) for i in range(0, len(d), chunk)]
        return torch.cat(parts, 1).t() / d.abs().sum(-1, keepdim=True).clamp_min(1e-6)
    model.scores = scores
    return model


def _relu_before_transpose(model: nn.Module) -> nn.Module:
    heads = model.heads
    enc1 = heads.enc1

    def forward(d: torch.Tensor) -> torch.Tensor:
        h = torch.relu_(enc1.linear(d)).view(d.shape[0], enc1.k, enc1.d_out).transpose(0, 1)
        return torch.sigmoid_(heads.dec2(torch.relu_(heads.dec1(heads.enc2(h)))))
    heads.forward = forward
    return model


def _plain_sum_denominator(model: nn.Module) -> nn.Module:
    def scores(x: torch.Tensor) -> torch.Tensor:
        d, rec = model.reconstructions(x)
        return rec.sum(-1).t() / d.sum(-1, keepdim=True).clamp_min(1e-6)
    model.scores = scores
    return model


def _compiled(model: nn.Module) -> nn.Module:
    compiled = torch.compile(model)
    compiled.cfg = model.cfg
    return compiled


VARIANTS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "eager": lambda m: m,
    "heads_in_batch_chunks_128": lambda m: _chunked(m, 128),
    "heads_in_batch_chunks_64": lambda m: _chunked(m, 64),
    "torch_compile": _compiled,
    "relu_before_transpose": _relu_before_transpose,
    "plain_sum_denominator": _plain_sum_denominator,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    dev = torch.device("cpu")
    out: dict[str, Any] = {}
    for name, make in VARIANTS.items():
        model = make(dim.load_model(args.model_dir, device=dev))
        t0 = time.perf_counter()
        got = passes(model, args.batch, dev, rounds=args.rounds)
        out[name] = {"seconds": round(time.perf_counter() - t0, 1),
                     **{k: {f: got[k][f] for f in ("fraction_of_matmul_rate", "fraction_per_round",
                                                     "images_per_second")} for k in ("forward", "attack_step",
                                                                                     "train_step")}}
    card = dim.load_model(args.model_dir).card
    write_result(f"throughput_variants_{card['model']}", {
        "model": card["model"], "batch": args.batch, "threads": torch.get_num_threads(), "device": device_info(dev),
        "variants": out})


if __name__ == "__main__":
    main()
