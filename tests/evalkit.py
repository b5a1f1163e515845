"""Small, fast, deterministic models for evaluation tests (importable as a --model-factory)."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn

from dim import data
from dim.attacks import register_adapter
from dim.attacks.foolbox_adapter import run_foolbox
from dim.evaluation.verify import Verified, verify


def tiny_model() -> nn.Module:
    """Softmax regression trained on 2,000 MNIST images (about 88% test accuracy, 1-2 s)."""
    torch.manual_seed(0)
    x, y = data.load_split("mnist", "train", limit=2000)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@register_adapter("lying")
def lying_attack(spec, model, x, y, seed, **kw) -> Verified:
    """Claims success everywhere: returns the clean input (and NaNs for half the batch)."""
    cand = x.copy()
    cand[::2] = np.nan
    return verify(model, x, y, cand, spec.norm)


@register_adapter("slow_pgd")
def slow_pgd(spec, model, x, y, seed, **kw) -> Verified:
    """Linf PGD, slowed down so that a test can kill the process between shards."""
    time.sleep(0.4)
    from dataclasses import replace
    return run_foolbox(replace(spec, attack="LinfProjectedGradientDescentAttack"), model, x, y, seed)


@register_adapter("broken")
def broken_attack(spec, model, x, y, seed, **kw) -> Verified:
    raise RuntimeError("this attack always fails")
