"""The gallery: the adversarials that define each model's worst case, and what DIM's internal models make of them.

Data only (arrays and numbers): :mod:`dim.report.html` turns them into images. Per model and
norm, every sample's worst case is the smallest verified distance over the attacks of that
norm (the paper's and the adaptive ones); the gallery shows the samples broken within the
threshold, the nearest to it first. For each sample shown it also keeps every other model's
worst adversarial of the same norm on that sample, so that a reader can compare the models
side by side.

Inside DIM: for DIM-family models evaluated from a model directory that is still there and
unchanged (the card's sha256 is checked), the denoiser's output and the ten internal models'
reconstructions with their scores P(x|i), for the clean image and for its adversarial.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.artifacts import load_adversarials, load_inputs
from ..core.norms import Norm, distances
from .tables import NORM_ORDER


@dataclass
class Adversarial:
    model: str
    norm: Norm
    sample: int
    label: int
    pred: int
    attack: str
    distance: float
    x_adv: np.ndarray              # (C, H, W) in [0, 1]


@dataclass
class InsideDim:
    """What a DIM-family model computes on a clean image and on its adversarial."""
    denoised: tuple[np.ndarray, np.ndarray]          # D(x), D(x_adv), each (C, H, W)
    reconstructions: tuple[np.ndarray, np.ndarray]   # (K, C, H, W) each
    scores: tuple[list[float], list[float]]          # P(x|i) for i in 0..K-1


@dataclass
class Gallery:
    clean: dict[int, np.ndarray]                                    # sample -> (C, H, W)
    shown: dict[tuple[str, Norm], list[Adversarial]]                # (model, norm) -> samples at the worst case
    others: dict[tuple[Norm, int], dict[str, Adversarial | None]]   # (norm, sample) -> model -> its worst case
    inside: dict[tuple[str, Norm, int], InsideDim] = field(default_factory=dict)
    note: str = ""


def worst_per_sample(run_dir: Path, model: str, attacks: list[dict[str, Any]], norm: Norm,
                     stored: dict[str, np.ndarray], x: np.ndarray
                     ) -> tuple[dict[int, tuple[float, int, str, np.ndarray]], int]:
    """sample -> (distance, pred, attack, x_adv) of the smallest stored adversarial of ``norm`` (finite ones), and
    how many stored adversarials were left out because they do not re-verify: the store's row (``stored``: attack
    -> distance per sample) must hold the file's distance, and the distance of the image to the clean one must be
    that distance (a file of another model or attack in its place shows nothing)."""
    best: dict[int, tuple[float, int, str, np.ndarray]] = {}
    rejected = 0
    for a in attacks:
        if a["norm"] != norm.value:
            continue
        data = load_adversarials(run_dir, model, a["attack"])
        rows = stored.get(a["attack"])
        if data is None or rows is None:
            continue
        finite = np.isfinite(data["distance"])
        idx = data["sample"].astype(np.int64)
        ok = finite & (idx < len(rows)) & (idx < len(x))
        ok[ok] &= rows[idx[ok]] == data["distance"][ok]
        if ok.any():
            measured = distances(x[idx[ok]], data["x_adv"][ok], norm)
            good = np.isclose(measured, data["distance"][ok], rtol=1e-5, atol=1e-6)
            ok[np.flatnonzero(ok)[~good]] = False
        rejected += int((finite & ~ok).sum())
        for i in np.flatnonzero(ok):
            s, d = int(idx[i]), float(data["distance"][i])
            if s not in best or d < best[s][0]:
                best[s] = (d, int(data["pred"][i]), a["attack"], data["x_adv"][i])
    return best, rejected


def build_gallery(view: Any, per_norm: int = 4) -> Gallery | None:
    """The gallery of a report view, or None when the run's clean images cannot be had."""
    inputs = _clean_inputs(view)
    if inputs is None:
        return None
    x, y = inputs
    found = {(r.model, n): worst_per_sample(view.run_dir, r.model, view.attacks, n, r.distances, x)
             for r in view.results for n in NORM_ORDER}
    worst = {key: best for key, (best, _) in found.items()}
    rejected = {m: sum(k for (mm, _), (_, k) in found.items() if mm == m) for m in {m for m, _ in found}}
    shown: dict[tuple[str, Norm], list[Adversarial]] = {}
    for (model, norm), best in worst.items():
        eps = view.threat.threshold(norm)
        broken = sorted(((d, s) for s, (d, *_) in best.items() if 0 < d <= eps * (1 + 1e-6)), reverse=True)
        shown[(model, norm)] = [_adv(model, norm, s, y, best[s]) for _, s in broken[:per_norm]]
    others: dict[tuple[Norm, int], dict[str, Adversarial | None]] = {}
    for (_, norm), items in shown.items():
        for a in items:
            others.setdefault((norm, a.sample), {
                r.model: (_adv(r.model, norm, a.sample, y, worst[(r.model, norm)][a.sample])
                          if a.sample in worst[(r.model, norm)] else None) for r in view.results})
    samples = sorted({s for (_, s) in others})
    gallery = Gallery(clean={s: x[s] for s in samples}, shown=shown, others=others)
    gallery.inside, gallery.note = inside_dim(view, gallery, x)
    left_out = [f"{k} of {m}" for m, k in sorted(rejected.items()) if k]
    if left_out:
        gallery.note = (gallery.note + " " if gallery.note else "") + (
            f"Stored adversarials that do not re-verify against the results store are not shown ({', '.join(left_out)}"
            "): their files hold other distances or images than the store's rows.")
    return gallery


