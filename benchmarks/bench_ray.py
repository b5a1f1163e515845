"""The Ray executor against serial: speedup on this machine's cores and per-unit overhead.

    python benchmarks/bench_ray.py MODELS_DIR        # MODELS_DIR holds cnn/ and dim/ (dim train ...)

1. Speedup: the ``quick`` suite (sanity checks included) on ``dim`` and ``cnn`` with the first ``--n``
   test images, from an empty run directory each time: ``serial`` on one torch thread against ``ray``
   with one single-threaded worker per core (a local cluster started by the run, its start-up
   included). The two runs' stored rows are compared.
2. Overhead: one unit (``--unit-n`` images of the paper suite's Linf PGD on ``dim``) executed in
   this process on one thread, and the same unit as a Ray task on a one-CPU local cluster (the
   worker has already loaded the model, as it has for every unit but its first); medians of
   ``--repeats`` alternating runs. Overhead = (Ray - in-process) / in-process.

Writes ``results/ray_executor.json``. Run it on a quiet machine: the ratio is only
meaningful when nothing else competes for the cores.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import write_result

from dim import data
from dim.api import eval_model_from_dir
from dim.attacks.suites import get_suite
from dim.evaluation.execute import execute
from dim.core.norms import ThreatModel
from dim.evaluation.runner import evaluate_models
from dim.evaluation.units import AttackUnit, attack_runner, shard_seed
from dim.core.verify import predict_numpy
from dim.store import Store


def _rows(run: Path) -> list[tuple]:
    store = Store.of_run(run, read_only=True)
    try:
        return sorted((r.model, r.attack, r.sample, r.distance, r.pred) for r in store.results())
    finally:
        store.close()


def speedup(models_dir: Path, n: int) -> dict:
    x, y = data.load_split("mnist", "test", limit=n)
    out: dict = {"suite": "quick", "models": ["dim", "cnn"], "n": n, "cores": os.cpu_count()}
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for executor in ("serial", "ray"):
            models = [eval_model_from_dir(models_dir / name, device="cpu") for name in ("dim", "cnn")]
            run = Path(tmp) / executor
            t0 = time.perf_counter()
            evaluate_models(models, x, y, suite="quick", run_dir=run, seed=0, show=False, executor=executor,
                            device="cpu")
            out[f"{executor}_seconds"] = round(time.perf_counter() - t0, 1)
            runs[executor] = _rows(run)
            print(executor, out[f"{executor}_seconds"], "s", flush=True)
        out["speedup"] = round(out["serial_seconds"] / out["ray_seconds"], 2)
        out["identical_rows"] = runs["serial"] == runs["ray"]
        out["rows"] = len(runs["serial"])
    return out


def overhead(models_dir: Path, n: int, repeats: int) -> dict:
    import ray
    from dim.evaluation.executors.ray_executor import ModelPayload, run_unit
    m = eval_model_from_dir(models_dir / "dim", device="cpu")
    x, y = data.load_split("mnist", "test", limit=n)
    spec = next(s for s in get_suite("paper") if s.name == "Linf PGD")
    unit = AttackUnit("dim", spec.bind(ThreatModel.for_shape(x.shape[1:])), attack_runner(spec), 0, np.arange(n), x, y,
                      predict_numpy(m.model, x), shard_seed(0, "dim", spec.name, 0))
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        ref = ray.put(ModelPayload.of(m))
        task = ray.remote(run_unit).options(num_cpus=1)
        ray.get(task.remote(unit, ref, "cpu"))                      # the worker loads the model once
        local, remote = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a = execute(unit, m.model, "cpu")
            local.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = ray.get(task.remote(unit, ref, "cpu"))
            remote.append(time.perf_counter() - t0)
            assert np.array_equal(a.distance, b.distance) and np.array_equal(a.pred, b.pred)
    finally:
        ray.shutdown()
    med_l, med_r = statistics.median(local), statistics.median(remote)
    return {"unit": f"dim / Linf PGD (paper suite) / {n} images", "repeats": repeats,
            "in_process_seconds": [round(t, 3) for t in local], "ray_seconds": [round(t, 3) for t in remote],
            "median_in_process_seconds": round(med_l, 3), "median_ray_seconds": round(med_r, 3),
            "overhead": round((med_r - med_l) / med_l, 4), "identical_results": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models_dir", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--unit-n", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-speedup", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)          # serial on one thread; each Ray worker runs one thread too
    result = {"overhead": overhead(args.models_dir, args.unit_n, args.repeats)}
    print(result, flush=True)
    if not args.skip_speedup:
        result["speedup"] = speedup(args.models_dir, args.n)
    write_result("ray_executor", {**result, "targets": {"speedup_min": 1.7, "overhead_max": 0.05}})


if __name__ == "__main__":
    main()
