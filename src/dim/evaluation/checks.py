"""Sanity checks of an evaluation (Carlini et al. 2019, Athalye et al. 2018), printed in every report.

Two kinds, one registry (:data:`CHECKS`):

* model checks run by ``dim evaluate`` on the model itself (a few dozen correctly
  classified samples) and are stored in the run (``meta`` key ``checks/<model>``):
  unbounded attack, accuracy against epsilon, zero gradients, determinism;
* result checks are computed from the stored distances when the report is built:
  more iterations/restarts, black box against white box.

A check never changes a number; a failed one is a warning in the report with what
it means and what to do.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ..attacks.adaptive import with_gradient
from ..attacks.gradient import margin_loss, pgd
from ..core.device import device_of
from .metrics import ModelResult, norm_results
from ..core.norms import Norm

PASS, WARN, NA = "pass", "warn", "n/a"
TOLERANCE = 0.02          # "small tolerance" of the comparisons: two percentage points


@dataclass
class Outcome:
    status: str             # pass | warn | n/a
    value: str              # what was measured, human-readable
    detail: dict

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    why: str                # what a failure means
    remedy: str             # what to do about it
    on_model: Callable[[nn.Module, torch.Tensor, torch.Tensor, int], Outcome] | None = None
    on_results: Callable[[ModelResult], Outcome] | None = None


CHECKS: dict[str, Check] = {}


def register_check(check: Check) -> Check:
    CHECKS[check.name] = check
    return check


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


# ------------------------------------------------------------------------------------------- model checks
def unbounded_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> Outcome:
    with with_gradient(model, "auto"):   # the strongest gradient we have
        cand, _ = pgd(model, x, y, norm=Norm.LINF, eps=1.0, steps=100, restarts=1, loss="margin", seed=seed)
    success = 1.0 - _accuracy(model, cand, y)
    return Outcome(PASS if success == 1.0 else WARN, f"{100 * success:.1f}% success at L-inf eps = 1",
                   {"success": success, "n": len(y)})


MONOTONE_EPS = (0.05, 0.1, 0.2, 0.3, 0.4)


def accuracy_falls_with_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> Outcome:
    accs = []
    with with_gradient(model, "auto"):   # the strongest gradient we have
        for i, eps in enumerate(MONOTONE_EPS):   # independent runs, one per epsilon
            cand, _ = pgd(model, x, y, norm=Norm.LINF, eps=eps, steps=20, restarts=1, loss="margin", seed=seed + i)
            accs.append(_accuracy(model, cand, y))
    rises = [(MONOTONE_EPS[i], MONOTONE_EPS[j]) for i in range(len(accs)) for j in range(i + 1, len(accs))
             if accs[j] > accs[i] + TOLERANCE]
    value = ", ".join(f"{e:g}: {100 * a:.0f}%" for e, a in zip(MONOTONE_EPS, accs))
    return Outcome(WARN if rises else PASS, f"L-inf PGD-20 accuracy {value}",
                   {"eps": list(MONOTONE_EPS), "accuracy": accs, "rises": rises})


def zero_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> Outcome:
    """Gradient of the margin loss (no softmax saturation) with the model exactly as it is."""
    xg = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(margin_loss(model(xg), y, None).sum(), xg)
    frac = float((g.flatten(1).abs().amax(1) == 0).float().mean())
    return Outcome(WARN if frac > 0 else PASS, f"{100 * frac:.1f}% of samples with an all-zero input gradient",
                   {"fraction": frac, "n": len(y)})


def deterministic(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> Outcome:
    with torch.no_grad():
        a, b = model(x), model(x)
    diff = float((a - b).abs().max())
    return Outcome(PASS if diff == 0 else WARN, "bit-identical logits" if diff == 0 else
                   f"logits differ by up to {diff:.3g} between two passes", {"max_abs_diff": diff})


# ----------------------------------------------------------------------------------------- result checks
def more_iterations(r: ModelResult) -> Outcome:
    """Every attack declared as a refinement (more steps/restarts) of another, against it."""
    have = [(a.refines, a.attack) for a in r.attacks.values() if a.refines and a.refines in r.attacks
            and not np.isnan(a.accuracy) and not np.isnan(r.attacks[a.refines].accuracy)]
    if not have:
        return Outcome(NA, "no attack with its refinement in this run", {})
    drops = {f"{w} -> {s}": r.attacks[w].accuracy - r.attacks[s].accuracy for w, s in have}
    bad = {k: v for k, v in drops.items() if v > TOLERANCE}
    value = "; ".join(f"{k}: {100 * r.attacks[k.split(' -> ')[0]].accuracy:.0f}% -> "
                      f"{100 * r.attacks[k.split(' -> ')[1]].accuracy:.0f}%" for k in drops)
    return Outcome(WARN if bad else PASS, value, {"drops": drops})


def black_box_vs_white_box(r: ModelResult) -> Outcome:
    black = norm_results(r.attacks, r.distances, lambda a: a.black_box, r.threat)
    white = norm_results(r.attacks, r.distances, lambda a: not a.black_box and not a.ensemble, r.threat)
    rows, bad = {}, {}
    for norm in Norm:
        if norm not in black or norm not in white:
            continue
        acc_bb, acc_wb = black[norm].accuracy, white[norm].accuracy
        rows[norm.value] = {"black_box": acc_bb, "white_box": acc_wb}
        if acc_bb < acc_wb - TOLERANCE:
            bad[norm.value] = rows[norm.value]
    if not rows:
        return Outcome(NA, "needs black-box and white-box attacks of the same norm", {})
    # the norms where the black box wins come first and say so: the others only give the comparison
    order = sorted(rows, key=lambda k: k not in bad)
    value = "; ".join(f"{k}: black box {100 * rows[k]['black_box']:.0f}% vs white box "
                      f"{100 * rows[k]['white_box']:.0f}%" + (" (black box wins)" if k in bad else "")
                      for k in order)
    return Outcome(WARN if bad else PASS, value, {"per_norm": rows, "beaten": sorted(bad)})


register_check(Check(
    "unbounded", "Unbounded attack reaches 100%",
    "With no limit on the perturbation every input can be turned into another class; an attack that still "
    "fails cannot follow the model's gradient (masking, saturation or a bug in the evaluation).",
    "Use the straight-through gradient for non-differentiable parts (BPDA), a margin loss instead of "
    "cross-entropy, or gradient-free attacks; do not trust gradient-attack numbers until this passes.",
    on_model=unbounded_attack))
register_check(Check(
    "monotone", "Accuracy falls as eps grows",
    "A larger ball contains the smaller one, so accuracy can only fall; if it rises, the attack is failing at "
    "large eps (bad step size, random start off the data manifold, gradients that vanish far from the data).",
    "Tune step size and steps per eps, use restarts, and check the gradient of the model at large "
    "perturbations.", on_model=accuracy_falls_with_eps))
register_check(Check(
    "zero_gradient", "No zero input gradients",
    "Samples whose input gradient is exactly zero cannot be moved by any gradient attack: the model masks its "
    "gradient (binarization, quantization, hard thresholds), and gradient attacks overstate robustness.",
    "Attack through a differentiable approximation (BPDA: the adaptive suite's BPDA attacks) and with "
    "black-box attacks (Square, Boundary, HopSkipJump).", on_model=zero_gradients))
register_check(Check(
    "deterministic", "Deterministic in eval mode",
    "A randomized model gives different answers for the same input; single-sample gradients are noisy and "
    "accuracies under attack are not reproducible.",
    "Attack with Expectation over Transformation (EOT) and AutoAttack's 'rand' version (our AutoAttack adapter "
    "switches to it by itself); report the accuracy over several draws.", on_model=deterministic))
register_check(Check(
    "more_iterations", "More iterations and restarts find little more",
    "If the same attack with more steps or restarts lowers accuracy by more than 2 points, the weaker one had "
    "not converged and the numbers of the other attacks may not have either.",
    "Raise steps and restarts until accuracy stops falling, and report the converged numbers.",
    on_results=more_iterations))
register_check(Check(
    "black_box", "Black box does not beat white box",
    "Gradient-free attacks see less of the model than gradient attacks; when they break more samples, the "
    "gradient attacks are being misled (gradient masking). AutoAttack counts on neither side: it ends with "
    "the black-box Square attack.",
    "Fix the white-box attacks (BPDA, margin loss, more steps) before reporting them; the black-box number is "
    "the more honest one meanwhile.", on_results=black_box_vs_white_box))

MODEL_CHECKS = tuple(c for c in CHECKS.values() if c.on_model is not None)
RESULT_CHECKS = tuple(c for c in CHECKS.values() if c.on_results is not None)


def check_samples(model: nn.Module, x: np.ndarray, y: np.ndarray,
                  max_samples: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``max_samples`` correctly classified samples, on which the model checks run."""
    model.eval()
    dev = device_of(model)
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(dev)
    yt = torch.from_numpy(np.asarray(y, np.int64)).to(dev)
    with torch.no_grad():
        ok = torch.nonzero(model(xt).argmax(1) == yt).flatten()[:max_samples]
    return xt[ok], yt[ok]


def run_model_checks(model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int = 0,
                     max_samples: int = 100) -> dict[str, dict]:
    """Every model check on up to ``max_samples`` correctly classified samples."""
    xs, ys = check_samples(model, x, y, max_samples)
    if len(ys) == 0:
        return {c.name: Outcome(NA, "no correctly classified sample", {}).as_dict() for c in MODEL_CHECKS}
    out = {}
    for c in MODEL_CHECKS:
        try:
            out[c.name] = c.on_model(model, xs, ys, seed).as_dict()
        except Exception as exc:  # a check that cannot run is reported, not fatal
            out[c.name] = Outcome(NA, f"could not run: {type(exc).__name__}: {exc}", {}).as_dict()
    return out


def all_outcomes(r: ModelResult, stored: dict[str, dict] | None) -> dict[str, Outcome]:
    """Model checks from the store (n/a when not run) and result checks computed now, in registry order."""
    out = {}
    for c in CHECKS.values():
        if c.on_results is not None:
            out[c.name] = c.on_results(r)
        elif stored and c.name in stored:
            out[c.name] = Outcome(**stored[c.name])
        else:
            out[c.name] = Outcome(NA, "not run (evaluated without checks)", {})
    return out
