"""The shared training loop, recipe registry and accuracy helpers."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save

from ..fileio import atomic_write_bytes
from ..progress import progress_bar


@dataclass
class TrainData:
    x: torch.Tensor  # (N, 1, 28, 28) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64


@dataclass
class Recipe:
    config_cls: type
    fit: Callable[..., dict[str, Any]]  # fit(model, data, cfg, gen, show, state_dir) -> extra card fields


RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str, config_cls: type):
    """Decorator: register ``fit`` as the training recipe ``name`` with its config dataclass."""
    def deco(fit):
        RECIPES[name] = Recipe(config_cls, fit)
        return fit
    return deco


def minibatches(n: int, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def _save_state(path: Path, module: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
                epoch: int, last_loss: float, seconds: float) -> None:
    """Resumable state without pickle: tensors in safetensors, counters in its metadata.

    ``seconds`` is the training time of this stage so far, summed over every process
    that worked on it, so a resumed model's card can report its whole training time.
    """
    tensors = {f"m.{k}": v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for key, val in st.items():
            tensors[f"opt.{i}.{key}"] = torch.as_tensor(val).clone().contiguous()
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


def _load_state(path: Path, module: nn.Module, opt: torch.optim.Optimizer,
                gen: torch.Generator) -> tuple[int, float, float]:
    """Restore the state saved by ``_save_state``; returns (epoch, last loss, seconds so far)."""
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    module.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("m.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, key = k.split(".", 2)
            state.setdefault(int(i), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    gen.set_state(tensors["gen"])
    return int(meta["epoch"]), float(meta["last_loss"]), _meta_seconds(meta)


def run_epochs(module: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Generator, int], torch.Tensor], n: int,
               epochs: int, batch_size: int, lr: float, gen: torch.Generator, desc: str, show: bool,
               state_path: Path | None = None) -> float:
    """Train ``module``'s parameters with Adam and a cosine learning-rate decay.

    ``loss_fn(idx, gen, step)`` gives the loss of the batch of sample indices ``idx`` at
    global optimizer step ``step`` (counted from 0 across epochs, also after a resume).
    With ``state_path``, the state (weights, optimizer, random generator, epoch)
    is saved after every epoch and training resumes from it: an interrupted run
    continues to exactly the weights an uninterrupted one reaches. Returns the
    mean loss of the last epoch.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    per_epoch = (n + batch_size - 1) // batch_size
    total = max(epochs * per_epoch, 1)
    start, last, before = 0, float("nan"), 0.0
    if state_path is not None and state_path.is_file():
        start, last, before = _load_state(state_path, module, opt, gen)
    t0 = time.perf_counter()
    with progress_bar(show) as bar:
        task = bar.add_task(desc, total=epochs * per_epoch, completed=start * per_epoch, info="")
        for epoch in range(start, epochs):
            run_loss, count = 0.0, 0
            for step, idx in enumerate(minibatches(n, batch_size, gen), start=epoch * per_epoch):
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                loss = loss_fn(idx, gen, step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                run_loss += loss.item() * len(idx)
                count += len(idx)
                bar.update(task, advance=1, info=f"epoch {epoch + 1}/{epochs} loss {run_loss / count:.4f}")
            last = run_loss / max(count, 1)
            if state_path is not None:
                _save_state(state_path, module, opt, gen, epoch + 1, last, before + time.perf_counter() - t0)
    return last


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    return float((predict(model, x, batch_size) == y).float().mean())


