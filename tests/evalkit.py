"""Small, fast, deterministic models for evaluation tests (importable as a --model-factory)."""
from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from dim import data
from dim.attacks import register_adapter
from dim.attacks.foolbox_adapter import run_foolbox
from dim.core.verify import Unverified


def tiny_model(seed: int = 0) -> nn.Module:
    """Softmax regression trained on 2,000 MNIST images (about 88% test accuracy, 1-2 s).

    Trained on one CPU thread whatever the process's setting, so that every process (a test, the CLI it starts as
    ``--model-factory evalkit:tiny_model``) gets bit-identical weights: a run refuses a model whose weights differ
    from the ones it evaluated under the same name, and sums split over other thread counts round differently."""
    torch.manual_seed(seed)
    x, y = data.load_split("mnist", "train", limit=2000)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(150):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


class _NoGradient(nn.Module):
    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def forward(self, x):
        if x.requires_grad:
            raise RuntimeError("this model refuses gradient attacks")
        return self.base(x)


def gradient_hostile_model() -> nn.Module:
    """``tiny_model`` that raises whenever an attack asks for an input gradient: gradient attacks fail."""
    return _NoGradient(tiny_model()).eval()


@register_adapter("lying")
def lying_attack(spec, model, x, y, seed, **kw) -> Unverified:
    """Returns the clean inputs themselves as its "adversarials" (and NaNs for half the batch): a distance of 0
    for every sample if anything trusted an adapter. Only the runner's own verification stands between these
    candidates and the store."""
    cand = x.copy()
    cand[::2] = np.nan
    return Unverified(cand)


@register_adapter("fabricating")
def fabricating_attack(spec, model, x, y, seed, **kw) -> Unverified:
    """Candidates that leave [0, 1] (1,000 added to the first pixel: only before clipping could that fool anyone)
    and one NaN row; calls no verification."""
    cand = x.copy()
    cand[:, 0, 0, 0] += 1000.0
    cand[1] = np.nan
    return Unverified(cand)


@register_adapter("slow_pgd")
def slow_pgd(spec, model, x, y, seed, **kw) -> Unverified:
    """Linf PGD, slowed down (0.4 s a shard, else ``$DIM_TEST_SLOW``) so that a test can kill the process between
    shards."""
    time.sleep(float(os.environ.get("DIM_TEST_SLOW", "0.4")))
    from dataclasses import replace
    return run_foolbox(replace(spec, attack="LinfProjectedGradientDescentAttack"), model, x, y, seed)


@register_adapter("broken")
def broken_attack(spec, model, x, y, seed, **kw) -> Unverified:
    raise RuntimeError("this attack always fails")


# ---- crafted models that must trip the sanity checks (tests/test_checks.py)
class Masked(nn.Module):
    """``base`` on an input rounded to 1/255 steps: the same decisions, and an exactly zero input gradient."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def forward(self, x):
        return self.base(torch.round(x * 255) / 255)


class Randomized(nn.Module):
    """``base`` on a noisy copy of the input: a different answer on every call."""

    def __init__(self, base: nn.Module, sigma: float = 0.1):
        super().__init__()
        self.base, self.sigma = base, sigma

    def forward(self, x):
        return self.base(x + self.sigma * torch.randn_like(x))


class Trap(nn.Module):
    """Weak near the data, "robust" far from it: beyond L-inf 0.15 of every reference image it answers
    the label of the nearest one with a constant (gradient-free) logit, so attacks with larger eps do worse."""

    def __init__(self, base: nn.Module, x_ref: torch.Tensor, y_ref: torch.Tensor, radius: float = 0.15):
        super().__init__()
        self.base, self.radius = base, radius
        self.register_buffer("x_ref", x_ref.flatten(1))
        self.register_buffer("y_ref", y_ref)

    def forward(self, x):
        d = (x.flatten(1)[:, None, :] - self.x_ref[None]).abs().amax(-1)      # (B, R) L-inf distances
        dist, nearest = d.min(1)
        far = (dist > self.radius)[:, None]
        memorized = 20.0 * nn.functional.one_hot(self.y_ref[nearest], 10).float()
        return torch.where(far, memorized, self.base(x))


@register_adapter("dies_once")
def dies_once(spec, model, x, y, seed, **kw) -> Unverified:
    """Kills its own process the first time it runs (as a worker lost mid-unit would die), then is Linf FGSM.
    ``spec.params["marker"]`` is the file that remembers the first time."""
    from dataclasses import replace
    marker = Path(spec.params["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return run_foolbox(replace(spec, attack="LinfFastGradientAttack", params={}), model, x, y, seed)


@register_adapter("from_best")
def from_best(spec, model, x, y, seed, starting_points=None, **kw) -> Unverified:
    """Starts from the best earlier adversarial (as Brendel-Bethge does) and moves it 10% of the way back to
    the clean image: its result depends on which earlier adversarials it was given."""
    assert starting_points is not None and starting_points.shape == x.shape
    start = np.where(np.isnan(starting_points), x, starting_points)
    return Unverified(start + 0.1 * (x - start))


# ---- a run slow enough to be killed between shards (tests/test_evaluation.py, tests/test_ray.py)
KILLABLE_RUN = """
import sys
sys.path.insert(0, {tests!r})
import evalkit
evalkit.killable_run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "serial")
"""


def killable_run(run_dir: str, executor: str = "serial") -> None:
    """48 images in 12 shards, slow L-inf PGD then FGSM: what a test kills and resumes (run as KILLABLE_RUN)."""
    from dim.attacks.spec import AttackSpec
    from dim.core.norms import Norm
    from dim.evaluation.runner import EvalModel, evaluate_models
    x, y = data.load_split("mnist", "test", limit=48)
    suite = (AttackSpec("Linf slow PGD", "slow_pgd", Norm.LINF),
             AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF))
    evaluate_models([EvalModel("tiny", tiny_model())], x, y, suite=suite, run_dir=run_dir, batch_size=4, seed=5,
                    show=False, executor=executor)


def done_shards(db: Path) -> int:
    """Finished shards in a store another process may be writing (0 while it has none)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM shards WHERE status = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def rows(run_dir: Path) -> list[tuple]:
    """Every stored result of a run as (model, attack, sample, distance, pred)."""
    from dim.store import Store
    store = Store(run_dir / "results.sqlite")
    try:
        return [(r.model, r.attack, r.sample, r.distance, r.pred) for r in store.results()]
    finally:
        store.close()


def robust_fraction(dist, eps) -> float:
    """The documented accuracy at eps: distances beyond eps by more than float32 rounding."""
    from dim.evaluation import metrics
    return float(np.mean(np.asarray(dist) > eps * (1 + metrics.RELATIVE_TOLERANCE)))


class Output(nn.Module):
    """``base`` with its output transformed by ``fn`` (another model, or a wrong kind of output)."""

    def __init__(self, base, fn):
        super().__init__()
        self.base, self.fn = base, fn

    def forward(self, x):
        return self.fn(self.base(x))
