"""Multi steepest descent (MSD): one attack over the union of several norm balls.

After Maini, Wong & Kolter 2020 ("Adversarial Robustness Against the Union of Multiple
Perturbation Models"). Every iteration computes one gradient of the loss at the current
point, takes the steepest-ascent step of *every* norm from there, projects each step onto
its own ball and the [0, 1] box, and keeps, per sample, the candidate with the highest
loss. The iterate can therefore switch between norms as the loss landscape dictates, and
the result always lies inside the ball of the norm that produced it.

Steps (``delta`` is the current perturbation, ``g`` the gradient):

* L-inf: ``alpha * sign(g)``, then clip to ``[-eps, eps]`` and the box.
* L2: ``alpha * g / ||g||_2``, then rescale onto the L2 ball and clip to the box.
* L1: ``alpha`` spread over the ``l1_coords`` coordinates of largest ``|g|`` among those
  that can still move in the gradient's direction (not pinned at a face of the box), then
  the Euclidean projection onto the L1 ball of the box-clipped perturbation (which shrinks
  every coordinate towards zero, so it stays in the box).
* L0: the gradient scaled so that the pixels that matter move across the whole range
  (as in :func:`dim.attacks.sparse.pgd_l0`), then the projection onto "at most ``k``
  changed pixels, inside the box" (:func:`dim.attacks.sparse.project_l0_box`).

``loss="targeted_margin"`` makes every sample's attack targeted: it maximises ``z_t - z_y`` for the target
``t = (y + 1 + i mod (K - 1)) mod K`` of the sample at index ``i`` of the batch. Deterministic (no random state, so
a resumed training sees the same targets), and since training reshuffles its batches every epoch, each image meets
the other classes in turn; the evaluation's targeted attacks try all of them.

``mt_classes = k`` > 0 (an untargeted loss) adds ``k`` targeted runs of the same attack, each climbing the margin
``z_t - z_y`` towards one of the image's ``k`` most likely other classes at the clean point (the first run towards
the runner-up, and so on), and keeps, per sample, the point of highest margin ``max_{j != y} z_j - z_y`` over the
untargeted run and the targeted ones: ``k + 1`` times the cost. The evaluation's strongest flip attacks are
multi-targeted: a climb towards the runner-up class finds flips that the untargeted loss, spread over every class,
does not rank first, and a training attack that misses them trains on easier points than those that set the number.

``mode="max"`` runs instead one track per norm (each its own projected steepest ascent,
all tracks in one batched forward and backward pass) and keeps, per sample, the point of
highest loss over all tracks: the "MAX" strategy of Tramer & Boneh 2019. MSD lets the
greedy choice of one step decide the norm (a first L0 or L1 step often raises the loss
most, and the iterate then stays in that ball), MAX gives every norm all its steps.

For a model that binarizes its input, ``flip_threshold`` replaces every norm's step by a set of flips across the
threshold chosen by gain per unit of cost (:func:`flip_step`): gradient steps through the straight-through
gradient spend their budget on values that never cross it.

The training recipes use it as their inner maximisation; the returned points are
candidates like every attack's, which only count after verification.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from ..core.norms import Norm
from .binflip import FlipUnits, flip_budget, flip_cost
from .gradient import LOSSES, ascent_step, margin_loss, project
from .sparse import l0_budget, l0_step, project_l0_box

Fn = Callable[[torch.Tensor], torch.Tensor]


def _dense(norm: Norm):
    """The L-inf or L2 step: PGD's steepest-ascent step and projection (:mod:`dim.attacks.gradient`)."""
    def step(delta, g, x, eps, alpha, cfg):
        return project(x + delta + ascent_step(g, norm, alpha), x, norm, eps) - x
    return step


