"""What models cost to run, side by side: inference and an attack's gradient step per image, for any models
``dim.load_model`` reads (a DIM-family model beside a CNN), measured in one run.

    python benchmarks/bench_model_cost.py weights/bidim_at_ramp_dnramp weights/msd_cnn --label every_norm

Each model classifies the same batch of MNIST test images (``torch.inference_mode``) and takes an attack step on
it: the forward pass and the gradient with respect to the input, weights frozen (what every gradient attack spends
per step, as the evaluation runs it). The models alternate for ``--rounds`` rounds (the median of ``--repeats``
calls each), at each thread count of ``--threads`` (1: how each process of a parallel evaluation runs); the
figures are the medians over rounds, and each model's time relative to the first model's is the median of the
per-round ratios, so that the machine's noise hits both sides. Also per model: parameters and the FLOPs of one
image's forward pass (torch's FLOP counter: matrix products and convolutions; elementwise work not counted).
Writes ``results/model_cost_<label>.json``.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any, Callable

import torch
from common import median_seconds, write_result
from torch.utils.flop_counter import FlopCounterMode

import dim
from dim import data
from dim.core.memory import reuse_freed_memory
from dim.evaluation.execute import frozen


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of the forward pass of ``model`` on one image (matmuls and convolutions)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x[:1])
    return int(counter.get_total_flops())


def passes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Callable[[], None]]:
    """The two timed passes of ``model`` on ``x``: inference, and forward + cross-entropy's input gradient."""
    def inference() -> None:
        with torch.inference_mode():
            model(x)

    def attack_step() -> None:
        xa = x.detach().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(xa), y).backward()
    return {"inference": inference, "attack_step": attack_step}


def measure(models: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor, rounds: int,
            repeats: int) -> dict[str, Any]:
    """Seconds per image of each pass of each model (medians over rounds) and each model's time over the first
    model's (median of the per-round ratios)."""
    names = list(models)
    seconds: dict[str, dict[str, list[float]]] = {m: {"inference": [], "attack_step": []} for m in names}
    for _ in range(rounds):
        for name in names:
            with frozen(models[name]):
                for pass_name, fn in passes(models[name], x, y).items():
                    seconds[name][pass_name].append(median_seconds(fn, repeats, 2) / len(x))
    first = names[0]
    out: dict[str, Any] = {}
    for name in names:
        out[name] = {}
        for pass_name, values in seconds[name].items():
            ratios = [v / f for v, f in zip(values, seconds[first][pass_name])]
            out[name][pass_name] = {"seconds_per_image": statistics.median(values),
                                    "images_per_second": 1 / statistics.median(values),
                                    f"time_over_{first}": round(statistics.median(ratios), 4),
                                    "ratio_per_round": [round(r, 4) for r in ratios]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dirs", type=Path, nargs="+", help="model directories (the first is the reference)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--label", required=True, help="results file: model_cost_<label>.json")
    args = ap.parse_args()
    reuse_freed_memory()
    xs, ys = data.load_split("mnist", "test", limit=args.batch)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys).long()
    names = [d.name for d in args.model_dirs]
    if len(set(names)) < len(names):
        ap.error(f"two model directories of the same name in {names}: give each model once")
    models = {name: dim.load_model(d, device="cpu") for name, d in zip(names, args.model_dirs)}
    about = {name: {"model_dir": str(d), "model": m.card["model"], "paper_name": m.card.get("paper_name"),
                    "parameters": sum(p.numel() for p in m.parameters()), "forward_flops": forward_flops(m, x),
                    "train_seconds": m.card.get("train_seconds"), "clean_accuracy": m.card.get("clean_accuracy")}
             for (name, m), d in zip(models.items(), args.model_dirs)}
    per_threads = {}
    for t in args.threads:
        torch.set_num_threads(t)
        per_threads[str(t)] = measure(models, x, y, args.rounds, args.repeats)
    write_result(f"model_cost_{args.label}", {"batch": args.batch, "rounds": args.rounds, "repeats": args.repeats,
                                              "models": about, "threads": per_threads})


if __name__ == "__main__":
    main()
