"""benchmarks/inference_variants.py: models that change how trained weights run (an ensemble of seeds)."""
from __future__ import annotations

import pytest
import torch
from conftest import benchmark_module

from dim.models import create_model
from dim.models.binarize import input_binarization


@pytest.fixture(scope="module")
def variants():
    return benchmark_module("inference_variants")


def _member(seed: int, **cfg) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("bidim_at_ramp", im_hidden=16, latent=4, denoiser_hidden=(32,), **cfg)


def test_ensemble_averages_its_members_logits_behind_one_input_binarization(variants) -> None:
    members = [_member(0), _member(1)]
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        expected = (members[0](x) + members[1](x)) / 2
        ens = variants.SharedInputEnsemble(members)
        got = ens(x)
    torch.testing.assert_close(got, expected)
    assert input_binarization(ens) is ens.bin_in            # the flip attacks find the one input binarization
    assert not (members[0](x) == members[1](x)).all()       # two different members, not one counted twice


def test_ensemble_refuses_members_that_binarize_their_input_differently(variants) -> None:
    with pytest.raises(ValueError, match="binarize their input differently"):
        variants.SharedInputEnsemble([_member(0), _member(1, binarize_width=0.2)])


def test_majority_keeps_what_most_of_the_window_holds(variants) -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0                       # an isolated pixel: removed
    x[0, 0, :, 0:2] = 1.0                     # a stroke two pixels wide: kept away from the border's zeros
    out = variants.Majority(3)(x)[0, 0]
    assert out[2, 2] == 0
    assert out[1:4, 0:2].eq(1).all() and out[0, 0] == 0      # a corner sees 4 of 9 (zeros past the border)
    with pytest.raises(ValueError, match="odd"):
        variants.Majority(2)
