"""Which pixels the attacks flip on a model that binarizes its input: the anatomy of the adversarials of a run.

    python benchmarks/flip_anatomy.py runs/complete --model bidim_at_bin --label bidim_at_flips_cw2

A binarizing model sees only which side of its threshold each pixel lies on, so every successful attack on it is a
set of flips. For each attack of the run whose adversarials are stored, among the samples it fooled within its
norm's threshold (the store's verified distances and predictions; images the model gets wrong without attack
left out), this counts the flips of the binarized input per
image and splits them by what the pixel was in the clean image: background (exactly 0), solid ink (at least 0.99)
or grey (in between); and how many add ink (a pixel below the threshold pushed above it). ``median_cost`` is the
median ``|x_i - t|`` of a flipped pixel (``t``: the threshold of the model's card): what one flip costs in L1 (its square in L2). It also describes the clean
images: grey pixels per image and those within 0.25 of the threshold (the cheap flips). It answers where a
binarized model's robustness goes: which pixels a defence has to make expensive or harmless.
On a ramp (``binarize_width`` > 0) a flip is a pixel moved across the ramp's middle, the threshold; on
single-channel images ``share_of_added_isolated`` is the share of the ink-adding flips with no ink among their four
neighbours in the adversarial image (a flip that a filter of its neighbourhood would remove).
Writes ``results/flip_anatomy_<label>.json``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from common import write_result

from dim.core.norms import Norm
from dim.evaluation.artifacts import load_adversarials, load_inputs
from dim.evaluation.metrics import run_threat_model
from dim.store import Store

INK, NEAR = 0.99, 0.25


def anatomy(x: np.ndarray, x_adv: np.ndarray, t: float, image: tuple[int, int] | None = None) -> dict[str, Any]:
    """Flips of ``x_adv`` (N, d) against ``x`` (N, d) at threshold ``t``, split by the clean pixel's kind;
    ``image``: the (H, W) of single-channel images, for the isolated flips."""
    flip = (x_adv > t) != (x > t)
    total = max(int(flip.sum()), 1)
    kinds = {"background": x == 0, "ink": x >= INK, "grey": (x > 0) & (x < INK)}
    added = flip & (x <= t)
    out = {"images": len(x), "median_flips_per_image": float(np.median(flip.sum(1))),
           "median_ink_added_per_image": float(np.median(added.sum(1))),
           "share": {k: round(float((flip & m).sum()) / total, 3) for k, m in kinds.items()},
           "share_adding_ink": round(float(added.sum()) / total, 3),
           "median_cost": round(float(np.median(np.abs(x - t)[flip])), 3) if flip.any() else None}
    if image is not None and added.any():
        on = np.pad((x_adv > t).reshape(len(x), *image), ((0, 0), (1, 1), (1, 1)))
        neighbour = on[:, :-2, 1:-1] | on[:, 2:, 1:-1] | on[:, 1:-1, :-2] | on[:, 1:-1, 2:]
        isolated = added.reshape(len(x), *image) & ~neighbour
        out["share_of_added_isolated"] = round(float(isolated.sum()) / float(added.sum()), 3)
    return out


def _binarization(store: Store, model: str) -> tuple[float, float]:
    """The binarization threshold and ramp width (0: a step) recorded in ``model``'s card in the run (a model
    without one is refused)."""
    cards = {m["model"]: m["card"] for m in store.models()}
    if model not in cards:
        raise SystemExit(f"model {model!r} is not in this run; it holds {sorted(cards)}")
    cfg = cards[model].get("config", {}).get("model", {})
    if not store.get_meta(f"binarized/{model}") or "binarize_threshold" not in cfg:   # as the run's checks found it
        raise SystemExit(f"model {model!r} does not binarize its input (so the run records); this counts flips of one")
    if int(cfg.get("binarize_pool", 1)) != 1:
        raise SystemExit(f"model {model!r} binarizes blocks of {cfg['binarize_pool']} x {cfg['binarize_pool']} pixels; "
                         f"this counts flips of single pixels")
    return float(cfg["binarize_threshold"]), float(cfg.get("binarize_width", 0.0))


def run_anatomy(run_dir: Path, model: str) -> dict[str, Any]:
    inputs = load_inputs(run_dir)
    if inputs is None:
        raise SystemExit(f"{run_dir}: no inputs.npz (the run's clean images); evaluate with a current 'dim evaluate'")
    x, y = inputs
    flat = x.reshape(len(x), -1).astype(np.float64)
    image = tuple(x.shape[2:]) if x.ndim == 4 and x.shape[1] == 1 else None
    store = Store.of_run(run_dir, read_only=True)
    out: dict[str, Any] = {}
    try:
        threshold, width = _binarization(store, model)
        threat = run_threat_model(store)      # the thresholds the run counts each norm at
        labels, clean_pred = store.samples(model)
        correct = np.zeros(len(y), bool)
        correct[:len(labels)] = labels == clean_pred       # an image misclassified clean was not attacked
        for att in store.attacks():
            adv = load_adversarials(run_dir, model, att["attack"])
            if adv is None:
                continue
            rows = {r.sample: r for r in store.rows(model, att["attack"])}
            fooled = [i for i, s in enumerate(adv["sample"]) if s in rows and correct[s] and rows[s].pred != y[s]
                      and rows[s].distance <= threat.threshold(Norm(att["norm"])) * (1 + 1e-6)]
            if not fooled:
                continue
            idx = adv["sample"][fooled]
            got = adv["x_adv"][fooled].reshape(len(fooled), -1).astype(np.float64)
            out[att["attack"]] = {"norm": att["norm"], **anatomy(flat[idx], got, threshold, image)}
    finally:
        store.close()
    return {"threshold": threshold, "ramp_width": width, "attacks": out, "clean_images": {
        "n": len(x), "median_grey_pixels": float(np.median(((flat > 0) & (flat < INK)).sum(1))),
        f"median_pixels_within_{NEAR}_of_threshold": float(np.median((np.abs(flat - threshold) < NEAR).sum(1)))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--model", required=True, help="the model's name in the run (e.g. bidim_at_bin)")
    ap.add_argument("--label", required=True, help="suffix of the results file")
    args = ap.parse_args()
    result = run_anatomy(args.run_dir, args.model)
    write_result(f"flip_anatomy_{args.label}", {"run": str(args.run_dir), "model": args.model, **result})


if __name__ == "__main__":
    main()
