"""Sparse (L0) attacks of our own: PGD-L0 and Greedy (white box, BPDA-ready), Sparse-RS (score-based black box).

L0 counts changed *pixels* (:func:`dim.core.norms.distances`: a pixel counts once
whatever its number of channels), so both attacks choose pixels and then the values of
every channel of a chosen pixel.

* :func:`pgd_l0`: projected gradient descent on the set of images that differ from
  ``x`` in at most ``k`` pixels and stay in [0, 1] (after Croce & Hein 2019, "Sparse and
  imperceivable adversarial attacks"): a gradient step on the dense perturbation, then
  the exact Euclidean projection onto that set, which keeps the ``k`` pixels whose
  (box-clipped) change is worth the most. It needs only ``fn``'s gradient, so it runs
  through the straight-through gradient of a binarization like every BPDA attack.
* :func:`greedy_l0`: greedy search over single pixels (in the spirit of JSMA, Papernot et al. 2016): at each
  step the gradient ranks every one-pixel move (set the pixel to the corner of the colour cube the gradient
  points to, or back to its clean value; at the budget, a new pixel comes with the restoration of the changed
  pixel that costs least to give up), the best few are tried with real forward passes and the best of those
  is made. PGD-L0 steps all pixels at once and lets the projection choose, which on MNIST leaves DIM at 46.5%
  at 12 pixels where Brendel-Bethge's L0 attack leaves 25.5%; moving one checked pixel at a time is what
  closes most of that gap at a few seconds per 200 images.
* :func:`sparse_rs`: Sparse-RS (Croce, Andriushchenko, Singh, Flammarion & Hein 2022),
  random search over ``k`` pixels set to corners of the colour cube: each step swaps a
  shrinking fraction of the chosen pixels for others with new random colours and keeps
  the swap when the margin loss falls. It reads only the model's outputs (scores), so
  a masked gradient cannot stop it.

Both return raw candidates; the caller verifies every one on the real model.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..core.device import generator
from .gradient import LOSSES, margin_loss

Fn = Callable[[torch.Tensor], torch.Tensor]


def project_l0_box(delta: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """The perturbation nearest to ``delta`` (Euclidean) with at most ``k`` changed pixels and ``x + d`` in [0, 1].

    Per pixel, keeping it costs ``||delta_p - clip(delta_p)||^2`` and dropping it costs ``||delta_p||^2``,
    so the best ``k`` pixels to keep are those with the largest difference of the two."""
    clipped = (x + delta).clamp(0, 1) - x
    gain = (delta.square() - (delta - clipped).square()).sum(1)           # (B, H, W)
    flat = gain.flatten(1)
    k = min(int(k), flat.shape[1])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep.scatter_(1, flat.topk(k, dim=1).indices, True)
    keep &= flat > 0
    return clipped * keep.view_as(gain)[:, None]


def l0_step(g: torch.Tensor, k: int, step_size: float) -> torch.Tensor:
    """The gradient ``g`` (B, C, H, W) scaled per image so that the ``2k`` pixels of largest gradient mass move by
    about ``step_size`` per channel: a pixel that matters can swing across the whole range in one step."""
    pix = g.abs().sum(1).flatten(1)                                      # (B, H*W) per-pixel gradient mass
    top = pix.topk(min(2 * k, pix.shape[1]), dim=1).values.mean(1).clamp_min(1e-12)
    return step_size * g / (top.view(-1, 1, 1, 1) / g.shape[1])


def _random_sparse(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """A random start: ``k`` random pixels per image set to uniform random values."""
    b, c, h, w = x.shape
    scores = torch.rand((b, h * w), generator=gen, device=x.device)
    mask = torch.zeros((b, h * w), dtype=torch.bool, device=x.device)
    mask.scatter_(1, scores.topk(min(k, h * w), dim=1).indices, True)
    values = torch.rand(x.shape, generator=gen, device=x.device)
    return (values - x) * mask.view(b, 1, h, w)


def pgd_l0(fn: Fn, x: torch.Tensor, y: torch.Tensor, *, k: int, steps: int = 100, restarts: int = 1,
           loss: str = "margin", step_size: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise ``loss(fn(x'), y)`` over images ``x'`` in [0, 1] that differ from ``x`` in at most ``k`` pixels.

    The gradient is normalised per image by its mean absolute value over the pixels kept plus the ``k`` most
    promising others, times ``step_size``: a step moves the pixels that matter by about ``step_size``, so a
    pixel can swing across the whole range in one step (values of an L0 attack sit at the box's faces), and
    the projection then picks the ``k`` best. Restart 1 starts from ``x`` itself, later ones from random sparse
    perturbations. Returns ``(candidates, broken)`` like :func:`dim.attacks.gradient.pgd`."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
    loss_fn = LOSSES[loss]
    gen = generator(x.device, seed)
    out, broken = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for r in range(restarts):
        idx = torch.nonzero(~broken).flatten()
        if len(idx) == 0:
            break
        x0, y0 = x[idx], y[idx]
        delta = torch.zeros_like(x0) if r == 0 else _random_sparse(x0, k, gen)
        live = torch.arange(len(idx), device=x.device)
        for it in range(steps + 1):
            d = delta[live].detach().requires_grad_(True)
            z = fn(x0[live] + d)
            hit = (z.argmax(1) != y0[live]).detach()
            done = live[hit]
            if len(done):
                out[idx[done]] = (x0[done] + delta[done]).detach()
                broken[idx[done]] = True
            if it == steps or bool(hit.all()):
                break
            g, = torch.autograd.grad(loss_fn(z, y0[live], None).sum(), d)
            keep, live = ~hit, live[~hit]
            g, dl = g[keep], delta[live]
            delta[live] = project_l0_box(dl + l0_step(g, k, step_size), x0[live], k).detach()
        if len(live):
            out[idx[live]] = (x0[live] + delta[live]).detach()
    return out, broken


def greedy_l0(fn: Fn, x: torch.Tensor, y: torch.Tensor, *, k: int, steps: int = 48,
              lookahead: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy one-pixel moves on the margin loss, at most ``k`` changed pixels, ``steps`` moves at most.

    A move sets one pixel to the corner its gradient points to (each channel to 1 where the gradient of the
    margin is positive, else 0), or back to its clean value. The gradient ranks the moves by first-order gain;
    the ``lookahead`` best are evaluated with forward passes (the first-order ranking alone is a poor guide,
    as for BinFlip), and the one that raises the margin most is made. With ``k`` pixels changed, a move to a
    new pixel also restores the changed pixel whose restoration the gradient says costs least, so the search
    can trade pixels instead of stopping at the budget. A sample stops once fooled or when no move raises its
    margin. The gradient is ``fn``'s (the straight-through one inside a BPDA context); the forward passes are
    the model's own. Returns ``(candidates, broken)``: the first fooling iterate per sample, else the last."""
    if lookahead < 1:
        raise ValueError(f"lookahead must be at least 1, got {lookahead}")
    b, c, h, w = x.shape
    k = min(int(k), h * w)
    orig_all = x.flatten(2)                                              # (B, C, P)
    cur_all = orig_all.clone()
    out, broken = x.clone(), torch.zeros(b, dtype=torch.bool, device=x.device)
    stalled = torch.zeros_like(broken)
    for it in range(steps + 1):
        live = torch.nonzero(~broken & ~stalled).flatten()
        if len(live) == 0:
            break
        cur = cur_all[live].detach().requires_grad_(True)
        z = fn(cur.view(-1, c, h, w))
        hit = (z.argmax(1) != y[live]).detach()
        if bool(hit.any()):
            out[live[hit]] = cur_all[live[hit]].view(-1, c, h, w)
            broken[live[hit]] = True
        if it == steps:
            break
        g, = torch.autograd.grad(margin_loss(z, y[live], None).sum(), cur)
        keep = ~hit
        live, g, now = live[keep], g[keep], margin_loss(z[keep], y[live[keep]], None).detach()
        if len(live) == 0:
            break
        cur, orig, yl = cur_all[live], orig_all[live], y[live]
        rows = torch.arange(len(live), device=x.device)
        changed = (cur != orig).any(1)                                   # (n, P)
        full = changed.sum(1) >= k
        corner = (g > 0).to(x.dtype)
        restore_gain = (g * (orig - cur)).sum(1).masked_fill(~changed, -math.inf)
        corner_gain = (g * (corner - cur)).sum(1).masked_fill((corner == cur).all(1), -math.inf)
        to_restore = restore_gain > corner_gain
        gain = torch.maximum(restore_gain, corner_gain)
        target = torch.where(to_restore[:, None], orig, corner)           # (n, C, P): each pixel's move
        drop = restore_gain.argmax(1)                                    # the changed pixel cheapest to give up
        top = gain.topk(min(lookahead, gain.shape[1]), dim=1).indices
        best_val, best_x = now.clone(), cur.clone()
        with torch.no_grad():
            for j in range(top.shape[1]):
                pix = top[:, j]
                trial = cur.clone()
                swap = torch.nonzero(full & ~changed[rows, pix]).flatten()   # a new pixel at the budget
                trial[swap, :, drop[swap]] = orig[swap, :, drop[swap]]
                trial[rows, :, pix] = target[rows, :, pix]
                val = margin_loss(fn(trial.view(-1, c, h, w)), yl, None)
                val = val.masked_fill(~torch.isfinite(gain[rows, pix]), -math.inf)
                better = val > best_val
                best_val[better], best_x[better] = val[better], trial[better]
        cur_all[live] = best_x
        stalled[live[best_val <= now]] = True
    last = ~broken
    out[last] = cur_all[last].view(-1, c, h, w)
    return out, broken


