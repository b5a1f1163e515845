"""Binarization at 0.5 with an explicit, switchable backward rule.

The forward pass is always the true binarized model: ``(x > 0.5).float()``.
The backward rule is a choice, and it decides what a gradient attack sees:

* ``GradientMode.EXACT`` ("as the model is"): the derivative of a step function,
  which is zero almost everywhere. The input still receives a gradient tensor
  (so tools such as foolbox, which require one, run), but it is all zeros, so
  plain gradient attacks make no progress: robustness measured this way is
  overstated (gradient masking).
* ``GradientMode.STRAIGHT_THROUGH`` (BPDA, Athalye et al. 2018): the backward
  pass treats the binarization as the identity. This is the adaptive attack on
  binarized defenses.
"""
from __future__ import annotations

import contextlib
import enum
from typing import Iterator

import torch
import torch.nn as nn


class GradientMode(str, enum.Enum):
    EXACT = "exact"
    STRAIGHT_THROUGH = "straight_through"


class _Binarize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: float, straight_through: bool) -> torch.Tensor:
        ctx.straight_through = straight_through
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad if ctx.straight_through else torch.zeros_like(grad)
        return g, None, None


class Binarize(nn.Module):
    """``x -> 1[x > threshold]`` whose backward rule is :class:`GradientMode`."""

    def __init__(self, threshold: float = 0.5, mode: GradientMode = GradientMode.EXACT):
        super().__init__()
        self.threshold = threshold
        self.mode = GradientMode(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Binarize.apply(x, self.threshold, self.mode is GradientMode.STRAIGHT_THROUGH)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, mode={self.mode.value}"


def set_gradient_mode(model: nn.Module, mode: GradientMode | str) -> nn.Module:
    """Switch every :class:`Binarize` inside ``model`` to ``mode``; returns the model.

    Raises ``ValueError`` for a model without binarization, so that asking for
    BPDA on a model that has nothing to bypass is never silently a no-op.
    """
    mode = GradientMode(mode)
    found = [m for m in model.modules() if isinstance(m, Binarize)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no binarization; gradient mode {mode.value!r} does not apply")
    for m in found:
        m.mode = mode
    return model


def has_binarization(model: nn.Module) -> bool:
    return any(isinstance(m, Binarize) for m in model.modules())


@contextlib.contextmanager
def gradient_mode(model: nn.Module, mode: GradientMode | str) -> Iterator[nn.Module]:
    """Temporarily switch every :class:`Binarize` in ``model`` to ``mode`` (BPDA for one attack)."""
    found = [m for m in model.modules() if isinstance(m, Binarize)]
    old = [m.mode for m in found]
    set_gradient_mode(model, mode)
    try:
        yield model
    finally:
        for m, o in zip(found, old):
            m.mode = o
