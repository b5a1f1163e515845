"""The Madry et al. MNIST CNN (``cnn``), its binarized-input variant (``bicnn``), the same network
adversarially trained (``madry``) and trained against every norm at once (``msd_cnn``; ``bicnn_at_bin`` with its
input binarized, the control for ``bidim_at_bin``: the binarization without DIM's structure)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .binarize import Binarize
from .registry import register_model


@dataclass(frozen=True)
class CNNConfig:
    """conv 5x5x32 - maxpool 2 - conv 5x5x64 - maxpool 2 - fc 1024 - fc K (``same`` padding).

    Input ``(in_channels, *image_size)``; both come from the dataset when training.
    """
    channels: tuple[int, int] = (32, 64)
    fc: int = 1024
    num_classes: int = 10
    binarize_threshold: float = 0.5
    binarize_pool: int = 1          # binarize the input's pool x pool blocks by their mean (models.binarize)
    binarize_width: float = 0.0     # > 0: a linear ramp across threshold -+ width/2, not a step (the same)
    in_channels: int = 1
    image_size: tuple[int, int] = (28, 28)


class MadryCNN(nn.Module):
    def __init__(self, cfg: CNNConfig, binarize: bool):
        super().__init__()
        c1, c2 = cfg.channels
        h, w = cfg.image_size
        if h < 4 or w < 4:
            raise ValueError(f"the CNN pools twice by 2: images must be at least 4 x 4, got {h} x {w}")
        self.num_classes = cfg.num_classes
        self.bin_in = (Binarize(cfg.binarize_threshold, pool=cfg.binarize_pool, width=cfg.binarize_width)
                       if binarize else nn.Identity())
        self.features = nn.Sequential(
            nn.Conv2d(cfg.in_channels, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, H/2, W/2)
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),               # (B, 64, H/4, W/4)
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), cfg.fc), nn.ReLU(),
                                        nn.Linear(cfg.fc, cfg.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.classifier(self.features(self.bin_in(x)))


# name, paper label, binarize, recipe, weights_from, description
_VARIANTS = [
    ("cnn", "CNN", False, "classifier", None, "Madry et al. MNIST CNN, standard training"),
    ("bicnn", "biCNN", True, "classifier", "cnn", "cnn's weights with the input binarized at 0.5 (inference only)"),
    ("madry", "Madry", False, "adversarial", None, "Madry CNN adversarially trained against L-inf eps 0.3"),
    ("msd_cnn", "MSD-CNN", False, "msd", None,
     "Madry CNN adversarially trained against L-inf, L2, L1 and L0 at once (multi steepest descent)"),
    ("bicnn_at_bin", "biCNN-MSD (binarized in training)", True, "msd", None,
     "Madry CNN with its input binarized at 0.5, trained like msd_cnn with the binarization in the loop "
     "(straight-through gradients while it trains; inference binarizes exactly)"),
]

for _name, _label, _bin, _recipe, _from, _desc in _VARIANTS:
    def _factory(cfg: CNNConfig, _bin=_bin) -> MadryCNN:
        return MadryCNN(cfg, _bin)
    register_model(_name, config=CNNConfig, description=_desc, paper_name=_label, recipe=_recipe,
                   weights_from=_from)(_factory)
