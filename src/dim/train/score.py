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
    """Recipe of DIM, the ablations: denoiser first, then the internal models.

    Denoiser noise: Gaussian with a per-sample sigma drawn from U(0, denoiser_sigma)
    (covers clean inputs and perturbations beyond L-inf 0.3), plus salt-and-pepper
    on ``denoiser_sp`` of the pixels. Internal models see ``D(x) + sigma * N(0, 1)`` with
    sigma ~ U(0, im_sigma) per sample (paper eq. 2), not clipped: clipping would make
    the noise non-zero-mean (brighter black background), and the models would learn a
    background that clean inputs never have. Loss weighting: for each internal model the positive samples
    (its own class) and the negatives (the nine others, target black) carry equal
    total weight; ``ce_weight`` adds softmax cross-entropy on the logits.
    """
    denoiser_epochs: int = 4
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    denoiser_sigma: float = 0.5
    denoiser_sp: float = 0.05
    im_sigma: float = 0.3
    ce_weight: float = 0.0
    shift: int = 0


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero fill); ``(B, 1, H, W)``."""
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, b), generator=gen))
    rows = (torch.arange(h).unsqueeze(0) + dy.unsqueeze(1))[:, :, None]  # (B, H, 1)
    cols = (torch.arange(w).unsqueeze(0) + dx.unsqueeze(1))[:, None, :]  # (B, 1, W)
    return padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)


def _noisy(x: torch.Tensor, sigma_max: float, sp: float, gen: torch.Generator) -> torch.Tensor:
    sig = torch.rand(x.shape[0], 1, generator=gen) * sigma_max
    out = x + sig * torch.randn(x.shape, generator=gen)
    if sp > 0:
        mask = torch.rand(x.shape, generator=gen)
        out = torch.where(mask < sp / 2, torch.zeros_like(out), out)
        out = torch.where(mask > 1 - sp / 2, torch.ones_like(out), out)
    return out.clamp(0, 1)


@register_recipe("score", ScoreTrainConfig)
def fit_score_model(model: nn.Module, data: TrainData, cfg: ScoreTrainConfig, gen: torch.Generator,
                    show: bool, state_dir: Path | None = None) -> dict[str, Any]:
    x = data.x.flatten(1)  # (N, 784)
    n, k = len(x), model.num_classes
    out: dict[str, Any] = {}
    if model.denoiser is not None and cfg.denoiser_epochs > 0:
        dn = model.denoiser.train()

        def dn_loss(idx, g, step):
            clean = x[idx]
            return F.mse_loss(dn(_noisy(clean, cfg.denoiser_sigma, cfg.denoiser_sp, g)), clean)

        out["denoiser_final_mse"] = run_epochs(dn, dn_loss, n, cfg.denoiser_epochs, cfg.batch_size, cfg.lr, gen,
                                               "denoiser", show, state_dir and state_dir / "denoiser.safetensors")
        dn.eval()
    if cfg.shift == 0:
        with torch.no_grad():  # D(x) on the clean training set, computed once
            d_all = torch.cat([model.denoise(data.x[i:i + 2000]) for i in range(0, n, 2000)])

    def denoised(idx, g):  # (B, 784)
        if cfg.shift == 0:
            return d_all[idx]
        with torch.no_grad():
            return model.denoise(random_shift(data.x[idx], cfg.shift, g))
    heads = model.heads.train()
    onehot = F.one_hot(data.y, k).t().float()  # (K, N)
    w_pos, w_neg = 0.5, 0.5 / (k - 1)

    def im_loss(idx, g, step):
        d = denoised(idx, g)                                              # (B, 784)
        sig = torch.rand(len(idx), 1, generator=g) * cfg.im_sigma                # per-sample noise level
        rec = heads(d + sig * torch.randn(d.shape, generator=g))          # (K, B, 784); zero-mean, unclipped
        pos = onehot[:, idx]                                              # (K, B)
        err = ((rec - pos.unsqueeze(-1) * d.unsqueeze(0)) ** 2).mean(-1)  # (K, B)
        loss = ((pos * w_pos + (1 - pos) * w_neg) * err).sum(0).mean()
        if cfg.ce_weight > 0:
            score = rec.sum(-1).t() / d.sum(-1, keepdim=True).clamp_min(1e-6)  # (B, K)
            loss = loss + cfg.ce_weight * F.cross_entropy(model.temperature * score, data.y[idx])
        return loss

    out["im_final_loss"] = run_epochs(heads, im_loss, n, cfg.epochs, cfg.batch_size, cfg.lr, gen,
                                      "internal models", show, state_dir and state_dir / "heads.safetensors")
    return out


