"""Ways tried to bring DIM's passes closer to the matmul rate, measured by ``bench_throughput.passes`` in one run.

    python benchmarks/bench_throughput_variants.py weights/dim_at
    python benchmarks/bench_throughput_variants.py weights/dim_at --threads 1 --label 1thread

Variants (the model's weights and results are the same in each; only how the passes are computed differs):

- ``eager``: the model as it is: the internal models' first ReLU runs on their shared matmul's ``(B, K*h)``
  output before it is viewed as ``(K, B, h)`` (no strided copy in the backward pass), their last layer, the
  sigmoid and the sum of eq. 3 are fused class by class (``dim.models.sigmoid_sum``), with frozen weights (the
  attack step) the whole internal-model stack goes class by class with its input gradient prepared in the
  forward (``dim.models.input_grad``), and the denoiser's activations overwrite their linear layers' outputs.
- ``one_class_at_a_time``: the same, but those class-by-class loops take one class per step instead of one per
  CPU thread (``dim.models.sigmoid_sum.classes_at_once``): each matmul and each elementwise pass split across the
  threads.
- ``stored_for_backward``: the same, but the attack step stores the internal models' activations for autograd's
  backward, as the training step does (no ``dim.models.input_grad``).
- ``out_of_place_denoiser``: the same, but the denoiser's ReLUs and sigmoid write new tensors.
- ``layer_by_layer``: the computation before the first two changes: the ReLU on the transposed view, the
  ``(10, B, 784)`` reconstructions in one batched matmul, then the sigmoid, then their sums.
- ``relu_before_transpose_only`` / ``sum_per_class_only``: one of those two changes alone.
- ``heads_in_batch_chunks_<c>``: layer by layer, the internal models and their sums computed on ``c`` images at
  a time, so that the ``(10, c, 784)`` reconstructions stay in the core's cache between the matmul, the sigmoid
  and the sum.
- ``plain_sum_denominator``: layer by layer, ``||D(x)||_1`` as a plain sum (the denoiser's sigmoid output is
  never negative), no ``abs`` and no ``sgn`` in the backward pass.
- ``onednn_first_layer`` / ``onednn_denoiser`` / ``onednn_both``: the model as it is, but the internal models'
  shared first layer (``(B, 784) -> (B, K*h)``), the denoiser's layers, or both computed by oneDNN's linear with
  its bias and activation fused into the matmul (``torch.ops.mkldnn._linear_pointwise``, the kernel torch's
  compiler emits for a linear layer and its activation on a CPU) in place of ``addmm`` (which copies the bias
  into the output first) and an activation pass; backward as autograd's. The attack step's class-by-class path
  (``dim.models.input_grad``) computes the first layer itself, so only the forward and the training step see it.
- ``torch_compile``: ``torch.compile`` of the layer-by-layer model (inductor: generated C++ kernels that fuse the
  elementwise work; needs a C++ compiler at run time, first call compiles).

Every variant is checked against the model's own logits and input gradient before it is timed. Malloc keeps freed
memory, as in ``bench_throughput.py`` (whose ``--system-malloc`` measures the difference).
Writes ``results/throughput_variants_<model>[_<label>].json``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from bench_throughput import passes
from common import write_result

import dim
from dim.core.device import device_info
from dim.core.memory import reuse_freed_memory
from dim.models import input_grad
from dim.models.sigmoid_sum import sigmoid_sums


def _hidden(heads: nn.Module, relu_first: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The internal models up to their last layer's input ``(K, B, hidden)``; ``relu_first`` as the model does,
    else the first ReLU on the ``(K, B, h)`` view of the shared matmul's output."""
    def hidden(d: torch.Tensor) -> torch.Tensor:
        h = heads.enc1.relu_forward(d) if relu_first else torch.relu_(heads.enc1(d))
        return torch.relu_(heads.dec1(heads.enc2(h)))
    return hidden


