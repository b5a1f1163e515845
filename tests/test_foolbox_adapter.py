"""The foolbox adapter: fixed-epsilon attacks over the threshold grid."""
from pathlib import Path

import numpy as np
import torch

import evalkit  # noqa: F401  (registers the test adapters)
from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm


TESTS = Path(__file__).resolve().parent


class _Threshold(torch.nn.Module):
    """Class 1 iff the first pixel exceeds 0.5."""

    def forward(self, x):
        p = x[:, 0, 0, 0]
        return torch.stack([0.5 - p, p - 0.5], 1)


class _PushFirstPixel:
    """A fake fixed-epsilon attack: adds eps to the first pixel; counts its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, fmodel, x, criterion, epsilons):
        (eps,) = epsilons
        self.calls.append((len(x), eps))
        adv = x.clone()
        adv[:, 0, 0, 0] += eps
        return None, [adv], None


def test_grid_bisection_finds_the_smallest_breaking_epsilon():
    from dim.attacks.foolbox_adapter import _run_grid
    margins = np.array([0.01, 0.12, 0.29, 0.31, 0.45, 0.9])
    x = np.zeros((len(margins), 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = 0.5 - margins
    y = np.zeros(len(margins), np.int64)
    attack = _PushFirstPixel()
    spec = AttackSpec("Linf push", "fake", Norm.LINF)
    got = _run_grid(attack, spec, _Threshold(), None, x, y, torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(got.distance, [0.025, 0.15, 0.3, 0.35, 0.5, np.inf], rtol=1e-5)
    assert attack.calls[0] == (len(margins), 0.3)          # everyone starts at the threshold
    runs_per_sample = sum(n for n, _ in attack.calls) / len(margins)
    assert runs_per_sample < len(Norm.LINF.grid) / 2        # bisection, not a sweep
