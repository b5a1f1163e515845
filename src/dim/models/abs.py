"""Analysis by Synthesis (Schott et al. 2019), ``abs``, and its binarized-input variant ``biabs``.

Ten class-conditional VAEs with 8-d latents, each trained on its own class.
Inference, per class k: the best of ``n_random`` fixed random latents, then
``n_steps`` Adam steps on the latent, minimising the negative ELBO bound
``l_k(x, z) = ||x - G_k(z)||^2 / (2 sigma^2) + ||z||^2 / 2`` (Gaussian likelihood
with fixed variance sigma^2, standard normal prior). Logits are ``-alpha * l_k``.

Written from the paper's description; the design is ours and CPU-minded:
- decoders and encoders are batched MLPs (as the internal models of DIM);
- the random latents are fixed and their decoded images cached, so the
  best-of-``n_random`` search for a whole batch is one matmul
  ``(B, 784) @ (784, K * n_random)``;
- the gradient given to attacks is that of ``l_k(x, z*)`` with the optimised
  latent ``z*`` held fixed (the envelope theorem: at an optimum, this is the
  gradient of ``min_z l_k(x, z)``), which is how ABS was attacked with gradients.

Paper settings: ``n_random=8000``, ``n_steps=50``. ``FAST`` is a documented
faster setting (``n_random=1000``, ``n_steps=10``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .binarize import Binarize
from .dim import BatchedLinear, SharedInputLinear
from .registry import register_model


@dataclass(frozen=True)
class ABSConfig:
    in_features: int = 784
    num_classes: int = 10
    latent: int = 8
    arch: str = "mlp"              # key of VAE_ARCHS
    hidden: int = 256              # mlp: hidden units of encoder and decoder
    channels: int = 16             # conv: channels of the first conv layer (the second has twice as many)
    n_random: int = 8000
    n_steps: int = 50
    lr: float = 0.05
    sigma: float = 0.3             # fixed std of the Gaussian likelihood
    alpha: float = 0.05            # logits = -alpha * negative ELBO
    seed: int = 1234               # of the fixed random latents
    binarize_threshold: float = 0.5


FAST = {"n_random": 1000, "n_steps": 10}


class BatchedVAE(nn.Module):
    """K VAEs ``784 -> h -> (mu, logvar) in R^8 -> h -> 784``, batched over classes."""

    def __init__(self, k: int, d: int, hidden: int, latent: int):
        super().__init__()
        self.latent = latent
        self.enc1 = SharedInputLinear(k, d, hidden)
        self.enc2 = BatchedLinear(k, hidden, 2 * latent)
        self.dec1 = BatchedLinear(k, latent, hidden)
        self.dec2 = BatchedLinear(k, hidden, d)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, d) -> 2 x (K, B, latent)
        """Every VAE encodes the same inputs; ``x`` of shape ``(K, B, d)``: VAE k encodes ``x[k]``."""
        h1 = self.enc1.forward_grouped(x) if x.dim() == 3 else self.enc1(x)
        h = self.enc2(F.elu(h1))
        return h[..., : self.latent], h[..., self.latent:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (K, S, latent) -> (K, S, d)
        return torch.sigmoid(self.dec2(F.elu(self.dec1(z))))


class ConvVAE(nn.Module):
    """One VAE with a small convolutional encoder and decoder (28 x 28 inputs)."""

    def __init__(self, latent: int, width: int):
        super().__init__()
        w = self.w = width
        self.enc = nn.Sequential(nn.Conv2d(1, w, 4, 2, 1), nn.ELU(), nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ELU(),
                                 nn.Flatten(), nn.Linear(2 * w * 49, 2 * latent))
        self.fc = nn.Linear(latent, 2 * w * 49)
        self.dec = nn.Sequential(nn.ELU(), nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.ELU(),
                                 nn.ConvTranspose2d(w, 1, 4, 2, 1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, 784) -> (B, 2 * latent)
        return self.enc(x.view(-1, 1, 28, 28))

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (B, latent) -> (B, 784)
        return torch.sigmoid(self.dec(self.fc(z).view(-1, 2 * self.w, 7, 7))).flatten(1)


class ConvVAEs(nn.Module):
    """K convolutional VAEs with the interface of :class:`BatchedVAE` (a loop over classes)."""

    def __init__(self, k: int, d: int, channels: int, latent: int):
        super().__init__()
        if d != 784:
            raise ValueError(f"the convolutional ABS expects 28 x 28 x 1 inputs (784 features), got {d}; "
                             "use arch='mlp' (the default) for other shapes")
        self.latent = latent
        self.vaes = nn.ModuleList(ConvVAE(latent, channels) for _ in range(k))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (K, B, d) -> 2 x (K, B, latent)
        h = torch.stack([v.encode(xk) for v, xk in zip(self.vaes, x)])
        return h[..., : self.latent], h[..., self.latent:]

    def decode(self, z: torch.Tensor, chunk: int = 4096) -> torch.Tensor:  # (K, S, latent) -> (K, S, d)
        return torch.stack([torch.cat([v.decode(zc) for zc in zk.split(chunk)]) for v, zk in zip(self.vaes, z)])


# The ten VAEs: ``arch(cfg)`` -> a module with ``encode((K, B, d))`` and ``decode((K, S, latent))``.
VAE_ARCHS = {
    "mlp": lambda cfg: BatchedVAE(cfg.num_classes, cfg.in_features, cfg.hidden, cfg.latent),
    "conv": lambda cfg: ConvVAEs(cfg.num_classes, cfg.in_features, cfg.channels, cfg.latent),
}


class ABS(nn.Module):
    def __init__(self, cfg: ABSConfig, binarize: bool):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        try:
            arch = VAE_ARCHS[cfg.arch]
        except KeyError:
            raise ValueError(f"unknown ABS arch {cfg.arch!r}; expected one of {sorted(VAE_ARCHS)}") from None
        self.vaes = arch(cfg)
        self.bin_in = Binarize(cfg.binarize_threshold) if binarize else nn.Identity()
        g = torch.Generator().manual_seed(cfg.seed)
        self.register_buffer("z_random", torch.randn(cfg.num_classes, cfg.n_random, cfg.latent, generator=g),
                             persistent=False)
        self._cache: tuple[int, torch.Tensor] | None = None

    def _decoded_random(self) -> torch.Tensor:  # (K, S, d), recomputed when the weights change
        version = sum(p._version for p in self.vaes.parameters())
        if self._cache is None or self._cache[0] != version:
            with torch.no_grad():
                self._cache = (version, self.vaes.decode(self.z_random))
        return self._cache[1]

    def neg_elbo(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # (B, d), (K, B, l) -> (B, K)
        rec = self.vaes.decode(z)                                       # (K, B, d)
        err = ((x.unsqueeze(0) - rec) ** 2).sum(-1) / (2 * self.cfg.sigma ** 2)
        return (err + 0.5 * (z ** 2).sum(-1)).t()

    def infer_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Best random latent per class, then Adam on the latent; returns z* ``(K, B, latent)``."""
        x = x.detach()
        g = self._decoded_random()                                      # (K, S, d)
        k, s, d = g.shape
        # ||x - g||^2 = ||x||^2 - 2 x.g + ||g||^2, for all K*S decoded latents at once
        cross = x @ g.reshape(k * s, d).t()                             # (B, K*S)
        dist = (x ** 2).sum(1, keepdim=True) - 2 * cross + (g ** 2).sum(-1).reshape(1, k * s)
        score = dist.view(-1, k, s) / (2 * self.cfg.sigma ** 2) + 0.5 * (self.z_random ** 2).sum(-1)
        best = score.argmin(-1)                                         # (B, K)
        z = self.z_random[torch.arange(k, device=best.device).unsqueeze(0), best].transpose(0, 1).clone()  # (K, B, latent)
        if self.cfg.n_steps > 0:
            best_z, best_l = z.clone(), None
            with torch.enable_grad():
                z.requires_grad_(True)
                opt = torch.optim.Adam([z], lr=self.cfg.lr)
                for step in range(self.cfg.n_steps + 1):
                    loss = self.neg_elbo(x, z).t()                      # (K, B)
                    with torch.no_grad():                               # keep the best latent seen
                        better = loss < best_l if best_l is not None else torch.ones_like(loss, dtype=torch.bool)
                        best_z = torch.where(better.unsqueeze(-1), z, best_z)
                        best_l = torch.where(better, loss, loss if best_l is None else best_l)
                    if step == self.cfg.n_steps:
                        break
                    opt.zero_grad()
                    loss.sum().backward(inputs=[z])
                    opt.step()
            z = best_z
        return z.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, K)
        h = self.bin_in(x.flatten(1))
        z = self.infer_latents(h)
        return -self.cfg.alpha * self.neg_elbo(h, z)


for _name, _label, _bin, _from, _desc in (
        ("abs", "ABS", False, None, "Analysis by Synthesis: ten class-conditional VAEs, inference by optimisation"),
        ("biabs", "biABS", True, "abs", "abs's weights with the input binarized at 0.5 (inference only)")):
    def _factory(cfg: ABSConfig, _bin=_bin) -> ABS:
        return ABS(cfg, _bin)
    register_model(_name, config=ABSConfig, description=_desc, paper_name=_label, recipe="vae",
                   weights_from=_from)(_factory)
