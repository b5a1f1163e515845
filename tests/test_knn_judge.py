"""benchmarks/knn_judge.py: the nearest training images' vote on adversarial points."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import benchmark_module


@pytest.fixture(scope="module")
def kj():
    return benchmark_module("knn_judge")


def _reference():
    """Three classes of 1x2x2 'images' around three corners, four images each."""
    centres = torch.tensor([[0.0, 0, 0, 0], [1.0, 1, 0, 0], [0.0, 0, 1, 1]])
    gen = torch.Generator().manual_seed(0)
    x = (centres.repeat_interleave(4, 0) + 0.05 * torch.randn(12, 4, generator=gen)).view(12, 1, 2, 2)
    return x, torch.arange(3).repeat_interleave(4)


def test_the_vote_is_the_majority_of_the_nearest_training_images(kj):
    x, y = _reference()
    q = np.array([[0.0, 0, 0, 0], [0.9, 1, 0.1, 0], [0, 0.1, 1, 0.8]], dtype=np.float32).reshape(3, 1, 2, 2)
    assert kj.knn_vote(q, x, y, 3).tolist() == [0, 1, 2]
    assert kj.knn_vote(q, x, y, 3, chunk=1).tolist() == [0, 1, 2]        # chunks change nothing
    # a point between class 0 and class 1, a little nearer to 1: with k = 8 four of each vote, the nearer wins
    mid = np.array([[0.55, 0.55, 0, 0]], dtype=np.float32).reshape(1, 1, 2, 2)
    assert kj.knn_vote(mid, x, y, 8).tolist() == [1]


def test_an_images_own_copy_does_not_vote_for_it(kj):
    x, y = _reference()
    y = y.clone()
    y[0] = 2                              # a mislabelled copy: with it voting, k = 1 returns its label
    q = x[:1].numpy()
    assert kj.knn_vote(q, x, y, 1).tolist() == [2]
    assert kj.knn_vote(q, x, y, 1, skip=np.array([0])).tolist() == [0]
    assert kj.knn_vote(q, x, y, 1, skip=np.array([-1])).tolist() == [2]


def test_a_k_outside_the_reference_is_refused(kj):
    x, y = _reference()
    for k in (0, 13):
        with pytest.raises(ValueError, match=f"k must be between 1 and the 12 reference images, got {k}"):
            kj.knn_vote(x.numpy(), x, y, k)


def test_the_judge_counts_points_moved_to_the_adversarial_class(kj):
    labels = np.array([4, 4, 9, 7, 1])
    clean_votes = np.array([4, 9, 9, 7, 1])                       # the judge misreads sample 1's clean image
    broken = {"L0": np.array([True, True, True, False, False]), "L1": np.array([False, False, True, True, False])}
    preds = {"L0": np.array([9, 9, 4, 7, 1]), "L1": np.array([4, 4, 7, 9, 1])}
    votes = {"L0": np.array([9, 9, 9, 7, 1]), "L1": np.array([4, 4, 7, 7, 1])}
    out = kj.judge(labels, clean_votes, broken, preds, votes, np.array([True, True, True, True, False]))
    assert out["per_norm"]["L0"] == {"broken": 3, "to_adversarial_class": 2, "to_own_class": 1}
    assert out["per_norm"]["L1"] == {"broken": 2, "to_adversarial_class": 1, "to_own_class": 1}
    assert out["broken_in_some_norm"] == 4
    assert out["some_point_to_adversarial_class"] == 3                  # samples 0, 1 (L0) and 2 (L1)
    assert out["some_point_to_adversarial_class_clean_read_right"] == 2  # not 1: its clean image read as 9
    assert out["pairs"] == [("4->9", 1), ("9->7", 1)]
    assert out["per_sample"] == "10100"
    assert out["clean_read_right"] == pytest.approx(0.8)
