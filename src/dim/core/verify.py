"""The one place where an adversarial example is accepted or rejected.

No attack's own success flag is trusted: every candidate is clipped to [0, 1],
checked finite, its distance recomputed by us, and the model re-run on it. Only
a candidate that the model really misclassifies counts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .device import device_of
from .norms import Norm, distances


@dataclass(frozen=True)
class Unverified:
    """What an attack adapter returns: one candidate adversarial per input (``(N, C, H, W)``, NaN rows where it
    found none). Only candidates, no distances or labels: nothing an attack claims is trusted, and the evaluation
    alone turns candidates into results through :func:`verify`."""
    x_adv: np.ndarray


@dataclass
class Verified:
    distance: np.ndarray   # (N,) float64; inf where the candidate is not a verified adversarial
    pred: np.ndarray       # (N,) int64, the model's label on the (clipped) candidate; -1 if not finite
    x_adv: np.ndarray      # (N, C, H, W) float32, clipped candidates; NaN rows where rejected


@torch.no_grad()
def predict_numpy(model: nn.Module, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The model's labels on ``x``, in batches; the model sees copies (one that changes its input in place changes
    nothing of ``x``)."""
    model.eval()
    dev = device_of(model)
    out = [model(torch.tensor(x[i:i + batch_size], dtype=torch.float32, device=dev)).argmax(1)
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).cpu().numpy().astype(np.int64) if out else np.zeros(0, np.int64)


def verify(model: nn.Module, x: np.ndarray, y: np.ndarray, candidates: np.ndarray | Unverified,
           norm: Norm) -> Verified:
    """Accept a candidate only if it is finite and the model misclassifies its clipped version."""
    if isinstance(candidates, Unverified):
        candidates = candidates.x_adv
    cand = np.asarray(candidates, dtype=np.float32)
    if cand.shape != x.shape:
        raise ValueError(f"attack returned shape {cand.shape}, expected {x.shape}")
    finite = np.isfinite(cand.reshape(len(cand), -1)).all(axis=1)
    clipped = np.clip(np.where(finite.reshape(-1, *[1] * (x.ndim - 1)), cand, x), 0.0, 1.0).astype(np.float32)
    pred = predict_numpy(model, clipped)
    pred[~finite] = -1
    ok = finite & (pred != y)
    dist = np.where(ok, distances(x, clipped, norm), np.inf)
    x_adv = np.where(ok.reshape(-1, *[1] * (x.ndim - 1)), clipped, np.nan).astype(np.float32)
    return Verified(dist, pred, x_adv)


def keep_best(best: Verified | None, new: Verified) -> Verified:
    """Per sample, keep the candidate with the smaller verified distance."""
    if best is None:
        return new
    better = new.distance < best.distance
    shape = (-1, *[1] * (new.x_adv.ndim - 1))
    return Verified(np.where(better, new.distance, best.distance), np.where(better, new.pred, best.pred),
                    np.where(better.reshape(shape), new.x_adv, best.x_adv))
