"""What the CLI's ``evaluate`` and ``reproduce`` do: load data and models, run, report."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import data as data_mod
from ..core.device import DeviceLike, resolve_device
from ..models.registry import get_entry, list_models
from ..progress import log
from .runner import evaluate_models


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


def run_evaluation(model_dirs: list[Path], factories: list[str], *, suite: str, n: int, run: Path,
                   batch_size: int = 100, seed: int = 0, data_dir: Path | None = None, dataset: str = "mnist",
                   report: bool = True, checks: bool = True, only: list[str] | None = None,
                   reuse: list[Path] | None = None, device: DeviceLike = None,
                   thresholds: dict[str, float] | None = None) -> Path | None:
    """Evaluate model directories and factories on the first ``n`` test images of ``dataset``
    (a built-in name or a folder of IDX files) at the dataset's thresholds, ``thresholds``
    (``{"L2": 2.0}``) overriding them; returns the report folder (None without report)."""
    from ..api import eval_model_from_dir, eval_model_from_factory, unique_keys
    from ..attacks.suites import get_suite
    get_suite(suite)  # fail on a bad suite name before loading anything
    if not model_dirs and not factories:
        raise ValueError("nothing to evaluate: give model directories and/or --model-factory")
    dev = resolve_device(device)
    models = unique_keys([eval_model_from_dir(d, device=dev) for d in model_dirs] +
                         [eval_model_from_factory(f) for f in factories])
    spec = data_mod.get_spec(dataset)
    threat = spec.threat_model().with_overrides(thresholds or {})
    x, y = data_mod.load_split(spec, "test", data_dir, limit=n)
    if len(y) < n:
        raise ValueError(f"--n {n}: the {spec.name} test set has only {len(y)} images")
    evaluate_models(models, x, y, suite=suite, run_dir=run, batch_size=batch_size, seed=seed,
                    extra_config={"dataset": spec.name}, checks=checks, only=only, reuse=reuse or (), device=dev,
                    threat=threat, num_classes=spec.num_classes)
    if not report:
        return None
    from ..report import build_report
    return build_report(run)


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


def reproduce(preset: str, run: Path, models_dir: Path, data_dir: Path | None = None,
              device: DeviceLike = None, dataset: str = "mnist") -> Path:
    try:
        p = PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}") from None
    missing = [m for m in p.models if m not in list_models()]
    if missing:
        log(f"preset {preset}: models not available in this version, skipped: {missing}")
    dev = resolve_device(device)
    data_mod.fetch(dataset, data_dir)
    dirs = [ensure_model(m, Path(models_dir), data_dir, dev, dataset) for m in p.models if m not in missing]
    out = run_evaluation(dirs, [], suite=p.suite, n=p.n, run=run, batch_size=p.batch_size, data_dir=data_dir,
                         device=dev, dataset=dataset)
    from ..report.figures import figure3
    dim_dir = Path(models_dir) / "dim"
    if (dim_dir / "card.json").is_file() and out is not None:
        figure3(dim_dir, out / "figure3_tsne.png", data_dir=data_dir, device=dev)
    assert out is not None
    return out
