"""An ensemble of trained models of one kind: the mean of their logits.

Models trained by the same recipe from different seeds fail on partly different images; averaging their logits is
the cheapest way to ask whether that disagreement can be turned into robustness. The ensemble is one deterministic
function of the input and every attack sees it whole: gradients flow through every member, and the flip attacks
flip the one binarization all members read.

Members that binarize their input share that binarization: it must be the same in all of them (threshold, ramp
width, block size), and the ensemble applies it once, as ``bin_in``, before the members (whose own ``bin_in``
becomes the identity). So :func:`dim.models.binarize.input_binarization` finds exactly one input binarization, as
on a single model, and the flip attacks act on what every member reads.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .binarize import Binarize
from .registry import create_model, register_model


def _input_binarization(member: nn.Module) -> nn.Module | None:
    """A member's own input binarization (its ``bin_in`` when that is a :class:`Binarize`), else ``None``."""
    b = getattr(member, "bin_in", None)
    return b if isinstance(b, Binarize) else None


def _signature(b: nn.Module | None) -> tuple | None:
    return None if b is None else (b.threshold, b.width, b.pool, b.mode)


class Ensemble(nn.Module):
    """``logits(x) = mean_m member_m(x)``, the members' shared input binarization applied once first.

    The members are taken over (their ``bin_in`` replaced by the identity when they binarize): build an ensemble
    from models you do not use on their own afterwards, or from fresh copies."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        classes = {getattr(m, "num_classes", None) for m in members}
        if len(classes) > 1:
            raise ValueError(f"the members predict different numbers of classes: {sorted(map(str, classes))}")
        bins = [_input_binarization(m) for m in members]
        signatures = {_signature(b) for b in bins}
        if len(signatures) > 1:
            found = ", ".join(f"member {i}: {'none' if b is None else b.extra_repr()}" for i, b in enumerate(bins))
            raise ValueError(f"the members binarize their input differently ({found}); an ensemble shares one "
                             "input binarization, so that a flip attack flips what every member reads")
        self.num_classes = classes.pop()
        self.bin_in = bins[0] if bins[0] is not None else nn.Identity()
        for m in members:
            if _input_binarization(m) is not None:
                m.bin_in = nn.Identity()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        h = self.bin_in(x)
        out = self.members[0](h)
        for m in self.members[1:]:
            out = out + m(h)
        return out / len(self.members)


@dataclass(frozen=True)
class EnsembleConfig:
    """``count`` models ``member`` (a registered name) built with ``member_config``: the architecture of an
    ensemble, so that its folder loads like any model's. The members' weights, not their config, differ."""
    member: str = "dim"
    count: int = 2
    member_config: dict[str, Any] = field(default_factory=dict)


def build_ensemble(cfg: EnsembleConfig) -> Ensemble:
    if cfg.member == "ensemble":
        raise ValueError("an ensemble's members are single models, not ensembles")
    if int(cfg.count) != cfg.count or cfg.count < 2:
        raise ValueError(f"count: an ensemble needs a whole number of at least two members, got {cfg.count}")
    return Ensemble([create_model(cfg.member, **cfg.member_config) for _ in range(int(cfg.count))])


register_model("ensemble", config=EnsembleConfig, paper_name="Ensemble", recipe=None,
               description="The mean of the logits of trained models of one kind (assembled by 'dim ensemble' "
                           "from their folders, not trained)")(build_ensemble)
