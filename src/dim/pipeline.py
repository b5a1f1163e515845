"""The application: what the CLI's ``evaluate`` and ``reproduce`` do (load data and models, train what is missing,
locally or as Ray tasks, run, report). The one module that imports train, evaluation and report together."""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from . import data as data_mod
from .api import eval_models, unique_keys
from .checkpoint import read_card
from .core.device import DeviceLike, resolve_device
from .evaluation.executors import ray_executor
from .evaluation.runner import evaluate_models
from .evaluation.spec import RunSpec
from .models.registry import get_entry, list_models, resolve_config, shape_config
from .progress import log
from .report import build_report
from .report.figures import figure3
from .report.pool import pool_runs
from .train import train
from .train.loop import RECIPES


@dataclass(frozen=True)
class Preset:
    """A published result set: which models (trained with their recipe's defaults, seed 0), which suite, on how
    many of the first test images. ``inference`` gives models evaluated in another inference setting of the
    same weights (ABS's fast setting), derived into a directory of their own. ``recipes`` pins training
    settings of models trained from scratch where the committed cards were trained before a default changed
    (keyed by the model trained, so a derived model such as ``bidim`` follows its base); such a model is
    trained into a directory of its own, ``dim-lr0.003``, and keeps its name in the results. ``settings`` pins
    model config settings the same way (what ``dim train --model-set`` sets). With ``starts``, ``n`` images from
    each start are evaluated, each range a run of its own (``RUN/images-<start>``, what ``dim evaluate --start``
    makes: a range run alone, on another machine, joins the others), and each model's cards are pooled into
    ``RUN/pooled/<model>.json`` (:mod:`dim.report.pool`)."""
    models: tuple[str, ...]
    suite: str
    n: int
    batch_size: int = 100
    inference: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    starts: tuple[int, ...] = (0,)
    description: str = ""

    def runs(self, run: Path) -> list[Path]:
        """The run directory of each image range: ``run`` itself for one range from image 0."""
        if self.starts == (0,):
            return [Path(run)]
        return [Path(run) / f"images-{s}" for s in self.starts]


TABLE2_SUITE = "paper+adaptive:L2 AutoAttack,Linf AutoAttack,L2 Score-MT,Linf Score-MT"
_FULL = "paper+adaptive+bpda-autoattack"
_ABS_FAST = {"n_random": 1000, "n_steps": 10}
_LR_BEFORE = {"lr": 3e-3}   # the score recipe's learning rate before it became 2e-3 (docs/notes.md)

PRESETS: dict[str, Preset] = {
    "quick": Preset(("cnn", "bicnn", "dim", "bidim"), "quick", 200,
                    description="the main job: minutes on two CPU cores, training included"),
    "paper": Preset(("cnn", "bicnn", "madry", "biabs", "abs", "bidim", "dim", "single_im", "im", "dn_single_im"),
                    "paper", 200, description="every model of Tables 1 and 2 with the paper's 42 attacks"),
    "adaptive": Preset(("cnn", "bicnn", "madry", "biabs", "abs", "bidim", "dim"), "paper+adaptive", 200,
                       description="Table 1's models, the paper's and the adaptive attacks"),
    "table1": Preset(("cnn", "bicnn", "madry", "bidim", "dim"), _FULL, 200, recipes={"dim": _LR_BEFORE},
                     description="results/{cnn,bicnn,madry,bidim,dim}.json: every attack, 200 images"),
    "table2": Preset(("single_im", "im", "dn_single_im"), TABLE2_SUITE, 200,
                     recipes={m: _LR_BEFORE for m in ("single_im", "im", "dn_single_im")},
                     description="results/{im,single_im,dn_single_im}.json: the paper's attacks plus AutoAttack "
                                 "and Score-MT at L2 and L-inf"),
    "paper-objective": Preset(("dim_paper", "bidim_paper"), _FULL, 200,
                              description="results/{dim_paper,bidim_paper}.json: DIM trained with eq. 2 alone"),
    "abs": Preset(("abs", "biabs"), "paper+adaptive", 50, batch_size=25,
                  inference={"abs": _ABS_FAST, "biabs": _ABS_FAST},
                  description="results/{abs,biabs}.json: the paper's and the adaptive attacks on 50 images, "
                              "ABS's fast inference"),
    "multinorm": Preset(("msd_cnn", "dim_at", "bidim_at"), _FULL + "+knapsack-flips", 200,
                        description="the models trained for every norm at once, every attack, 200 images"),
    "multinorm-binarized": Preset(("bidim_at_bin",), _FULL + "+knapsack-flips", 200,
                                  recipes={"bidim_at_bin": {"flips": True, "clean_weight": 2.0}},
                                  description="results/bidim_at_bin.json: biDIM trained through its binarization "
                                              "against knapsack flips (clean loss weighted 2.0), every "
                                              "attack, 200 images"),
    "multinorm-ramp": Preset(("bidim_at_ramp",), _FULL + "+knapsack-flips+ramp-autoattack+ramp-flips", 200,
                             recipes={"bidim_at_ramp": {"clean_weight": 1.0}},
                             description="results/bidim_at_ramp.json: biDIM on a ramp, trained against flips "
                                         "(clean loss weighted 1.0), every attack, those for ramps included, "
                                         "200 images"),
    "every-norm": Preset(("bidim_at_ramp",), _FULL + "+knapsack-flips+sparse-rs-10k+ramp-autoattack+ramp-flips"
                                                     "+knapsack-flips-mt", 200, starts=(0, 200, 400, 600, 800),
                         recipes={"bidim_at_ramp": {"clean_weight": 1.0}},
                         settings={"bidim_at_ramp": {"denoiser_binarize_width": 0.8}},
                         description="the number the README quotes: biDIM on a ramp with its denoiser's output on "
                                     "a ramp twice as wide (weights/bidim_at_ramp_dnramp_w08), every attack, the "
                                     "first 1,000 test images in five ranges, pooled"),
}
# ``all``: every preset behind a committed card, each in its own run below RUN
ALL = ("table1", "table2", "paper-objective", "abs", "multinorm", "multinorm-binarized", "multinorm-ramp",
       "every-norm")


