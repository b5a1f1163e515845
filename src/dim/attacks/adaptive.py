"""The adaptive attacks (built against each defense, beyond the paper): adapters of the ``adaptive`` suite.

Every adapter returns its raw candidates (:class:`dim.core.verify.Unverified`) to the
evaluation, which passes them through the same gate as every foolbox attack, and attacks at the norm's threshold (AutoAttack
style: the accuracy at the threshold is what these attacks are for; the stored
distance is the size of the adversarial they found).

Gradients (``params["gradient"]``):

* ``"exact"``: the model as it is (binarizations give zero gradients);
* ``"bpda"``: the straight-through gradient of every binarization (Athalye et al.
  2018) while the forward pass stays the true binarized model; a model without
  binarization has nothing to bypass, so the attack is recorded as not applicable;
* ``"auto"``: ``bpda`` on models that binarize, ``exact`` elsewhere;
* ``"smooth"``: a ramp binarization's own derivative and the straight-through gradient of a step
  (:attr:`dim.models.binarize.GradientMode.SMOOTH`): BPDA only where the model has no derivative.
  Not applicable to a model without a ramp, where it would be ``bpda`` again.

AutoAttack, APGD and Square are the reference implementation (``pyautoattack``, at
L-inf, L2 and L1); PGD with restarts and the multi-targeted score attack are ours
(:mod:`dim.attacks.gradient`), and so are the sparse attacks PGD-L0 and Sparse-RS
(:mod:`dim.attacks.sparse`).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from ..core.device import device_of
from ..core.norms import Norm
from ..core.verify import Unverified, verify
from ..models.binarize import GradientMode, gradient_mode, has_binarization, has_ramp
from .registry import NotApplicable, register_adapter
from .binflip import binflip, input_units
from .gradient import pgd
from .multinorm import MSDConfig, msd
from .sparse import greedy_l0, l0_budget, pgd_l0, sparse_rs
from .spec import AttackSpec

GRADIENTS = ("exact", "bpda", "auto", "smooth")


@contextlib.contextmanager
def with_gradient(model: nn.Module, mode: str, what: str = "this attack") -> Iterator[nn.Module]:
    """The model with gradient ``mode`` (see the module docstring) for as long as the block runs."""
    if mode not in GRADIENTS:
        raise ValueError(f"{what}: gradient must be one of {GRADIENTS}, got {mode!r}")
    binarized = has_binarization(model)
    if mode == "bpda" and not binarized:
        raise NotApplicable(f"{what}: BPDA applies to models that binarize their input; this one does not")
    if mode == "smooth" and not has_ramp(model):
        raise NotApplicable(f"{what}: the smooth gradient applies to models with a ramp binarization; this one has none")
    if mode == "smooth":
        with gradient_mode(model, GradientMode.SMOOTH):
            yield model
    elif binarized and mode in ("bpda", "auto"):
        with gradient_mode(model, GradientMode.STRAIGHT_THROUGH):
            yield model
    else:
        yield model


def attack_gradients(model: nn.Module, spec: AttackSpec):
    """The model with the gradient ``spec`` asks for (``params["gradient"]``, default exact)."""
    return with_gradient(model, spec.params.get("gradient", "exact"), spec.name)


def _quiet():
    """pyautoattack reports through warnings and its own logger; the report has our own checks."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    return stack


def _tensors(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.device]:
    """``x``/``y`` as tensors on the model's device, and that device."""
    dev = device_of(model)
    return torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev), dev


def _norm_name(norm: Norm) -> str:
    """The norm as pyautoattack names it (its APGD, FAB and Square cover L-inf, L2 and L1)."""
    if norm not in (Norm.LINF, Norm.L2, Norm.L1):
        raise ValueError(f"AutoAttack, APGD and Square run at the L-inf, L2 and L1 thresholds, not {norm.value}")
    return norm.value


def is_deterministic(model: nn.Module, x: torch.Tensor) -> bool:
    """Two forward passes in eval mode give bit-identical logits."""
    with torch.no_grad():
        return bool(torch.equal(model(x), model(x)))


@register_adapter("autoattack")
def run_autoattack(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int,
                   **_: object) -> Unverified:
    """AutoAttack (Croce & Hein 2020), ``standard`` version; ``rand`` for a randomized model."""
    from pyautoattack import AutoAttack
    xt, yt, dev = _tensors(model, x, y)
    version = spec.params.get("version", "standard")
    if version == "standard" and not is_deterministic(model, xt[:16]):
        version = "rand"      # APGD with EOT, as AutoAttack prescribes for randomized defenses
    with attack_gradients(model, spec), _quiet():
        aa = AutoAttack(model, eps=spec.threshold, norm=_norm_name(spec.norm), seed=seed, version=version,
                        device=dev)
        aa.verbose = False
        x_adv, _ = aa.run_standard_evaluation(xt, yt, batch_size=len(x))
    return Unverified(x_adv.detach().cpu().numpy())


