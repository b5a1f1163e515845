"""Denoised Internal Models (paper section 3.2), biDIM and the Table 2 ablations.

Pipeline: ``x -> D(x) -> F_0..F_9 -> P(x|i) = ||F_i(D(x))||_1 / ||D(x)||_1``,
``logits = T * P(x|i)``. The ten internal models are one batched computation:
the first layer is a single ``(784, K*h)`` matmul on the shared input, the rest
are ``torch.baddbmm`` over stacked per-class weights ``(K, in, out)``. The scores
need only each reconstruction's sum: on a CPU the last layer, the sigmoid and the
sum go a few classes at a time (one per thread) through :mod:`.sigmoid_sum` so that each
block stays in cache, and when only the input needs a gradient (an attack) the whole
stack does, through :mod:`.input_grad`.

The temperature ``T`` (default 10) only rescales the scores, which lie in about
[0, 1.2]: a score gap of 0.3 becomes a logit margin of 3, so softmax
cross-entropy and margin losses used by attacks are neither saturated nor flat.
It never changes a prediction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from . import input_grad
from .binarize import Binarize
from .registry import register_model
from .sigmoid_sum import batched, sigmoid_sums


class BatchedLinear(nn.Module):
    """K independent linear maps applied to ``(K, B, in)`` in one ``baddbmm``."""

    def __init__(self, k: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(k, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (K, B, in) -> (K, B, out)
        return torch.baddbmm(self.bias, x, self.weight)


class SharedInputLinear(nn.Module):
    """K linear maps of one shared input, computed as a single wide matmul."""

    def __init__(self, k: int, d_in: int, d_out: int):
        super().__init__()
        self.k, self.d_out = k, d_out
        self.linear = nn.Linear(d_in, k * d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (K, B, out)
        return self.linear(x).view(x.shape[0], self.k, self.d_out).transpose(0, 1)

    def relu_forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (K, B, out)
        """``relu(forward(x))`` with the ReLU applied in place to the ``(B, K*out)`` matmul output before it is
        viewed as ``(K, B, out)``: its backward then runs on a contiguous tensor, with no strided copy."""
        return torch.relu_(self.linear(x)).view(x.shape[0], self.k, self.d_out).transpose(0, 1)

    def forward_grouped(self, x: torch.Tensor) -> torch.Tensor:  # (K, B, in) -> (K, B, out)
        """Map k applied to its own inputs ``x[k]`` (training each map on its own data)."""
        w = self.linear.weight.view(self.k, self.d_out, -1)
        return torch.baddbmm(self.linear.bias.view(self.k, 1, self.d_out), x, w.transpose(1, 2))


def _sums(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # (K, B, hidden) -> (K, B)
    if torch.jit.is_scripting():     # TorchScript compiles this branch only
        return batched(h, w, b)
    else:
        return sigmoid_sums(h, w, b)


class SigmoidInPlace(nn.Module):
    """``torch.sigmoid_``: after a linear layer, whose output its backward does not need, the activation can
    overwrite it (one tensor and one pass over memory fewer, the same numbers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid_(x)


def mlp(sizes: tuple[int, ...], out_act: nn.Module) -> nn.Sequential:
    """Linear layers with in-place ReLUs between them (each overwrites its linear layer's fresh output)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        layers.append(nn.ReLU(inplace=True) if i < len(sizes) - 2 else out_act)
    return nn.Sequential(*layers)


class Denoiser(nn.Module):
    """Autoencoder ``784 -> ... -> 784`` with sigmoid output (paper eq. 1)."""

    def __init__(self, d: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp((d, *hidden, d), SigmoidInPlace())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (B, d)
        return self.net(x)


class InternalModels(nn.Module):
    """K separate autoencoders ``d -> h -> latent -> h -> d``, batched."""

    def __init__(self, k: int, d: int, hidden: int, latent: int):
        super().__init__()
        self.enc1 = SharedInputLinear(k, d, hidden)
        self.enc2 = BatchedLinear(k, hidden, latent)
        self.dec1 = BatchedLinear(k, latent, hidden)
        self.dec2 = BatchedLinear(k, hidden, d)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (K, B, latent)
        return self.enc2(self.enc1.relu_forward(x))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (K, B, hidden): the last layer's input
        # in place: each activation overwrites the fresh output of its matmul, whose backward does not need it
        return torch.relu_(self.dec1(self.encode(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (K, B, d)
        return torch.sigmoid_(self.dec2(self.hidden(x)))

    def sums(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (K, B): each reconstruction's L1 norm
        if torch.jit.is_scripting():     # TorchScript compiles this branch only
            return batched(self.hidden(x), self.dec2.weight, self.dec2.bias)
        elif input_grad.applies(x, self):   # an attack's step on a CPU (:mod:`.input_grad`)
            return input_grad.input_grad_sums(x, self.enc1.linear, self.enc2, self.dec1, self.dec2)
        else:
            return sigmoid_sums(self.hidden(x), self.dec2.weight, self.dec2.bias)


class SingleHeadInternalModels(nn.Module):
    """One shared encoder ``d -> h -> latent``, K decoders ``latent -> h -> d`` (single-IM)."""

    def __init__(self, k: int, d: int, hidden: int, latent: int):
        super().__init__()
        self.k = k
        self.encoder = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.dec1 = SharedInputLinear(k, latent, hidden)
        self.dec2 = BatchedLinear(k, hidden, d)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (K, B, latent), the same for every k
        z = self.encoder(x)
        return z.unsqueeze(0).expand(self.k, *z.shape)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (K, B, hidden)
        return self.dec1.relu_forward(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (K, B, d)
        return torch.sigmoid_(self.dec2(self.hidden(x)))

    def sums(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (K, B): each reconstruction's L1 norm
        return _sums(self.hidden(x), self.dec2.weight, self.dec2.bias)


def _normalised(sums: torch.Tensor, d: torch.Tensor) -> torch.Tensor:  # (K, B), (B, d) -> (B, K): eq. 3
    return sums.t() / d.abs().sum(-1, keepdim=True).clamp_min(1e-6)


@dataclass(frozen=True)
class ScoreModelConfig:
    """Architecture of the DIM family (MLPs on flattened images; ``in_features`` = C*H*W, from the dataset)."""
    in_features: int = 784
    num_classes: int = 10
    im_hidden: int = 256
    latent: int = 10
    denoiser_hidden: tuple[int, ...] = (512, 256, 512)
    temperature: float = 10.0
    binarize_threshold: float = 0.5
    binarize_pool: int = 1          # binarize the input's pool x pool blocks by their mean (models.binarize)
    binarize_width: float = 0.0     # > 0: a linear ramp across threshold -+ width/2, not a step (the same)
    denoiser_binarize_width: float = 0.0   # the same for the binarization of the denoiser's output


class ScoreModel(nn.Module):
    """Classifier ``logits = T * ||F_i(D(x))||_1 / ||D(x)||_1`` (paper eqs. 3-4).

    ``denoiser`` may be ``None`` (the ``im``/``single_im`` ablations: ``D`` is the
    identity). With ``binarize=True`` (biDIM) the input and the denoiser output
    are binarized at 0.5; see :mod:`dim.models.binarize` for the gradient modes.
    """

    def __init__(self, cfg: ScoreModelConfig, denoiser: Denoiser | None, heads: nn.Module, binarize: bool):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.temperature = cfg.temperature
        self.denoiser = denoiser
        self.heads = heads
        self.bin_in = (Binarize(cfg.binarize_threshold, pool=cfg.binarize_pool, width=cfg.binarize_width)
                       if binarize else nn.Identity())
        self.bin_dn = (Binarize(cfg.binarize_threshold, width=cfg.denoiser_binarize_width)
                       if (binarize and denoiser is not None) else nn.Identity())

    def denoise(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, 784)
        h = self.bin_in(x).flatten(1)
        if self.denoiser is not None:
            h = self.bin_dn(self.denoiser(h))
        return h

    def reconstructions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D(x), F(D(x)))`` with shapes ``(B, 784)`` and ``(K, B, 784)``."""
        d = self.denoise(x)
        return d, self.heads(d)

    def scores(self, x: torch.Tensor) -> torch.Tensor:  # (B, K): P(x|i)
        """Eq. 3 without storing the reconstructions: the heads give each one's L1 norm directly
        (:mod:`dim.models.sigmoid_sum`; the same numbers as :meth:`scores_of` on :meth:`reconstructions`)."""
        d = self.denoise(x)
        return _normalised(self.heads.sums(d), d)

    @staticmethod
    def scores_of(d: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:  # (B, d), (K, B, d) -> (B, K)
        """Eq. 3 from a view ``D(x)`` and its reconstructions (training computes both once for several losses).
        The reconstructions are sigmoid outputs, never negative: their L1 norm is their sum, with no ``abs`` pass
        (and its backward) over the largest tensor of the model."""
        return _normalised(rec.sum(-1), d)

    def logits_of(self, d: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:  # -> (B, K)
        return self.temperature * self.scores_of(d, rec)

    def latents(self, x: torch.Tensor) -> torch.Tensor:  # (K, B, latent), for Figure 3
        return self.heads.encode(self.denoise(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, K)
        return self.temperature * self.scores(x)


def _build(cfg: ScoreModelConfig, *, denoiser: bool, single_head: bool, binarize: bool) -> ScoreModel:
    heads_cls = SingleHeadInternalModels if single_head else InternalModels
    heads = heads_cls(cfg.num_classes, cfg.in_features, cfg.im_hidden, cfg.latent)
    dn = Denoiser(cfg.in_features, cfg.denoiser_hidden) if denoiser else None
    return ScoreModel(cfg, dn, heads, binarize)


# name, paper label, denoiser, single head, binarize, description, weights_from, recipe
_VARIANTS = [
    ("dim", "DIM", True, False, False, "Denoiser + ten internal-model autoencoders (the paper's DIM)", None, "score"),
    ("bidim", "biDIM", True, False, True,
     "DIM's weights with input and denoiser output binarized at 0.5 (inference only)", "dim", "score"),
    ("dim_paper", "DIM (paper objective)", True, False, False,
     "DIM trained with the paper's objective alone (eq. 2, no cross-entropy, no binarized views)", None,
     "score_paper"),
    ("bidim_paper", "biDIM (paper objective)", True, False, True,
     "dim_paper's weights with input and denoiser output binarized at 0.5 (inference only)", "dim_paper",
     "score_paper"),
    ("dim_at", "DIM-AT", True, False, False,
     "DIM trained against every norm at once (multi-norm adversarial training through its own score)", None,
     "score_msd"),
    ("bidim_at", "biDIM-AT", True, False, True,
     "dim_at's weights with input and denoiser output binarized at 0.5 (inference only)", "dim_at", "score_msd"),
    ("bidim_at_bin", "biDIM-AT (binarized in training)", True, False, True,
     "biDIM trained against every norm with its binarization in the loop (straight-through gradients while it "
     "trains; inference binarizes exactly)", None, "score_msd"),
    ("im", "Internal Models", False, False, False, "Ablation: the ten internal models without denoiser", None,
     "score"),
    ("single_im", "singleIM", False, True, False, "Ablation: one shared encoder, ten decoders", None, "score"),
    ("dn_single_im", "Dn-singleIM", True, True, False, "Ablation: denoiser + single-head internal models", None,
     "score"),
]


def _register_variants() -> None:
    for name, label, dn, single, binz, desc, weights_from, recipe in _VARIANTS:
        def factory(cfg: ScoreModelConfig, dn=dn, single=single, binz=binz) -> ScoreModel:
            return _build(cfg, denoiser=dn, single_head=single, binarize=binz)
        register_model(name, config=ScoreModelConfig, description=desc, paper_name=label,
                       recipe=recipe, weights_from=weights_from)(factory)


_register_variants()


@dataclass(frozen=True)
class RampScoreModelConfig(ScoreModelConfig):
    """biDIM with its input binarized on a ramp across 0.3-0.7 (``bidim_at_ramp``): the widest band whose edges lie
    an L-inf radius of 0.3 from black and white, so no black or white pixel reaches it within that radius, while the
    L1 and L2 budgets change less of the binarized image than across a step (``benchmarks/flip_budget.py``)."""
    binarize_width: float = 0.4


register_model("bidim_at_ramp", config=RampScoreModelConfig, paper_name="biDIM-AT (ramp)", recipe="score_msd_flips",
               description="biDIM trained against every norm through its binarization, its input's step replaced by "
                           "a linear ramp across 0.3-0.7 (the denoiser output's step kept), against knapsack flips")(
    lambda cfg: _build(cfg, denoiser=True, single_head=False, binarize=True))