def run_evaluation(spec: RunSpec) -> Path | None:
    """Evaluate the spec's model directories and factories on the first ``n`` test images of its dataset (or the
    images its ``start``, ``subset_seed`` and ``split`` choose)
    (a built-in name or a folder of IDX files) at the dataset's thresholds, the spec's ``thresholds``
    (``{"L2": 2.0}``) overriding them; returns the report folder (None without report)."""
    spec.attacks()  # fail on a bad suite name before loading anything
    if not spec.model_dirs and not spec.factories:
        raise ValueError("nothing to evaluate: give model directories or files, and/or --model-factory")
    dev = resolve_device(spec.device)
    models = unique_keys(eval_models(spec.model_dirs, spec.factories, spec.names, device=dev))
    data_spec = data_mod.get_spec(spec.dataset or "mnist")
    threat = data_spec.threat_model().with_overrides(spec.thresholds)
    if spec.image_selection() is None:
        x, y = data_mod.load_split(data_spec, "test", spec.data_dir, limit=spec.n)
        if len(y) < spec.n:
            raise ValueError(f"--n {spec.n}: the {data_spec.name} test set has only {len(y)} images")
    else:
        x, y = data_mod.load_split(data_spec, spec.split, spec.data_dir)
        idx = spec.image_indices(len(y))
        x, y = x[idx], y[idx]
    evaluate_models(models, x, y, replace(spec, dataset=data_spec.name, device=dev), threat=threat,
                    num_classes=data_spec.num_classes)
    if not spec.report:
        return None
    return build_report(spec.run_dir)


def inference_dir(name: str, overrides: Mapping[str, Any]) -> str:
    """The directory name of ``name`` in an inference setting: ``abs-n_random1000-n_steps10``."""
    return "-".join([name] + [f"{k}{v}" for k, v in sorted(overrides.items())])


def base_of(name: str) -> str:
    """The model trained from scratch whose weights ``name`` uses (``dim`` for ``bidim``; itself if trained)."""
    while get_entry(name).weights_from:
        name = get_entry(name).weights_from
    return name


