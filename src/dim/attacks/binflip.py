"""BinFlip: a white-box attack built for models that binarize their input (biCNN, biDIM, biABS).

A model that computes ``f(1[x > t])`` sees only which side of the threshold each input value lies
on. So an attack chooses *which values to flip* across ``t``, and the cheapest way to flip a value
is to move it just past ``t``: its cost in the norm is about ``|x_i - t|``, small for the grey
edge pixels of a digit and large for its black background and white strokes. Gradient attacks
through the straight-through gradient (BPDA) ignore that cost: they step every pixel alike and
leave most of an L2 budget on pixels that never cross the threshold (measured: BPDA-APGD leaves
biCNN at 95% at L2 1.5 where Square, which is not gradient-based, reaches 70%).

BinFlip is greedy coordinate ascent on that combinatorial problem (a knapsack). At each step,
with the straight-through gradient ``g`` of the margin loss at the current adversarial, the
first-order gain of flipping value ``i`` is ``g_i * (+1 or -1)`` (the binarized input changes by
one); the moves that fit what is left of the norm's budget (L-inf: every value within eps of
``t`` is free, the rest impossible; L0: each value costs one) or undo an earlier flip (which
refunds its cost) are ranked by gain per unit of cost, the best few are tried with real forward
passes, and the one that raises the margin loss most per unit of cost is made. It stops per
sample once the model is fooled or no move helps. Ours, written for this project; each candidate
is verified on the true binarized model by the caller.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.norms import Norm
from ..models.binarize import Binarize, GradientMode, gradient_mode
from .gradient import margin_loss

NUDGE = 1e-3     # how far past the threshold a flipped value goes (float32 keeps it on its side)


def input_threshold(model: nn.Module) -> float:
    """The threshold of the model's binarizations (one value for all of them)."""
    ts = {float(m.threshold) for m in model.modules() if isinstance(m, Binarize)}
    if len(ts) != 1:
        raise ValueError(f"BinFlip needs one binarization threshold, found {sorted(ts) or 'none'}")
    return ts.pop()


def flip_targets(x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Which values binarize to 0 now (flipping raises them), and where each value goes when flipped: just
    past the threshold ``t``, the cheapest move that changes its side."""
    up = x <= t
    return up, torch.where(up, torch.full_like(x, t + NUDGE), torch.full_like(x, t - NUDGE))


def flip_cost(move: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Cost of each value's move in the budget of ``norm`` (L2: squared; L0: one each; L-inf handled apart)."""
    if norm is Norm.L2:
        return move.square()
    if norm is Norm.L1:
        return move.abs()
    return torch.ones_like(move)


def flip_budget(eps: float, norm: Norm) -> float:
    """The budget of :func:`flip_cost` at radius ``eps`` (L2 costs are squared, so is its budget)."""
    return eps * eps if norm is Norm.L2 else eps


def binflip(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: Norm, eps: float, steps: int = 300,
            lookahead: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy flips across the model's binarization threshold within the ``norm`` ball of radius ``eps``.

    Each step ranks the moves (flip a value that still fits the budget, or undo a flip) by straight-through
    gain per unit of cost, evaluates the ``lookahead`` best of them with real forward passes of the model,
    and makes the one whose measured margin gain per unit of cost is largest; a sample whose moves all
    fail to help stops. The linear ranking alone is a poor guide (on biCNN at L2 1.5 it left 82% of 60
    test images where checking 8 candidates per step left 5%), the forward passes are what make it work.
    Returns ``(candidates, broken)``: the first fooling adversarial per sample, else the last iterate."""
    if lookahead < 1:
        raise ValueError(f"lookahead must be at least 1, got {lookahead}")
    t = input_threshold(model)
    shape = x.shape[1:]
    flat = x.flatten(1)
    b, d = flat.shape
    up, target = flip_targets(flat, t)
    move = target - flat
    if norm is Norm.LINF:            # free inside the ball, impossible outside
        cost, budget = torch.zeros_like(flat), torch.zeros(b, device=x.device)
        feasible = move.abs() <= eps
    else:
        cost = flip_cost(move, norm)
        budget = torch.full((b,), flip_budget(eps, norm), device=x.device)
        feasible = cost <= budget[:, None]
    sign = torch.where(up, 1.0, -1.0).to(flat.dtype)
    flipped = torch.zeros_like(flat, dtype=torch.bool)
    out, broken = x.clone(), torch.zeros(b, dtype=torch.bool, device=x.device)
    live = torch.arange(b, device=x.device)

    def image(rows: torch.Tensor, fl: torch.Tensor) -> torch.Tensor:
        return torch.where(fl, target[rows], flat[rows])

    with gradient_mode(model, GradientMode.STRAIGHT_THROUGH):
        for it in range(steps + 1):
            cur = image(live, flipped[live]).view(-1, *shape).detach().requires_grad_(True)
            z = model(cur)
            hit = (z.argmax(1) != y[live]).detach()
            if hit.any():
                out[live[hit]] = cur[hit].detach()
                broken[live[hit]] = True
            if it == steps or bool(hit.all()):
                break
            loss = margin_loss(z, y[live], None)
            g, = torch.autograd.grad(loss.sum(), cur)
            keep = ~hit
            live, g, base = live[keep], g.flatten(1)[keep], loss.detach()[keep]
            fl, co = flipped[live], cost[live]
            room = budget[live] - (co * fl).sum(1)
            gain = g * torch.where(fl, -sign[live], sign[live])          # undoing a flip reverses its sign
            allowed = fl | (feasible[live] & (co <= room[:, None] + 1e-12))
            per_cost = torch.where(fl | (co <= 0), torch.ones_like(co), co)   # an undo refunds: rank by gain
            ratio = torch.where(allowed & (gain > 0), gain / per_cost, torch.full_like(gain, -1.0))
            cand = ratio.topk(min(lookahead, d), dim=1)
            n, k = cand.indices.shape
            trials = image(live, fl)[:, None, :].repeat(1, k, 1)
            undo = fl.gather(1, cand.indices)
            value = torch.where(undo, flat[live].gather(1, cand.indices), target[live].gather(1, cand.indices))
            trials.scatter_(2, cand.indices[:, :, None], value[:, :, None])
            with torch.no_grad():
                lt = margin_loss(model(trials.view(-1, *shape)), y[live].repeat_interleave(k), None).view(n, k)
            score = (lt - base[:, None]) / per_cost.gather(1, cand.indices)
            score = torch.where(cand.values > 0, score, torch.full_like(score, -float("inf")))
            best = score.argmax(1)
            move_ok = torch.isfinite(score.gather(1, best[:, None])[:, 0])
            pick = cand.indices.gather(1, best[:, None])[:, 0]
            rows = torch.nonzero(move_ok).flatten()
            fl = fl.clone()
            fl[rows, pick[rows]] = ~fl[rows, pick[rows]]
            flipped[live] = fl
            if not bool(move_ok.all()):        # nothing left that fits: keep the last iterate
                done = live[~move_ok]
                out[done] = image(done, flipped[done]).view(-1, *shape)
                live = live[move_ok]
            if len(live) == 0:
                break
    rest = live[~broken[live]]
    if len(rest):
        out[rest] = image(rest, flipped[rest]).view(-1, *shape)
    return out, broken
