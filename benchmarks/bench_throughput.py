"""How close a model of the DIM family runs to the machine's matmul rate: inference, an attack's gradient step and
a training step, each against a plain matmul doing the same arithmetic the same way.

    python benchmarks/bench_throughput.py weights/dim_at                    # CPU, batch 256
    python benchmarks/bench_throughput.py weights/dim_at --device cuda --batch 8192

Three passes, each timed on ``--batch`` random images:

- ``forward``: inference (``torch.inference_mode``); 2 FLOPs per multiply-add of the model's linear maps.
- ``attack_step``: forward + the gradient with respect to the input, weights frozen (what every gradient attack
  spends per step); twice the forward's FLOPs.
- ``train_step``: forward + the gradients of every weight and of the input; three times the forward's FLOPs.

The reference of each pass is a matmul ``(B, n) @ (n, n)`` with ``n`` chosen so that its forward does the
model's multiply-adds, timed the same way (inference; gradient of ``a`` only; gradients of ``a`` and ``b``).
The machine is shared and noisy, so the model and its matmul alternate ``--rounds`` times and the figure
reported is the median of the per-round ratios. On a CPU, torch's profiler then splits one call of each pass
into its aten ops (``profile_op_seconds``; ``profile_matmul_share``: the matmul kernels' part).

Both sides run with malloc keeping freed memory (:func:`dim.core.memory.reuse_freed_memory`, as the command line
does); ``--system-malloc`` leaves glibc's defaults, which can fault fresh pages in for the large tensors of every
call (``page_faults_per_call`` counts them, for the model and for its matmul).
Writes ``results/throughput_<model>[_<label>].json``.
"""
from __future__ import annotations

import argparse
import math
import resource
import statistics
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from common import median_seconds, write_result

import dim
from dim.core.device import device_info, resolve_device
from dim.core.memory import reuse_freed_memory
from dim.models.dim import BatchedLinear

# pass name -> FLOPs of the pass per FLOP of the forward
PASSES = {"forward": 1, "attack_step": 2, "train_step": 3}
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def op_seconds(fn: Callable[[], None], calls: int = 10) -> dict[str, float]:
    """Seconds per call of ``fn`` spent in each aten op (self time, torch's profiler), the largest first: where a
    pass loses against its matmul reference."""
    from torch.profiler import profile
    fn()
    with profile() as prof:
        for _ in range(calls):
            fn()
    ops = {e.key: e.self_cpu_time_total / 1e6 / calls for e in prof.key_averages() if e.key.startswith("aten::")}
    return dict(sorted(((k, round(v, 6)) for k, v in ops.items() if v > 0), key=lambda kv: -kv[1]))


def page_faults_per_call(fn: Callable[[], None], calls: int = 20, warmup: int = 3) -> float:
    """Minor page faults (pages mapped afresh, zeroed by the kernel) per call of ``fn``, right after the timed
    rounds (before the profiler runs) and a few warm-up calls: what malloc's settings change (``--system-malloc``)."""
    for _ in range(warmup):
        fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def linear_macs_per_image(model: nn.Module) -> int:
    """Multiply-adds of every linear map in the model, for one image (a SharedInputLinear holds one nn.Linear,
    so counting nn.Linear and BatchedLinear covers everything; the elementwise work is not counted)."""
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise NotImplementedError("conv layers need a shape-aware count")
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, BatchedLinear)))


def _step(fn: Callable[[torch.Tensor], torch.Tensor], params: list[torch.Tensor], x: torch.Tensor,
          grad_out: torch.Tensor | None) -> Callable[[], None]:
    """One pass of ``fn`` on ``x``: inference without ``grad_out``, else forward + backward of ``grad_out`` into
    ``x`` and whichever of ``params`` require a gradient (set to None first, as an optimizer's ``zero_grad`` does)."""
    if grad_out is None:
        def infer() -> None:
            with torch.inference_mode():
                fn(x)
        return infer

    def step() -> None:
        for p in params:
            p.grad = None
        fn(x.detach().requires_grad_(True)).backward(grad_out)
    return step


def passes(model: nn.Module, batch: int, dev: torch.device, rounds: int = 5, repeats: int = 9) -> dict[str, Any]:
    """Rates of the three passes of ``model`` and of their matmul references on ``dev``, per round and median."""
    macs = linear_macs_per_image(model)
    n = round(math.sqrt(macs))
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(batch, model.cfg.in_features, generator=g).to(dev)   # the family flattens its input first
    a, b = torch.rand(batch, n, generator=g).to(dev), torch.rand(n, n, generator=g).to(dev)
    k = model(x[:1]).shape[1]
    g_logits, g_mm = torch.randn(batch, k, generator=g).to(dev), torch.randn(batch, n, generator=g).to(dev)
    weights = list(model.parameters())
    flags = [p.requires_grad for p in weights]
    out: dict[str, Any] = {"macs_per_image": macs, "matmul_shape": [batch, n, n]}
    try:
        for name, mult in PASSES.items():
            train_weights = name == "train_step"
            for p in weights:
                p.requires_grad_(train_weights)
            b.requires_grad_(train_weights)
            grad_model = None if name == "forward" else g_logits
            grad_mm = None if name == "forward" else g_mm
            run_model = _step(model, weights, x, grad_model)
            run_mm = _step(lambda t: t @ b, [b], a, grad_mm)
            ratios, model_rates, mm_rates = [], [], []
            for _ in range(rounds):
                t_model = median_seconds(run_model, repeats, 3, dev)
                t_mm = median_seconds(run_mm, repeats, 3, dev)
                model_rates.append(mult * 2 * macs * batch / t_model)
                mm_rates.append(mult * 2 * batch * n * n / t_mm)
                ratios.append(model_rates[-1] / mm_rates[-1])
            faults = {"model": page_faults_per_call(run_model), "matmul": page_faults_per_call(run_mm)}
            ops = op_seconds(run_model) if dev.type == "cpu" else {}
            out[name] = {"fraction_of_matmul_rate": statistics.median(ratios),
                         "fraction_per_round": [round(r, 4) for r in ratios],
                         "model_gflops": statistics.median(model_rates) / 1e9,
                         "matmul_gflops": statistics.median(mm_rates) / 1e9,
                         "images_per_second": statistics.median(model_rates) / (mult * 2 * macs),
                         "page_faults_per_call": faults,
                         **({"profile_op_seconds": ops,
                             "profile_matmul_share": sum(v for k, v in ops.items() if k in MATMUL_OPS)
                             / sum(ops.values())} if ops else {})}
    finally:
        for p, flag in zip(weights, flags):
            p.requires_grad_(flag)
        b.requires_grad_(False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's, all cores)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--label", default=None, help="suffix of the results file (e.g. the machine)")
    ap.add_argument("--system-malloc", action="store_true", help="leave glibc's malloc settings as they are")
    args = ap.parse_args()
    malloc = "system" if args.system_malloc or not reuse_freed_memory() else "reuse_freed"
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False     # the precision the evaluation runs in
    model = dim.load_model(args.model_dir, device=dev)
    name = model.card["model"]
    result = passes(model, args.batch, dev, rounds=args.rounds)
    write_result(f"throughput_{name}" + (f"_{args.label}" if args.label else ""), {
        "model": name, "model_dir": str(args.model_dir), "batch": args.batch, "threads": torch.get_num_threads(),
        "malloc": malloc, "device": device_info(dev), **result})


if __name__ == "__main__":
    main()
