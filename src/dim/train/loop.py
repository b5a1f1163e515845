"""The shared training loop, recipe registry and accuracy helpers."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save

from ..core.device import HOST, device_of, is_gpu
from ..fileio import atomic_write_bytes
from ..progress import progress_bar


@dataclass
class TrainData:
    """A training set and the device that computes on it.

    ``x``/``y`` live on ``device`` when they fit there (the usual case: MNIST is 188 MB),
    else in host memory; :meth:`take` returns a batch on ``device`` either way.
    """
    x: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64
    device: torch.device = HOST

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of the sample indices ``idx``, on the compute device."""
        idx = idx.to(self.x.device)
        return self.x[idx].to(self.device, non_blocking=True), self.y[idx].to(self.device, non_blocking=True)


@dataclass
class Recipe:
    config_cls: type
    fit: Callable[..., dict[str, Any]]  # fit(model, data, cfg, gen, show, state_dir) -> extra card fields

    def recorded(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The training config with ``overrides`` applied, as a model card records it (JSON types: lists, not
        tuples), so that what was trained and what a preset asks for compare equal."""
        return json.loads(json.dumps(asdict(self.config_cls(**(overrides or {})))))


RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str, config_cls: type):
    """Decorator: register ``fit`` as the training recipe ``name`` with its config dataclass."""
    def deco(fit):
        RECIPES[name] = Recipe(config_cls, fit)
        return fit
    return deco


def minibatches(n: int, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen, device=gen.device)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def _save_state(path: Path, module: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
                epoch: int, last_loss: float, seconds: float, average: list[torch.Tensor] | None = None) -> None:
    """Resumable state without pickle: tensors in safetensors, counters in its metadata.

    ``seconds`` is the training time of this stage so far, summed over every process
    that worked on it, so a resumed model's card can report its whole training time.
    ``average``: the running average of the trained parameters, if one is kept.
    """
    tensors = {f"m.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    for i, a in enumerate(average or ()):
        tensors[f"avg.{i}"] = a.detach().cpu().contiguous()
    for i, st in opt.state_dict()["state"].items():
        for key, val in st.items():
            tensors[f"opt.{i}.{key}"] = torch.as_tensor(val).detach().cpu().clone().contiguous()
    tensors["gen"] = gen.get_state()
    meta = {"epoch": str(epoch), "last_loss": repr(last_loss), "seconds": repr(seconds)}
    atomic_write_bytes(path, save(tensors, metadata=meta))


def state_seconds(state_dir: Path) -> float:
    """Training seconds already spent on the saved stages in ``state_dir`` (0 if none).

    ``nan`` when a state file predates the time field, so callers can say the time
    is incomplete rather than under-report it.
    """
    return sum(_stage_seconds(path) for path in sorted(state_dir.glob("*.safetensors")))


def _stage_seconds(path: Path) -> float:
    with safe_open(str(path), "pt") as fh:
        return _meta_seconds(fh.metadata())


def _meta_seconds(meta: dict[str, str]) -> float:
    """The seconds a state file records; ``nan`` for state written before the field existed."""
    return float(meta.get("seconds", "nan"))


def _load_state(path: Path, module: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
                average: list[torch.Tensor] | None = None) -> tuple[int, float, float]:
    """Restore the state saved by ``_save_state`` (and the running average into ``average``, if one is kept);
    returns (epoch, last loss, seconds so far)."""
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    module.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("m.")})
    for i, a in enumerate(average or ()):
        if f"avg.{i}" not in tensors:
            raise ValueError(f"{path}: the saved state holds no running average of the weights; it was written by "
                             "a training without one (remove the folder's .train_state to start again)")
        a.copy_(tensors[f"avg.{i}"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, key = k.split(".", 2)
            state.setdefault(int(i), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    gen.set_state(tensors["gen"])
    return int(meta["epoch"]), float(meta["last_loss"]), _meta_seconds(meta)


def check_average(decay: float) -> None:
    """Refuse a decay of the weights' running average (``weight_average``) outside 0 (off) or (0, 1)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"weight_average must be 0 (off) or a decay in (0, 1), got {decay}")


def run_epochs(module: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Generator, int], torch.Tensor], n: int,
               epochs: int, batch_size: int, lr: float, gen: torch.Generator, desc: str, show: bool,
               state_path: Path | None = None, average: float = 0.0,
               before_step: Callable[[], None] | None = None) -> float:
    """Train ``module``'s parameters with Adam and a cosine learning-rate decay.

    ``loss_fn(idx, gen, step)`` gives the loss of the batch of sample indices ``idx`` at
    global optimizer step ``step`` (counted from 0 across epochs, also after a resume).
    With ``state_path``, the state (weights, optimizer, random generator, epoch)
    is saved after every epoch and training resumes from it: an interrupted run
    continues to exactly the weights an uninterrupted one reaches. Returns the
    mean loss of the last epoch.

    ``average`` > 0 keeps an exponential moving average of the trained parameters (decay ``average`` per step,
    warmed up as ``min(average, (1 + t) / (10 + t))`` so that the first steps do not dominate it) and leaves it
    in ``module`` at the end: in adversarial training the averaged weights are often more robust than the last
    iterate (Gowal et al. 2020, "Uncovering the limits of adversarial training"). The batches, and so the
    adversarial points, are those of the trained (not the averaged) weights.

    ``before_step``, if given, runs after each backward pass and before the optimizer's step (adversarial weight
    perturbation puts the unperturbed weights back there: :class:`dim.train.awp.WeightPerturbation`).
    """
    check_average(average)
    params = [p for p in module.parameters() if p.requires_grad]
    running = [p.detach().clone() for p in params] if average else None
    # fused Adam: one kernel for all parameters on a GPU (same update rule)
    opt = torch.optim.Adam(params, lr=lr, fused=is_gpu(gen.device) or None)
    per_epoch = (n + batch_size - 1) // batch_size
    total = max(epochs * per_epoch, 1)
    start, last, before = 0, float("nan"), 0.0
    if state_path is not None and state_path.is_file():
        start, last, before = _load_state(state_path, module, opt, gen, running)
    t0 = time.perf_counter()
    with progress_bar(show) as bar:
        task = bar.add_task(desc, total=epochs * per_epoch, completed=start * per_epoch, info="")
        for epoch in range(start, epochs):
            # the loss is summed on the device and read every SHOW_EVERY steps for the bar and at the
            # end of the epoch (a read per step would wait for the GPU at every step)
            run_loss, count = torch.zeros((), dtype=torch.float64, device=gen.device), 0
            for step, idx in enumerate(minibatches(n, batch_size, gen), start=epoch * per_epoch):
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                loss = loss_fn(idx, gen, step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if before_step is not None:
                    before_step()
                opt.step()
                if running is not None:
                    with torch.no_grad():
                        decay = min(average, (1 + step) / (10 + step))
                        torch._foreach_lerp_(running, [p.detach() for p in params], 1.0 - decay)
                run_loss += loss.detach() * len(idx)
                count += len(idx)
                if step % SHOW_EVERY == 0:
                    bar.update(task, info=f"epoch {epoch + 1}/{epochs} loss {float(run_loss) / count:.4f}")
                bar.update(task, advance=1)
            last = float(run_loss) / max(count, 1)
            check_loss(last, desc, epoch + 1)
            if state_path is not None:
                _save_state(state_path, module, opt, gen, epoch + 1, last, before + time.perf_counter() - t0,
                            running)
    if running is not None:
        with torch.no_grad():
            for p, a in zip(params, running):
                p.copy_(a)
    return last


SHOW_EVERY = 50
MAX_LOSS = 1e4   # a mean epoch loss above this has diverged (MNIST's recipes end below 1; VAEs near 30)


class DivergedError(RuntimeError):
    """Training diverged (non-finite or exploding loss, or chance accuracy at the end)."""


def check_loss(loss: float, stage: str, epoch: int) -> None:
    """Stop a training whose mean epoch loss is not finite or has exploded, naming the stage."""
    if not math.isfinite(loss) or loss > MAX_LOSS:
        raise DivergedError(f"training diverged: stage {stage!r}, epoch {epoch}: mean loss {loss:.6g} "
                            f"({'not finite' if not math.isfinite(loss) else f'above {MAX_LOSS:g}'}); "
                            "lower the learning rate (--set lr=...) or check the data")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels of ``x`` (on any device), computed on the model's device, returned there."""
    model.eval()
    dev = device_of(model)
    return torch.cat([model(x[i:i + batch_size].to(dev)).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    pred = predict(model, x, batch_size)
    return float((pred == y.to(pred.device)).float().mean())


