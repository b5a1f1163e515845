"""Our own projected gradient descent, for the adaptive attacks and the sanity checks.

Written for two needs that foolbox's PGD does not cover: attacking any
differentiable function of the input (DIM's per-class scores ``P(x|i)`` as well
as logits) with the losses of the adaptive-attack literature (cross-entropy, the
Carlini-Wagner margin, and the targeted margin ``z_t - z_y`` of multi-targeted
attacks), and random restarts that only re-attack what is still unbroken.

A sample counts as broken as soon as an iterate is misclassified by ``fn``
(``argmax fn(x) != y``); its first such iterate is returned. The caller verifies
every candidate on the real model, so nothing here is trusted.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..core.device import generator
from ..core.norms import Norm

Fn = Callable[[torch.Tensor], torch.Tensor]


def _true_and_best_other(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    true = z.gather(1, y[:, None])[:, 0]
    other = z.scatter(1, y[:, None], -torch.inf).max(1).values
    return true, other


def ce_loss(z: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(z, y, reduction="none")


def margin_loss(z: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Untargeted margin ``max_{j != y} z_j - z_y`` (positive = misclassified)."""
    true, other = _true_and_best_other(z, y)
    return other - true


def targeted_margin_loss(z: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """``z_t - z_y``: pushes the target class above the true one (multi-targeted attacks)."""
    assert target is not None
    return z.gather(1, target[:, None])[:, 0] - z.gather(1, y[:, None])[:, 0]


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "ce": ce_loss, "margin": margin_loss, "targeted_margin": targeted_margin_loss}


def _random_start(x: torch.Tensor, norm: Norm, eps: float, gen: torch.Generator) -> torch.Tensor:
    dev = gen.device
    if norm is Norm.LINF:
        delta = (torch.rand(x.shape, generator=gen, device=dev) * 2 - 1) * eps
    elif norm is Norm.L2:
        d = torch.randn(x.shape, generator=gen, device=dev)
        d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
        delta = d * eps * torch.rand(len(x), generator=gen, device=dev).view(-1, *[1] * (x.ndim - 1))
    else:
        raise ValueError(f"PGD supports Linf and L2, not {norm.value}")
    return (x + delta).clamp(0, 1)


def project(x_adv: torch.Tensor, x: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    if norm is Norm.LINF:
        return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    delta = x_adv - x
    n = delta.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1))
    delta = delta * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)
    return (x + delta).clamp(0, 1)


def ascent_step(g: torch.Tensor, norm: Norm, alpha: float) -> torch.Tensor:
    if norm is Norm.LINF:
        return alpha * g.sign()
    n = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.ndim - 1))
    return alpha * g / n


def pgd(fn: Fn, x: torch.Tensor, y: torch.Tensor, *, norm: Norm, eps: float, steps: int = 100,
        restarts: int = 1, loss: str = "ce", target: torch.Tensor | None = None, rel_step: float = 2.5,
        seed: int = 0, eot: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise ``loss(fn(x'), y)`` over the ``norm`` ball of radius ``eps`` (and [0, 1]).

    Step size ``rel_step * eps / steps`` (Madry et al.'s 2.5), a uniform random start
    in the ball on every restart; samples already broken are not attacked again.
    ``eot`` > 1 averages that many gradients per step (for randomized models).
    Returns ``(candidates, broken)``: the first misclassified iterate per sample (else
    the last iterate of the last restart) and a boolean mask.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
    loss_fn = LOSSES[loss]
    gen = generator(x.device, seed)     # on the device of the inputs: one seed, one stream per device
    alpha = rel_step * eps / steps
    out = x.clone()
    broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(restarts):
        idx = torch.nonzero(~broken).flatten()
        if len(idx) == 0:
            break
        x0, y0 = x[idx], y[idx]
        t0 = target[idx] if target is not None else None
        xa = _random_start(x0, norm, eps, gen)
        live = torch.arange(len(idx), device=x.device)  # positions (in idx) still being attacked
        for it in range(steps + 1):
            xa_live = xa[live].detach().requires_grad_(True)
            grad = torch.zeros_like(xa_live)
            for _e in range(eot):
                z = fn(xa_live)
                if _e == 0:
                    hit = z.argmax(1) != y0[live]
                if it < steps:
                    lval = loss_fn(z, y0[live], t0[live] if t0 is not None else None).sum()
                    grad = grad + torch.autograd.grad(lval, xa_live)[0]
            done = live[hit.detach()]
            if len(done):
                out[idx[done]] = xa[done].detach()
                broken[idx[done]] = True
            keep = ~hit.detach()
            live = live[keep]
            if it == steps or len(live) == 0:
                break
            stepped = xa[live].detach() + ascent_step(grad[keep], norm, alpha)
            xa[live] = project(stepped, x0[live], norm, eps).detach()
        rest = live
        if len(rest):
            out[idx[rest]] = xa[rest].detach()
    return out, broken
