"""What the CLI's ``evaluate`` and ``reproduce`` do: load data and models, run, report."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .. import data as data_mod
from ..core.device import DeviceLike, resolve_device
from ..models.registry import get_entry, list_models
from ..progress import log
from .runner import evaluate_models
from .spec import RunSpec


@dataclass(frozen=True)
class Preset:
    models: tuple[str, ...]
    suite: str
    n: int
    batch_size: int = 100


PRESETS: dict[str, Preset] = {
    # The README's main job: minutes on two CPU cores, training included.
    "quick": Preset(("cnn", "bicnn", "dim", "bidim"), "quick", 200),
    # Every model of Tables 1 and 2 that the registry has, with the paper's 42 attacks.
    "paper": Preset(("cnn", "bicnn", "madry", "biabs", "abs", "bidim", "dim", "single_im", "im", "dn_single_im"),
                    "paper", 200),
    # Table 1's models under the paper's protocol and the adaptive attacks side by side (issue 5).
    "adaptive": Preset(("cnn", "bicnn", "madry", "biabs", "abs", "bidim", "dim"), "paper+adaptive", 200),
}


def run_evaluation(spec: RunSpec) -> Path | None:
    """Evaluate the spec's model directories and factories on the first ``n`` test images of its dataset
    (a built-in name or a folder of IDX files) at the dataset's thresholds, the spec's ``thresholds``
    (``{"L2": 2.0}``) overriding them; returns the report folder (None without report)."""
    from ..api import eval_model_from_dir, eval_model_from_factory, unique_keys
    spec.attacks()  # fail on a bad suite name before loading anything
    if not spec.model_dirs and not spec.factories:
        raise ValueError("nothing to evaluate: give model directories and/or --model-factory")
    dev = resolve_device(spec.device)
    models = unique_keys([eval_model_from_dir(d, device=dev) for d in spec.model_dirs] +
                         [eval_model_from_factory(f) for f in spec.factories])
    data_spec = data_mod.get_spec(spec.dataset or "mnist")
    threat = data_spec.threat_model().with_overrides(spec.thresholds)
    x, y = data_mod.load_split(data_spec, "test", spec.data_dir, limit=spec.n)
    if len(y) < spec.n:
        raise ValueError(f"--n {spec.n}: the {data_spec.name} test set has only {len(y)} images")
    evaluate_models(models, x, y, replace(spec, dataset=data_spec.name, device=dev), threat=threat,
                    num_classes=data_spec.num_classes)
    if not spec.report:
        return None
    from ..report import build_report
    return build_report(spec.run_dir)


def ensure_model(name: str, models_dir: Path, data_dir: Path | None, device: DeviceLike = None,
                 dataset: str = "mnist") -> Path:
    """The model directory for ``name``, trained (or derived) on ``dataset`` with defaults if missing."""
    from ..checkpoint import read_card
    from ..train import train
    target = models_dir / name
    if (target / "card.json").is_file():
        have, want = read_card(target).get("dataset", "mnist"), data_mod.get_spec(dataset).name
        if have != want:
            raise ValueError(f"{target}: holds {name!r} trained on {have}, not {want}; use another --models-dir")
        return target
    base = get_entry(name).weights_from
    if base:
        src = ensure_model(base, models_dir, data_dir, device, dataset)
        log(f"deriving {name} from {src}")
        train(name, target, from_dir=src, data_dir=data_dir, device=device, dataset=dataset)
    else:
        log(f"training {name} (defaults, {dataset}) -> {target}")
        train(name, target, data_dir=data_dir, device=device, dataset=dataset)
    return target


def base_models(names: list[str], models_dir: Path) -> list[str]:
    """The models that ``names`` need trained from scratch (not derived) and ``models_dir`` lacks."""
    need: list[str] = []
    for name in names:
        while get_entry(name).weights_from:
            name = get_entry(name).weights_from
        if not (models_dir / name / "card.json").is_file() and name not in need:
            need.append(name)
    return need


def reproduce(preset: str, run: Path, models_dir: Path, data_dir: Path | None = None,
              device: DeviceLike = None, dataset: str = "mnist", executor: str = "serial",
              ray_address: str | None = None, gpu_share: float = 1.0) -> Path:
    """Train what the preset needs and is missing (as parallel Ray tasks with ``executor="ray"``), evaluate,
    report."""
    try:
        p = PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}") from None
    missing = [m for m in p.models if m not in list_models()]
    if missing:
        log(f"preset {preset}: models not available in this version, skipped: {missing}")
    dev = resolve_device(device)
    data_mod.fetch(dataset, data_dir)
    spec = RunSpec(run_dir=Path(run), suite=p.suite, n=p.n, batch_size=p.batch_size, data_dir=data_dir,
                   device=dev, dataset=dataset, executor=executor, ray_address=ray_address, gpu_share=gpu_share)
    wanted = [m for m in p.models if m not in missing]
    if executor == "ray":
        from .executors.ray_executor import train_on_ray
        train_on_ray(base_models(wanted, Path(models_dir)), Path(models_dir), spec)
    dirs = [ensure_model(m, Path(models_dir), data_dir, dev, dataset) for m in wanted]
    out = run_evaluation(replace(spec, model_dirs=tuple(dirs)))
    from ..report.figures import figure3
    dim_dir = Path(models_dir) / "dim"
    if (dim_dir / "card.json").is_file() and out is not None:
        figure3(dim_dir, out / "figure3_tsne.png", data_dir=data_dir, device=dev)
    assert out is not None
    return out
