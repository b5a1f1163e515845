"""One trained variant of multi-norm adversarial training, measured: its recipe, training time, clean accuracy on
the full test set, and the ``quick`` suite on the first N test images (union accuracy included).

    python benchmarks/bench_multinorm.py models/dim_at --label dim_at --run runs/mn-dim_at
    python benchmarks/bench_multinorm.py models/dim_at models/bidim_at --label dim_at --run runs/mn-dim_at
    python benchmarks/bench_multinorm.py --factory benchmarks/inference_variants.py:denoise_twice --name dn2 \
        --label dn2 --run runs/mn-dn2

A model made by a factory (a variant of trained weights that changes only how they run) has no card: its clean
accuracy on the full test set is measured here, and the file records the factory in place of a recipe.

The models are evaluated with ``dim evaluate DIR... --suite SUITE --n N --run RUN`` (resumable: rerun to
continue). Writes ``results/multinorm_<label>.json`` and copies the run's ``report.md`` and cards to
``results/multinorm_<label>_report/``, negative results included: every variant tried keeps its file.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from common import RESULTS, write_result

from dim.data import load_split
from dim.models.files import resolve_factory
from dim.train.loop import accuracy


def _block(b: dict | None) -> dict | None:
    return None if not b else {"accuracy": b.get("accuracy"), "interval_95": b.get("interval_95")}


def _summary(run_card: dict) -> dict:
    """The figures of a model's card in the run: every norm's worst case, the union, the paper's protocol."""
    full = run_card["incl_adaptive"]
    return {
        "clean_accuracy": run_card["clean_accuracy"],
        "per_norm_incl_adaptive": {n: _block(v) for n, v in full["per_norm"].items()},
        "union_incl_adaptive": _block(full.get("union")),
        "minimal_accuracy_incl_adaptive": full.get("minimal_accuracy"),
        "per_norm_paper_protocol": {n: _block(v) for n, v in run_card["paper_protocol"]["per_norm"].items()},
        "warnings": {k: c.get("value") for k, c in run_card.get("checks", {}).items() if c.get("status") == "warn"},
    }


def _factory_entry(spec: str, run_card_path: Path, target: Path) -> dict:
    shutil.copy(run_card_path, target / "cards" / run_card_path.name)
    fn, _ = resolve_factory(spec)
    x, y = (torch.from_numpy(a) for a in load_split("mnist", "test"))
    return {"factory": spec, "clean_accuracy_full_test_set": accuracy(fn(), x, y), "test_samples": len(y),
            **_summary(json.loads(run_card_path.read_text()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dirs", type=Path, nargs="*")
    ap.add_argument("--factory", help="a model factory (package.module:function or path/to/file.py:function) "
                                      "evaluated instead of model directories")
    ap.add_argument("--name", help="the factory's model in the run and its cards (default: its function's name)")
    ap.add_argument("--label", required=True, help="the variant's name in the result file")
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--split", default="test", help="the images' split: test, or train (the gap between the two "
                                                    "is how far the robustness generalizes)")
    ap.add_argument("--reuse", type=Path, action="append", default=[],
                    help="an earlier run whose identical finished shards are copied, not recomputed (repeatable)")
    ap.add_argument("--note", default=None, help="what else ran on the machine meanwhile (recorded as given)")
    args = ap.parse_args()
    if bool(args.model_dirs) == bool(args.factory):
        ap.error("give model directories or --factory, not both and not neither")
    name = args.name or (args.factory or "").rpartition(":")[2]
    models_args = (["--model-factory", args.factory, "--name", name] if args.factory
                   else list(map(str, args.model_dirs)))
    cmd = [sys.executable, "-m", "dim", "evaluate", *models_args, "--suite", args.suite,
           "--n", str(args.n), "--split", args.split, "--run", str(args.run), *(a for r in args.reuse for a in ("--reuse", str(r)))]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    report = args.run / "report"
    target = RESULTS / f"multinorm_{args.label}_report"
    shutil.rmtree(target, ignore_errors=True)
    (target / "cards").mkdir(parents=True)
    shutil.copy(report / "report.md", target / "report.md")
    models = {name: _factory_entry(args.factory, report / "cards" / f"{name}.json", target)} if args.factory else {}
    for d in args.model_dirs:
        card = json.loads((d / "card.json").read_text())
        run_card_path = report / "cards" / f"{card['model']}.json"
        shutil.copy(run_card_path, target / "cards" / run_card_path.name)
        models[card["model"]] = {
            "dir": str(d), "train_config": card["config"]["train"], "weights_from": card.get("weights_from"),
            **({"members": card["members"]} if "members" in card else {}),   # an ensemble (dim ensemble)
            "train_seconds": card["train_seconds"], "device": card.get("device", {}).get("device"),
            "clean_accuracy_full_test_set": card["clean_accuracy"], "test_samples": card["test_samples"],
            **_summary(json.loads(run_card_path.read_text())),
        }
    write_result(f"multinorm_{args.label}", {"label": args.label, "suite": args.suite, "n": args.n, "split": args.split,
                                             "command": " ".join(cmd[1:]), "note": args.note, "models": models})


if __name__ == "__main__":
    main()
