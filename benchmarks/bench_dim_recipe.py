"""Clean accuracy of DIM's recipe with shorter schedules: where is the 3-minute CPU budget best spent?

    python benchmarks/bench_dim_recipe.py --variants 6:11 3:10 4:9 --device cuda --label h100
    python benchmarks/bench_dim_recipe.py --variants 4:8 --seeds 0 1 2 --set ce_weight=2 --label cpu_ce2

Each variant ``D:E`` trains ``dim`` from scratch with ``denoiser_epochs=D`` and
``epochs=E`` (everything else the recipe's defaults or ``--set``, for each of ``--seeds``) and measures clean
accuracy on the full test set. On a GPU the accuracies tell which schedules keep
98% (the seconds are the GPU's); on the CPU the seconds are the ones the target
is about. Writes ``results/dim_recipe_<label>.json`` after every variant.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import RESULTS, write_result

from dim.core.device import device_info, resolve_device
from dim.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["6:11", "3:10", "4:9"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--label", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", nargs="*", default=[], help="recipe options for every variant, key=value (JSON values)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    label = args.label or dev.type
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    out = {"device": device_info(dev), "seeds": args.seeds, "overrides": overrides, "variants": {}}
    for v in args.variants:
        d, e = (int(s) for s in v.split(":"))
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                card = train("dim", Path(tmp) / "dim", seed=seed, device=dev, show=False,
                             train_overrides={**overrides, "denoiser_epochs": d, "epochs": e})
                got = {"denoiser_epochs": d, "epochs": e, "seed": seed, "clean_accuracy": card["clean_accuracy"],
                       "train_seconds": card["train_seconds"], "wall_seconds": round(time.perf_counter() - t0, 2)}
            out["variants"][f"{v} seed {seed}"] = got
            print(v, got, flush=True)
            write_result(f"dim_recipe_{label}", out, args.out_dir, echo=False)


if __name__ == "__main__":
    main()
