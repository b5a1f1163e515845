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


@pytest.mark.parametrize("k, n, lo, hi", [
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score without correction)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0)])
def test_wilson_interval_matches_published_values(k, n, lo, hi):
    assert metrics.wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-4)


def test_intervals_shrink_with_samples_and_overlap_is_symmetric():
    lo200, hi200 = metrics.accuracy_interval(0.5, 200)
    lo1000, hi1000 = metrics.accuracy_interval(0.5, 1000)
    assert 0.06 < 0.5 - lo200 < 0.075 and 0.025 < 0.5 - lo1000 < 0.035     # DESIGN.md 5.5: +-7 and +-3 points
    assert metrics.overlap((0.50, 200), (0.45, 200)) and metrics.overlap((0.45, 200), (0.50, 200))
    assert not metrics.overlap((0.50, 200), (0.38, 200))
    assert not metrics.overlap((0.50, 1000), (0.45, 1000))    # the same gap is real on more images
    assert all(np.isnan(metrics.accuracy_interval(float("nan"), 200)))


def _model(name: str, acc: float, n: int = 200) -> metrics.ModelResult:
    k = round(acc * n)
    dist = np.array([INF] * k + [0.0] * (n - k))
    nr = metrics.NormResult(Norm.L2, acc, metrics.median_distance(dist), ["a"], dist)
    return metrics.ModelResult(name, name, name, 1.0, n, {}, {Norm.L2: nr}, acc, "a", {Norm.L2: nr})


def test_the_report_names_the_models_the_sample_cannot_tell_apart():
    from dim.report import indistinguishable
    lines = indistinguishable([_model("dim", 0.50), _model("bidim", 0.45), _model("cnn", 0.20)])
    assert lines == ["- L2: dim 50% / bidim 45%"]
    assert indistinguishable([_model("dim", 0.50, 2000), _model("bidim", 0.45, 2000)]) == []


def test_dim_paper_is_shown_beside_the_papers_dim():
    from dim.models import get_entry
    from dim.report import tables
    r = metrics.ModelResult("dim_paper", "dim_paper", get_entry("dim_paper").paper_name, 0.95, 200, {}, {}, 0.0,
                            None)
    t = tables.build([r], "table1")
    assert t.header == ["Attack", "DIM (paper objective)", "DIM (paper)"]
    assert t.rows[0] == ["Clean accuracy", "95%", "96%"]          # ours beside the paper's 96%
