"""The Python API for evaluating any PyTorch classifier.

    import dim
    results = dim.evaluate(model, x, y, suite="quick", run_dir="runs/mine")

``model`` maps ``(N, C, H, W)`` floats in [0, 1] to ``(N, classes)`` logits.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Sequence

import torch.nn as nn

from .attacks.spec import AttackSpec
from .checkpoint import CARD, load_model
from .core.device import DeviceLike
from .evaluation import metrics
from .evaluation.inputs import check_inputs
from .evaluation.runner import EvalModel, evaluate_models
from .evaluation.spec import RunSpec
from .models.registry import get_entry
from .provenance import file_sha256
from .store import Store


def evaluate(model: nn.Module, x: Any, y: Any, *, suite: str | Sequence[AttackSpec] = "quick",
             run_dir: Path | str, name: str = "model", batch_size: int = 100, seed: int = 0,
             show: bool | None = None, report: bool = True, checks: bool = True,
             device: DeviceLike = None, thresholds: dict[str, float] | None = None,
             executor: str = "serial", ray_address: str | None = None) -> list[metrics.ModelResult]:
    """Evaluate one classifier; resumable in ``run_dir``. Returns the metrics (and writes the report).

    ``device``: ``auto`` (default; ``$DIM_DEVICE`` overrides it), ``cpu``, ``cuda`` or
    ``cuda:N``. The model is moved there (``model.to(device)``) for the evaluation.
    ``thresholds`` (``{"L2": 2.0, ...}``) overrides the thresholds, which default to the
    paper's for 1 x 28 x 28 images and to the paper's scaled to the image size otherwise.
    ``executor="ray"`` runs the units as Ray tasks (``ray_address``: an existing cluster); the model
    travels to the workers by value, so its class must be importable there.
    """
    from .core.norms import ThreatModel
    m = EvalModel(key=name, model=model.eval(), name=name, paper_name=name)
    xs, ys = check_inputs(x, y)
    threat = ThreatModel.for_shape(xs.shape[1:], thresholds)
    spec = RunSpec(run_dir=Path(run_dir), suite=suite if isinstance(suite, str) else tuple(suite),
                   batch_size=batch_size, seed=seed, show=show, checks=checks, device=device,
                   executor=executor, ray_address=ray_address, n=max(len(xs), 1))
    evaluate_models([m], xs, ys, spec, threat=threat)
    if report:
        from .report import build_report
        build_report(run_dir)
    store = Store.of_run(run_dir, read_only=True)
    try:
        return metrics.compute(store)
    finally:
        store.close()


def eval_model_from_dir(model_dir: Path, key: str | None = None, device: DeviceLike = None) -> EvalModel:
    model = load_model(model_dir, device=device)
    card = dict(model.card)
    card["dir"] = str(Path(model_dir).resolve())
    return EvalModel(key=key or card["model"], model=model, name=card["model"],
                     paper_name=get_entry(card["model"]).paper_name, card=card,
                     card_sha256=file_sha256(Path(model_dir) / CARD))


def eval_model_from_factory(spec: str) -> EvalModel:
    """``package.module:function`` -> the model that ``function()`` returns."""
    if ":" not in spec:
        raise ValueError(f"--model-factory expects package.module:function, got {spec!r}")
    mod_name, fn_name = spec.split(":", 1)
    try:
        fn: Callable[[], nn.Module] = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--model-factory {spec!r}: cannot import ({exc})") from exc
    model = fn()
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model-factory {spec!r} returned {type(model).__name__}, expected a torch.nn.Module")
    return EvalModel(key=fn_name, model=model.eval(), name=fn_name, paper_name=fn_name, card={"factory": spec})


def unique_keys(models: list[EvalModel]) -> list[EvalModel]:
    seen: dict[str, int] = {}
    for m in models:
        if m.key in seen:
            seen[m.key] += 1
            m.key = f"{m.key}-{seen[m.key]}"
        else:
            seen[m.key] = 0
    return models