def project_l1(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of each sample of ``delta`` onto the L1 ball of radius ``eps``.

    Soft thresholding at the level found by sorting (Duchi et al. 2008): samples already
    inside the ball are returned unchanged."""
    flat = delta.flatten(1)
    mag = flat.abs()
    inside = mag.sum(1) <= eps
    srt = mag.sort(dim=1, descending=True).values                     # (B, d)
    csum = srt.cumsum(1)
    ranks = torch.arange(1, flat.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    cond = srt * ranks > (csum - eps)
    rho = cond.to(torch.int64).cumsum(1).argmax(1, keepdim=True)       # the last index where cond holds
    theta = ((csum.gather(1, rho) - eps) / (rho + 1).to(delta.dtype)).clamp_min(0)
    shrunk = flat.sign() * (mag - theta).clamp_min(0)
    return torch.where(inside[:, None], flat, shrunk).view_as(delta)


def _l1(delta, g, x, eps, alpha, cfg):
    cur = x + delta
    movable = ~(((g > 0) & (cur >= 1)) | ((g < 0) & (cur <= 0)))        # not pinned at the face it points to
    score = (g.abs() * movable).flatten(1)
    q = min(cfg.l1_coords, score.shape[1])
    top = score.topk(q, dim=1)
    step = torch.zeros_like(score)
    step.scatter_(1, top.indices, (top.values > 0).to(g.dtype) * (alpha / q))
    d = delta + step.view_as(g) * g.sign()
    return project_l1((x + d).clamp(0, 1) - x, eps)


def _l0(delta, g, x, eps, alpha, cfg):
    k = l0_budget(eps)
    return project_l0_box(delta + l0_step(g, k, alpha), x, k)


STEPS: dict[Norm, Callable[..., torch.Tensor]] = {Norm.LINF: _dense(Norm.LINF), Norm.L2: _dense(Norm.L2),
                                                   Norm.L1: _l1, Norm.L0: _l0}

def flip_step(norm: Norm, units: FlipUnits, *, partial: bool = False):
    """The step of ``norm`` for a model that binarizes its input in ``units``: a set of flips, chosen afresh
    from the clean image at each iteration.

    Such a model sees only which side of the threshold each unit (a pixel, or a block's mean) lies on, and
    the cheapest way to flip a unit is to move it just past the threshold (:meth:`FlipUnits.moves`; for a
    pixel, cost ``|x_i - t|`` in L1, its square in L2, one in L0; free in L-inf within eps of it). With the
    straight-through gradient ``g`` at the current point, flipping a unit gains the sum of ``g`` over its
    pixels times the change of its binarized value (+1 or -1 for a step) to first order; the step takes the flips of positive gain in order of gain per unit of
    cost while they fit the budget (a greedy knapsack, as :mod:`dim.attacks.binflip` does one flip at a time
    with forward passes to check, with the same moves and costs; this is its one-gradient form, cheap enough
    for training). In L0 the costs are whole numbers, so a budget of ``eps`` allows ``floor(eps)``.

    ``partial`` (L-inf only) lets a unit out of a whole flip's reach move by ``eps`` towards it
    (:meth:`FlipUnits.partial_moves`): on a ramp that changes what the model sees, and every such move of positive
    gain is taken (L-inf's budget is per pixel)."""
    if partial and norm is not Norm.LINF:
        raise ValueError(f"partial flips are an L-inf step (its budget is per pixel), not {norm.value}")

    def step(delta, g, x, eps, alpha, cfg):
        if partial:
            move, change = units.partial_moves(x, eps)
            chosen = units.group(g).sum(-1) * change > 0
            return units.ungroup(torch.where(chosen[..., None], move, torch.zeros_like(move)), x.shape[1:])
        up, move = units.moves(x, norm)                                   # (B, U), (B, U, n)
        gain = units.group(g).sum(-1) * units.change(x)                  # the binarized value's change: +-1 for a step
        cost = flip_cost(move, norm)
        if norm is Norm.LINF:
            chosen = (gain > 0) & (cost <= eps)
        else:
            budget = flip_budget(eps, norm)
            ratio = torch.where((gain > 0) & (cost <= budget), gain / cost.clamp_min(1e-12),
                                torch.full_like(gain, -1.0))
            order = ratio.argsort(dim=1, descending=True)
            spent = cost.gather(1, order).cumsum(1)
            take = (spent <= budget) & (ratio.gather(1, order) > 0)
            chosen = torch.zeros_like(take).scatter_(1, order, take)
        return units.ungroup(torch.where(chosen[..., None], move, torch.zeros_like(move)), x.shape[1:])
    return step


def steps_for(cfg: "MSDConfig") -> dict[Norm, Callable[..., torch.Tensor]]:
    """The step of every norm: gradient steps, or flips for a model that binarizes (``cfg.flip_threshold``)."""
    if cfg.flip_threshold is None:
        return STEPS
    units = FlipUnits(cfg.flip_threshold, cfg.flip_pool, cfg.flip_width)
    return {nm: flip_step(nm, units, partial=cfg.flip_partial and nm is Norm.LINF) for nm in STEPS}


@dataclass(frozen=True)
class MSDConfig:
    """Radii, iterations and step sizes of the multi-norm attack.

    ``rel_step`` sets the step of the L-inf, L2 and L1 balls to ``rel_step * eps / steps``
    (Madry et al.'s 2.5: with few steps the iterate can still cross the whole ball); L0
    moves a promising pixel across the range in one step (``l0_step``, see
    :func:`dim.attacks.sparse.pgd_l0`). With ``flip_threshold`` (a model that binarizes its input there, in
    blocks of ``flip_pool x flip_pool`` pixels, on a ramp of ``flip_width`` if it is one, attacked through the
    straight-through gradient) every norm's step is :func:`flip_step` instead; ``flip_partial`` gives its L-inf step
    moves that stop inside a ramp's band."""
    eps: Mapping[Norm, float]
    steps: int = 10
    rel_step: float = 2.5
    l1_coords: int = 20
    l0_step: float = 1.0
    loss: str = "ce"
    mode: str = "msd"
    flip_threshold: float | None = None
    flip_pool: int = 1
    flip_width: float = 0.0
    flip_partial: bool = False
    mt_classes: int = 0

    def __post_init__(self) -> None:
        """Refuse a multi-targeted configuration the attack cannot run."""
        check_mt_classes(self.mt_classes, self.loss)

    def alpha(self, norm: Norm, scale: float = 1.0) -> float:
        if norm is Norm.L0:
            return self.l0_step
        return self.rel_step * self.eps[norm] * scale / max(self.steps, 1)


def check_mt_classes(mt_classes: int, loss: str) -> None:
    """Refuse ``mt_classes`` below 0, or above 0 with a loss that is already targeted."""
    if mt_classes < 0:
        raise ValueError(f"mt_classes must be at least 0 (0: off), got {mt_classes}")
    if mt_classes and loss == "targeted_margin":
        raise ValueError(f"mt_classes={mt_classes} adds targeted runs to an untargeted attack; the loss "
                         f"{loss!r} is targeted already")


def msd(fn: Fn, x: torch.Tensor, y: torch.Tensor, cfg: MSDConfig, *, scale: float = 1.0,
        targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise ``loss(fn(x + delta), y)`` over the union of ``cfg.eps``'s balls (and the [0, 1] box).

    ``scale`` in (0, 1] shrinks every radius (an eps warm-up during training; L0 keeps at
    least one pixel). Starts at ``x`` itself. Returns ``(x_adv, norm_index)``: the point of
    highest loss seen over the iterations, per sample, and the index into ``list(cfg.eps)``
    of the norm whose ball it lies in (-1 where no step raised the loss above the clean
    point's). ``targets`` (one class per sample, never its label) are the classes of
    ``loss="targeted_margin"``; without them each sample's is :func:`cycled_targets`'s."""
    if cfg.mode not in MODES:
        raise ValueError(f"unknown mode {cfg.mode!r}; expected one of {sorted(MODES)}")
    norms, radii, loss_fn = _setup(cfg, y, scale, targets)
    found = MODES[cfg.mode](fn, x, y, cfg, norms, radii, loss_fn, scale)
    return _runners_up(fn, x, y, cfg, scale, *found) if cfg.mt_classes else found


def _runners_up(fn: Fn, x: torch.Tensor, y: torch.Tensor, cfg: MSDConfig, scale: float, x_adv: torch.Tensor,
                norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_adv, norm)`` of the untargeted run, replaced per sample by the point of a run targeted at one of the
    ``cfg.mt_classes`` most likely other classes wherever that point's margin is higher."""
    with torch.no_grad():
        z = fn(x)
        best = margin_loss(fn(x_adv), y, None)
    k = min(cfg.mt_classes, z.shape[1] - 1)
    runners = z.scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices        # (B, k), never the label
    targeted = dataclasses.replace(cfg, loss="targeted_margin", mt_classes=0)
    for j in range(k):
        x_j, norm_j = msd(fn, x, y, targeted, scale=scale, targets=runners[:, j])
        with torch.no_grad():
            m_j = margin_loss(fn(x_j), y, None)
        better = m_j > best
        best = torch.where(better, m_j, best)
        x_adv = torch.where(better.view(-1, *([1] * (x.dim() - 1))), x_j, x_adv)
        norm = torch.where(better, norm_j, norm)
    return x_adv, norm


def _setup(cfg: MSDConfig, y: torch.Tensor, scale: float, targets: torch.Tensor | None = None):
    """The norms, their radii at ``scale`` and the loss of an attack (a bad loss, scale or target refused)."""
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; expected one of {sorted(LOSSES)}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must lie in (0, 1], got {scale}")
    loss_fn = LOSSES[cfg.loss]
    if targets is not None:
        if cfg.loss != "targeted_margin":
            raise ValueError(f"targets are the classes of loss 'targeted_margin', not of {cfg.loss!r}")
        if targets.shape != y.shape or bool((targets == y).any()):
            raise ValueError("targets: one class per sample, never the sample's own label")
        loss_fn = _with_targets(loss_fn, lambda k: targets)
    elif cfg.loss == "targeted_margin":
        loss_fn = _with_targets(loss_fn, lambda k: cycled_targets(y, k))
    norms = list(cfg.eps)
    radii = {nm: (max(1.0, math.floor(cfg.eps[nm] * scale)) if nm is Norm.L0 else cfg.eps[nm] * scale)
             for nm in norms}
    return norms, radii, loss_fn


def cycled_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(y + 1 + i mod (K - 1)) mod K`` for the sample at index ``i``: never the true class."""
    offset = 1 + torch.arange(len(y), device=y.device) % (num_classes - 1)
    return (y + offset) % num_classes


def _with_targets(loss_fn, targets_for: Callable[[int], torch.Tensor]):
    """``loss_fn`` with each sample's target, ``targets_for(K)`` (K, the number of classes, read from the logits
    it is given); the batched candidates repeat the batch, and so the targets."""
    def loss(z: torch.Tensor, ys: torch.Tensor, _: torch.Tensor | None) -> torch.Tensor:
        target = targets_for(z.shape[1])
        return loss_fn(z, ys, target.repeat(len(z) // len(target)))
    return loss


def _msd(fn, x, y, cfg, norms, radii, loss_fn, scale):
    b = len(x)
    delta = torch.zeros_like(x)
    best_delta, best_norm = delta.clone(), torch.full((b,), -1, dtype=torch.long, device=x.device)
    best_loss = None
    steps = steps_for(cfg)
    for _ in range(cfg.steps):
        d = delta.detach().requires_grad_(True)
        now = loss_fn(fn(x + d), y, None)
        if best_loss is None:
            best_loss = now.detach()                  # the clean point's loss: the first iterate is x itself
        (g,) = torch.autograd.grad(now.sum(), d)
        with torch.no_grad():
            cands = torch.stack([steps[nm](delta, g, x, radii[nm], cfg.alpha(nm, scale), cfg) for nm in norms])
            z = fn((x.unsqueeze(0) + cands).flatten(0, 1))                  # (M*B, K): one batched forward
            losses = loss_fn(z, y.repeat(len(norms)), None).view(len(norms), b)   # (M, B)
            val, pick = losses.max(0)
            delta = cands[pick, torch.arange(b, device=x.device)]
            better = val > best_loss
            best_loss = torch.where(better, val, best_loss)
            best_delta[better], best_norm[better] = delta[better], pick[better]
    return (x + best_delta).detach(), best_norm


def _tracks(fn, x, y, cfg, norms, radii, loss_fn, scale):
    """One projected steepest ascent per norm, all tracks in one batched forward and backward pass per step.
    Returns ``(deltas, losses, clean)``: each track's perturbation of highest loss over its steps (M, B, C, H, W),
    that loss (M, B), and the clean point's loss (B,); a track none of whose steps beat the clean point keeps 0."""
    m, b = len(norms), len(x)
    ys = y.repeat(m)
    deltas = torch.zeros((m, *x.shape), dtype=x.dtype, device=x.device)        # (M, B, C, H, W): one track per norm
    best_delta, best_loss, clean = torch.zeros_like(deltas), None, None
    steps = steps_for(cfg)
    for it in range(cfg.steps + 1):
        d = deltas.detach().requires_grad_(it < cfg.steps)
        with torch.set_grad_enabled(it < cfg.steps):
            losses = loss_fn(fn((x.unsqueeze(0) + d).flatten(0, 1)), ys, None)    # (M*B,)
            if it < cfg.steps:
                (g,) = torch.autograd.grad(losses.sum(), d)
        with torch.no_grad():
            val = losses.detach().view(m, b)
            if best_loss is None:
                clean, best_loss = val[0], val[0].expand(m, b).clone()   # every track starts at the clean point
            else:
                better = val > best_loss
                best_loss = torch.where(better, val, best_loss)
                best_delta[better] = deltas[better]
            if it < cfg.steps:
                deltas = torch.stack([steps[nm](deltas[i], g[i], x, radii[nm], cfg.alpha(nm, scale), cfg)
                                      for i, nm in enumerate(norms)])
    return best_delta, best_loss, clean


def _max(fn, x, y, cfg, norms, radii, loss_fn, scale):
    deltas, losses, clean = _tracks(fn, x, y, cfg, norms, radii, loss_fn, scale)
    val, pick = losses.max(0)
    better = val > clean
    best_norm = torch.where(better, pick, torch.full_like(pick, -1))
    best_delta = torch.where(better.view(-1, *([1] * (x.dim() - 1))),
                             deltas[pick, torch.arange(len(x), device=x.device)], torch.zeros_like(x))
    return (x + best_delta).detach(), best_norm


def every_norm(fn: Fn, x: torch.Tensor, y: torch.Tensor, cfg: MSDConfig, *, scale: float = 1.0) -> torch.Tensor:
    """The point of highest loss that each norm's own track finds (the tracks of ``mode="max"``), shape
    (M, B, C, H, W) in the order of ``cfg.eps``: what Tramer & Boneh's "AVG" training averages its loss over,
    so that every norm's point is trained on at every step (MSD and MAX train on one point per image, the norm
    that raised the loss most). A track none of whose steps raised the loss returns the clean image."""
    norms, radii, loss_fn = _setup(cfg, y, scale)
    deltas, _, _ = _tracks(fn, x, y, cfg, norms, radii, loss_fn, scale)
    return (x.unsqueeze(0) + deltas).detach()


MODES = {"msd": _msd, "max": _max}
