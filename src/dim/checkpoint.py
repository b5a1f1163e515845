"""Model directories: ``model.safetensors`` (weights, no pickle) + ``card.json``.

``load_model(dir)`` rebuilds the model from the registry with the config stored
in the card, then loads the weights, checking every tensor name and shape first
so that a mismatched checkpoint is a clear :class:`CheckpointError`, not a
traceback from inside torch.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .core.device import DeviceLike, resolve_device
from .fileio import atomic_write_bytes, atomic_write_text
from .models.ensemble import Ensemble
from .models.registry import create_model, list_models
from .provenance import file_sha256

WEIGHTS = "model.safetensors"
CARD = "card.json"


class CheckpointError(Exception):
    """A model directory is missing, truncated or does not match its model."""


def save_weights(model: nn.Module, out_dir: Path) -> Path:
    """Write ``model.safetensors`` atomically (temp name, then rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(out_dir / WEIGHTS, save(tensors))
    return out_dir / WEIGHTS


# The fields that say what a model is; a card whose copy of them changed after training is refused.
IDENTITY_FIELDS = ("model", "config", "weights_sha256", "dataset", "seed", "weights_from")


def identity_sha256(card: dict[str, Any]) -> str:
    """sha256 of the card's identity-bearing fields (canonical JSON)."""
    ident = {k: card.get(k) for k in IDENTITY_FIELDS}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def write_card(out_dir: Path, card: dict[str, Any]) -> dict[str, Any]:
    """Write ``card.json`` (with the weights' sha256 and its identity hash) atomically; returns the card."""
    card = dict(card)
    card["weights_sha256"] = file_sha256(out_dir / WEIGHTS)
    card["identity_sha256"] = identity_sha256(card)
    atomic_write_text(out_dir / CARD, json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def read_card(model_dir: Path) -> dict[str, Any]:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: model directory does not exist")
    path = model_dir / CARD
    if not path.is_file():
        raise CheckpointError(f"{path}: missing card.json (is {model_dir} a model directory made by 'dim train'?)")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(card, dict):
        raise CheckpointError(f"{path}: a card is a JSON object, this file holds {type(card).__name__}")
    for key in ("model", "config"):
        if key not in card:
            raise CheckpointError(f"{path}: card has no {key!r} field")
    if card["model"] not in list_models():
        raise CheckpointError(f"{path}: unknown model {card['model']!r}; known models: {list_models()}")
    want = card.get("identity_sha256")
    if want is not None and identity_sha256(card) != want:
        raise CheckpointError(f"{path}: the card was edited after training (one of {', '.join(IDENTITY_FIELDS)} no "
                              "longer matches the identity hash written with it); retrain, or derive a variant with "
                              "'dim train NAME --from DIR --out OTHER'")
    return card


def load_weights(model: nn.Module, weights: Path, expect: str = "") -> None:
    """Load safetensors weights into ``model``, checking names and shapes first."""
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: unreadable or truncated safetensors file ({exc})") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise CheckpointError(f"{weights}: does not match {expect or type(model).__name__}: "
                              f"missing tensors {missing[:5]}, unexpected tensors {extra[:5]}")
    bad = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
           for k, v in own.items() if tuple(tensors[k].shape) != tuple(v.shape)]
    if bad:
        raise CheckpointError(f"{weights}: tensor shapes do not match {expect or 'the model'}: " + "; ".join(bad[:5]))
    model.load_state_dict(tensors)


def load_model(model_dir: Path | str, expected_model: str | None = None,
               overrides: dict | None = None, device: DeviceLike = None) -> nn.Module:
    """Load a model directory written by ``dim train``; returns the model in eval mode on ``device``.

    ``device``: ``auto`` (the default, also through ``$DIM_DEVICE``), ``cpu``, ``cuda``
    or ``cuda:N``; a model trained on one device loads on any other.
    ``overrides`` changes inference-only options of the model config without touching
    the weights (e.g. ABS's ``n_random``/``n_steps``: ``dim.models.abs.FAST``).
    """
    dev = resolve_device(device)
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    name = card["model"]
    if expected_model is not None and name != expected_model:
        raise CheckpointError(f"{model_dir}: holds model {name!r}, expected {expected_model!r}")
    try:
        model = create_model(name, **{**card["config"].get("model", {}), **(overrides or {})})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{model_dir / CARD}: invalid model config ({exc})") from exc
    load_weights(model, model_dir / WEIGHTS, expect=f"model {name!r}")
    want = card.get("weights_sha256")
    if want and file_sha256(model_dir / WEIGHTS) != want:
        raise CheckpointError(f"{model_dir / WEIGHTS}: sha256 differs from the one in card.json; "
                              "the weights were modified after training")
    model.card = card
    return model.to(dev).eval()


def load_ensemble(model_dirs: list[Path | str], device: DeviceLike = None) -> nn.Module:
    """The ensemble (:class:`dim.models.ensemble.Ensemble`: the mean of their logits) of the models in
    ``model_dirs``, each loaded by :func:`load_model`; in eval mode on ``device``. Its ``cards`` are the members'."""
    members = [load_model(d, device=device) for d in model_dirs]
    try:
        model = Ensemble(members)
    except ValueError as exc:
        raise CheckpointError(f"{', '.join(map(str, model_dirs))}: {exc}") from None
    model.cards = [m.card for m in members]
    return model.eval()
