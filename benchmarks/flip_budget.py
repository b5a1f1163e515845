"""How much of a binarized input each norm's budget can flip, before any model: the attack surface of a binarization.

    python benchmarks/flip_budget.py --n 200 --pools 1 2

A model that binarizes its input sees only which units (pixels, or the ``pool x pool`` blocks a block binarization
thresholds by their mean) lie on which side of the threshold; whatever it learns, an attacker can do no more than
flip units. For each of the first N test images and each unit size this counts what each norm's budget at the
dataset's threshold can flip when it buys the cheapest flips first (:meth:`dim.attacks.binflip.FlipUnits.moves`,
the same moves and costs as BinFlip and knapsack flips): the number of units and of binarized pixels (a block flip
changes ``pool**2`` of them), and how many units lie within 0.25 of the threshold (of their mean, for a block). A
binarization that makes a defence easier should leave each norm fewer pixels to flip. Model-free and
deterministic; writes ``results/flip_budget.json``.
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
from common import write_result

from dim import data
from dim.attacks.binflip import FlipUnits, flip_budget, flip_cost
from dim.core.norms import Norm, scaled_thresholds

NEAR = 0.25


def reachable(costs: torch.Tensor, budget: float) -> torch.Tensor:
    """How many of each row's units the budget pays for, cheapest first: ``(B, U) -> (B,)``."""
    spent = costs.sort(1).values.cumsum(1)
    return (spent <= budget * (1 + 1e-6)).sum(1)


def surface(x: torch.Tensor, units: FlipUnits, eps: dict[Norm, float]) -> dict[str, Any]:
    """Per norm, the medians over images of the units and binarized pixels its budget can flip."""
    near = (units.group(x).mean(-1) - units.threshold).abs() < NEAR
    out: dict[str, Any] = {f"median_units_within_{NEAR}_of_threshold": float(near.sum(1).float().median())}
    for norm, radius in eps.items():
        _, move = units.moves(x, norm)
        cost = flip_cost(move, norm)
        n = (cost <= radius).sum(1) if norm is Norm.LINF else reachable(cost, flip_budget(radius, norm))
        out[norm.value] = {"median_units": float(n.float().median()),
                           "median_binarized_pixels": float((n * units.size).float().median())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="the first N test images")
    ap.add_argument("--pools", type=int, nargs="+", default=[1, 2], help="unit sizes (1: pixels)")
    ap.add_argument("--threshold", type=float, default=0.5, help="the binarization threshold (the models' 0.5)")
    ap.add_argument("--dataset", default="mnist")
    args = ap.parse_args()
    x, _ = data.load_split(args.dataset, "test", limit=args.n)
    x = torch.from_numpy(np.asarray(x, dtype=np.float32))
    eps = {nm: float(v) for nm, v in scaled_thresholds(tuple(x.shape[1:])).items()}
    rows = {str(p): surface(x, FlipUnits(args.threshold, p), eps) for p in args.pools}
    write_result("flip_budget", {"dataset": args.dataset, "n": len(x), "threshold": args.threshold,
                                 "eps": {nm.value: v for nm, v in eps.items()}, "pools": rows})


if __name__ == "__main__":
    main()