@register_adapter("apgd")
def run_apgd(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int, **_: object) -> Unverified:
    """APGD-CE, then APGD with the targeted DLR loss on ``targets`` classes for what survives."""
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    xt, yt, dev = _tensors(model, x, y)
    steps, targets = int(spec.params.get("steps", 100)), int(spec.params.get("targets", 9))
    kw = dict(n_iter=steps, norm=_norm_name(spec.norm), eps=spec.threshold, seed=seed, device=dev,
              use_largereps=bool(spec.params.get("largereps", False)))   # AutoAttack's L1 schedule
    with attack_gradients(model, spec), _quiet():
        cand = APGDAttack(model, n_restarts=int(spec.params.get("restarts", 1)), loss="ce", **kw).perturb(xt, yt)
        got = verify(model, x, y, cand.detach().cpu().numpy(), spec.norm)
        left = np.flatnonzero(~np.isfinite(got.distance))
        if targets and len(left):
            t_cand = APGDAttack_targeted(model, n_target_classes=targets, **kw).perturb(xt[left], yt[left])
            cand = cand.clone()
            cand[left] = t_cand
    return Unverified(cand.detach().cpu().numpy())


@register_adapter("square")
def run_square(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int,
               **_: object) -> Unverified:
    """Square Attack (Andriushchenko et al. 2020): score-based black box, margin loss."""
    from pyautoattack.square import SquareAttack
    xt, yt, dev = _tensors(model, x, y)
    with _quiet():
        sq = SquareAttack(model, norm=_norm_name(spec.norm), n_queries=int(spec.params.get("queries", 5000)),
                          eps=spec.threshold, p_init=0.8, seed=seed, resc_schedule=False, device=dev)
        cand = sq.perturb(xt, yt)
    return Unverified(cand.detach().cpu().numpy())


@register_adapter("pgd")
def run_pgd(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int, **_: object) -> Unverified:
    """PGD with random restarts on the logits (cross-entropy or margin loss)."""
    p = spec.params
    xt, yt, _ = _tensors(model, x, y)
    with attack_gradients(model, spec):
        cand, _ = pgd(model, xt, yt, norm=spec.norm, eps=spec.threshold, steps=int(p.get("steps", 100)),
                      restarts=int(p.get("restarts", 1)), loss=p.get("loss", "ce"), seed=seed,
                      eot=int(p.get("eot", 1)))
    return Unverified(cand.cpu().numpy())


def score_function(model: nn.Module):
    """The per-class scores ``P(x|i)`` of a DIM-family model, else its logits."""
    scores = getattr(model, "scores", None)
    return scores if callable(scores) else model