def _layer_by_layer(model: nn.Module, relu_first: bool = False, chunk: int | None = None,
                    plain_sum: bool = False) -> nn.Module:
    """``model`` whose scores come from the stored reconstructions, optionally ``chunk`` images at a time."""
    heads, hidden = model.heads, _hidden(model.heads, relu_first)

    def sums(d: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid_(heads.dec2(hidden(d))).sum(-1)

    def scores(x: torch.Tensor) -> torch.Tensor:
        d = model.denoise(x)
        step = chunk or len(d)
        total = torch.cat([sums(d[i:i + step]) for i in range(0, len(d), step)], 1)
        return total.t() / (d.sum(-1, keepdim=True) if plain_sum else d.abs().sum(-1, keepdim=True)).clamp_min(1e-6)
    model.scores = scores
    return model


def _stored_for_backward(model: nn.Module) -> nn.Module:
    """The internal models' sums through their stored activations, whether or not their weights need gradients."""
    heads = model.heads
    heads.sums = lambda d: sigmoid_sums(heads.hidden(d), heads.dec2.weight, heads.dec2.bias)
    return model


def _one_class_at_a_time(model: nn.Module) -> nn.Module:
    heads = model.heads

    def sums(d: torch.Tensor) -> torch.Tensor:
        if input_grad.applies(d, heads):
            return input_grad.input_grad_sums(d, heads.enc1.linear, heads.enc2, heads.dec1, heads.dec2, chunk=1)
        return sigmoid_sums(heads.hidden(d), heads.dec2.weight, heads.dec2.bias, chunk=1)
    heads.sums = sums
    return model


def _sum_per_class_only(model: nn.Module) -> nn.Module:
    heads = _stored_for_backward(model).heads
    heads.hidden = _hidden(heads, relu_first=False)
    return model


def _out_of_place_denoiser(model: nn.Module) -> nn.Module:
    net = model.denoiser.net
    for i, layer in enumerate(net):
        if not isinstance(layer, nn.Linear):
            net[i] = nn.ReLU() if isinstance(layer, nn.ReLU) else nn.Sigmoid()
    return model


class _OneDNNLinear(torch.autograd.Function):
    """``act(x @ w.T + b)`` in oneDNN's fused kernel; the backward from the saved output, as autograd's."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, act: str) -> torch.Tensor:
        out = torch.ops.mkldnn._linear_pointwise(x, w, b, act, [], "")
        ctx.act = act
        ctx.save_for_backward(x, w, out)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w, out = ctx.saved_tensors
        gz = (torch.ops.aten.threshold_backward(g, out, 0) if ctx.act == "relu"
              else torch.ops.aten.sigmoid_backward(g, out))
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        return (gz.mm(w) if need_x else None, gz.t().mm(x) if need_w else None, gz.sum(0) if need_b else None,
                None)


def _onednn(x: torch.Tensor, linear: nn.Linear, act: str) -> torch.Tensor:
    if torch.is_grad_enabled() and (x.requires_grad or linear.weight.requires_grad):
        return _OneDNNLinear.apply(x.contiguous(), linear.weight, linear.bias, act)
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), linear.weight, linear.bias, act, [], "")


def _onednn_layers(model: nn.Module, first_layer: bool, denoiser: bool) -> nn.Module:
    """The internal models' shared first layer and/or the denoiser's layers through :class:`_OneDNNLinear`."""
    if first_layer:
        enc1 = model.heads.enc1
        enc1.relu_forward = lambda x: _onednn(x, enc1.linear, "relu").view(x.shape[0], enc1.k, enc1.d_out) \
            .transpose(0, 1)
    if denoiser:
        layers = list(model.denoiser.net)

        def forward(x: torch.Tensor) -> torch.Tensor:
            for linear, act in zip(layers[::2], layers[1::2]):
                x = _onednn(x, linear, "relu" if isinstance(act, nn.ReLU) else "sigmoid")
            return x
        model.denoiser.forward = forward
    return model


def _compiled(model: nn.Module) -> nn.Module:
    compiled = torch.compile(_layer_by_layer(model))
    compiled.cfg = model.cfg
    return compiled


VARIANTS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "eager": lambda m: m,
    "one_class_at_a_time": _one_class_at_a_time,
    "stored_for_backward": _stored_for_backward,
    "out_of_place_denoiser": _out_of_place_denoiser,
    "layer_by_layer": _layer_by_layer,
    "relu_before_transpose_only": lambda m: _layer_by_layer(m, relu_first=True),
    "sum_per_class_only": _sum_per_class_only,
    "heads_in_batch_chunks_128": lambda m: _layer_by_layer(m, chunk=128),
    "heads_in_batch_chunks_64": lambda m: _layer_by_layer(m, chunk=64),
    "plain_sum_denominator": lambda m: _layer_by_layer(m, plain_sum=True),
    "onednn_first_layer": lambda m: _onednn_layers(m, first_layer=True, denoiser=False),
    "onednn_denoiser": lambda m: _onednn_layers(m, first_layer=False, denoiser=True),
    "onednn_both": lambda m: _onednn_layers(m, first_layer=True, denoiser=True),
    "torch_compile": _compiled,
}


def max_difference(model: nn.Module, reference: nn.Module, batch: int = 64) -> dict[str, float]:
    """Largest difference of the logits and of their input gradient between a variant and the model as it is,
    on random images, with the weights frozen (an attack's step) and not (a training step): a variant that changes
    the results is not a way to go faster."""
    x = torch.rand(batch, reference.cfg.in_features, generator=torch.Generator().manual_seed(1))
    g = torch.randn(batch, reference.num_classes, generator=torch.Generator().manual_seed(2))
    worst = {"logits": 0.0, "input_gradient": 0.0}
    for frozen in (True, False):
        out = {}
        for name, m in (("variant", model), ("reference", reference)):
            for p in m.parameters():
                p.requires_grad_(not frozen)
            xx = x.clone().requires_grad_(True)
            logits = m(xx)
            logits.backward(g)
            out[name] = (logits.detach(), xx.grad)
        worst = {"logits": max(worst["logits"], (out["variant"][0] - out["reference"][0]).abs().max().item()),
                 "input_gradient": max(worst["input_gradient"],
                                       (out["variant"][1] - out["reference"][1]).abs().max().item())}
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's, all cores)")
    ap.add_argument("--only", nargs="+", choices=sorted(VARIANTS), default=None, help="measure these variants only")
    ap.add_argument("--label", default=None, help="suffix of the results file (e.g. the thread count)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_freed_memory()       # as bench_throughput and the command line do
    dev = torch.device("cpu")
    out: dict[str, Any] = {}
    for name, make in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        model = make(dim.load_model(args.model_dir, device=dev))
        diff = max_difference(model, dim.load_model(args.model_dir, device=dev))
        if max(diff.values()) > 1e-4:
            raise SystemExit(f"variant {name} changes the results: {diff}")
        t0 = time.perf_counter()
        got = passes(model, args.batch, dev, rounds=args.rounds)
        out[name] = {"seconds": round(time.perf_counter() - t0, 1), "max_difference": diff,
                     **{k: {f: got[k][f] for f in ("fraction_of_matmul_rate", "fraction_per_round",
                                                     "images_per_second")} for k in ("forward", "attack_step",
                                                                                     "train_step")}}
    card = dim.load_model(args.model_dir).card
    write_result(f"throughput_variants_{card['model']}" + (f"_{args.label}" if args.label else ""), {
        "model": card["model"], "batch": args.batch, "threads": torch.get_num_threads(), "device": device_info(dev),
        "variants": out})


if __name__ == "__main__":
    main()
