"""How much of a binarized input each norm's budget can flip, before any model: the attack surface of a binarization.

    python benchmarks/flip_budget.py --n 200 --pools 1 2 4 --widths 0.2 0.4

A model that binarizes its input sees only which units (pixels, or the ``pool x pool`` blocks a block binarization
thresholds by their mean) lie on which side of the threshold; whatever it learns, an attacker can do no more than
flip units. For each of the first N test images and each binarization this counts what each norm's budget at the
dataset's threshold can flip when it buys the flips that change the binarized image most per unit of cost first
(:meth:`dim.attacks.binflip.FlipUnits.moves`, the same moves and costs as BinFlip and knapsack flips; whole flips
only): the number of units, and the change of the binarized image in L1 (for a step, the number of binarized pixels
flipped: a block flip changes ``pool**2`` of them; on a ramp of width ``w`` a flip changes a unit already inside
the band by less than one), and how many units lie within 0.25 of the threshold (of their mean, for a block). A
ramp also changes under partial moves: ``median_binarized_change_partial`` counts them, exactly for L-inf (every
unit moved as far as the ball allows) and for L2 on a ramp of pixels from the pixels inside the band alone. A
binarization that makes a defence easier should leave each norm less to change. Model-free and deterministic;
writes ``results/flip_budget.json``.
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


def bought(costs: torch.Tensor, gains: torch.Tensor, budget: float) -> torch.Tensor:
    """Which of each row's units the budget pays for, most gain per unit of cost first: ``(B, U) -> (B, U)``."""
    order = (costs / gains.clamp_min(1e-12)).argsort(1)
    paid = costs.gather(1, order).cumsum(1) <= budget * (1 + 1e-6)
    return torch.zeros_like(paid).scatter_(1, order, paid)


def partial_linf(x: torch.Tensor, units: FlipUnits, eps: float) -> torch.Tensor:
    """The binarized image's largest change in L1 within the L-inf ball, per image, partial moves included: every
    unit's mean moved by as much of ``eps`` as the box allows, up or down, whichever changes it more."""
    v = units.group(x)
    m = v.mean(-1)
    up, down = (1 - v).clamp(max=eps).mean(-1), v.clamp(max=eps).mean(-1)
    b = units.binarized
    return (torch.maximum((b(m + up) - b(m)).abs(), (b(m - down) - b(m)).abs()) * units.size).sum(1)


def partial_l2_ramp(x: torch.Tensor, units: FlipUnits, eps: float) -> torch.Tensor:
    """On a ramp of pixels: the largest change in L1 of the binarized image within the L2 ball from the pixels inside
    the band (each one's change is its move over the width, up to the farther edge), by water-filling
    ``min(room_i, level)`` with the squares adding up to ``eps**2``; pixels outside the band left out (a lower
    bound, they must first cross a dead zone)."""
    lo, hi = units.threshold - units.width / 2, units.threshold + units.width / 2
    v = x.flatten(1)
    room = torch.where((v > lo) & (v < hi), torch.maximum(v - lo, hi - v), torch.zeros_like(v))
    a, b = torch.zeros(len(v)), room.amax(1)
    for _ in range(60):                                         # bisection on the level
        mid = (a + b) / 2
        fits = room.clamp(max=mid[:, None]).square().sum(1) <= eps * eps
        a, b = torch.where(fits, mid, a), torch.where(fits, b, mid)
    return room.clamp(max=a[:, None]).sum(1) / units.width


def surface(x: torch.Tensor, units: FlipUnits, eps: dict[Norm, float]) -> dict[str, Any]:
    """Per norm, the medians over images of the units its budget can flip and the binarized image's change."""
    near = (units.group(x).mean(-1) - units.threshold).abs() < NEAR
    out: dict[str, Any] = {f"median_units_within_{NEAR}_of_threshold": float(near.sum(1).float().median())}
    gains = units.change(x).abs() * units.size                 # the binarized image's change in L1 per flip
    for norm, radius in eps.items():
        _, move = units.moves(x, norm)
        cost = flip_cost(move, norm)
        take = (cost <= radius) if norm is Norm.LINF else bought(cost, gains, flip_budget(radius, norm))
        out[norm.value] = {"median_units": float(take.sum(1).float().median()),
                           "median_binarized_change": float((gains * take).sum(1).median())}
        if norm is Norm.LINF:
            out[norm.value]["median_binarized_change_partial"] = float(partial_linf(x, units, radius).median())
        if norm is Norm.L2 and units.width > 0 and units.pool == 1:
            out[norm.value]["median_binarized_change_partial"] = float(partial_l2_ramp(x, units, radius).median())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="the first N test images")
    ap.add_argument("--pools", type=int, nargs="+", default=[1, 2], help="unit sizes (1: pixels)")
    ap.add_argument("--widths", type=float, nargs="*", default=[0.4], help="ramp widths (pixels; 0: a step)")
    ap.add_argument("--threshold", type=float, default=0.5, help="the binarization threshold (the models' 0.5)")
    ap.add_argument("--dataset", default="mnist")
    args = ap.parse_args()
    x, _ = data.load_split(args.dataset, "test", limit=args.n)
    x = torch.from_numpy(np.asarray(x, dtype=np.float32))
    eps = {nm: float(v) for nm, v in scaled_thresholds(tuple(x.shape[1:])).items()}
    pools = {str(p): surface(x, FlipUnits(args.threshold, p), eps) for p in args.pools}
    ramps = {str(w): surface(x, FlipUnits(args.threshold, 1, w), eps) for w in args.widths}
    write_result("flip_budget", {"dataset": args.dataset, "n": len(x), "threshold": args.threshold,
                                 "eps": {nm.value: v for nm, v in eps.items()}, "pools": pools, "ramps": ramps})


if __name__ == "__main__":
    main()
