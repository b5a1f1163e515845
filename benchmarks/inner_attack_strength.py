"""How strong a multi-norm model's own training attack is, beside the evaluation's: the inner attack of its recipe
(:func:`dim.attacks.multinorm.msd` with the card's settings, flips included) run as an attack on the first N
images of the training and the test split, at the recipe's step count and at more steps.

    python benchmarks/inner_attack_strength.py weights/bidim_at_ramp_dnramp_w08 --steps 5 20 \
        --compare train=benchmarks/results/multinorm_bidim_at_ramp_dnramp_w08_train_images_mt.json \
        --compare test=benchmarks/results/multinorm_bidim_at_ramp_dnramp_w08_mt.json

For each split and step count it runs every norm's own track (:func:`dim.attacks.multinorm.every_norm`, the
points MAX and AVG train on) and MSD's one point per image (what the recipe trains on), checks every point lies in
its norm's ball and the [0, 1] box (:func:`dim.core.norms.distances`; a point outside does not count as a success),
and reports robust accuracy per norm, under MSD's point, and in all norms (a sample fooled by none of them), that
last one per class too, with the classes the broken samples went to (``true->predicted``, the most common first);
``--paired-with`` compares the union sample by sample with another model's file. If the
training attack leaves far more samples robust than the evaluation's suite (``--compare``: a ``bench_multinorm``
file on the same images), the model has learned to resist its training attack and the training attack is the limit;
if it finds nearly as much, the limit is what the model can fit.

``--knn K`` asks a judge that was never attacked, the vote of the K nearest training images (``knn_judge.py``),
which class each point that broke the model looks like: how many broken samples the attack moved to where the
adversarial class's digits are, rather than left as their own digit with specks.

Writes ``results/inner_attack_<model>.json`` (``--label`` names it otherwise), and with ``--figure`` a picture of
the first samples broken at L0 or L1 on each split, ``results/inner_attack_<label>_<split>.png``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, write_result
from knn_judge import judge, knn_vote
from paired_union import as_json

import dim
from dim.attacks.adaptive import with_gradient
from dim.attacks.multinorm import every_norm, msd
from dim.checkpoint import load_ensemble
from dim.core.norms import distances
from dim.data import load_split
from dim.evaluation.metrics import paired_difference, wilson_interval
from dim.models.registry import get_entry
from dim.train.loop import RECIPES


def _inner_attack(model_dir: Path, model: torch.nn.Module, input_shape: tuple[int, int, int], steps: int,
                  mt_classes: int | None = None):
    """The recipe's inner attack (the card's training settings) at ``steps`` steps; ``mt_classes`` replaces the
    card's number of runner-up classes that MSD's point is also sought towards (None: the card's)."""
    card = json.loads((model_dir / "card.json").read_text())
    recipe = RECIPES[get_entry(card["model"]).recipe]
    fields = {f.name for f in dataclasses.fields(recipe.config_cls)}
    cfg = recipe.config_cls(**{k: (tuple(v) if isinstance(v, list) else v)
                               for k, v in card["config"]["train"].items() if k in fields})
    attack = dataclasses.replace(cfg.attack(input_shape, model), steps=steps)
    return attack if mt_classes is None else dataclasses.replace(attack, mt_classes=mt_classes)


def _robust(model, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, norm,
            eps: float) -> tuple[np.ndarray, int, np.ndarray]:
    """Per sample: not fooled by ``x_adv`` (a point outside the ball or the box counts as not fooling); how many
    points lay outside; the predicted classes."""
    with torch.no_grad():
        pred = model(x_adv).argmax(1).numpy()
    flat = x_adv.flatten(1)
    in_box = ((flat.min(1).values >= 0) & (flat.max(1).values <= 1)).numpy()
    inside = (distances(x.numpy(), x_adv.numpy(), norm) <= eps * (1 + 1e-5) + 1e-6) & in_box
    return ~((pred != y.numpy()) & inside), int((~inside).sum()), pred


@lru_cache(maxsize=1)
def _training_split() -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = load_split("mnist", "train")
    return torch.from_numpy(xs), torch.from_numpy(ys)


def _knn(split: str, n: int, k: int, xs: np.ndarray, labels: np.ndarray, points: dict[str, np.ndarray],
         preds: dict[str, np.ndarray], clean: np.ndarray, per: dict[str, np.ndarray],
         union: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
    """The nearest training images' vote (:mod:`knn_judge`) on every point that broke the model, and the votes on
    every norm's points; on the training split each image's own copy does not vote."""
    ref_x, ref_y = _training_split()
    skip = np.arange(n) if split == "train" else None
    broken = {nm: clean & ~per[nm] for nm in points}
    votes = {nm: knn_vote(points[nm], ref_x, ref_y, k, skip) for nm in points}
    out = judge(labels, knn_vote(xs, ref_x, ref_y, k, skip), broken, preds, votes, clean & ~union)
    return {"k": k, **out}, votes


def measure(model_dirs: list[Path], split: str, n: int, steps: int, batch: int, figure: Path | None = None,
            knn: int = 0, mt_classes: int | None = None) -> dict:
    model = (dim.load_model(model_dirs[0]) if len(model_dirs) == 1 else load_ensemble(model_dirs)).eval()
    xs, ys = load_split("mnist", split, limit=n)
    x_all, y_all = torch.from_numpy(xs), torch.from_numpy(ys)
    attack = _inner_attack(model_dirs[0], model, tuple(x_all.shape[1:]), steps, mt_classes)
    norms = list(attack.eps)
    with torch.no_grad():
        clean = (model(x_all).argmax(1) == y_all).numpy()
    robust = {nm.value: [] for nm in norms} | {"msd": []}
    preds = {nm.value: [] for nm in norms}
    points = {nm.value: [] for nm in norms}
    outside = {nm.value: 0 for nm in norms} | {"msd": 0}
    t0 = time.perf_counter()
    for p in model.parameters():
        p.requires_grad_(False)
    with with_gradient(model, "auto", "the inner attack"):
        for i in range(0, n, batch):
            x, y = x_all[i:i + batch], y_all[i:i + batch]
            tracks = every_norm(model, x, y, attack)
            point, which = msd(model, x, y, attack)
            for nm, x_adv in zip(norms, tracks):
                ok, out, pred = _robust(model, x_adv, x, y, nm, attack.eps[nm])
                robust[nm.value].append(ok)
                preds[nm.value].append(pred)
                points[nm.value].append(x_adv.numpy())
                outside[nm.value] += out
            # MSD's point lies in the ball of the norm that produced it (-1: the clean image)
            ok = np.ones(len(y), dtype=bool)
            for j, nm in enumerate(norms):
                sel = (which == j).numpy()
                if sel.any():
                    r, out, _ = _robust(model, point[sel], x[sel], y[sel], nm, attack.eps[nm])
                    ok[sel] = r
                    outside["msd"] += out
            robust["msd"].append(ok)
    per = {k: clean & np.concatenate(v) for k, v in robust.items()}
    union = clean.copy()
    for v in per.values():
        union &= v

    def block(mask: np.ndarray) -> dict:
        lo, hi = wilson_interval(int(mask.sum()), len(mask))
        return {"accuracy": float(mask.mean()), "interval_95": [lo, hi]}
    labels = y_all.numpy()
    # the class each broken sample went to: the first norm's track (in the attack's order) that fooled it
    went = np.full(n, -1)
    for nm in reversed(norms):
        p = np.concatenate(preds[nm.value])
        fooled = clean & ~per[nm.value]
        went = np.where(fooled, p, went)
    pairs = Counter(f"{a}->{b}" for a, b in zip(labels[went >= 0], went[went >= 0]))
    all_points = {k: np.concatenate(v) for k, v in points.items()}
    all_preds = {k: np.concatenate(v) for k, v in preds.items()}
    judged, votes = {}, None
    if knn:
        judged["knn_judge"], votes = _knn(split, n, knn, xs, labels, all_points, all_preds, clean,
                                          {nm.value: per[nm.value] for nm in norms}, union)
    if figure:
        _draw(figure, xs, labels, all_points, all_preds, clean, per, votes)
    return {"split": split, "n": n, "steps": steps, "mt_classes": attack.mt_classes,
            "seconds": round(time.perf_counter() - t0, 1),
            "eps": {nm.value: e for nm, e in attack.eps.items()}, "clean": block(clean),
            "robust": {k: block(v) for k, v in per.items()}, "all_norms": block(union),
            "all_norms_per_class": {str(c): block(union[labels == c]) for c in np.unique(labels)},
            "all_norms_per_sample": "".join("1" if r else "0" for r in union),
            "broken_to_class": [[pair, count] for pair, count in pairs.most_common(12)],
            "points_outside_ball": outside, **judged}


def _draw(path: Path, xs: np.ndarray, labels: np.ndarray, points: dict[str, np.ndarray], preds: dict[str, np.ndarray],
          clean: np.ndarray, per: dict[str, np.ndarray], votes: dict[str, np.ndarray] | None = None,
          count: int = 12) -> None:
    """The first ``count`` samples an L0 or L1 track broke: each image above, its adversarial point below (the
    norm and the class it went to in the title, and the nearest training images' vote if ``votes``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    broken = [(i, nm) for i in range(len(labels)) for nm in ("L0", "L1")
              if nm in per and clean[i] and not per[nm][i]]
    seen: set[int] = set()
    picks = [(i, nm) for i, nm in broken if not (i in seen or seen.add(i))][:count]
    if not picks:
        return
    fig, axes = plt.subplots(2, len(picks), figsize=(1.4 * len(picks), 3.2), squeeze=False)
    for col, (i, nm) in enumerate(picks):
        for row, (img, title) in enumerate(((xs[i, 0], f"#{i}: {labels[i]}"),
                                            (points[nm][i, 0], f"{nm} -> {preds[nm][i]}"
                                             + (f" (NN {votes[nm][i]})" if votes else "")))):
            axes[row, col].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[row, col].set_title(title, fontsize=8)
            axes[row, col].axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def paired(runs: list[dict], other: Path) -> list[dict]:
    """Each run beside the run of ``other`` (an earlier file of this benchmark) on the same split, images and
    steps, sample by sample: the images only one model holds in all norms, the difference with its paired 95%
    interval and the exact McNemar p-value. A run with no counterpart there is refused."""
    theirs = {(r["split"], r["n"], r["steps"]): r for r in json.loads(other.read_text())["runs"]}
    out = []
    for r in runs:
        key = (r["split"], r["n"], r["steps"])
        if key not in theirs or "all_norms_per_sample" not in theirs[key]:
            raise SystemExit(f"--paired-with {other}: no per-sample run of split {key[0]}, {key[1]} images, "
                             f"{key[2]} steps there")
        a = np.array([c == "1" for c in r["all_norms_per_sample"]])
        b = np.array([c == "1" for c in theirs[key]["all_norms_per_sample"]])
        out.append({"split": key[0], "n": key[1], "steps": key[2], "other": other.name,
                    **as_json(paired_difference(a, b))})
    return out


def _compared(path: Path) -> dict:
    (m,) = json.loads(path.read_text())["models"].values()
    return {"file": path.name, "clean": m["clean_accuracy"], "per_norm": m["per_norm_incl_adaptive"],
            "all_norms": m["union_incl_adaptive"]}


def _training(model_dir: Path) -> dict:
    """What the card says of the model's training: recipe settings, clean accuracy, seconds, and any per-epoch
    record a recipe adds (``class_reweighting``)."""
    card = json.loads((model_dir / "card.json").read_text())
    keep = ("model", "seed", "clean_accuracy", "train_seconds", "class_reweighting")
    return {k: card[k] for k in keep if k in card} | {"train_config": card["config"]["train"],
                                                     "model_config": card["config"].get("model", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dirs", type=Path, nargs="+",
                    help="a model directory, or several: their ensemble (the mean of their logits), attacked with "
                         "the first one's training attack")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    ap.add_argument("--steps", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compare", action="append", default=[], metavar="SPLIT=FILE",
                    help="a bench_multinorm result on the same images, shown beside the split's figures")
    ap.add_argument("--paired-with", type=Path, default=None, metavar="FILE",
                    help="an earlier result of this benchmark (another model, the same splits, N and steps): "
                         "the union compared sample by sample")
    ap.add_argument("--label", default=None)
    ap.add_argument("--mt-classes", type=int, default=None, metavar="K",
                    help="MSD's point also sought by K runs targeted at each image's K most likely other classes "
                         "(the attack's mt_classes; the tracks per norm stay untargeted; default: the card's)")
    ap.add_argument("--knn", type=int, default=0, metavar="K",
                    help="judge every point that broke the model by the vote of its K nearest training images "
                         "(knn_judge.py; 0: off)")
    ap.add_argument("--figure", action="store_true",
                    help="draw the first samples broken at L0 or L1 (the last step count of each split) to "
                         "results/inner_attack_<label>_<split>.png")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    compare = {}
    for item in args.compare:
        split, _, file = item.partition("=")
        if split not in args.splits or not file:
            raise SystemExit(f"--compare {item!r}: expected SPLIT=FILE with SPLIT one of {args.splits}")
        compare[split] = _compared(Path(file))
    label = args.label or "+".join(d.name for d in args.model_dirs)
    runs = [measure(args.model_dirs, s, args.n, k, args.batch,
                    RESULTS / f"inner_attack_{label}_{s}.png" if args.figure and k == args.steps[-1] else None,
                    args.knn, args.mt_classes)
            for s in args.splits for k in args.steps]
    for r in runs:
        print(f"{r['split']:5s} steps {r['steps']:3d}: clean {r['clean']['accuracy']:.3f}  "
              + "  ".join(f"{k} {v['accuracy']:.3f}" for k, v in r["robust"].items())
              + f"  all {r['all_norms']['accuracy']:.3f}  ({r['seconds']} s)", flush=True)
        if "knn_judge" in r:
            j = r["knn_judge"]
            print(f"      {j['k']}-NN judge: clean read right {j['clean_read_right']:.3f}; of "
                  f"{j['broken_in_some_norm']} broken, {j['some_point_to_adversarial_class_clean_read_right']} "
                  f"moved to where the adversarial class's training images are: {j['pairs'][:5]}", flush=True)
    pairs = paired(runs, args.paired_with) if args.paired_with else []
    for p in pairs:
        print(f"{p['split']:5s} steps {p['steps']:3d} vs {p['other']}: {p['difference']:+.3f} "
              f"{p['interval_95']}, {p['only_a']} vs {p['only_b']}, p = {p['p_value']}")
    write_result(f"inner_attack_{label}",
                 {"model_dir": str(args.model_dirs[0]) if len(args.model_dirs) == 1 else None,
                  "training": _training(args.model_dirs[0]) if len(args.model_dirs) == 1 else None,
                  **({"ensemble": [{"model_dir": str(d), "training": _training(d)} for d in args.model_dirs]}
                     if len(args.model_dirs) > 1 else {}),
                  "threads": torch.get_num_threads(), "runs": runs,
                  "evaluation_suite_on_the_same_images": compare, "paired": pairs})


if __name__ == "__main__":
    main()