def _swap_count(fraction: float, it: int, n_queries: int, k: int) -> int:
    """How many of the ``k`` pixels step ``it`` swaps: Sparse-RS's piecewise-constant schedule, the initial
    fraction halved at fixed shares of the query budget (10, 50, 200, ... of 10,000)."""
    marks = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
    halvings = sum(1 for m in marks if it > m * n_queries / 10000)
    return max(1, int(round(fraction * k / 2 ** halvings)))


def _apply(x: torch.Tensor, pixels: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """``x`` with the given pixels (flat indices, (B, k)) set to ``colours`` ((B, C, k))."""
    b, c, h, w = x.shape
    flat = x.flatten(2).clone()
    flat.scatter_(2, pixels[:, None, :].expand(b, c, pixels.shape[1]), colours)
    return flat.view(b, c, h, w)


@torch.no_grad()
def sparse_rs(fn: Fn, x: torch.Tensor, y: torch.Tensor, *, k: int, queries: int = 3000,
              fraction: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse-RS, untargeted, at most ``k`` changed pixels, ``queries`` model calls per image at most.

    Loss: the margin ``z_y - max_{j != y} z_j`` on ``fn``'s outputs (broken when negative). A sample stops
    being queried once broken. Returns ``(candidates, broken)``."""
    gen = generator(x.device, seed)
    b, c, h, w = x.shape
    k = min(int(k), h * w)
    pixels = torch.rand((b, h * w), generator=gen, device=x.device).topk(k, dim=1).indices
    colours = (torch.rand((b, c, k), generator=gen, device=x.device) < 0.5).to(x.dtype)
    best = -margin_loss(fn(_apply(x, pixels, colours)), y, None)
    broken = best < 0
    for it in range(1, queries):
        live = torch.nonzero(~broken).flatten()
        if len(live) == 0:
            break
        m = min(_swap_count(fraction, it, queries, k), k, h * w - k)
        if m <= 0:
            break
        n = len(live)
        out_pos = torch.rand((n, k), generator=gen, device=x.device).topk(m, dim=1).indices   # which of the k leave
        taken = torch.zeros((n, h * w), dtype=torch.bool, device=x.device)
        taken.scatter_(1, pixels[live], True)
        free = torch.rand((n, h * w), generator=gen, device=x.device).masked_fill(taken, -1.0)
        new_pixels = free.topk(m, dim=1).indices                                              # which come in
        p, col = pixels[live].clone(), colours[live].clone()
        p.scatter_(1, out_pos, new_pixels)
        col.scatter_(2, out_pos[:, None, :].expand(n, c, m),
                     (torch.rand((n, c, m), generator=gen, device=x.device) < 0.5).to(x.dtype))
        cand = -margin_loss(fn(_apply(x[live], p, col)), y[live], None)
        better = cand < best[live]
        sel = live[better]
        pixels[sel], colours[sel], best[sel] = p[better], col[better], cand[better]
        broken[sel] = cand[better] < 0
    return _apply(x, pixels, colours), broken


def l0_budget(threshold: float) -> int:
    """The number of pixels an attack at the L0 threshold may change (a whole number)."""
    k = int(math.floor(threshold + 1e-9))
    if k < 1:
        raise ValueError(f"an L0 threshold of {threshold} pixels allows no change")
    return k
