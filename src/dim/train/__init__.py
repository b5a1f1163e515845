"""Training: one entry point (:func:`train`) and a small recipe per kind of model.

A recipe is a config dataclass (its defaults live here, next to the code they
configure) plus a ``fit`` function. ``train`` resolves the config (defaults <-
overrides), seeds everything, runs the recipe, measures clean accuracy on the
full test set and writes the model directory (weights + card with provenance).
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import data as data_mod
from ..checkpoint import CheckpointError, load_model, save_weights, write_card
from ..core.device import HOST, DeviceLike, device_info, fits, generator, is_gpu, resolve_device
from ..fileio import atomic_write_text
from ..models.binarize import check_blocks, has_binarization, input_binarization
from ..models.registry import create_model, get_entry, resolve_config, shape_config
from ..provenance import git_commit, package_versions
from . import classifier as _classifier  # noqa: F401  (registers recipes)
from . import multinorm as _multinorm  # noqa: F401
from . import score as _score  # noqa: F401
from . import vae as _vae  # noqa: F401
from .loop import RECIPES, DivergedError, TrainData, predict, state_seconds


# ---------------------------------------------------------------- the trainer

def _seed_everything(seed: int, device: torch.device) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return generator(device, seed)


def _load_tensors(dataset: data_mod.DatasetSpec, split: str, data_dir: Path | None, limit: int | None,
                  device: torch.device = HOST) -> TrainData:
    """A split as tensors: on ``device`` when it fits there, else in host memory (moved per batch)."""
    x, y = data_mod.load_split(dataset, split, data_dir, limit)
    home = device if fits(x.nbytes + y.nbytes, device) else HOST
    return TrainData(torch.from_numpy(x).to(home), torch.from_numpy(y).to(home), device)


def _check_not_chance(acc: float, pred: torch.Tensor, test: TrainData, extra: dict[str, Any]) -> None:
    """A trained model (its predictions ``pred`` of the test set) no better than always answering the most
    frequent test class has failed."""
    majority = float(torch.bincount(test.y.to(pred.device)).max()) / max(len(test.y), 1)
    if acc <= majority + 0.01:
        top = float(torch.bincount(pred).max()) / max(len(pred), 1)
        losses = ", ".join(f"{k} {v:.6g}" for k, v in extra.items()
                           if isinstance(v, float) and ("loss" in k or "mse" in k or "elbo" in k))
        raise DivergedError(f"training failed: clean accuracy {acc:.4f} is chance level (the most frequent class "
                            f"is {majority:.4f} of the test set; the model gives one class to {top:.0%} of it); "
                            f"final losses: {losses or 'n/a'}; no model was written")


def train(name: str, out_dir: Path, *, epochs: int | None = None, seed: int = 0, data_dir: Path | None = None,
          limit: int | None = None, dataset: str = "mnist", from_dir: Path | None = None,
          model_overrides: dict[str, Any] | None = None, train_overrides: dict[str, Any] | None = None,
          eval_limit: int | None = None, show: bool | None = None, device: DeviceLike = None) -> dict[str, Any]:
    """Train model ``name`` (or derive it from the trained weights in ``from_dir``) into ``out_dir``.

    With ``from_dir`` nothing is trained: the weights are copied, ``model_overrides``
    change inference settings (e.g. ABS's ``n_random``/``n_steps``), and the card
    records both. Inference variants (``bidim``, ``biabs``, ...) are always derived.

    ``epochs`` overrides the main epoch count of the recipe (and caps the
    denoiser's). Training state is kept in ``out_dir/.train_state`` after every
    epoch; running the same command again after an interruption resumes there.
    ``device`` (see :func:`dim.core.device.resolve_device`) computes everything; the
    card records it. Returns the card that was written.
    """
    dev = resolve_device(device)
    entry = get_entry(name)
    if entry.recipe is None:
        raise ValueError(f"{name!r} is assembled from trained models, not trained: train its members, then run "
                         f"'dim {name} DIR DIR ... --out OUT'")
    recipe = RECIPES[entry.recipe]
    out_dir = Path(out_dir)
    train_cfg_over = dict(train_overrides or {})
    if epochs is not None:
        train_cfg_over["epochs"] = epochs
        if "denoiser_epochs" in {f.name for f in dataclasses.fields(recipe.config_cls)}:
            train_cfg_over.setdefault("denoiser_epochs", min(epochs, recipe.config_cls().denoiser_epochs))
    if from_dir is not None and Path(from_dir).resolve() == out_dir.resolve():
        raise ValueError(f"--from {from_dir} and --out {out_dir} are the same directory: the derived model would "
                         "replace the one it is derived from; choose another --out")
    commit = git_commit()   # the code this process trains with, read before a long training lets it change
    gen = _seed_everything(seed, dev)
    spec = data_mod.get_spec(dataset)   # once: a user's folder is read to learn its shape and classes
    test = _load_tensors(spec, "test", data_dir, eval_limit, dev)
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    before = 0.0  # training seconds spent by earlier, interrupted processes
    derived = entry.weights_from is not None or from_dir is not None
    if derived and (epochs is not None or train_overrides or limit is not None):
        raise ValueError(f"{name!r} from {from_dir}: nothing is trained (the weights are copied), so epochs, "
                         "--set and --limit do not apply")
    if derived:
        base = entry.weights_from or name
        model, source_card, model_cfg = _derive(name, base, from_dir, model_overrides, dev)
        train_cfg: dict[str, Any] = {}
        extra["weights_from"] = {"dir": str(from_dir), "model": base,
                                 "weights_sha256": source_card.get("weights_sha256"),
                                 "train_seconds": source_card.get("train_seconds"),
                                 "overrides": dict(model_overrides or {})}
    else:
        shape = shape_config(name, spec.input_shape, spec.num_classes)
        model_cfg = dataclasses.asdict(resolve_config(name, {**shape, **(model_overrides or {})}))
        model = create_model(name, **model_cfg).to(dev)
        cfg = recipe.config_cls(**train_cfg_over)
        if hasattr(cfg, "validate"):      # a recipe that depends on the model refuses it before any state
            cfg.validate(model)
        if has_binarization(model):       # blocks that do not tile the dataset's images, before any state
            check_blocks((1, *spec.input_shape), input_binarization(model).pool)
        train_cfg = recipe.recorded(train_cfg_over)
        tr = _load_tensors(spec, "train", data_dir, limit, dev)
        if hasattr(cfg, "validate_data"):  # and one that cannot work with these labels
            cfg.validate_data(tr.y)
        # the device type is part of the identity: a generator's state resumes only where it was saved
        state_dir = _prepare_state_dir(out_dir, {"model": name, "model_cfg": model_cfg, "train_cfg": train_cfg,
                                                 "seed": seed, "limit": limit, "dataset": dataset,
                                                 **({"device": dev.type} if is_gpu(dev) else {})})
        extra["resumed"] = any(state_dir.glob("*.safetensors"))
        before = state_seconds(state_dir)
        if math.isnan(before):
            before = 0.0
            extra["train_seconds_incomplete"] = "resumed from state saved without its time: earlier runs not counted"
        model.train()
        extra.update(recipe.fit(model, tr, cfg, gen, show, state_dir))
        model.eval()
    seconds = time.perf_counter() - t0 + before
    pred = predict(model, test.x)     # the test set once (ABS's inference is slow): accuracy and chance check
    acc = float((pred == test.y.to(pred.device)).float().mean())
    if not derived:
        _check_not_chance(acc, pred, test, extra)
    card = {
        "model": name, "paper_name": entry.paper_name,
        "config": {"model": model_cfg, "train": train_cfg},
        "clean_accuracy": acc, "test_samples": len(test.y), "train_seconds": round(seconds, 2),
        "train_samples": None if derived else (limit or "all"),
        "seed": seed, "dataset": spec.name, "data_sha256": data_mod.checksums(spec),
        "git_commit": commit, "packages": package_versions(), "device": device_info(dev),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra,
    }
    save_weights(model, out_dir)
    card = write_card(out_dir, card)
    if not derived:
        shutil.rmtree(out_dir / STATE_DIR, ignore_errors=True)
    return card


STATE_DIR = ".train_state"


def _prepare_state_dir(out_dir: Path, identity: dict[str, Any]) -> Path:
    """The folder for resumable training state; refuses state left by a different run."""
    state_dir = out_dir / STATE_DIR
    ident_file = state_dir / "run.json"
    text = json.dumps(identity, sort_keys=True, default=str)
    if ident_file.is_file() and ident_file.read_text() != text:
        raise ValueError(f"{state_dir}: holds the unfinished training of a different configuration; "
                         f"delete it to start over, or rerun with the same options to resume it")
    atomic_write_text(ident_file, text)
    return state_dir


def _derive(name: str, base: str, from_dir: Path | None, overrides: dict[str, Any] | None, device: torch.device):
    if from_dir is None:
        raise ValueError(f"{name!r} is an inference variant of {base!r} and is not trained itself: "
                         f"train {base!r} first, then run 'dim train {name} --from <{base} model dir>'")
    source = load_model(from_dir, device=device)
    if source.card["model"] != base:
        raise CheckpointError(f"{from_dir}: holds model {source.card['model']!r}, but {name!r} needs "
                              f"the weights of {base!r}")
    model_cfg = dataclasses.asdict(resolve_config(name, {**source.card["config"]["model"], **(overrides or {})}))
    model = create_model(name, **model_cfg).to(device)
    try:
        model.load_state_dict(source.state_dict())
    except RuntimeError as exc:
        raise ValueError(f"--from {from_dir}: the weights do not fit {name!r} with {overrides}; only options "
                         f"that leave the weights' shapes alone (inference settings) can change ({exc})") from None
    return model.eval(), source.card, model_cfg
