"""Recipe ``vae``: ABS's ten class-conditional VAEs, each trained on its own class only."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .loop import TrainData, register_recipe, run_epochs


@dataclass(frozen=True)
class VAETrainConfig:
    """Negative ELBO (Gaussian likelihood with the model's fixed sigma, KL to N(0, I)),
    computed for all ten VAEs on every batch and masked to each sample's own class."""
    epochs: int = 6
    batch_size: int = 128
    lr: float = 1e-3


@register_recipe("vae", VAETrainConfig)
def fit_vaes(model: nn.Module, data: TrainData, cfg: VAETrainConfig, gen: torch.Generator, show: bool,
             state_dir: Path | None = None) -> dict[str, Any]:
    x_all = data.x.flatten(1)
    vaes, sigma = model.vaes.train(), model.cfg.sigma
    own = F.one_hot(data.y, model.num_classes).t().float()  # (K, N)

    def loss_fn(idx, g, step):
        x = x_all[idx]
        mu, logvar = vaes.encode(x)                                                 # (K, B, l)
        z = mu + torch.randn(mu.shape, generator=g) * torch.exp(0.5 * logvar)
        rec = vaes.decode(z)                                                        # (K, B, d)
        nll = ((x.unsqueeze(0) - rec) ** 2).sum(-1) / (2 * sigma ** 2)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
        mask = own[:, idx]
        return ((nll + kl) * mask).sum() / mask.sum()

    loss = run_epochs(vaes, loss_fn, len(data.y), cfg.epochs, cfg.batch_size, cfg.lr, gen, "class VAEs", show,
                      state_dir and state_dir / "vaes.safetensors")
    return {"final_neg_elbo": loss}
