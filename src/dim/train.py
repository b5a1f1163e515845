"""Training: one entry point (:func:`train`) and a small recipe per kind of model.

A recipe is a config dataclass (its defaults live here, next to the code they
configure) plus a ``fit`` function. ``train`` resolves the config (defaults <-
overrides), seeds everything, runs the recipe, measures clean accuracy on the
full test set and writes the model directory (weights + card with provenance).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data as data_mod
from .checkpoint import CheckpointError, load_model, save_weights, write_card
from .models.registry import create_model, get_entry, resolve_config
from .progress import progress_bar
from .provenance import git_commit, package_versions


@dataclass
class TrainData:
    x: torch.Tensor  # (N, 1, 28, 28) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64


@dataclass
class Recipe:
    config_cls: type
    fit: Callable[..., dict[str, Any]]  # fit(model, data, cfg, gen, show) -> extra card fields
    trains: bool = True


RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str, config_cls: type, trains: bool = True):
    def deco(fit):
        RECIPES[name] = Recipe(config_cls, fit, trains)
        return fit
    return deco


# ------------------------------------------------------------------ shared loop

def minibatches(n: int, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def run_epochs(params, loss_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor], n: int, epochs: int,
               batch_size: int, lr: float, gen: torch.Generator, desc: str, show: bool) -> float:
    """Adam with cosine decay over ``epochs``; ``loss_fn(idx, gen)`` gives the loss of a batch.

    Returns the mean loss of the last epoch.
    """
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    last = float("nan")
    with progress_bar(show) as bar:
        task = bar.add_task(desc, total=steps, info="")
        for epoch in range(epochs):
            total, count = 0.0, 0
            for idx in minibatches(n, batch_size, gen):
                loss = loss_fn(idx, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
                count += len(idx)
                bar.update(task, advance=1, info=f"epoch {epoch + 1}/{epochs} loss {total / count:.4f}")
            last = total / max(count, 1)
    return last


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    return float((predict(model, x, batch_size) == y).float().mean())


# ------------------------------------------------------------ the DIM family

@dataclass(frozen=True)
class ScoreTrainConfig:
    """Recipe of DIM, the ablations: denoiser first, then the internal models.

    Denoiser noise: Gaussian with a per-sample sigma drawn from U(0, denoiser_sigma)
    (covers clean inputs and perturbations beyond L-inf 0.3), plus salt-and-pepper
    on ``denoiser_sp`` of the pixels. Internal models see ``D(x) + sigma * N(0, 1)`` with
    sigma ~ U(0, im_sigma) per sample (paper eq. 2), not clipped: clipping would make
    the noise non-zero-mean (brighter black background), and the models would learn a
    background that clean inputs never have. Loss weighting: for each internal model the positive samples
    (its own class) and the negatives (the nine others, target black) carry equal
    total weight; ``ce_weight`` adds softmax cross-entropy on the logits.
    """
    denoiser_epochs: int = 4
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    denoiser_sigma: float = 0.5
    denoiser_sp: float = 0.05
    im_sigma: float = 0.3
    ce_weight: float = 0.0


def _noisy(x: torch.Tensor, sigma_max: float, sp: float, gen: torch.Generator) -> torch.Tensor:
    sig = torch.rand(x.shape[0], 1, generator=gen) * sigma_max
    out = x + sig * torch.randn(x.shape, generator=gen)
    if sp > 0:
        mask = torch.rand(x.shape, generator=gen)
        out = torch.where(mask < sp / 2, torch.zeros_like(out), out)
        out = torch.where(mask > 1 - sp / 2, torch.ones_like(out), out)
    return out.clamp(0, 1)


@register_recipe("score", ScoreTrainConfig)
def fit_score_model(model: nn.Module, data: TrainData, cfg: ScoreTrainConfig, gen: torch.Generator,
                    show: bool) -> dict[str, Any]:
    x = data.x.flatten(1)  # (N, 784)
    n, k = len(x), model.num_classes
    out: dict[str, Any] = {}
    if model.denoiser is not None and cfg.denoiser_epochs > 0:
        dn = model.denoiser.train()

        def dn_loss(idx, g):
            clean = x[idx]
            return F.mse_loss(dn(_noisy(clean, cfg.denoiser_sigma, cfg.denoiser_sp, g)), clean)

        out["denoiser_final_mse"] = run_epochs(dn.parameters(), dn_loss, n, cfg.denoiser_epochs, cfg.batch_size,
                                               cfg.lr, gen, "denoiser", show)
        dn.eval()
    with torch.no_grad():  # D(x) on the clean training set, computed once
        d_all = torch.cat([model.denoise(x[i:i + 2000].view(-1, 1, 28, 28)) for i in range(0, n, 2000)])
    heads = model.heads.train()
    onehot = F.one_hot(data.y, k).t().float()  # (K, N)
    w_pos, w_neg = 0.5, 0.5 / (k - 1)

    def im_loss(idx, g):
        d = d_all[idx]                                                    # (B, 784)
        sig = torch.rand(len(idx), 1, generator=g) * cfg.im_sigma                # per-sample noise level
        rec = heads(d + sig * torch.randn(d.shape, generator=g))          # (K, B, 784); zero-mean, unclipped
        pos = onehot[:, idx]                                              # (K, B)
        err = ((rec - pos.unsqueeze(-1) * d.unsqueeze(0)) ** 2).mean(-1)  # (K, B)
        loss = ((pos * w_pos + (1 - pos) * w_neg) * err).sum(0).mean()
        if cfg.ce_weight > 0:
            score = rec.sum(-1).t() / d.sum(-1, keepdim=True).clamp_min(1e-6)  # (B, K)
            loss = loss + cfg.ce_weight * F.cross_entropy(model.temperature * score, data.y[idx])
        return loss

    out["im_final_loss"] = run_epochs(heads.parameters(), im_loss, n, cfg.epochs, cfg.batch_size, cfg.lr, gen,
                                      "internal models", show)
    return out


# ---------------------------------------------------------------- the trainer

def _seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def _load_tensors(dataset: str, split: str, data_dir: Path | None, limit: int | None) -> TrainData:
    x, y = data_mod.load_split(dataset, split, data_dir, limit)
    return TrainData(torch.from_numpy(x), torch.from_numpy(y))


def train(name: str, out_dir: Path, *, epochs: int | None = None, seed: int = 0, data_dir: Path | None = None,
          limit: int | None = None, dataset: str = "mnist", from_dir: Path | None = None,
          model_overrides: dict[str, Any] | None = None, train_overrides: dict[str, Any] | None = None,
          eval_limit: int | None = None, show: bool | None = None) -> dict[str, Any]:
    """Train model ``name`` (or derive an inference variant from ``from_dir``) into ``out_dir``.

    ``epochs`` overrides the main epoch count of the recipe (and caps the
    denoiser's). Returns the card that was written.
    """
    entry = get_entry(name)
    recipe = RECIPES[entry.recipe]
    out_dir = Path(out_dir)
    train_cfg_over = dict(train_overrides or {})
    if epochs is not None:
        train_cfg_over["epochs"] = epochs
        if "denoiser_epochs" in {f.name for f in dataclasses.fields(recipe.config_cls)}:
            train_cfg_over.setdefault("denoiser_epochs", min(epochs, recipe.config_cls().denoiser_epochs))
    gen = _seed_everything(seed)
    test = _load_tensors(dataset, "test", data_dir, eval_limit)
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if entry.weights_from is not None:
        model, source_card = _derive(name, entry.weights_from, from_dir, model_overrides)
        train_cfg: dict[str, Any] = {}
        extra["weights_from"] = {"dir": str(from_dir), "model": entry.weights_from,
                                 "weights_sha256": source_card.get("weights_sha256"),
                                 "train_seconds": source_card.get("train_seconds")}
        model_cfg = source_card["config"]["model"]
    else:
        if from_dir is not None:
            raise ValueError(f"--from applies only to inference variants; {name!r} is trained from scratch")
        model_cfg = dataclasses.asdict(resolve_config(name, model_overrides))
        model = create_model(name, **model_cfg)
        cfg = recipe.config_cls(**train_cfg_over)
        train_cfg = dataclasses.asdict(cfg)
        tr = _load_tensors(dataset, "train", data_dir, limit)
        model.train()
        extra.update(recipe.fit(model, tr, cfg, gen, show))
        model.eval()
    seconds = time.perf_counter() - t0
    acc = accuracy(model, test.x, test.y)
    card = {
        "model": name, "paper_name": entry.paper_name,
        "config": {"model": model_cfg, "train": train_cfg},
        "clean_accuracy": acc, "test_samples": len(test.y), "train_seconds": round(seconds, 2),
        "train_samples": None if entry.weights_from else (limit or "all"),
        "seed": seed, "dataset": dataset, "data_sha256": data_mod.checksums(dataset),
        "git_commit": git_commit(), "packages": package_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra,
    }
    save_weights(model, out_dir)
    write_card(out_dir, card)
    return card


def _derive(name: str, base: str, from_dir: Path | None, overrides: dict[str, Any] | None):
    if from_dir is None:
        raise ValueError(f"{name!r} is an inference variant of {base!r} and is not trained itself: "
                         f"train {base!r} first, then run 'dim train {name} --from <{base} model dir>'")
    source = load_model(from_dir)
    if source.card["model"] != base:
        raise CheckpointError(f"{from_dir}: holds model {source.card['model']!r}, but {name!r} needs "
                              f"the weights of {base!r}")
    model = create_model(name, **source.card["config"]["model"], **(overrides or {}))
    model.load_state_dict(source.state_dict())
    return model.eval(), source.card
