"""What an evaluation accepts as images and labels, checked before anything of a run is written.

Every mistake a user can make with the arrays they bring (one-hot or column labels, float labels, negative
labels, NaN pixels, images in 0..255, an empty batch, a missing channel axis) is one :class:`InputError` that says
what was seen and what is expected. The arrays that come back are copies: a model that changes its input in place
cannot change the caller's arrays or the images a run stores.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


class InputError(ValueError):
    """The images or labels cannot be evaluated; the message says what was seen and what is expected."""


def _numpy(a: Any, what: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} cannot be read as an array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{what} holds {arr.dtype} values; expected numbers")
    return arr


def check_labels(y: Any, n: int, num_classes: int | None = None) -> np.ndarray:
    """``y`` as int64 class indices of shape ``(n,)``, or an :class:`InputError` naming what is wrong."""
    y = _numpy(y, "labels")
    if y.ndim == 2 and y.shape[1] == 1:
        raise InputError(f"labels must be class indices of shape (N,), got shape {y.shape}: pass y.ravel()")
    if y.ndim == 2:
        raise InputError(f"labels must be class indices of shape (N,), got shape {y.shape} (one-hot rows or "
                         "scores?): pass y.argmax(1)")
    if y.ndim != 1:
        raise InputError(f"labels must be class indices of shape (N,), got shape {y.shape}")
    if len(y) != n:
        raise InputError(f"{n} images but {len(y)} labels: one label per image")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"labels must be integer class indices, got {y.dtype} values"
                         + (": if they are whole numbers, pass y.astype(int)" if y.dtype != bool else ""))
    if len(y) and y.min() < 0:
        raise InputError(f"labels must be class indices 0..K-1; {int((y < 0).sum())} are negative (smallest "
                         f"{int(y.min())})")
    if num_classes is not None and len(y) and y.max() >= num_classes:
        raise InputError(f"labels must be class indices 0..{num_classes - 1}; {int((y >= num_classes).sum())} are "
                         f"{num_classes} or more (largest {int(y.max())})")
    return y.astype(np.int64)


def check_images(x: Any) -> np.ndarray:
    """``x`` as a float32 copy of shape ``(N, C, H, W)`` in [0, 1], or an :class:`InputError`."""
    x = _numpy(x, "images")
    if x.ndim == 3:
        raise InputError(f"images must have shape (N, C, H, W), got {x.shape}: add the channel axis (x[:, None])")
    if x.ndim != 4:
        raise InputError(f"images must have shape (N, C, H, W), got {x.shape}")
    if len(x) == 0:
        raise InputError(f"no images: x has shape {x.shape}")
    x = np.array(x, dtype=np.float32, copy=True)
    nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
    if nan or inf:
        images = int((~np.isfinite(x.reshape(len(x), -1))).any(1).sum())
        raise InputError(f"images hold {nan} NaN and {inf} infinite values (in {images} of {len(x)} images); "
                         "inputs must be finite")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        hint = ": images in 0..255 need dividing by 255" if lo >= 0 and hi <= 255 else ""
        raise InputError(f"images must lie in [0, 1]; seen values from {lo:g} to {hi:g}{hint}")
    return x


def check_inputs(x: Any, y: Any, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels as an evaluation takes them (see the module docstring)."""
    xs = check_images(x)
    return xs, check_labels(y, len(xs), num_classes)
