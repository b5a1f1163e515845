"""benchmarks/inference_variants.py: models that change how trained weights run (the ensemble itself: test_ensemble.py)."""
from __future__ import annotations

import pytest
import torch
from conftest import benchmark_module



@pytest.fixture(scope="module")
def variants():
    return benchmark_module("inference_variants")


def test_majority_keeps_what_most_of_the_window_holds(variants) -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0                       # an isolated pixel: removed
    x[0, 0, :, 0:2] = 1.0                     # a stroke two pixels wide: kept away from the border's zeros
    out = variants.Majority(3)(x)[0, 0]
    assert out[2, 2] == 0
    assert out[1:4, 0:2].eq(1).all() and out[0, 0] == 0      # a corner sees 4 of 9 (zeros past the border)
    with pytest.raises(ValueError, match="odd"):
        variants.Majority(2)
