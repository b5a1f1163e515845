"""The ten internal models' scores when only their input needs a gradient (attacks; the weights are frozen).

Why: each internal model ends in one number per image, the sum of its reconstruction, so its gradient with respect
to its own first hidden layer does not depend on what comes after the sums: the attack's loss only scales it, per
image and class. Computed class by class in the forward pass, right after the reconstruction, every ``(B, 784)``
and ``(B, hidden)`` block is still in the core's cache, and the forward stores one ``(B, K, hidden)`` tensor instead
of the reconstructions, their hidden layers and the ReLU masks. The backward is then one scaling and one matmul
through the shared first layer::

    forward, class k:  h1 = relu(d W1_k + b1_k),  h2 = relu((h1 W2_k + b2_k) W3_k + b3_k),  s = sigmoid(h2 W4_k + b4_k)
                       sums_k = s 1,  r_k = ((s (1 - s) W4_k^T * [h2 > 0]) W3_k^T W2_k^T) * [h1 > 0]
    backward:          grad d = [g_0 r_0, ..., g_9 r_9] W1        (g_k: the gradient of sums_k, one per image)

The classes go a few at a time, one per CPU thread, as in :mod:`.sigmoid_sum`. The arithmetic is that of the
layer-by-layer forward and backward (the same matmuls, associated differently), so
the input gradient agrees with it to float rounding; ``benchmarks/bench_throughput.py`` measures the speed. Used
on a CPU when the input requires a gradient and no weight of the heads does, outside tracing, scripting and
compiling; everything else takes the stored-reconstruction path (:mod:`.sigmoid_sum`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from .sigmoid_sum import chunks, classes_at_once, recorded


class _InputGradSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, d: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                w3: torch.Tensor, b3: torch.Tensor, w4: torch.Tensor, b4: torch.Tensor, c: int) -> torch.Tensor:
        # d (B, D); w1 (K*H, D), b1 (K*H); w2 (K, H, L), w3 (K, L, H), w4 (K, H, D); biases (K, 1, out)
        k, hidden, latent = w2.shape
        batch = d.shape[0]
        w1t = w1.view(k, hidden, -1).transpose(1, 2)       # (K, D, H) views
        w4t = w4.transpose(1, 2)
        b1 = b1.view(k, 1, hidden)
        w2t = w2.transpose(1, 2).contiguous()              # (K, L, H) and (K, H, L): tiny, and a transposed operand
        w3t = w3.transpose(1, 2).contiguous()              # of 10 rows is a slow matmul
        r = d.new_empty(batch, k, hidden)                  # (B, K, H): the backward's matmul reads it as (B, K*H)
        sums = d.new_empty(k, batch)
        # scratch blocks for c classes, reused at every step so that they stay in cache
        h1, h2, t = (d.new_empty(c, batch, hidden) for _ in range(3))
        z, q = d.new_empty(c, batch, latent), d.new_empty(c, batch, latent)
        s = d.new_empty(c, batch, w4.shape[2])
        ones = s.new_ones(()).expand_as(s)
        sigmoid_grad = torch.ops.aten.sigmoid_backward.grad_input
        relu_grad = torch.ops.aten.threshold_backward.grad_input
        for i, j in chunks(k, c):
            n = j - i
            h1n, h2n, tn, zn, qn, sn = h1[:n], h2[:n], t[:n], z[:n], q[:n], s[:n]
            torch.relu_(torch.baddbmm(b1[i:j], d.expand(n, *d.shape), w1t[i:j], out=h1n))
            torch.baddbmm(b2[i:j], h1n, w2[i:j], out=zn)
            torch.relu_(torch.baddbmm(b3[i:j], zn, w3[i:j], out=h2n))
            torch.sum(torch.sigmoid_(torch.baddbmm(b4[i:j], h2n, w4[i:j], out=sn)), -1, out=sums[i:j])
            sigmoid_grad(ones[:n], sn, grad_input=sn)                                  # s <- s (1 - s)
            relu_grad(torch.bmm(sn, w4t[i:j], out=tn), h2n, 0, grad_input=tn)         # through the last layer
            torch.bmm(tn, w3t[i:j], out=qn)
            relu_grad(torch.bmm(qn, w2t[i:j], out=tn), h1n, 0,                        # ... to the first hidden layer
                      grad_input=r[:, i:j].transpose(0, 1))
        ctx.save_for_backward(w1, r)
        return sums

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        w1, r = ctx.saved_tensors
        batch, k, hidden = r.shape
        scaled = r * g.t().unsqueeze(-1)           # not in place: a second backward (retain_graph) reads r again
        return (torch.mm(scaled.view(batch, k * hidden), w1),) + (None,) * 9


def applies(d: torch.Tensor, heads: nn.Module) -> bool:
    """Whether :func:`input_grad_sums` computes ``heads.sums(d)`` here: on a CPU, with a gradient wanted for ``d``
    and for no weight of ``heads``, in eager mode."""
    return (d.device.type == "cpu" and torch.is_grad_enabled() and d.requires_grad
            and not any(p.requires_grad for p in heads.parameters()) and not recorded())


def input_grad_sums(d: torch.Tensor, enc1: nn.Linear, enc2: nn.Module, dec1: nn.Module, dec2: nn.Module,
                    chunk: int | None = None) -> torch.Tensor:
    """``(B, D) -> (K, B)``: each internal model's reconstruction sum, its gradient with respect to ``d`` prepared
    in the forward (module docstring), ``chunk`` classes at a time (default: one per CPU thread,
    :func:`.sigmoid_sum.classes_at_once`; the same numbers for any). ``enc1`` is the shared-input first layer's
    ``nn.Linear`` (``K*H`` outputs); the others hold ``weight`` ``(K, in, out)`` and ``bias`` ``(K, 1, out)``."""
    k = dec2.weight.shape[0]
    return _InputGradSums.apply(d, enc1.weight, enc1.bias, enc2.weight, enc2.bias, dec1.weight, dec1.bias,
                                dec2.weight, dec2.bias, classes_at_once(k) if chunk is None else chunk)
