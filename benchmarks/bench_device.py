"""What ``dim`` does on the device it is given: training, inference, AutoAttack, the main job.

    python benchmarks/bench_device.py --device cuda            # on a GPU machine
    python benchmarks/bench_device.py --device cpu --aa-n 100  # the same script on a CPU

Steps (each timed on the device; results are written after every step, so a run
cut short still leaves what it measured):

1. ``dim train dim`` with the default recipe on the full training set: wall time
   and clean accuracy on the full test set.
2. DIM's inference, an attack's gradient step and a training step at batch 256 and
   8192, each against the device's own rate on a plain matmul of the same arithmetic
   (``bench_throughput.py``; float32, TF32 off: the precision the evaluation runs in).
3. AutoAttack (the reference ``standard`` version) at L-inf 0.3 and L2 1.5 on the
   first ``--aa-n`` test images of ``dim``, through the evaluation runner
   (verification and store included); seconds and robust accuracy.
4. ``dim reproduce --preset quick`` end to end in fresh folders (trains DIM and the
   CNN, attacks the four models on 200 images, writes the report).
5. ``bpda-autoattack``: the same AutoAttack on ``bidim`` through the straight-through
   gradient of its binarizations (the ``bpda-autoattack`` suite).

Writes ``results/device_<label>.json`` (label: ``--label``, else the device type).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from bench_throughput import passes
from common import RESULTS, write_result

import dim
from dim import data
from dim.core.device import device_info, resolve_device


def step_train(dev: torch.device, work: Path, data_dir: Path | None, epochs: int | None) -> dict[str, Any]:
    from dim.train import train
    t0 = time.perf_counter()
    card = train("dim", work / "models" / "dim", data_dir=data_dir, device=dev, show=False, epochs=epochs)
    wall = time.perf_counter() - t0
    return {"wall_seconds": round(wall, 2), "train_seconds": card["train_seconds"],
            "clean_accuracy": card["clean_accuracy"], "test_samples": card["test_samples"],
            "denoiser_final_mse": card.get("denoiser_final_mse"), "im_final_loss": card.get("im_final_loss")}


def step_inference(dev: torch.device, work: Path) -> dict[str, Any]:
    """Inference, an attack's gradient step and a training step of DIM against the device's matmul rate."""
    model = dim.load_model(work / "models" / "dim", device=dev)
    out: dict[str, Any] = {"tf32": torch.backends.cuda.matmul.allow_tf32}
    for batch in (256, 8192):
        out[f"batch_{batch}"] = passes(model, batch, dev)
    return out


def step_autoattack(dev: torch.device, work: Path, data_dir: Path | None, n: int, model: str) -> dict[str, Any]:
    """AutoAttack at both thresholds through the runner: ``dim`` as it is, ``bidim`` through BPDA."""
    from dim.api import eval_model_from_dir
    from dim.attacks.suites import get_suite
    from dim.evaluation import metrics
    from dim.evaluation.runner import evaluate_models
    from dim.store import Store
    from dim.train import train
    if model == "bidim" and not (work / "models" / "bidim" / "card.json").is_file():
        train("bidim", work / "models" / "bidim", from_dir=work / "models" / "dim", data_dir=data_dir, device=dev)
    suite = (get_suite("bpda-autoattack") if model == "bidim" else
             tuple(s for s in get_suite("adaptive") if s.name.endswith(" AutoAttack")))
    x, y = data.load_split("mnist", "test", data_dir, limit=n)
    run = work / "runs" / f"aa-{model}"
    m = eval_model_from_dir(work / "models" / model, device=dev)
    t0 = time.perf_counter()
    evaluate_models([m], x, y, suite=suite, run_dir=run, batch_size=n, seed=0, show=False, checks=False, device=dev)
    wall = time.perf_counter() - t0
    store = Store.of_run(run)
    try:
        (result,) = metrics.compute(store)
        seconds = store.attack_seconds()
    finally:
        store.close()
    return {"n": n, "model": model, "wall_seconds": round(wall, 2), "clean_accuracy": result.clean_accuracy,
            "attacks": {a.attack: {"accuracy": a.accuracy, "seconds": round(seconds[(model, a.attack)], 2),
                                   "complete": a.complete} for a in result.attacks.values()}}


def step_quick(dev: torch.device, work: Path, data_dir: Path | None) -> dict[str, Any]:
    from dim.evaluation import metrics
    from dim.pipeline import reproduce
    from dim.store import Store
    run, models = work / "quick" / "run", work / "quick" / "models"
    t0 = time.perf_counter()
    reproduce("quick", run, models, data_dir, device=dev)
    wall = time.perf_counter() - t0
    store = Store.of_run(run)
    try:
        results = metrics.compute(store)
    finally:
        store.close()
    return {"wall_seconds": round(wall, 2),
            "models": {r.model: {"clean_accuracy": r.clean_accuracy, "minimal_accuracy": r.minimal_accuracy,
                                 "per_norm": {k.value: v.accuracy for k, v in r.norms.items()}} for r in results}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: $DIM_DEVICE, else auto)")
    ap.add_argument("--label", default=None, help="results/device_<label>.json (default: the device type)")
    ap.add_argument("--aa-n", type=int, default=1000, help="test images for the AutoAttack step")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--steps", default="train,inference,autoattack,quick,bpda-autoattack",
                    help="comma-separated subset, in this order")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--epochs", type=int, default=None, help="DIM's epochs (default: the recipe's; for smoke runs)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS, help="where device_<label>.json goes")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    data.fetch("mnist", args.data_dir)
    work = args.work or Path(tempfile.mkdtemp(prefix="dim-bench-device-"))
    label = args.label or dev.type
    payload: dict[str, Any] = {"device": device_info(dev), "argv": sys.argv[1:], "steps": {}}
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "train": lambda: step_train(dev, work, args.data_dir, args.epochs),
        "inference": lambda: step_inference(dev, work),
        "autoattack": lambda: step_autoattack(dev, work, args.data_dir, args.aa_n, "dim"),
        "bpda-autoattack": lambda: step_autoattack(dev, work, args.data_dir, args.aa_n, "bidim"),
        "quick": lambda: step_quick(dev, work, args.data_dir),
    }
    for name in args.steps.split(","):
        t0 = time.perf_counter()
        try:
            payload["steps"][name] = steps[name]()
        except Exception as exc:  # a failed step is recorded, and the next one still runs
            payload["steps"][name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        payload["steps"][name]["step_seconds"] = round(time.perf_counter() - t0, 2)
        print(f"== {name}: {json.dumps(payload['steps'][name])[:2000]}", flush=True)
        write_result(f"device_{label}", payload, args.out_dir, echo=False)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v for k, v in payload.items() if k != "packages"}, indent=1, sort_keys=True)[:8000])
    print(f"wrote {args.out_dir / f'device_{label}.json'}")


if __name__ == "__main__":
    main()
