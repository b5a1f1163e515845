"""Accuracy under L-inf PGD with random restarts (the Madry et al. protocol).

    python benchmarks/bench_pgd_restarts.py models/bench/madry --n 1000 --steps 40 --restarts 5

Per sample, robust only if no restart finds an adversarial: each restart is PGD
from a uniform random start in the eps-ball, ``steps`` steps of ``step`` (0.01)
on the cross-entropy, projected to the ball and to [0, 1]; every final point is
re-classified by the model. Writes ``results/pgd_<model>.json``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import write_result

import dim
from dim import data
from dim.train.classifier import pgd_linf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--step", type=float, default=0.01)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--batch", type=int, default=250)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = dim.load_model(args.model_dir)
    x, y = (torch.from_numpy(a) for a in data.load_split("mnist", "test", limit=args.n))
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with torch.no_grad():
        robust = torch.cat([model(x[i:i + args.batch]).argmax(1) == y[i:i + args.batch]
                            for i in range(0, len(y), args.batch)])
    clean = robust.float().mean().item()
    for _ in range(args.restarts):
        for i in range(0, len(y), args.batch):
            sl = slice(i, i + args.batch)
            todo = torch.nonzero(robust[sl]).flatten() + i
            if len(todo) == 0:
                continue
            adv = pgd_linf(model, x[todo], y[todo], args.eps, args.steps, args.step, gen)
            assert (adv - x[todo]).abs().max() <= args.eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
            with torch.no_grad():
                robust[todo] = model(adv).argmax(1) == y[todo]
    name = model.card["model"]
    write_result(f"pgd_{name}", {
        "model": name, "n": args.n, "eps": args.eps, "steps": args.steps, "step": args.step,
        "restarts": args.restarts, "clean_accuracy": clean, "robust_accuracy": robust.float().mean().item(),
        "seconds": round(time.perf_counter() - t0, 1),
    })


if __name__ == "__main__":
    main()