def _adv(model: str, norm: Norm, sample: int, y: np.ndarray, best: tuple) -> Adversarial:
    d, p, attack, xa = best
    return Adversarial(model, norm, sample, int(y[sample]), p, attack, d, xa)


def _clean_inputs(view: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's clean images: its ``inputs.npz``, else (runs stored before it) the dataset named in its config;
    either only if it hashes to the run's ``data_sha256`` (a replaced or damaged file shows no gallery, not
    other images beside the store's results)."""
    from .. import data as data_mod
    from ..evaluation.reuse import data_sha256
    cfg = view.config
    got = load_inputs(view.run_dir)
    if got is not None and data_sha256(*got) == cfg.get("data_sha256"):
        return got
    try:
        x, y = data_mod.load_split(cfg.get("dataset", "mnist"), "test", limit=int(cfg.get("n", 0)))
    except Exception:     # no such dataset here: the page is shown without a gallery
        return None
    return (x, y) if data_sha256(x, y) == cfg.get("data_sha256") else None


def inside_dim(view: Any, gallery: Gallery, x: np.ndarray) -> tuple[dict, str]:
    """Denoiser output, reconstructions and scores for every gallery sample of each DIM-family model."""
    import torch
    from ..checkpoint import CARD, load_model
    out: dict[tuple[str, Norm, int], InsideDim] = {}
    skipped = []
    for r in view.results:
        record = view.models.get(r.model, {})
        model_dir = (record.get("card") or {}).get("dir")
        if not model_dir:
            continue
        path = Path(model_dir) / CARD
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != record.get("card_sha256"):
            skipped.append(r.model)
            continue
        model = load_model(model_dir, device="cpu")
        if not hasattr(model, "reconstructions"):
            continue
        for norm in NORM_ORDER:
            for a in gallery.shown.get((r.model, norm), []):
                pair = torch.from_numpy(np.stack([x[a.sample], a.x_adv]).astype(np.float32))
                with torch.no_grad():
                    d, rec = model.reconstructions(pair)
                    scores = model.scores(pair)
                shape = x.shape[1:]
                out[(r.model, norm, a.sample)] = InsideDim(
                    denoised=(d[0].reshape(shape).numpy(), d[1].reshape(shape).numpy()),
                    reconstructions=(rec[:, 0].reshape(-1, *shape).numpy(), rec[:, 1].reshape(-1, *shape).numpy()),
                    scores=(scores[0].tolist(), scores[1].tolist()))
    note = (f"Inside DIM is not shown for {', '.join(skipped)}: the model directory evaluated is no longer there "
            "or has changed since." if skipped else "")
    return out, note
