"""Recipes ``msd`` and ``score_msd``: adversarial training against every norm at once.

Both train on the points of :func:`dim.attacks.multinorm.msd`, the multi steepest descent
attack over the union of the L-inf, L2, L1 and L0 balls at the dataset's thresholds (the
paper's 0.3 / 1.5 / 8 / 12 on MNIST, carried to other image sizes as the evaluation does).
The radii grow linearly from zero over the first ``eps_warmup_epochs`` epochs, which keeps
adversarial training from scratch from collapsing to a constant prediction.

``mode`` picks which points each batch trains on: ``"msd"`` (default) one point per image, the end of MSD's
greedy walk across the balls; ``"max"`` one point per image, the highest-loss end of one track per norm
(Tramer & Boneh's MAX); ``"avg"`` every track's end, one point per norm and image, the adversarial terms
averaged over them (their AVG: a norm whose points seldom win the maximum is still trained on every step).

``msd`` is the CNN baseline: cross-entropy on the adversarial points only (Maini et al.
2020). ``score_msd`` is DIM's: the clean recipe ``score`` first (denoiser, then internal
models), then every weight of the model trained end to end against the attack on its own
logits ``T * P(x|i)``, with terms that ask each part to do the job the architecture gives it:

* ``adv_ce``: cross-entropy on the adversarial logits;
* ``purify``: the denoiser maps the adversarial input back to the clean image (MSE);
* ``adv_pos`` / ``adv_neg``: the paper's eq. 2 on the adversarial input: the own class's
  internal model reconstructs the clean view ``D(x)``, every other one black (rejects it);
* ``clean_weight``: the clean recipe's loss (eq. 2 with noise, plus cross-entropy) keeps
  the clean accuracy;
* ``trades``: TRADES' term (Zhang et al. 2019), ``KL(p(x) || p(x_adv))`` between the predictions on the clean and
  the adversarial input, gradients through both: it asks the prediction to stay where it is inside the ball rather
  than only the label to win (0 by default; measured as a variant in ``docs/results.md``).

Both recipes can weight their adversarial terms per class (``class_reweight`` > 0, in the spirit of Xu et al. 2021,
"To be robust or to be fair"): at the start of every epoch the inner attack, at its full radii, is run on the first
``reweight_images`` training images, and class ``c`` with robust error ``e_c`` (broken by any norm's point) weighs
``1 + class_reweight * (e_c - mean e) / mean e`` in that epoch: a class the attack breaks more often is trained on
harder, the weights average 1 over the classes, and at ``class_reweight = 1`` they are proportional to the error.
``score_msd`` can also weight its rejection term per pair (``pair_reweight`` > 0): internal model ``j`` rejecting an
adversarial image of class ``c`` weighs ``1 + pair_reweight * (r_cj - mean r) / mean r``, with ``r_cj`` the fraction
of class ``c``'s probe images that the attack sends to ``j`` (the mean over the pairs ``j != c``): the internal
model that accepts another class's adversarial digits is the one asked hardest to reject them.
The measurement depends only on the weights at the epoch's start, so a resumed training reweights exactly as an
uninterrupted one; the card records each measured epoch's errors and weights.

A model with binarization (``bidim_at_bin``, ``bicnn_at_bin``) is trained with it in the loop: the forward pass binarizes exactly
as at inference, and while it trains, the inner attack and the weights' gradients pass the binarization
straight through (BPDA, the usual estimator for training binarized networks). After binarization at 0.5 the
L-inf ball of 0.3 cannot move a pixel that is below 0.2 or above 0.8; what every norm can still do is flip the
pixels near the threshold (stroke edges), which this training shows the model. With ``flips=True`` the inner
attack's steps are such flips, chosen by gain per unit of cost (:func:`dim.attacks.multinorm.flip_step`);
``partial_flips=True`` lets its L-inf step move pixels partway into a ramp's band (the ``ramp-flips`` attack).
``mt_classes = k`` > 0 makes the inner attack multi-targeted (:func:`dim.attacks.multinorm.msd`): ``k`` more runs
climb the margin towards each image's ``k`` most likely other classes, and each image trains on the point of highest
margin over all runs, as the evaluation's multi-targeted flips search.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attacks.adaptive import with_gradient
from ..attacks.binflip import input_units
from ..attacks.gradient import LOSSES
from ..attacks.multinorm import MODES, MSDConfig, check_mt_classes, every_norm, msd
from ..core.norms import Norm, scaled_thresholds
from ..models.binarize import has_binarization, has_ramp
from .augment import check_probability, random_affine
from .awp import WeightPerturbation, check_awp
from .loop import TrainData, check_average, register_recipe, run_epochs
from .score import ScoreTrainConfig, fit_score_model

NORM_KEYS = {"Linf": Norm.LINF, "L2": Norm.L2, "L1": Norm.L1, "L0": Norm.L0}
# the attack's modes, and "avg": MAX's tracks, every norm's point trained on (Tramer & Boneh's AVG strategy)
TRAIN_MODES = (*MODES, "avg")


@dataclass(frozen=True)
class MultiNormAttackConfig:
    """The inner attack: which norms, their radii (None: the dataset's threshold) and its budget."""
    norms: tuple[str, ...] = ("Linf", "L2", "L1", "L0")
    eps_linf: float | None = None
    eps_l2: float | None = None
    eps_l1: float | None = None
    eps_l0: float | None = None
    steps: int = 5
    rel_step: float = 2.5
    l1_coords: int = 20
    loss: str = "ce"
    mode: str = "msd"
    eps_warmup_epochs: float = 1.0
    flips: bool = False
    partial_flips: bool = False
    mt_classes: int = 0

    def __post_init__(self) -> None:
        """Refuse a bad attack before any training state is written."""
        unknown = sorted(set(self.norms) - set(NORM_KEYS))
        if unknown or not self.norms:
            raise ValueError(f"norms {list(self.norms)}: expected a non-empty subset of {sorted(NORM_KEYS)}")
        if self.mode not in TRAIN_MODES:
            raise ValueError(f"mode {self.mode!r}: expected one of {sorted(TRAIN_MODES)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r}: expected one of {sorted(LOSSES)}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        check_mt_classes(self.mt_classes, self.loss)
        if self.mt_classes and self.mode == "avg":
            raise ValueError(f"mt_classes={self.mt_classes}: AVG trains on every norm's track; the targeted runs "
                             "join the attacks of modes 'msd' and 'max', which train on one point per image")
        for key, value in (("eps_linf", self.eps_linf), ("eps_l2", self.eps_l2), ("eps_l1", self.eps_l1),
                           ("eps_l0", self.eps_l0)):
            if value is not None and not value > 0:
                raise ValueError(f"{key} must be positive, got {value}")

    def validate(self, model: nn.Module) -> None:
        """Refuse a configuration that does not fit ``model`` (called before any training state is written)."""
        if self.flips and not has_binarization(model):
            raise ValueError(f"flips=True needs a model that binarizes its input (e.g. bidim_at_bin); "
                             f"{type(model).__name__} has no binarization")
        if self.partial_flips and not (self.flips and has_ramp(model)):
            raise ValueError("partial_flips=True moves pixels partway into a ramp's band: it needs flips=True and a "
                             "model whose input binarization is a ramp (--model-set binarize_width=0.4)")

    def validate_data(self, y: torch.Tensor) -> None:
        """Refuse training labels ``y`` that a per-class reweighting cannot measure (called before any training
        state is written)."""
        if getattr(self, "class_reweight", 0.0) or getattr(self, "pair_reweight", 0.0):
            check_probe(y, self.reweight_images)

    def attack(self, input_shape: tuple[int, int, int], model: nn.Module | None = None) -> MSDConfig:
        """The :class:`MSDConfig` for images of ``input_shape`` = (C, H, W); with ``flips``, for ``model``'s
        binarization threshold (a model without binarization is refused)."""
        threshold, pool, width = None, 1, 0.0
        if self.flips:
            if model is None:
                raise ValueError("flips=True: the attack needs the model whose binarization threshold it flips")
            self.validate(model)
            units = input_units(model)
            threshold, pool, width = units.threshold, units.pool, units.width
        default = scaled_thresholds(tuple(input_shape))
        given = {Norm.LINF: self.eps_linf, Norm.L2: self.eps_l2, Norm.L1: self.eps_l1, Norm.L0: self.eps_l0}
        eps = {}
        for key in self.norms:
            nm = NORM_KEYS[key]
            eps[nm] = float(default[nm] if given[nm] is None else given[nm])
        return MSDConfig(eps=eps, steps=self.steps, rel_step=self.rel_step, l1_coords=self.l1_coords,
                         loss=self.loss, mode="max" if self.mode == "avg" else self.mode, flip_threshold=threshold,
                         flip_pool=pool, flip_width=width, flip_partial=self.partial_flips,
                         mt_classes=self.mt_classes)


def _warmup(cfg: MultiNormAttackConfig, n: int, batch_size: int):
    """The radius scale at optimizer step ``step``: linear from 1/warmup to 1 over the warm-up epochs."""
    warm = max(cfg.eps_warmup_epochs * ((n + batch_size - 1) // batch_size), 1)
    return lambda step: min(1.0, (step + 1) / warm)


def adversarial_points(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: MSDConfig,
                       scale: float, every: bool = False) -> torch.Tensor:
    """MSD points against ``model`` as it is evaluated (eval mode), no gradient kept to its weights: one per
    image (B, ...), or with ``every`` one per norm and image (M * B, ...; norm-major, so ``y.repeat(M)`` labels
    them)."""
    was, params = model.training, list(model.parameters())
    flags = [p.requires_grad for p in params]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        x_adv = every_norm(model, x, y, attack, scale=scale).flatten(0, 1) if every else \
            msd(model, x, y, attack, scale=scale)[0]
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.train(was)
    return x_adv


def check_reweighting(strength: float, images: int, pair_strength: float = 0.0) -> None:
    """Refuse a per-class or per-pair reweighting strength outside [0, 1] or a probe of no images."""
    for key, value in (("class_reweight", strength), ("pair_reweight", pair_strength)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{key} must be in [0, 1] (0: off, 1: weights proportional to the measured error), "
                             f"got {value}")
    if images < 1:
        raise ValueError(f"reweight_images must be at least 1, got {images}")


def check_probe(y: torch.Tensor, images: int) -> None:
    """Refuse a reweighting whose probe, the first ``images`` of the training labels ``y``, misses a class of the
    training set (its weight could not be measured)."""
    missing = sorted(set(y.unique().tolist()) - set(y[:images].unique().tolist()))
    if missing:
        raise ValueError(f"reweight_images={images}: the first {min(images, len(y))} training images hold no image "
                         f"of class {missing}, whose weights could not be measured; raise reweight_images or shuffle "
                         "the training set (the probe takes the first images)")


def class_weights(errors: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-class weights ``1 + strength * (e_c - mean e) / mean e`` from robust errors ``e`` (K,); a class with no
    measured image (nan) weighs 1, and so does every class when nothing was broken."""
    seen = ~torch.isnan(errors)
    mean = errors[seen].mean() if seen.any() else errors.new_zeros(())
    if not float(mean) > 0:
        return torch.ones_like(errors)
    w = 1 + strength * (errors - mean) / mean
    return torch.where(seen, w, torch.ones_like(w))


def pair_weights(confusion: torch.Tensor, strength: float) -> torch.Tensor:
    """Weights (K, K) of the rejection terms, ``[j, c]`` for internal model ``j`` and an image of class ``c``:
    ``1 + strength * (r_cj - mean r) / mean r`` over the pairs ``j != c`` from the fraction ``r_cj`` of class
    ``c``'s images that the attack sends to ``j`` (``confusion[c, j]``); 1 on the diagonal, for a class without
    measured images (nan rows) and everywhere when nothing was broken."""
    k = confusion.shape[0]
    off = ~torch.eye(k, dtype=torch.bool, device=confusion.device) & ~torch.isnan(confusion)
    mean = confusion[off].mean() if off.any() else confusion.new_zeros(())
    if not float(mean) > 0:
        return torch.ones_like(confusion)
    w = torch.where(off, 1 + strength * (confusion - mean) / mean, torch.ones_like(confusion))
    return w.t().contiguous()


def class_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: MSDConfig, num_classes: int,
                 batch_size: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """The fraction of each class's images (K,; nan for a class without any) that the attack breaks in some norm
    (every norm's track at its full radius) or that the model already misclassifies, and where they go: (K, K),
    ``[c, j]`` the fraction of class ``c``'s images that the clean image or some norm's point sends to ``j != c``."""
    broken, sent = [], []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        pts = adversarial_points(model, xb, yb, attack, 1.0, every=True)
        was = model.training
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xb), model(pts)]).argmax(1).view(-1, len(xb))       # (1 + M, B)
        model.train(was)
        broken.append((pred != yb).any(0))
        to = F.one_hot(pred, max(num_classes, int(pred.max()) + 1))[..., :num_classes].amax(0).bool()  # (B, K)
        to[torch.arange(len(yb), device=yb.device), yb] = False
        sent.append(to)
    hit, reached = torch.cat(broken).to(torch.float64), torch.cat(sent).to(torch.float64)
    count = torch.bincount(y, minlength=num_classes).to(torch.float64)
    errors = torch.bincount(y, weights=hit, minlength=num_classes) / count
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=y.device).index_add_(0, y, reached)
    return errors.to(torch.float32), (confusion / count.unsqueeze(1)).to(torch.float32)


class ClassReweighting:
    """The per-class weights of the adversarial terms (``class_reweight``) and the per-pair weights of the rejection
    terms (``pair_reweight``), measured again at the start of every epoch on the first ``reweight_images`` training
    images (see the module's docstring)."""

    def __init__(self, data: TrainData, attack: MSDConfig, strength: float, pair_strength: float, images: int,
                 per_epoch: int):
        self.x, self.y = data.take(torch.arange(min(images, len(data.y))))
        self.attack, self.strength, self.pair_strength, self.per_epoch = attack, strength, pair_strength, per_epoch
        self.num_classes = int(data.y.max()) + 1
        check_probe(data.y, images)
        self.epoch = -1
        self.weights = torch.ones(self.num_classes, device=self.x.device)
        self.pairs = torch.ones(self.num_classes, self.num_classes, device=self.x.device)
        self.history: list[dict[str, Any]] = []

    def measure(self, model: nn.Module, step: int) -> None:
        """Measure the weights again if optimizer step ``step`` starts a new epoch."""
        epoch = step // self.per_epoch
        if epoch == self.epoch:
            return
        errors, confusion = class_errors(model, self.x, self.y, self.attack, self.num_classes)
        self.epoch = epoch
        entry: dict[str, Any] = {"epoch": epoch + 1, "robust_error": [round(float(e), 4) for e in errors]}
        if self.strength:
            self.weights = class_weights(errors, self.strength)
            entry["weights"] = [round(float(w), 4) for w in self.weights]
        if self.pair_strength:
            self.pairs = pair_weights(confusion, self.pair_strength)
            entry["confusion"] = [[round(float(v), 4) for v in row] for row in confusion]
            entry["pair_weights"] = [[round(float(v), 4) for v in row] for row in self.pairs]
        self.history.append(entry)

    def per_sample(self, model: nn.Module, step: int, y: torch.Tensor) -> torch.Tensor | None:
        """The class weight of each label in ``y`` at optimizer step ``step`` (None without ``class_reweight``)."""
        self.measure(model, step)
        return self.weights[y] if self.strength else None

    def per_pair(self, model: nn.Module, step: int, y: torch.Tensor) -> torch.Tensor | None:
        """(K, B): the weight of internal model ``j`` rejecting sample ``b`` of label ``y[b]`` (None without
        ``pair_reweight``)."""
        self.measure(model, step)
        return self.pairs[:, y] if self.pair_strength else None


def _reweighting(cfg, data: TrainData, attack: MSDConfig) -> ClassReweighting | None:
    pair = getattr(cfg, "pair_reweight", 0.0)
    if not (cfg.class_reweight or pair):
        return None
    return ClassReweighting(data, attack, cfg.class_reweight, pair, cfg.reweight_images,
                            (len(data.y) + cfg.batch_size - 1) // cfg.batch_size)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    return values.mean() if weights is None else (values * weights).mean()


@dataclass(frozen=True)
class MSDTrainConfig(MultiNormAttackConfig):
    """Multi-norm adversarial training of a classifier (the ``msd_cnn`` baseline), sized for two CPU cores:
    5 MSD steps per batch (the original used 100) and 4 epochs. ``weight_average``: the decay per step of an
    exponential moving average of the weights, which the trained model keeps (0: the last weights). ``augment``: the
    probability that a training image is first zoomed and sheared (:func:`dim.train.augment.random_affine`).
    ``class_reweight`` / ``reweight_images``: per-class weights of the adversarial loss (module docstring).
    ``awp``: adversarial weight perturbation of that relative size (:mod:`dim.train.awp`; 0: off)."""
    epochs: int = 4
    batch_size: int = 128
    lr: float = 1e-3
    weight_average: float = 0.0
    augment: float = 0.0
    class_reweight: float = 0.0
    reweight_images: int = 1000
    awp: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_average(self.weight_average)
        check_probability(self.augment)
        check_reweighting(self.class_reweight, self.reweight_images)
        check_awp(self.awp)


@register_recipe("msd", MSDTrainConfig)
def fit_msd(model: nn.Module, data: TrainData, cfg: MSDTrainConfig, gen: torch.Generator, show: bool,
            state_dir: Path | None = None) -> dict[str, Any]:
    attack = cfg.attack(tuple(data.x.shape[1:]), model)
    n = len(data.y)
    scale = _warmup(cfg, n, cfg.batch_size)
    reweight = _reweighting(cfg, data, attack)
    awp = WeightPerturbation(model, cfg.awp)

    def loss_fn(idx, g, step):
        x, y = data.take(idx)
        if cfg.augment:
            x = random_affine(x, cfg.augment, g)
        x_adv = adversarial_points(model, x, y, attack, scale(step), cfg.mode == "avg")
        y_adv = y.repeat(len(x_adv) // len(x))
        w = None if reweight is None else reweight.per_sample(model, step, y_adv)

        def adv_loss():
            if w is None:
                return F.cross_entropy(model(x_adv), y_adv)
            return _weighted_mean(F.cross_entropy(model(x_adv), y_adv, reduction="none"), w)
        return awp.loss(adv_loss)

    with with_gradient(model, "auto", "multi-norm adversarial training"):   # BPDA through a binarization, if any
        loss = run_epochs(model, loss_fn, n, cfg.epochs, cfg.batch_size, cfg.lr, gen,
                          "multi-norm adversarial training", show, state_dir and state_dir / "msd.safetensors",
                          average=cfg.weight_average, before_step=awp.restore)
    out = {"final_adversarial_loss": loss, "attack_eps": {nm.value: e for nm, e in attack.eps.items()}}
    if reweight is not None:
        out["class_reweighting"] = reweight.history
    return out


@dataclass(frozen=True)
class ScoreMSDTrainConfig(MultiNormAttackConfig):
    """DIM's clean recipe (``pretrain_*``), then end-to-end multi-norm adversarial training (``epochs``), whose
    weights are, with ``weight_average`` > 0, an exponential moving average over its steps (that decay per step).
    ``augment`` is the probability that an image of the adversarial phase is first zoomed and sheared
    (:func:`dim.train.augment.random_affine`; its adversarial point is then sought around the distorted image).
    ``class_reweight`` / ``pair_reweight`` / ``reweight_images``: per-class weights of the adversarial terms and
    per-pair weights of the rejection term (module docstring). ``awp``: adversarial weight perturbation of that
    relative size in the adversarial phase (:mod:`dim.train.awp`; 0: off)."""
    pretrain_denoiser_epochs: int = ScoreTrainConfig.denoiser_epochs
    pretrain_epochs: int = ScoreTrainConfig.epochs
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    pretrain_lr: float = 3e-3   # what the measured variants were pretrained with
    adv_ce: float = 1.0
    purify: float = 1.0
    adv_pos: float = 1.0
    adv_neg: float = 1.0
    clean_weight: float = 0.5
    trades: float = 0.0
    weight_average: float = 0.0
    augment: float = 0.0
    class_reweight: float = 0.0
    pair_reweight: float = 0.0
    reweight_images: int = 1000
    awp: float = 0.0
    im_sigma: float = ScoreTrainConfig.im_sigma
    binarized_fraction: float = ScoreTrainConfig.binarized_fraction

    def __post_init__(self) -> None:
        super().__post_init__()
        check_average(self.weight_average)
        check_probability(self.augment)
        check_reweighting(self.class_reweight, self.reweight_images, self.pair_reweight)
        check_awp(self.awp)

    def pretrain(self) -> ScoreTrainConfig:
        return ScoreTrainConfig(denoiser_epochs=self.pretrain_denoiser_epochs, epochs=self.pretrain_epochs,
                                batch_size=self.batch_size, lr=self.pretrain_lr, im_sigma=self.im_sigma,
                                binarized_fraction=self.binarized_fraction)


def _balanced_recon(rec: torch.Tensor, target: torch.Tensor, y: torch.Tensor, w_pos: float,
                    w_neg: float, weights: torch.Tensor | None = None,
                    neg_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 2 with positives and negatives weighted apart: ``rec`` (K, B, d), the own class's model towards
    ``target`` (B, d), the others towards black; each part averaged over its members (each sample weighted by
    ``weights`` (B,), and each rejection, model ``j`` and sample ``b``, by ``neg_weights[j, b]``, if given)."""
    k = rec.shape[0]
    pos = F.one_hot(y, k).t().to(rec.dtype)                                          # (K, B)
    err = ((rec - pos.unsqueeze(-1) * target.unsqueeze(0)) ** 2).mean(-1)            # (K, B)
    neg = (1 - pos) * err if neg_weights is None else (1 - pos) * err * neg_weights
    return w_pos * _weighted_mean((pos * err).sum(0), weights) + \
        w_neg * _weighted_mean(neg.sum(0), weights) / max(k - 1, 1)


@register_recipe("score_msd", ScoreMSDTrainConfig)
def fit_score_msd(model: nn.Module, data: TrainData, cfg: ScoreMSDTrainConfig, gen: torch.Generator, show: bool,
                  state_dir: Path | None = None) -> dict[str, Any]:
    attack = cfg.attack(tuple(data.x.shape[1:]), model)     # a bad attack fails before the pretraining
    reweight = _reweighting(cfg, data, attack)
    out = fit_score_model(model, data, cfg.pretrain(), gen, show, state_dir)
    out = {f"pretrain_{k}": v for k, v in out.items()}
    n = len(data.y)
    scale = _warmup(cfg, n, cfg.batch_size)
    model.train()
    awp = WeightPerturbation(model, cfg.awp)

    def loss_fn(idx, g, step):
        x, y = data.take(idx)
        if cfg.augment:
            x = random_affine(x, cfg.augment, g)
        x_adv = adversarial_points(model, x, y, attack, scale(step), cfg.mode == "avg")
        y_adv = y.repeat(len(x_adv) // len(x))                      # "avg": every norm's point of each image
        w = None if reweight is None else reweight.per_sample(model, step, y_adv)
        wn = None if reweight is None else reweight.per_pair(model, step, y_adv)
        return awp.loss(lambda: _score_msd_loss(model, cfg, x, y, x_adv, w, wn, g))

    with with_gradient(model, "auto", "the adversarial phase"):   # BPDA through a binarization, if any
        out["final_adversarial_loss"] = run_epochs(model, loss_fn, n, cfg.epochs, cfg.batch_size, cfg.lr, gen,
                                                   "multi-norm adversarial training", show,
                                                   state_dir and state_dir / "score_msd.safetensors",
                                                   average=cfg.weight_average, before_step=awp.restore)
    out["attack_eps"] = {nm.value: e for nm, e in attack.eps.items()}
    if reweight is not None:
        out["class_reweighting"] = reweight.history
    return out


def _score_msd_loss(model: nn.Module, cfg: ScoreMSDTrainConfig, x: torch.Tensor, y: torch.Tensor,
                    x_adv: torch.Tensor, w: torch.Tensor | None, wn: torch.Tensor | None,
                    g: torch.Generator) -> torch.Tensor:
    """``score_msd``'s loss of one batch: clean images ``x`` with labels ``y`` and their adversarial points ``x_adv``
    (one per image, or with ``mode="avg"`` one per norm and image), per-sample weights ``w`` and per-pair rejection
    weights ``wn`` of the adversarial terms (or None)."""
    reps = len(x_adv) // len(x)                                   # "avg": every norm's point of each image
    y_adv = y.repeat(reps)
    both = torch.cat([x, x_adv])                                  # one pass over clean and adversarial
    dn = model.denoise(both)                                      # (B + reps * B, d)
    rec = model.heads(torch.cat([dn[:len(x)] + _noise(dn[:len(x)], cfg.im_sigma, g), dn[len(x):]]))
    d_clean, d_adv = dn[:len(x)], dn[len(x):]
    r_clean, r_adv = rec[:, :len(x)], rec[:, len(x):]
    loss = torch.zeros((), device=x.device)
    if cfg.adv_ce:
        ce = F.cross_entropy(model.logits_of(d_adv, r_adv), y_adv, reduction="mean" if w is None else "none")
        loss = loss + cfg.adv_ce * _weighted_mean(ce, w)
    if cfg.purify and model.denoiser is not None:
        target = x.flatten(1).repeat(reps, 1)
        loss = loss + cfg.purify * (F.mse_loss(d_adv, target) if w is None else
                                    _weighted_mean(((d_adv - target) ** 2).mean(1), w))
    if cfg.adv_pos or cfg.adv_neg:
        loss = loss + _balanced_recon(r_adv, d_clean.detach().repeat(reps, 1), y_adv, cfg.adv_pos, cfg.adv_neg,
                                      w, wn)
    if cfg.clean_weight:
        clean = _balanced_recon(r_clean, d_clean, y, 0.5, 0.5) + F.cross_entropy(model.logits_of(d_clean, r_clean), y)
        loss = loss + cfg.clean_weight * clean
    if cfg.trades:      # the clean prediction without the internal models' training noise
        clean_logits = model.logits_of(d_clean, model.heads(d_clean)).repeat(reps, 1)
        loss = loss + cfg.trades * trades_kl(clean_logits, model.logits_of(d_adv, r_adv))
    return loss


def trades_kl(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(clean) || softmax(adv))``, averaged over the batch (TRADES' robustness term)."""
    return F.kl_div(F.log_softmax(adv_logits, -1), F.log_softmax(clean_logits, -1), reduction="batchmean",
                    log_target=True)


def _noise(d: torch.Tensor, sigma_max: float, gen: torch.Generator) -> torch.Tensor:
    """Zero-mean Gaussian noise of a per-sample level in [0, sigma_max], as the clean recipe's internal models see."""
    sig = torch.rand((d.shape[0], 1), generator=gen, device=gen.device) * sigma_max
    return sig * torch.randn(d.shape, generator=gen, device=gen.device)


@dataclass(frozen=True)
class ScoreMSDFlipsTrainConfig(ScoreMSDTrainConfig):
    """``score_msd`` against knapsack flips across the model's binarization, its clean loss weighted 2.0: the recipe
    of ``bidim_at_ramp`` (the same as ``dim train bidim_at_bin --set flips=true --set clean_weight=2.0`` with the
    ramp's model setting)."""
    flips: bool = True
    clean_weight: float = 2.0


register_recipe("score_msd_flips", ScoreMSDFlipsTrainConfig)(fit_score_msd)
