"""Execute a unit: a pure function, unit and model in, result out. No store, no files.

It runs wherever the executor puts it (this process, a Ray worker on another
machine). The gate of :mod:`dim.core.verify` is part of execution: whatever an
adapter claims, its candidates are clipped, checked, measured and re-classified here,
and the result carries only verified distances.
"""
from __future__ import annotations

import time
import traceback
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn

from ..attacks import NotApplicable
from .units import AttackUnit, ChecksUnit, Unit, UnitResult
from ..core.verify import Unverified, verify


def _candidates(claimed: Unverified, shape: tuple[int, ...]) -> np.ndarray:
    """The adversarial candidates an adapter returned, as an array of ``shape`` (NaN rows: none)."""
    if not isinstance(claimed, Unverified):
        raise TypeError(f"an attack adapter must return dim.core.verify.Unverified (its candidates), "
                        f"got {type(claimed).__name__}")
    cand = np.asarray(claimed.x_adv, dtype=np.float32)
    if cand.shape != shape:
        raise ValueError(f"the attack returned candidates of shape {cand.shape}, expected {shape}")
    return cand


def execute_attack(unit: AttackUnit, model: nn.Module, device: str | None = None) -> UnitResult:
    t0 = time.perf_counter()
    xs, ys, clean = unit.x, unit.y, unit.clean
    correct = np.flatnonzero(clean == ys)
    dist = np.where(clean == ys, np.inf, 0.0)   # misclassified clean sample: distance 0
    pred = clean.copy()
    x_adv = np.full(xs.shape, np.nan, np.float32)
    x_adv[clean != ys] = xs[clean != ys]
    try:
        if len(correct):
            kwargs = {}
            if unit.spec.starting_points:
                start = unit.starting_points
                kwargs["starting_points"] = (start[correct] if start is not None else
                                             np.full(xs[correct].shape, np.nan, np.float32))
            claimed = unit.run(unit.spec, model, xs[correct], ys[correct], unit.seed, **kwargs)
            got = verify(model, xs[correct], ys[correct], _candidates(claimed, xs[correct].shape), unit.spec.norm)
            dist[correct], x_adv[correct] = got.distance, got.x_adv
            pred[correct] = np.where(np.isfinite(got.distance), got.pred, clean[correct])
    except NotApplicable as exc:
        return UnitResult(unit.key, "skipped", time.perf_counter() - t0, device, str(exc))
    except Exception as exc:  # a failing attack is recorded and does not stop the run
        msg = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=3))
        return UnitResult(unit.key, "failed", time.perf_counter() - t0, device, msg)
    return UnitResult(unit.key, "done", time.perf_counter() - t0, device, distance=dist, pred=pred, x_adv=x_adv)


def execute_checks(unit: ChecksUnit, model: nn.Module, device: str | None = None) -> UnitResult:
    from .checks import run_model_checks
    t0 = time.perf_counter()
    try:
        got = run_model_checks(model, unit.x, unit.y, unit.seed)
    except Exception as exc:  # stored nowhere: the next run of the command tries again
        msg = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=3))
        return UnitResult(unit.key, "failed", time.perf_counter() - t0, device, msg)
    return UnitResult(unit.key, "done", time.perf_counter() - t0, device, checks=got)


EXECUTE = {AttackUnit: execute_attack, ChecksUnit: execute_checks}


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with no parameter requiring a gradient, restored afterwards. Attacks need gradients with respect
    to the input only: with the weights frozen, autograd skips every weight gradient (half of a linear layer's
    backward), and the input gradients are computed by the same kernels, to the same floats."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def execute(unit: Unit, model: nn.Module, device: str | None = None, threads: int | None = None) -> UnitResult:
    """Run ``unit`` on ``model`` (already on its device, its weights frozen meanwhile); ``device`` is the label
    its result records. ``threads``: the CPU threads torch uses for this unit (the same number everywhere gives
    the same floats everywhere: a reduction split over another number of threads rounds differently)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with frozen(model):
            return EXECUTE[type(unit)](unit, model, device)
    finally:
        torch.set_num_threads(before)
