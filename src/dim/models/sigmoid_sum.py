"""The last layer of the internal models and the sum of eq. 3, fused: ``sum_j sigmoid(h[k] @ w[k] + b[k])_j``.

Why: the classifier needs only the L1 norm of each reconstruction, yet computed layer by layer its last step makes
the largest tensor of the model, ``(K, B, 784)``, which is written by the matmul and the bias, rewritten by the
sigmoid, read by the sum and, for a gradient, read again by the sigmoid's backward and by two matmuls. On a CPU
each of those passes goes through memory. Here the classes are computed a few at a time, one per CPU thread
(:func:`classes_at_once`), each on its own ``(B, 784)`` block, which stays in its core's cache from the matmul to
the sum (and, backward, from the sigmoid's derivative to the matmuls that consume it). Without a gradient the block
is scratch space and the reconstructions are never stored; with one, the sigmoid's outputs are kept for the
backward. ``benchmarks/bench_throughput_variants.py`` measures it against
the layer-by-layer computation.

On a GPU, where memory is fast and a loop over classes would launch ten small kernels each, and wherever the
model is traced, scripted, compiled or exported, the batched form is used. Both give the same numbers (a test
compares them and checks the gradient in float64).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.autograd.function import once_differentiable


def batched(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same sums in one batched matmul (GPU, tracing, TorchScript)."""
    return torch.sigmoid_(torch.baddbmm(b, h, w)).sum(-1)


def classes_at_once(k: int) -> int:
    """How many classes each step of the per-class loops computes together: one per CPU thread. A batch of that
    many matmuls gives each thread one whole class (no matmul split across threads, no elementwise pass split
    into pieces too small to pay for it), and each thread's block stays in its own core's cache."""
    return max(1, min(torch.get_num_threads(), k))


def chunks(k: int, c: int) -> list[tuple[int, int]]:
    """``[(i, j), ...]``: the classes ``0..k`` in steps of ``c``, the last step shorter."""
    return [(i, min(i + c, k)) for i in range(0, k, c)]


def _per_class(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, block: Callable[[int, int], torch.Tensor],
               c: int) -> torch.Tensor:
    """The sums, ``c`` classes at a time: classes ``i..j``'s sigmoid outputs written into ``block(i, j)``, a
    ``(j - i, B, D)`` tensor, in place."""
    sums = h.new_empty(h.shape[0], h.shape[1])
    for i, j in chunks(h.shape[0], c):
        torch.sum(torch.sigmoid_(torch.baddbmm(b[i:j], h[i:j], w[i:j], out=block(i, j))), -1, out=sums[i:j])
    return sums


class _SigmoidSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, c: int) -> torch.Tensor:
        s = h.new_empty(h.shape[0], h.shape[1], w.shape[2])       # kept for the backward
        sums = _per_class(h, w, b, lambda i, j: s[i:j], c)
        ctx.save_for_backward(h, w, s)
        ctx.c = c
        return sums

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, w, s = ctx.saved_tensors
        need_h, need_w, need_b, _ = ctx.needs_input_grad
        gh = torch.empty_like(h) if need_h else None
        gw = torch.empty_like(w) if need_w else None
        gb = w.new_empty(w.shape[0], 1, w.shape[2]) if need_b else None
        dz = s.new_empty(min(ctx.c, s.shape[0]), *s.shape[1:])
        for i, j in chunks(h.shape[0], ctx.c):
            d = dz[:j - i]
            # d sigmoid(z) / dz = s (1 - s), times the sum's gradient g[i] broadcast over the 784 outputs
            torch.ops.aten.sigmoid_backward.grad_input(g[i:j].unsqueeze(-1).expand_as(d), s[i:j], grad_input=d)
            if need_h:
                torch.bmm(d, w[i:j].transpose(1, 2), out=gh[i:j])
            if need_w:
                torch.bmm(h[i:j].transpose(1, 2), d, out=gw[i:j])
            if need_b:
                torch.sum(d, 1, keepdim=True, out=gb[i:j])
        return gh, gw, gb, None


def recorded() -> bool:
    """Whether the model is being traced, compiled or exported: the graph those record must hold torch ops only
    (no Python autograd function, no ``out=`` writes), and their own fusion does the rest."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


def sigmoid_sums(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """``(K, B, H), (K, H, D), (K, 1, D) -> (K, B)``: ``sum_j sigmoid(h[k] @ w[k] + b[k])_j``, ``chunk`` classes
    at a time (default :func:`classes_at_once`; the same numbers for any)."""
    if h.device.type != "cpu" or recorded():
        return batched(h, w, b)
    c = classes_at_once(h.shape[0]) if chunk is None else chunk
    if torch.is_grad_enabled() and (h.requires_grad or w.requires_grad or b.requires_grad):
        return _SigmoidSum.apply(h.contiguous(), w, b, c)
    scratch = h.new_empty(c, h.shape[1], w.shape[2])              # no gradient: one block for every step
    return _per_class(h, w, b, lambda i, j: scratch[:j - i], c)
