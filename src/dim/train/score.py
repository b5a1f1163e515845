"""Recipe ``score``: the DIM family (denoiser, then the internal models)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .loop import TrainData, register_recipe, run_epochs


@dataclass(frozen=True)
class ScoreTrainConfig:
    """Recipe of DIM and the ablations: denoiser first, then the internal models.

    Denoiser: MSE to the clean image from ``clip(x + sigma * N(0, 1))`` with sigma ~
    U(0, denoiser_sigma) per sample (plus salt-and-pepper on ``denoiser_sp`` of the
    pixels, off by default: measured, stronger noise, sigma up to 0.5 with 5%
    salt-and-pepper, blurred D(x) and cost about 0.5 point of clean accuracy).
    Internal models: input ``D(x) + sigma * N(0, 1)`` with sigma ~ U(0, im_sigma) per
    sample (paper eq. 2), not clipped: clipped noise is not zero-mean (it brightens
    the black background), and the models then misread clean inputs (measured: 51%
    accuracy instead of 95% after 3 epochs). Loss: paper eq. 2 with the positive
    samples (own class, target D(x)) and the negatives (target black) carrying equal
    total weight per internal model, plus ``ce_weight`` times softmax cross-entropy
    on the logits ``T * P(x|i)``; the reconstruction loss alone reached 96.5% in 8
    epochs, with cross-entropy the same budget reaches 98%. Random translations
    were tried and cost accuracy within the 5-minute budget.
    ``binarized_fraction`` of the samples are shown in biDIM's view, ``bin(D(bin(x)))``
    (and the denoiser gets ``bin(x)`` for as many), so that the same weights also
    serve biDIM, which binarizes at inference only.

    Schedule: 4 + 8 epochs, the 3-minute budget on two CPU cores, at learning rate 2e-3: 3e-3 (the default
    before) left one seed below 98% (``benchmarks/results/dim_recipe_*.json``, docs/notes.md).
    """
    denoiser_epochs: int = 4
    epochs: int = 8
    batch_size: int = 128
    lr: float = 2e-3
    denoiser_sigma: float = 0.3
    denoiser_sp: float = 0.0
    im_sigma: float = 0.3
    ce_weight: float = 1.0
    binarized_fraction: float = 0.5


MIN_MASS = 1.0   # one pixel of full intensity; MNIST digits have about 100


def _rand(shape, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=gen.device)


def _randn(shape, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen, device=gen.device)


def _noisy(x: torch.Tensor, sigma_max: float, sp: float, gen: torch.Generator) -> torch.Tensor:
    sig = _rand((x.shape[0], 1), gen) * sigma_max
    out = x + sig * _randn(x.shape, gen)
    if sp > 0:
        mask = _rand(x.shape, gen)
        out = torch.where(mask < sp / 2, torch.zeros_like(out), out)
        out = torch.where(mask > 1 - sp / 2, torch.ones_like(out), out)
    return out.clamp(0, 1)


def _bidim_view(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``bin(D(bin(x)))`` (or ``bin(x)`` without denoiser), as biDIM computes it at inference."""
    h = (x.flatten(1) > 0.5).float()
    if model.denoiser is not None:
        h = (model.denoiser(h) > 0.5).float()
    return h


@register_recipe("score", ScoreTrainConfig)
def fit_score_model(model: nn.Module, data: TrainData, cfg: ScoreTrainConfig, gen: torch.Generator,
                    show: bool, state_dir: Path | None = None) -> dict[str, Any]:
    n, k = len(data.y), model.num_classes
    dev = data.device
    out: dict[str, Any] = {}
    if model.denoiser is not None and cfg.denoiser_epochs > 0:
        dn = model.denoiser.train()

        def dn_loss(idx, g, step):
            clean = data.take(idx)[0].flatten(1)
            noisy = _noisy(clean, cfg.denoiser_sigma, cfg.denoiser_sp, g)
            binary = _rand((len(idx), 1), g) < cfg.binarized_fraction
            return F.mse_loss(dn(torch.where(binary, (clean > 0.5).float(), noisy)), clean)

        out["denoiser_final_mse"] = run_epochs(dn, dn_loss, n, cfg.denoiser_epochs, cfg.batch_size, cfg.lr, gen,
                                               "denoiser", show, state_dir and state_dir / "denoiser.safetensors")
        dn.eval()
    home = data.x.device   # D(x) and biDIM's view bin(D(bin(x))) of the training set, computed once,
    with torch.no_grad():  # kept where the training set is kept
        chunks = [data.x[i:i + 2000].to(dev) for i in range(0, n, 2000)]
        d_all = torch.cat([model.denoise(c).to(home) for c in chunks])
        d_bin = torch.cat([_bidim_view(model, c).to(home) for c in chunks])
        del chunks
    labels = data.y.to(dev)

    def denoised(idx, g):  # (B, 784): DIM's view, or biDIM's for binarized_fraction of the samples
        binary = _rand((len(idx), 1), g) < cfg.binarized_fraction
        hidx = idx.to(home)
        return torch.where(binary, d_bin[hidx].to(dev), d_all[hidx].to(dev))

    heads = model.heads.train()
    onehot = F.one_hot(labels, k).t().float()  # (K, N)
    w_pos, w_neg = 0.5, 0.5 / (k - 1)

    def im_loss(idx, g, step):
        d = denoised(idx, g)                                              # (B, 784)
        sig = _rand((len(idx), 1), g) * cfg.im_sigma                       # per-sample noise level
        rec = heads(d + sig * _randn(d.shape, g))                         # (K, B, 784); zero-mean, unclipped
        pos = onehot[:, idx]                                              # (K, B)
        err = ((rec - pos.unsqueeze(-1) * d.unsqueeze(0)) ** 2).mean(-1)  # (K, B)
        loss = ((pos * w_pos + (1 - pos) * w_neg) * err).sum(0).mean()
        if cfg.ce_weight > 0:
            # (B, K); the mass of D(x) floored at MIN_MASS: an almost black view (biDIM's bin(D(bin(x)))
            # of a dark Fashion-MNIST item) would otherwise give logits of 1e6 and a diverging loss
            score = rec.sum(-1).t() / d.sum(-1, keepdim=True).clamp_min(MIN_MASS)
            loss = loss + cfg.ce_weight * F.cross_entropy(model.temperature * score, labels[idx])
        return loss

    out["im_final_loss"] = run_epochs(heads, im_loss, n, cfg.epochs, cfg.batch_size, cfg.lr, gen,
                                      "internal models", show, state_dir and state_dir / "heads.safetensors")
    return out


@dataclass(frozen=True)
class PaperScoreTrainConfig(ScoreTrainConfig):
    """Recipe ``score_paper``: DIM trained with the paper's objective alone (eq. 2, balanced weighting).

    No cross-entropy term and no binarized views (both are ours, not the paper's: the first buys
    about 1.5 points of clean accuracy, the second lets one set of weights serve biDIM). biDIM of
    the paper is the same weights binarized at inference only, which is what ``bidim_paper`` is.
    The same 4 + 8 epochs as ``dim``, at the learning rate its measurements used (the search that moved
    ``dim`` to 2e-3 was of the cross-entropy recipe); the paper reports 96% clean for its DIM."""
    lr: float = 3e-3
    ce_weight: float = 0.0
    binarized_fraction: float = 0.0


register_recipe("score_paper", PaperScoreTrainConfig)(fit_score_model)
