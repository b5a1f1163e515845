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
* ``GradientMode.SMOOTH``: BPDA where it is needed only. A ramp (``width > 0``, below)
  is differentiable, so it keeps its own derivative (zero outside its band, where the
  identity would point an attack at pixels whose change the model does not see); a step
  passes straight through. For a model whose binarizations are all steps it is
  ``STRAIGHT_THROUGH``.

``pool > 1`` binarizes blocks instead of pixels: each ``pool x pool`` block of a channel becomes all ones
when its mean lies above the threshold, else all zeros. A single pixel flips when it crosses the threshold,
at a cost of its distance to it; a block flips only when its mean does, which costs ``pool**2`` times the
mean's distance in L1 (spread over the block) and, for a solid block of background or ink, more than
``pool**2 / 2`` changed pixels in L0. The straight-through rule then passes the gradient through the
block means (the backward of an average pool followed by a nearest upsampling).
"""
from __future__ import annotations

import contextlib
import enum
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F


class GradientMode(str, enum.Enum):
    EXACT = "exact"
    STRAIGHT_THROUGH = "straight_through"
    SMOOTH = "smooth"       # a ramp's own derivative, a step's straight-through one


class _Binarize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: float, straight_through: bool) -> torch.Tensor:
        ctx.straight_through = straight_through
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad if ctx.straight_through else torch.zeros_like(grad)
        return g, None, None


def check_blocks(shape: tuple[int, ...], pool: int) -> None:
    """Refuse a batch shape that ``pool x pool`` blocks do not tile: (B, C, H, W) with H and W multiples of it."""
    if pool > 1 and (len(shape) != 4 or shape[-1] % pool or shape[-2] % pool):
        raise ValueError(f"binarizing {pool} x {pool} blocks needs images (B, C, H, W) whose height and width are "
                         f"multiples of {pool}, got shape {tuple(shape)}")


def ramp(x: torch.Tensor, threshold: float, width: float) -> torch.Tensor:
    """``clamp((x - threshold) / width + 1/2, 0, 1)``: 0 below the band ``threshold -+ width/2``, 1 above it,
    linear inside (what the step ``1[x > threshold]`` becomes with ``width > 0``)."""
    return ((x - (threshold - width / 2)) / width).clamp(0, 1)


class _Ramp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: float, width: float, straight_through: bool) -> torch.Tensor:
        ctx.straight_through, ctx.width = straight_through, width
        out = ramp(x, threshold, width)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.straight_through:
            return grad, None, None, None
        out, = ctx.saved_tensors
        inside = (out > 0) & (out < 1)
        return torch.where(inside, grad / ctx.width, torch.zeros_like(grad)), None, None, None


class Binarize(nn.Module):
    """``x -> 1[x > threshold]`` whose backward rule is :class:`GradientMode`; with ``pool > 1``, of the mean
    of each ``pool x pool`` block of an image batch ``(B, C, H, W)``, spread back over the block; with
    ``width > 0``, a linear :func:`ramp` across the band ``threshold -+ width/2`` in place of the step (the mean
    of the binarizations at thresholds drawn uniformly from the band). ``EXACT`` then is the ramp's own
    derivative (``1/width`` inside the band, zero outside), ``STRAIGHT_THROUGH`` the identity, as for the step."""

    def __init__(self, threshold: float = 0.5, mode: GradientMode = GradientMode.EXACT, pool: int = 1,
                 width: float = 0.0):
        super().__init__()
        if int(pool) != pool or pool < 1:
            raise ValueError(f"pool must be a positive whole number of pixels, got {pool}")
        if not 0 <= width <= 2 * min(threshold, 1 - threshold):
            raise ValueError(f"width must lie in [0, {2 * min(threshold, 1 - threshold)}] (the band "
                             f"threshold -+ width/2 inside [0, 1]), got {width}")
        self.threshold = threshold
        self.mode = GradientMode(mode)
        self.pool = int(pool)
        self.width = float(width)

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        if self.width > 0:
            return _Ramp.apply(x, self.threshold, self.width, self.mode is GradientMode.STRAIGHT_THROUGH)
        return _Binarize.apply(x, self.threshold, self.mode is not GradientMode.EXACT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == 1:
            return self._step(x)
        p = self.pool
        check_blocks(x.shape, p)
        bits = self._step(F.avg_pool2d(x, p))
        return bits.repeat_interleave(p, dim=-2).repeat_interleave(p, dim=-1)

    def extra_repr(self) -> str:
        return (f"threshold={self.threshold}, mode={self.mode.value}" + (f", pool={self.pool}" if self.pool > 1 else "")
                + (f", width={self.width}" if self.width > 0 else ""))


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


def has_ramp(model: nn.Module) -> bool:
    """Whether one of the model's binarizations is a ramp (where ``GradientMode.SMOOTH`` differs from BPDA's)."""
    return any(isinstance(m, Binarize) and m.width > 0 for m in model.modules())


def input_binarization(model: nn.Module) -> Binarize:
    """The binarization a model applies to its input: what an attack on the input flips.

    Our models name it ``bin_in`` (a DIM's second one, ``bin_dn``, binarizes the denoiser's output, which no
    attack sets directly); a model with one binarization needs no name. Anything else is refused rather than
    guessed, since an attack that flips the wrong units measures nothing."""
    found = [m for m in model.modules() if isinstance(m, Binarize)]
    named = [m for name, m in model.named_modules() if isinstance(m, Binarize) and name.rsplit(".", 1)[-1] == "bin_in"]
    if len(named) == 1:
        return named[0]
    if len(found) == 1:
        return found[0]
    raise ValueError(f"{type(model).__name__}: cannot tell which of its {len(found)} binarizations reads the input "
                     f"(expected exactly one module named bin_in)")


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