def model_dir_name(name: str, recipes: Mapping[str, Mapping[str, Any]] | None = None,
                   settings: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The directory of ``name`` under a models folder: its name, suffixed by its base model's pinned recipe
    and model settings (``bidim-lr0.003``) when ``recipes`` or ``settings`` pin any."""
    base = base_of(name)
    return inference_dir(name, {**(recipes or {}).get(base, {}), **(settings or {}).get(base, {})})


def _json(value: Any) -> Any:
    """``value`` as a card stores it (tuples become lists)."""
    return json.loads(json.dumps(value))


def model_config_diff(name: str, card: Mapping[str, Any], dataset: str,
                      settings: Mapping[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
    """The model config keys where a trained card differs from ``name``'s defaults for ``dataset`` with
    ``settings`` applied: ``{key: (has, wants)}``. A key the card does not record (added to the config later)
    counts as its default."""
    spec = data_mod.get_spec(dataset)
    want = _json(dataclasses.asdict(resolve_config(name, {**shape_config(name, spec.input_shape, spec.num_classes),
                                                          **(settings or {})})))
    have = {**_json(dataclasses.asdict(resolve_config(name, {}))), **(card.get("config", {}).get("model") or {})}
    return {k: (have.get(k), want.get(k)) for k in sorted(set(want) | set(have)) if have.get(k) != want.get(k)}


def _check_trained(target: Path, name: str, dataset: str, recipe: Mapping[str, Any],
                   settings: Mapping[str, Any] | None = None) -> None:
    """Refuse a model directory that holds ``name`` trained on another dataset, or (for a model trained from
    scratch) with another training config than its recipe's defaults with ``recipe`` applied, or another model
    config than its defaults with ``settings`` applied: a preset must evaluate what its cards say was trained. A
    setting the card does not record (added later) counts as its default."""
    card = read_card(target)
    have_data, want_data = card.get("dataset", "mnist"), data_mod.get_spec(dataset).name
    if have_data != want_data:
        raise ValueError(f"{target}: holds {name!r} trained on {have_data}, not {want_data}; use another "
                         "--models-dir")
    entry = get_entry(name)
    if entry.weights_from:
        return
    want = RECIPES[entry.recipe].recorded(recipe)
    have = card.get("config", {}).get("train")
    if have is not None:
        # a setting added after the card was written took its default, which keeps the earlier behaviour
        have = {**RECIPES[entry.recipe].recorded(), **have}
    if have is not None and have != want:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        shown = ", ".join(f"{k}: has {have.get(k)!r}, wants {want.get(k)!r}" for k in diff)
        raise ValueError(f"{target}: holds {name!r} trained with another recipe ({shown}); remove it to retrain "
                         f"or use another --models-dir")
    if "model" in card.get("config", {}):
        model_diff = model_config_diff(name, card, dataset, settings)
        if model_diff:
            shown = ", ".join(f"{k}: has {h!r}, wants {w!r}" for k, (h, w) in model_diff.items())
            raise ValueError(f"{target}: holds {name!r} with another model config ({shown}); remove it to retrain "
                             f"or use another --models-dir")


def ensure_model(name: str, models_dir: Path, data_dir: Path | None, device: DeviceLike = None,
                 dataset: str = "mnist", overrides: Mapping[str, Any] | None = None,
                 recipes: Mapping[str, Mapping[str, Any]] | None = None,
                 settings: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """The model directory for ``name``, trained (or derived) on ``dataset`` if missing, with its recipe's
    defaults and the settings ``recipes`` (training) and ``settings`` (model config) pin for its base model; with
    ``overrides``, the same weights in that inference setting, in a directory of its own."""
    recipes, settings = recipes or {}, settings or {}
    if overrides:
        target = models_dir / inference_dir(model_dir_name(name, recipes, settings), overrides)
        if not (target / "card.json").is_file():
            src = ensure_model(get_entry(name).weights_from or name, models_dir, data_dir, device, dataset,
                               recipes=recipes, settings=settings)
            log(f"deriving {name} with {dict(overrides)} from {src}")
            train(name, target, from_dir=src, model_overrides=dict(overrides), data_dir=data_dir, device=device,
                  dataset=dataset)
        return target
    target = models_dir / model_dir_name(name, recipes, settings)
    base = get_entry(name).weights_from
    if (target / "card.json").is_file():
        _check_trained(target, name, dataset, recipes.get(name, {}), settings.get(name, {}))
        return target
    if base:
        src = ensure_model(base, models_dir, data_dir, device, dataset, recipes=recipes, settings=settings)
        log(f"deriving {name} from {src}")
        train(name, target, from_dir=src, data_dir=data_dir, device=device, dataset=dataset)
    else:
        pinned, model_set = dict(recipes.get(name, {})), dict(settings.get(name, {}))
        shown = "".join(f", {k}={v}" for k, v in {**pinned, **model_set}.items())
        log(f"training {name} ({dataset}, recipe defaults{shown}) -> {target}")
        train(name, target, data_dir=data_dir, device=device, dataset=dataset, train_overrides=pinned or None,
              model_overrides=model_set or None)
    return target


def base_models(names: list[str], models_dir: Path,
                recipes: Mapping[str, Mapping[str, Any]] | None = None,
                settings: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """The models that ``names`` need trained from scratch (not derived) and ``models_dir`` lacks."""
    need: list[str] = []
    for name in names:
        name = base_of(name)
        if not (models_dir / model_dir_name(name, recipes, settings) / "card.json").is_file() and name not in need:
            need.append(name)
    return need


def reproduce(preset: str, run: Path, models_dir: Path, data_dir: Path | None = None,
              device: DeviceLike = None, dataset: str = "mnist", executor: str = "serial",
              ray_address: str | None = None, gpu_share: float = 1.0) -> Path:
    """Train what the preset needs and is missing (as parallel Ray tasks with ``executor="ray"``), evaluate,
    report. ``all`` runs every preset of :data:`ALL`, each in ``run/<preset>``; returns the last report."""
    if preset == "all":
        out = None
        for name in ALL:
            log(f"preset {name} -> {Path(run) / name}")
            out = reproduce(name, Path(run) / name, models_dir, data_dir, device, dataset, executor, ray_address,
                            gpu_share)
        assert out is not None
        return out
    try:
        p = PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS) + ['all']}") from None
    missing = [m for m in p.models if m not in list_models()]
    if missing:
        log(f"preset {preset}: models not available in this version, skipped: {missing}")
    dev = resolve_device(device)
    data_mod.fetch(dataset, data_dir)
    spec = RunSpec(run_dir=Path(run), suite=p.suite, n=p.n, batch_size=p.batch_size, data_dir=data_dir,
                   device=dev, dataset=dataset, executor=executor, ray_address=ray_address, gpu_share=gpu_share)
    wanted = [m for m in p.models if m not in missing]
    for name in {base_of(m) for m in wanted}:   # refuse a wrong model before anything is trained
        target = Path(models_dir) / model_dir_name(name, p.recipes, p.settings)
        if (target / "card.json").is_file():
            _check_trained(target, name, dataset, p.recipes.get(name, {}), p.settings.get(name, {}))
    if executor == "ray":
        train_on_ray(base_models(wanted, Path(models_dir), p.recipes, p.settings), Path(models_dir), spec,
                     recipes=p.recipes, settings=p.settings)
    dirs = [ensure_model(m, Path(models_dir), data_dir, dev, dataset, p.inference.get(m), p.recipes, p.settings)
            for m in wanted]
    runs = p.runs(run)
    out = None
    for start, sub in zip(p.starts, runs):
        if len(runs) > 1:
            log(f"images {start}..{start + p.n - 1} -> {sub}")
        out = run_evaluation(replace(spec, run_dir=sub, start=start, model_dirs=tuple(dirs)))
    if len(runs) > 1:
        for path in pool_runs(runs, Path(run) / "pooled"):
            log(f"pooled: {path}")
    dim_dir = Path(models_dir) / model_dir_name("dim", p.recipes, p.settings)
    if (dim_dir / "card.json").is_file() and out is not None:
        figure3(dim_dir, out / "figure3_tsne.png", data_dir=data_dir, device=dev)
    assert out is not None
    return out


def train_task(name: str, dataset: str, data_dir: str | None, device: str, options: dict[str, Any]) -> dict[str, bytes]:
    """Train ``name`` (its recipe's defaults, ``options`` passed to :func:`dim.train.train`) on a worker; the
    model directory's files as bytes."""
    folder = Path(data_dir) if data_dir and Path(data_dir).is_dir() else None   # else the worker's own cache
    data_mod.fetch(dataset, folder)
    with tempfile.TemporaryDirectory(prefix="dim-train-") as tmp:
        out = Path(tmp) / name
        train(name, out, data_dir=folder, device=device, dataset=dataset, show=False, **options)
        return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def train_on_ray(names: Sequence[str], models_dir: Path, spec: Any,
                 recipes: Mapping[str, Mapping[str, Any]] | None = None,
                 settings: Mapping[str, Mapping[str, Any]] | None = None, **options: Any) -> None:
    """Train the models ``names`` in parallel as Ray tasks (one CPU each, ``gpu_share`` of a GPU on CUDA) and
    write each model directory under ``models_dir`` when its task returns (whole, or not at all).
    ``recipes`` and ``settings`` pin training and model settings per model (as :class:`Preset`); ``options``
    (``epochs``, ``limit``, ...) go to :func:`dim.train.train`."""
    if not names:
        return
    ray = ray_executor.import_ray()
    owns = ray_executor.connect(ray, spec.ray_address)
    gpu = torch.device(spec.device or "cpu").type == "cuda"
    task = ray_executor.remote_task(ray, train_task, gpu, spec.gpu_share)
    try:
        refs = {task.remote(n, spec.dataset or "mnist", str(spec.data_dir) if spec.data_dir else None,
                            "cuda" if gpu else "cpu",
                            {**options, "train_overrides": dict((recipes or {}).get(n, {})) or None,
                             "model_overrides": dict((settings or {}).get(n, {})) or None}): n
                for n in names}
        log(f"training {', '.join(names)} as {len(refs)} Ray tasks")
        while refs:
            (ref,), _ = ray.wait(list(refs), num_returns=1)
            name = refs.pop(ref)
            files = ray.get(ref)
            target = Path(models_dir) / model_dir_name(name, recipes, settings)
            tmp = Path(models_dir) / f".{target.name}.incoming"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for fname, data in files.items():
                (tmp / fname).write_bytes(data)
            if target.exists():        # a directory without card.json: a training that never finished
                shutil.rmtree(target)
            tmp.replace(target)
            log(f"trained {name} on Ray -> {target}")
    finally:
        if owns:
            ray.shutdown()
