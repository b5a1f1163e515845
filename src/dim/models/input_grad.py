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

The arithmetic is that of the layer-by-layer forward and backward (the same matmuls, associated differently), so
the input gradient agrees with it to float rounding; ``benchmarks/bench_throughput.py`` measures the speed. Used
on a CPU when the input requires a gradient and no weight of the heads does, outside tracing, scripting and
compiling; everything else takes the stored-reconstruction path (:mod:`.sigmoid_sum`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable


class _InputGradSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, d: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                w3: torch.Tensor, b3: torch.Tensor, w4: torch.Tensor, b4: torch.Tensor) -> torch.Tensor:
        # d (B, D); w1 (K*H, D), b1 (K*H); w2 (K, H, L), w3 (K, L, H), w4 (K, H, D); biases (K, 1, out)
        k, hidden, latent = w2.shape
        batch = d.shape[0]
        w1s = w1.view(k, hidden, -1).unbind(0)
        b1s = b1.view(k, 1, hidden).unbind(0)
        w2s, b2s, w3s, b3s, w4s, b4s = (t.unbind(0) for t in (w2, b2, w3, b3, w4, b4))
        w2t = w2.transpose(1, 2).contiguous().unbind(0)    # (L, H) and (H, L) blocks: tiny, and a transposed
        w3t = w3.transpose(1, 2).contiguous().unbind(0)    # operand of 10 rows is a slow matmul
        r = d.new_empty(batch, k, hidden)                  # (B, K, H): the backward's matmul reads it as (B, K*H)
        sums = d.new_empty(k, batch)
        # scratch blocks, reused for every class so that they stay in cache
        h1, h2, t = (d.new_empty(batch, hidden) for _ in range(3))
        z, q = d.new_empty(batch, latent), d.new_empty(batch, latent)
        s = d.new_empty(batch, w4.shape[2])
        ones = s.new_ones(()).expand_as(s)
        sigmoid_grad = torch.ops.aten.sigmoid_backward.grad_input
        relu_grad = torch.ops.aten.threshold_backward.grad_input
        for i, (rk, sk) in enumerate(zip(r.unbind(1), sums.unbind(0))):
            torch.relu_(torch.addmm(b1s[i], d, w1s[i].t(), out=h1))
            torch.addmm(b2s[i], h1, w2s[i], out=z)
            torch.relu_(torch.addmm(b3s[i], z, w3s[i], out=h2))
            torch.sum(torch.sigmoid_(torch.addmm(b4s[i], h2, w4s[i], out=s)), -1, out=sk)
            sigmoid_grad(ones, s, grad_input=s)                                  # s <- s (1 - s)
            relu_grad(torch.mm(s, w4s[i].t(), out=t), h2, 0, grad_input=t)      # through the last layer, masked
            torch.mm(t, w3t[i], out=q)
            relu_grad(torch.mm(q, w2t[i], out=t), h1, 0, grad_input=rk)        # ... back to the first hidden layer
        ctx.save_for_backward(w1, r)
        return sums

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        w1, r = ctx.saved_tensors
        batch, k, hidden = r.shape
        scaled = r * g.t().unsqueeze(-1)           # not in place: a second backward (retain_graph) reads r again
        return (torch.mm(scaled.view(batch, k * hidden), w1),) + (None,) * 8


def applies(d: torch.Tensor, heads: nn.Module) -> bool:
    """Whether :func:`input_grad_sums` computes ``heads.sums(d)`` here: on a CPU, with a gradient wanted for ``d``
    and for no weight of ``heads``, in eager mode."""
    return (d.device.type == "cpu" and torch.is_grad_enabled() and d.requires_grad
            and not any(p.requires_grad for p in heads.parameters())
            and not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()))


def input_grad_sums(d: torch.Tensor, enc1: nn.Linear, enc2: nn.Module, dec1: nn.Module, dec2: nn.Module
                    ) -> torch.Tensor:
    """``(B, D) -> (K, B)``: each internal model's reconstruction sum, its gradient with respect to ``d`` prepared
    in the forward (module docstring). ``enc1`` is the shared-input first layer's ``nn.Linear`` (``K*H`` outputs);
    the others hold ``weight`` ``(K, in, out)`` and ``bias`` ``(K, 1, out)``."""
    return _InputGradSums.apply(d, enc1.weight, enc1.bias, enc2.weight, enc2.bias, dec1.weight, dec1.bias,
                                dec2.weight, dec2.bias)
