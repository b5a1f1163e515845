"""Variants of a trained model that change only how it runs, not its weights: model factories for
``dim evaluate --model-factory benchmarks/inference_variants.py:NAME`` and ``bench_multinorm.py --factory``.

They need the weights they name (paths from the repository root): ``weights/`` is committed, ``models/<dir>`` is
what the ``dim train`` command in each factory's docstring writes.
"""
from __future__ import annotations

import types
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import dim
from dim.checkpoint import load_ensemble
from dim.models.binarize import Binarize

ROOT = Path(__file__).resolve().parent.parent
QUOTED = ROOT / "weights" / "bidim_at_ramp_dnramp_w08"


def ensemble_w08_seeds() -> nn.Module:
    """The quoted model (seed 0) and its recipe's seed 1, logits averaged (:class:`dim.models.ensemble.Ensemble`,
    what ``dim ensemble`` writes to a folder). Seed 1 is made by
    ``dim train bidim_at_ramp --set clean_weight=1.0 --model-set denoiser_binarize_width=0.8 --seed 1
    --out models/bidim_at_ramp_dnramp_w08_s1``."""
    return load_ensemble([QUOTED, ROOT / "models" / "bidim_at_ramp_dnramp_w08_s1"])


def _denoise_twice(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = self.bin_in(x).flatten(1)
    for _ in range(2):
        h = self.bin_dn(self.denoiser(h))
    return h


def denoise_twice() -> nn.Module:
    """The quoted model with its denoiser (and the binarization after it) applied twice before the internal
    models: does a second pass remove what the first left?"""
    model = dim.load_model(QUOTED)
    model.denoise = types.MethodType(_denoise_twice, model)
    return model.eval()


class Majority(nn.Module):
    """Each pixel of a binarized image ``(B, C, H, W)`` set to the majority of its ``window x window``
    neighbourhood (zeros beyond the border): a ramp across ``(n - 1) / 2n .. (n + 1) / 2n`` of the window's mean
    (``n = window**2``), exact on binary pixels, a :class:`Binarize` so that BPDA passes through it."""

    def __init__(self, window: int = 3):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be an odd number of pixels, got {window}")
        self.window = window
        self.step = Binarize(0.5, width=1 / window ** 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(F.avg_pool2d(x, self.window, stride=1, padding=self.window // 2, count_include_pad=True))


def _denoise_majority(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return self.bin_dn(self.denoiser(self.majority(self.bin_in(x)).flatten(1)))


def majority_filter() -> nn.Module:
    """The quoted model with a 3 x 3 majority filter between its input's binarization and its denoiser (not
    trained with it): would a flip have to come with its neighbours to count?"""
    model = dim.load_model(QUOTED)
    model.majority = Majority(3)
    model.denoise = types.MethodType(_denoise_majority, model)
    return model.eval()