@register_adapter("score_mt")
def run_score_mt(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int,
                 **_: object) -> Unverified:
    """Multi-targeted margin attack on the model's own scores.

    For each wrong class ``t`` (most likely first), PGD maximises ``P(x|t) - P(x|y)``
    on the samples no earlier target broke (Gowal et al. 2019's multi-targeted
    attack, on DIM's scores instead of logits).
    """
    p = spec.params
    xt, yt, _ = _tensors(model, x, y)
    fn = score_function(model)

    def attack(idx: torch.Tensor, target: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return pgd(fn, xt[idx], yt[idx], norm=spec.norm, eps=spec.threshold, steps=int(p.get("steps", 100)),
                   restarts=int(p.get("restarts", 1)), loss="targeted_margin", target=target, seed=seed + k,
                   eot=int(p.get("eot", 1)))
    with attack_gradients(model, spec):
        cand = multi_targeted(fn, xt, yt, int(p.get("targets", 9)), attack)
    return Unverified(cand.cpu().numpy())


def multi_targeted(fn, x: torch.Tensor, y: torch.Tensor, n_targets: int,
                   attack: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
                   ) -> torch.Tensor:
    """A multi-targeted attack (Gowal et al. 2019): for k < ``n_targets``, ``attack(idx, target, k)`` on the samples
    ``idx`` no earlier target broke, against each one's k-th most likely wrong class under ``fn`` at the clean
    input, returns ``(candidates, broken)`` for them; per sample the candidate of the first target that broke it
    (the clean input where none did)."""
    with torch.no_grad():
        order = fn(x).scatter(1, y[:, None], -torch.inf).argsort(1, descending=True)
    cand = x.clone()
    broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for k in range(min(n_targets, order.shape[1] - 1)):
        idx = torch.nonzero(~broken).flatten()
        if len(idx) == 0:
            break
        c, b = attack(idx, order[idx, k], k)
        cand[idx[b]] = c[b]
        broken[idx[b]] = True
    return cand


def _l0_white_box(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, what: str, attack,
                  **kw: object) -> Unverified:
    """Run a white-box L0 attack of :mod:`.sparse` at the threshold's number of pixels, with the gradient the spec
    asks for (BPDA through a binarization); its candidates go to the evaluation's gate."""
    if spec.norm is not Norm.L0:
        raise ValueError(f"{spec.name}: {what} is an L0 attack, not {spec.norm.value}")
    xt, yt, _ = _tensors(model, x, y)
    with attack_gradients(model, spec):
        cand, _ = attack(model, xt, yt, k=l0_budget(spec.threshold), **kw)
    return Unverified(cand.detach().cpu().numpy())


@register_adapter("pgd_l0")
def run_pgd_l0(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int,
               **_: object) -> Unverified:
    """PGD-L0 (white box): at most the threshold's number of pixels, through BPDA when ``gradient`` says so."""
    p = spec.params
    return _l0_white_box(spec, model, x, y, "PGD-L0", pgd_l0, steps=int(p.get("steps", 100)),
                         restarts=int(p.get("restarts", 1)), loss=p.get("loss", "margin"),
                         step_size=float(p.get("step_size", 1.0)), seed=seed)


@register_adapter("greedy_l0")
def run_greedy_l0(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int,
                  **_: object) -> Unverified:
    """Greedy one-pixel moves (white box, :func:`dim.attacks.sparse.greedy_l0`), through BPDA when ``gradient`` says
    so; deterministic, so ``seed`` is unused."""
    p = spec.params
    return _l0_white_box(spec, model, x, y, "Greedy", greedy_l0, steps=int(p.get("steps", 48)),
                         lookahead=int(p.get("lookahead", 16)))


@register_adapter("sparse_rs")
def run_sparse_rs(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int,
                  **_: object) -> Unverified:
    """Sparse-RS (score-based black box) at the L0 threshold: reads the model's logits, never its gradient."""
    if spec.norm is not Norm.L0:
        raise ValueError(f"{spec.name}: Sparse-RS here is the L0 attack, not {spec.norm.value}")
    xt, yt, _ = _tensors(model, x, y)
    cand, _ = sparse_rs(model, xt, yt, k=l0_budget(spec.threshold), queries=int(spec.params.get("queries", 3000)),
                        fraction=float(spec.params.get("fraction", 0.3)), seed=seed)
    return Unverified(cand.cpu().numpy())


@register_adapter("knapsack_flips")
def run_knapsack_flips(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int,
                       **_: object) -> Unverified:
    """Knapsack flips (:func:`dim.attacks.multinorm.flip_step`): at each step, with the straight-through gradient
    at the current point, every flip across the binarization's threshold of positive gain, in order of gain per
    unit of cost, while the budget lasts; the point of highest loss over the steps. One gradient per step and no
    trial passes: many flips at once where BinFlip makes one checked flip per step.

    ``partial: true`` (L-inf, models with a ramp): units out of a whole flip's reach move by eps towards it and
    count by the change they make on the ramp (:meth:`dim.attacks.binflip.FlipUnits.partial_moves`).

    ``targets: k`` with ``loss: targeted_margin`` (multi-targeted, as APGD-T): one attack per target class, the
    ``k`` classes of highest clean logit other than the label in turn, each maximising ``z_t - z_y``; per sample
    the first candidate that is misclassified. Cross-entropy through a temperature-scaled score can flatten where a
    margin towards one class still climbs."""
    if not has_binarization(model):
        raise NotApplicable(f"{spec.name}: knapsack flips attack models that binarize their input; this one does not")
    p = spec.params
    partial = bool(p.get("partial", False))
    n_targets, loss = int(p.get("targets", 0)), str(p.get("loss", "ce"))
    if (n_targets > 0) != (loss == "targeted_margin"):
        raise ValueError(f"{spec.name}: 'targets' (a number of target classes) goes with loss 'targeted_margin' "
                         f"and only with it; got targets={n_targets}, loss={loss!r}")
    if partial and spec.norm is not Norm.LINF:
        raise ValueError(f"{spec.name}: partial flips are an L-inf attack, not {spec.norm.value}")
    if partial and not has_ramp(model):
        raise NotApplicable(f"{spec.name}: partial flips attack a ramp binarization (on a step a move that stops "
                            "short of the threshold changes nothing); this model has none")
    xt, yt, _ = _tensors(model, x, y)
    units = input_units(model)
    cfg = MSDConfig(eps={spec.norm: spec.threshold}, steps=int(p.get("steps", 100)), loss=loss,
                    flip_threshold=units.threshold, flip_pool=units.pool, flip_width=units.width,
                    flip_partial=partial)
    def targeted(idx: torch.Tensor, target: torch.Tensor, _: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = msd(model, xt[idx], yt[idx], cfg, targets=target)[0].detach()
        with torch.no_grad():
            return c, model(c).argmax(1) != yt[idx]
    with gradient_mode(model, GradientMode.STRAIGHT_THROUGH):
        cand = msd(model, xt, yt, cfg)[0] if not n_targets else multi_targeted(model, xt, yt, n_targets, targeted)
    return Unverified(cand.detach().cpu().numpy())


@register_adapter("binflip")
def run_binflip(spec: AttackSpec, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int,
                **_: object) -> Unverified:
    """BinFlip (:mod:`dim.attacks.binflip`): greedy flips across a binarization's threshold, cheapest first."""
    if not has_binarization(model):
        raise NotApplicable(f"{spec.name}: BinFlip attacks models that binarize their input; this one does not")
    p = spec.params
    xt, yt, _ = _tensors(model, x, y)
    cand, _ = binflip(model, xt, yt, norm=spec.norm, eps=spec.threshold, steps=int(p.get("steps", 300)),
                      lookahead=int(p.get("lookahead", 8)))
    return Unverified(cand.detach().cpu().numpy())
