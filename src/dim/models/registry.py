"""Model registry: ``register_model`` / ``list_models`` / ``create_model``.

A registry entry holds the factory and what the rest of the package needs to
know about a model without building it: its label in the paper's tables, which
training recipe makes its weights, and, for inference-only variants (``bidim``,
``bicnn``, ...), which trained model's weights it reuses.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    config_cls: type
    description: str
    paper_name: str
    recipe: str | None                # key into dim.train.RECIPES; None: assembled from trained models
    weights_from: str | None = None   # inference variant of this trained model

    @property
    def trainable(self) -> bool:
        """Whether ``dim train NAME`` trains it (not an inference variant, not assembled from trained models)."""
        return self.recipe is not None and self.weights_from is None

    def default_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config_cls())


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, config: type, description: str, paper_name: str, recipe: str | None,
                   weights_from: str | None = None) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``factory(config) -> nn.Module`` under ``name``."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            warnings.warn(f"model {name!r} registered twice; the later registration wins", stacklevel=2)
        _REGISTRY[name] = ModelEntry(name, factory, config, description, paper_name, recipe, weights_from)
        return factory

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; expected one of {list_models()}") from None


def resolve_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The model's config dataclass with ``overrides`` applied; unknown keys are an error."""
    entry = get_entry(name)
    fields = {f.name for f in dataclasses.fields(entry.config_cls)}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown config keys {unknown} for model {name!r}; expected a subset of {sorted(fields)}")
    for key, value in overrides.items():  # JSON turns tuples into lists
        if isinstance(value, list):
            overrides[key] = tuple(value)
    return entry.config_cls(**overrides)


def shape_config(name: str, input_shape: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    """The config keys of model ``name`` that follow from the data: input size, channels, classes."""
    c, h, w = input_shape
    known = {"in_features": c * h * w, "in_channels": c, "image_size": (h, w), "num_classes": num_classes}
    fields = {f.name for f in dataclasses.fields(get_entry(name).config_cls)}
    return {k: v for k, v in known.items() if k in fields}


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a fresh (untrained) model, in eval mode, from its registry entry."""
    entry = get_entry(name)
    model = entry.factory(resolve_config(name, overrides))
    model.model_name = name
    return model.eval()
