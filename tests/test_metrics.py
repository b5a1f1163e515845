import math

import numpy as np
import pytest

from dim.evaluation import metrics
from dim.evaluation.norms import Norm, distances

INF = math.inf


def test_accuracy_at_threshold_is_strict_and_counts_clean_errors():
    d = np.array([0.0, 0.1, 0.3, 0.31, INF])  # clean error, broken, broken at eps exactly, robust, robust
    assert metrics.accuracy_at(d, 0.3) == pytest.approx(2 / 5)


def test_a_float32_projection_onto_the_ball_counts_as_within_eps():
    x = np.full((1, 1, 2, 2), 0.1, np.float32)
    adv = np.clip(x + np.float32(0.3), 0, 1)           # what a float32 L-inf projection produces
    d = distances(x, adv, Norm.LINF)
    assert d[0] > 0.3                                   # 0.30000001... in float64
    assert metrics.accuracy_at(d, 0.3) == 0.0           # still broken at eps = 0.3


def test_worst_case_per_sample_and_median():
    table = np.array([[0.5, INF, 2.0, 0.0],
                      [0.7, 1.0, INF, 0.0],
                      [np.nan, 3.0, 1.0, 0.0]])  # NaN = no result for that sample: ignored
    wc = metrics.worst_case(table)
    assert wc.tolist() == [0.5, 1.0, 1.0, 0.0]
    assert metrics.median_distance(wc) == pytest.approx(0.75)
    assert metrics.median_distance(np.array([INF, INF, 1.0])) == INF  # most samples never broken


def test_distances_per_norm():
    x = np.zeros((1, 1, 2, 2), np.float32)
    adv = np.array([[[[0.5, -0.25], [0.0, 0.0]]]], np.float32)
    assert distances(x, adv, Norm.L0)[0] == 2
    assert distances(x, adv, Norm.L1)[0] == pytest.approx(0.75)
    assert distances(x, adv, Norm.L2)[0] == pytest.approx(math.sqrt(0.3125))
    assert distances(x, adv, Norm.LINF)[0] == pytest.approx(0.5)


def test_thresholds_are_on_the_grids():
    for n in Norm:
        assert n.threshold in n.grid
