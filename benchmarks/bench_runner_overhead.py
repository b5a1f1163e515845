"""The evaluation runner's overhead over calling foolbox directly on the same attack and batch.

    python benchmarks/bench_runner_overhead.py models/bench/dim --n 100

Direct: ``DDNAttack()(fmodel, x, Misclassification(y), epsilons=None)`` on the
correctly classified samples. Runner: ``evaluate_models`` with a one-attack suite
(the same attack and seed) in a fresh run directory, in one shard: verification,
SQLite rows, the ``.npz`` of adversarials, progress bookkeeping included. Medians
of alternating repeats. Writes ``results/runner_overhead.json``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import write_result

import dim
from dim import data
from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.core.verify import predict_numpy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    import foolbox as fb
    model = dim.load_model(args.model_dir)
    x, y = data.load_split("mnist", "test", limit=args.n)
    ok = predict_numpy(model, x) == y
    x, y = x[ok], y[ok]
    spec = AttackSpec("L2 DDN", "DDNAttack", Norm.L2, {"steps": 100})
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))

    def direct() -> None:
        torch.manual_seed(0)
        fb.attacks.DDNAttack(steps=100)(fmodel, torch.from_numpy(x), fb.criteria.Misclassification(
            torch.from_numpy(y)), epsilons=None)

    def runner() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            evaluate_models([EvalModel("m", model)], x, y, suite=(spec,), run_dir=Path(tmp),
                            batch_size=len(y), show=False)

    t_direct, t_runner = [], []
    for _ in range(args.repeats):
        for fn, acc in ((direct, t_direct), (runner, t_runner)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    med_d, med_r = statistics.median(t_direct), statistics.median(t_runner)
    write_result("runner_overhead", {
        "model": model.card["model"], "attack": "DDNAttack(steps=100)", "samples": int(len(y)),
        "direct_seconds": t_direct, "runner_seconds": t_runner, "median_direct": med_d, "median_runner": med_r,
        "overhead_fraction": med_r / med_d - 1, "target_max_overhead": 0.05,
    })


if __name__ == "__main__":
    main()
