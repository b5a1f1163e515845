"""What a model must return before it is attacked: one finite logit per class for every image.

Checked on a batch of the evaluation's images before any attack and before anything
of the evaluation is stored. A wrong shape or a non-finite output is an error; a model
that returns probabilities (rows in [0, 1] summing to 1) is evaluated, with a warning in
the report: margin and cross-entropy attacks are built for logits and are weaker on
saturated probabilities.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..core.device import device_of

PROBABILITIES = "probabilities"


class ModelOutputError(ValueError):
    """The model's output cannot be evaluated; the message names the model and what is wrong."""


def check_outputs(key: str, model: nn.Module, x: np.ndarray, num_classes: int | None,
                  labels: np.ndarray | None = None) -> dict[str, Any]:
    """Run ``model`` on ``x`` and check its output; returns notes for the report (``{}`` if none)."""
    shape = tuple(x.shape[1:])
    with torch.no_grad():
        try:
            out = model.eval()(torch.tensor(x, dtype=torch.float32, device=device_of(model)))   # a copy
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise ModelOutputError(f"model {key!r} cannot run on images of shape {shape}: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(out, torch.Tensor):
        raise ModelOutputError(f"model {key!r} returns {type(out).__name__}, expected a tensor of logits (N, classes)")
    want = f"({len(x)}, {num_classes if num_classes else 'classes'})"
    if out.dim() != 2 or out.shape[0] != len(x):
        raise ModelOutputError(f"model {key!r} returns shape {tuple(out.shape)} for {len(x)} images of shape {shape}; "
                               f"expected {want}: one logit per class")
    if num_classes is not None and out.shape[1] != num_classes:
        raise ModelOutputError(f"model {key!r} returns {out.shape[1]} outputs per image; the data has {num_classes} "
                               f"classes, expected {want}")
    if labels is not None and len(labels) and out.shape[1] <= int(np.max(labels)):
        raise ModelOutputError(f"model {key!r} returns {out.shape[1]} outputs per image, but the labels go up to "
                               f"{int(np.max(labels))}")
    finite = torch.isfinite(out).all(1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ModelOutputError(f"model {key!r} returns non-finite outputs (NaN or inf) for {bad} of {len(x)} images; "
                               "an accuracy computed from them would mean nothing")
    out = out.double()
    if out.shape[1] > 1 and bool(((out >= 0) & (out <= 1)).all()) and \
            bool(((out.sum(1) - 1).abs() < 1e-3).all()):
        return {PROBABILITIES: True}
    return {}
