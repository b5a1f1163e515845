"""The Python API for evaluating any PyTorch classifier.

    import dim
    results = dim.evaluate(model, x, y, suite="quick", run_dir="runs/mine")

``model`` maps ``(N, C, H, W)`` floats in [0, 1] to ``(N, classes)`` logits.
"""
from __future__ import annotations

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
from .models.files import build, file_format, load_model_file, resolve_factory
from .models.registry import get_entry
from .progress import log
from .provenance import file_sha256
from .store import Store


def evaluate(model: nn.Module | Path | str | Callable[[], nn.Module], x: Any, y: Any, *,
             suite: str | Sequence[AttackSpec] = "quick", run_dir: Path | str, name: str | None = None,
             factory: str | Callable[[], nn.Module] | None = None, batch_size: int = 100, seed: int = 0,
             show: bool | None = None, report: bool = True, checks: bool = True,
             device: DeviceLike = None, thresholds: dict[str, float] | None = None, dataset: str = "custom",
             executor: str = "serial", ray_address: str | None = None) -> "Results":
    """Evaluate one classifier; resumable in ``run_dir``. Returns the metrics (a :class:`Results`, which also names
    the report and the warnings) and writes the report; warnings (failed attacks, probabilities instead of logits,
    failed sanity checks) are printed too.

    ``model``: a ``torch.nn.Module``; a model directory of ``dim train``; a model file (TorchScript, a
    ``torch.export`` program, or a state dict whose architecture ``factory`` builds); or a function returning a
    model. ``factory``: ``package.module:function``, ``path/to/file.py:function`` or a callable. ``name`` labels it.

    ``device``: ``auto`` (default; ``$DIM_DEVICE`` overrides it), ``cpu``, ``cuda`` or
    ``cuda:N``. The model is moved there (``model.to(device)``) for the evaluation.
    ``thresholds`` (``{"L2": 2.0, ...}``) overrides the thresholds, which default to the
    paper's for 1 x 28 x 28 images and to the paper's scaled to the image size otherwise.
    ``executor="ray"`` runs the units as Ray tasks (``ray_address``: an existing cluster); the model
    travels to the workers by value, so its class must be importable there.
    """
    from .core.norms import ThreatModel
    if isinstance(model, nn.Module):
        key = name or "model"
        m = EvalModel(key=key, model=model.eval(), name=key, paper_name=key)
    elif isinstance(model, (str, Path)) and Path(model).is_dir():
        m = eval_model_from_dir(Path(model), key=name)
    elif isinstance(model, (str, Path)) and Path(model).is_file():
        m = eval_model_from_file(model, factory, key=name)
    elif callable(model):
        m = eval_model_from_factory(model, key=name)
    else:
        raise ValueError(f"model {model!r}: expected a torch.nn.Module, a model directory, a model file (TorchScript, "
                         "torch.export, or a state dict with factory=), or a function that returns a model")
    xs, ys = check_inputs(x, y)
    threat = ThreatModel.for_shape(xs.shape[1:], thresholds)
    spec = RunSpec(run_dir=Path(run_dir), suite=suite if isinstance(suite, str) else tuple(suite), dataset=dataset,
                   batch_size=batch_size, seed=seed, show=show, checks=checks, device=device,
                   executor=executor, ray_address=ray_address, n=max(len(xs), 1))
    evaluate_models([m], xs, ys, spec, threat=threat)
    from .report import build_report, run_warnings
    page = build_report(run_dir) / "index.html" if report else None
    notes = run_warnings(run_dir)
    for line in notes:
        log(f"warning: {line}")
    if page is not None:
        log(f"report: {page}")
    store = Store.of_run(run_dir, read_only=True)
    try:
        return Results(metrics.compute(store), run_dir=Path(run_dir), report=page, warnings=notes)
    finally:
        store.close()


class Results(list):
    """What :func:`evaluate` returns: the :class:`~dim.evaluation.metrics.ModelResult` of each model (a list, as
    always), with the run's folder, its report page (None without a report) and the warnings also printed."""

    def __init__(self, results: Sequence[metrics.ModelResult], run_dir: Path, report: Path | None,
                 warnings: list[str]):
        super().__init__(results)
        self.run_dir, self.report, self.warnings = run_dir, report, warnings


def eval_model_from_dir(model_dir: Path, key: str | None = None, device: DeviceLike = None) -> EvalModel:
    model = load_model(model_dir, device=device)
    card = dict(model.card)
    card["dir"] = str(Path(model_dir).resolve())
    return EvalModel(key=key or card["model"], model=model, name=card["model"],
                     paper_name=get_entry(card["model"]).paper_name, card=card,
                     card_sha256=file_sha256(Path(model_dir) / CARD))


def eval_model_from_factory(spec: str | Callable[[], nn.Module], key: str | None = None) -> EvalModel:
    """``package.module:function`` or ``path/to/file.py:function`` (importable from the current directory), or a
    callable -> the model that ``function()`` returns, named ``key`` (default: the function's name)."""
    fn, label = resolve_factory(spec)
    model = build(fn, label)
    key = key or label
    return EvalModel(key=key, model=model.eval(), name="custom", paper_name=key,
                     card={"factory": spec if isinstance(spec, str) else label})


def eval_model_from_file(path: Path | str, factory: str | Callable[[], nn.Module] | None = None,
                         key: str | None = None) -> EvalModel:
    """A TorchScript file, a ``torch.export`` program, or a state dict built by ``factory``, named ``key`` (default:
    the file's name without its suffix)."""
    model, info = load_model_file(path, factory)
    info["file_sha256"] = file_sha256(Path(path))
    key = key or Path(path).stem
    return EvalModel(key=key, model=model, name="custom", paper_name=key, card=info)


def eval_models(paths: Sequence[Path | str] = (), factories: Sequence[str] = (), names: Sequence[str] = (),
                device: DeviceLike = None) -> list[EvalModel]:
    """The models a command names: model directories and model files (``paths``), and ``factories``. A factory
    gives the architecture of the state-dict files among ``paths`` (one for all of them, or one each, in order);
    without state-dict files each factory is a model of its own. ``names`` label the models in that order."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise ValueError(f"{p}: no such model directory or model file")
    states = [p for p in paths if p.is_file() and file_format(p) == "state dict"]
    if states and len(factories) not in (1, len(states)):
        raise ValueError(f"{len(states)} state-dict file(s) and {len(factories)} --model-factory: give one factory "
                         "for all of them or one each, in the same order")
    arch = dict(zip(states, factories if len(factories) == len(states) else list(factories) * len(states)))
    models = [eval_model_from_dir(p, device=device) if p.is_dir() else eval_model_from_file(p, arch.get(p))
              for p in paths]
    if not states:
        models += [eval_model_from_factory(f) for f in factories]
    if names:
        if len(names) != len(models):
            raise ValueError(f"{len(names)} --name for {len(models)} models: give one name per model, in the order "
                             "they are given (directories and files, then factories)")
        for m, label in zip(models, names):
            m.key = m.paper_name = label
    return models


def unique_keys(models: list[EvalModel]) -> list[EvalModel]:
    seen: dict[str, int] = {}
    for m in models:
        if m.key in seen:
            seen[m.key] += 1
            m.key = f"{m.key}-{seen[m.key]}"
        else:
            seen[m.key] = 0
    return models
