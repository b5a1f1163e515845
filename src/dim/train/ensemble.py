"""``dim ensemble``: a model folder holding the ensemble (the mean of the logits) of trained models of one kind.

Nothing is trained: the members' weights are copied into one ``model.safetensors`` (``members.0.*``,
``members.1.*``, ...), and the card records what each member is (its folder, seed, recipe settings, weights' hash,
clean accuracy and training seconds) beside the ensemble's own clean accuracy. The folder then loads with
:func:`dim.load_model` and is evaluated, compared and reported like any other model. The members must share their
architecture (the same model and model config); they may come from different seeds or recipe settings.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from .. import data as data_mod
from ..checkpoint import CheckpointError, load_ensemble, save_weights, write_card
from ..core.device import DeviceLike, device_info, resolve_device
from ..models.ensemble import EnsembleConfig
from ..models.registry import create_model, get_entry
from ..provenance import git_commit, package_versions
from .loop import predict

NAME = "ensemble"


def assemble(model_dirs: list[Path], out_dir: Path, *, data_dir: Path | None = None, eval_limit: int | None = None,
             device: DeviceLike = None) -> dict[str, Any]:
    """Write the ensemble of the models in ``model_dirs`` to ``out_dir``; returns its card."""
    model_dirs = [Path(d) for d in model_dirs]
    out_dir = Path(out_dir)
    if len(model_dirs) < 2:
        raise ValueError(f"an ensemble needs at least two model folders, got {len(model_dirs)}")
    resolved = [d.resolve() for d in model_dirs]
    if len(set(resolved)) < len(resolved):
        raise ValueError("the same model folder is given twice: an ensemble of copies is the model itself")
    if out_dir.resolve() in resolved:
        raise ValueError(f"--out {out_dir} is one of the members' folders: the ensemble would replace it")
    dev = resolve_device(device)
    commit = git_commit()
    ensemble = load_ensemble(model_dirs, device=dev)
    cards = ensemble.cards
    names = {c["model"] for c in cards}
    if len(names) > 1 or not get_entry(cards[0]["model"]).recipe:
        raise CheckpointError(f"{', '.join(map(str, model_dirs))}: hold models {sorted(names)}; an ensemble's "
                              "members are trained models of one kind")
    configs = [c["config"].get("model", {}) for c in cards]
    for d, c in zip(model_dirs[1:], configs[1:]):
        if c != configs[0]:
            diff = sorted(k for k in set(c) | set(configs[0]) if c.get(k) != configs[0].get(k))
            raise CheckpointError(f"{d}: its model config differs from {model_dirs[0]}'s in {diff}; an ensemble's "
                                  "members share one architecture")
    datasets = {c.get("dataset") for c in cards}
    if len(datasets) > 1:
        raise CheckpointError(f"the members were trained on different datasets: {sorted(map(str, datasets))}")
    model_cfg = dataclasses.asdict(EnsembleConfig(member=cards[0]["model"], count=len(cards),
                                                  member_config=configs[0]))
    model = create_model(NAME, **model_cfg).to(dev)
    model.load_state_dict(ensemble.state_dict())     # the same module tree: members.i.*, one shared bin_in
    spec = data_mod.get_spec(cards[0].get("dataset") or "mnist")
    x, y = data_mod.load_split(spec, "test", data_dir, eval_limit)
    pred = predict(model.eval(), torch.from_numpy(x))
    acc = float((pred.cpu() == torch.from_numpy(y)).float().mean())
    keep = ("model", "seed", "clean_accuracy", "train_seconds", "weights_sha256", "git_commit")
    card = {
        "model": NAME, "paper_name": get_entry(NAME).paper_name,
        "config": {"model": model_cfg, "train": {}},
        "clean_accuracy": acc, "test_samples": len(y),
        "train_seconds": round(sum(float(c.get("train_seconds") or 0) for c in cards), 2),
        "train_samples": None, "seed": [c.get("seed") for c in cards],
        "dataset": spec.name, "data_sha256": data_mod.checksums(spec),
        "members": [{"dir": str(d), **{k: c.get(k) for k in keep}, "train_config": c["config"].get("train", {})}
                    for d, c in zip(model_dirs, cards)],
        "git_commit": commit, "packages": package_versions(), "device": device_info(dev),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    save_weights(model, out_dir)
    return write_card(out_dir, card)
