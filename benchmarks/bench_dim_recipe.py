"""Clean accuracy of DIM's recipe with shorter schedules: where is the 3-minute CPU budget best spent?

    python benchmarks/bench_dim_recipe.py --variants 6:11 3:10 4:9 --device cuda --label h100

Each variant ``D:E`` trains ``dim`` from scratch with ``denoiser_epochs=D`` and
``epochs=E`` (everything else the recipe's defaults, seed 0) and measures clean
accuracy on the full test set. On a GPU the accuracies tell which schedules keep
98% (the seconds are the GPU's); on the CPU the seconds are the ones the target
is about. Writes ``results/dim_recipe_<label>.json`` after every variant.
"""
from __future__ import annotations

import argparse
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
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    label = args.label or dev.type
    out = {"device": device_info(dev), "seed": args.seed, "variants": {}}
    for v in args.variants:
        d, e = (int(s) for s in v.split(":"))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            card = train("dim", Path(tmp) / "dim", seed=args.seed, device=dev, show=False,
                         train_overrides={"denoiser_epochs": d, "epochs": e})
            out["variants"][v] = {"denoiser_epochs": d, "epochs": e, "clean_accuracy": card["clean_accuracy"],
                                  "train_seconds": card["train_seconds"],
                                  "wall_seconds": round(time.perf_counter() - t0, 2)}
        print(v, out["variants"][v], flush=True)
        write_result(f"dim_recipe_{label}", out, args.out_dir, echo=False)


if __name__ == "__main__":
    main()
