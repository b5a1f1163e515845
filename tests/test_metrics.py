import math

import numpy as np
import pytest

from dim.evaluation import metrics
from dim.core.norms import Norm, distances

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
    assert 0.06 < 0.5 - lo200 < 0.075 and 0.025 < 0.5 - lo1000 < 0.035     # +-7 and +-3 points
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


def _store_with_rows(tmp_path, per_attack: dict[tuple[str, str, bool], list[float]], n: int):
    """A hand-built store: one model, every sample classified correctly, the given distances per attack."""
    from dim.store import ResultRow, Store
    store = Store(tmp_path / "results.sqlite")
    labels = np.zeros(n, dtype=np.int64)
    store.add_model("m", "m", "M", {}, None, labels, labels)
    store.add_attacks([(name, norm, {"attack": "x", "adaptive": adaptive})
                       for (name, norm, adaptive) in per_attack])
    for (name, norm, _), dist in per_attack.items():
        store.finish_shard("m", name, 0, [ResultRow("m", name, i, d, 1, 0.0) for i, d in enumerate(dist)], 0.0)
    return store


def test_union_is_zero_where_each_norm_alone_leaves_half_on_different_samples(tmp_path):
    # L2 breaks samples 0-1 and L-inf samples 2-3: each norm alone leaves 50%, no sample survives both
    store = _store_with_rows(tmp_path, {("L2 a", "L2", False): [1.0, 0.5, INF, 3.0],
                                        ("Linf a", "Linf", False): [INF, 0.5, 0.1, 0.2]}, 4)
    try:
        (r,) = metrics.compute(store)
    finally:
        store.close()
    assert r.norms[Norm.L2].accuracy == 0.5 and r.norms[Norm.LINF].accuracy == 0.5
    assert r.union.accuracy == 0.0 and r.union.n == 4 and r.union.norms == [Norm.L2, Norm.LINF]
    assert r.minimal_accuracy == 0.5          # the paper's minimal accuracy does not see it
    assert r.union.broken_by == {"L2": 2, "Linf": 2}    # each sample broken by one norm alone


def test_broken_by_counts_each_sample_once_and_tells_clean_errors_apart():
    # samples: robust; broken by L0 alone; by L0 and L2; misclassified before any attack (distance 0 everywhere)
    d0 = np.array([INF, 3.0, 5.0, 0.0])
    d2 = np.array([2.0, INF, 1.0, 0.0])
    norms = {Norm.L0: metrics.NormResult(Norm.L0, 0.0, 0.0, ["a"], d0),
             Norm.L2: metrics.NormResult(Norm.L2, 0.0, 0.0, ["b"], d2)}
    correct = np.array([True, True, True, False])
    u = metrics.union_accuracy(norms, metrics.ThreatModel.paper(), correct)
    assert u.broken_by == {"L0": 1, "L0+L2": 1, "clean error": 1, "robust": 1}
    assert sum(u.broken_by.values()) == u.n
    without = metrics.union_accuracy(norms, metrics.ThreatModel.paper())
    assert without.broken_by["L0+L2"] == 2               # without labels a clean error is broken by every norm


def test_union_recomputed_from_stored_rows_counts_adaptive_attacks_apart(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    rows = {("L2 a", "L2", False): rng.choice([0.5, 2.0, INF], n).tolist(),
            ("L0 a", "L0", False): rng.choice([3.0, 20.0, INF], n).tolist(),
            ("L0 b", "L0", True): rng.choice([8.0, 30.0], n).tolist()}
    store = _store_with_rows(tmp_path, rows, n)
    try:
        (r,) = metrics.compute(store)
    finally:
        store.close()
    l2, l0a, l0b = (np.array(v) for v in rows.values())
    paper = (l2 > 1.5) & (l0a > 12)
    full = paper & (l0b > 12)
    assert r.union.accuracy == pytest.approx(paper.mean())
    assert r.union_all.accuracy == pytest.approx(full.mean())
    assert r.union_all.accuracy <= min(nr.accuracy for nr in r.norms_all.values())
    assert r.union.interval == metrics.accuracy_interval(paper.mean(), n)


def test_union_leaves_out_samples_without_a_result_in_every_norm():
    d2 = np.array([INF, INF, np.nan, 0.1])
    d0 = np.array([INF, 1.0, INF, INF])
    norms = {Norm.L2: metrics.NormResult(Norm.L2, 0.0, 0.0, ["a"], d2),
             Norm.L0: metrics.NormResult(Norm.L0, 0.0, 0.0, ["b"], d0)}
    u = metrics.union_accuracy(norms, metrics.ThreatModel.paper())
    assert u.n == 3 and u.accuracy == pytest.approx(1 / 3)
    assert metrics.union_accuracy({}, metrics.ThreatModel.paper()) is None


def _pairs(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, dtype=bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, dtype=bool)
    return a, b


@pytest.mark.parametrize("only_a, only_b", [(0, 0), (12, 2), (3, 10), (7, 7), (40, 0)])
def test_mcnemar_exact_is_the_two_sided_binomial_test_of_the_discordant_samples(only_a, only_b):
    from scipy.stats import binomtest
    want = 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert metrics.mcnemar_exact(only_a, only_b) == pytest.approx(want, rel=1e-9)


def test_paired_difference_counts_the_discordant_samples_and_is_antisymmetric():
    a, b = _pairs(36, 12, 2, 0)
    d = metrics.paired_difference(a, b)
    assert (d.n, d.only_a, d.only_b) == (50, 12, 2)
    assert (d.accuracy_a, d.accuracy_b, d.difference) == pytest.approx((0.96, 0.76, 0.2))
    lo, hi = d.interval
    assert lo < d.difference < hi and lo > 0           # 12 against 2 discordant samples: A is better
    r = metrics.paired_difference(b, a)
    assert r.interval == pytest.approx((-hi, -lo)) and r.p_value == d.p_value


def test_paired_interval_without_correlation_is_newcombes_interval_for_independent_samples():
    # phi = 0 (both * neither == only_a * only_b): the interval combines the two Wilson intervals as for
    # independent samples, sqrt((p_a - l_a)^2 + (u_b - p_b)^2) below the difference
    a, b = _pairs(20, 20, 20, 20)
    d = metrics.paired_difference(a, b)
    la, ua = metrics.wilson_interval(40, 80)
    lb, ub = metrics.wilson_interval(40, 80)
    assert d.interval == pytest.approx((-np.hypot(0.5 - la, ub - 0.5), np.hypot(ua - 0.5, 0.5 - lb)))


def test_paired_interval_is_narrower_than_the_unpaired_one_when_outcomes_agree():
    a, b = _pairs(110, 8, 2, 80)          # most samples go the same way under both models
    paired = metrics.paired_difference(a, b)
    unpaired = metrics.paired_difference(*_pairs(66, 52, 46, 36))   # the same accuracies, uncorrelated
    assert paired.accuracy_a == unpaired.accuracy_a and paired.accuracy_b == unpaired.accuracy_b
    assert paired.interval[1] - paired.interval[0] < 0.6 * (unpaired.interval[1] - unpaired.interval[0])


def test_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    # correlated outcomes, as two similar models on the same images: P(both, only A, only B, neither)
    rng = np.random.default_rng(0)
    probs = np.array([0.50, 0.06, 0.03, 0.41])
    truth = probs[1] - probs[2]
    hits = 0
    trials = 2000
    for _ in range(trials):
        cells = rng.multinomial(200, probs)
        lo, hi = metrics.paired_difference(*_pairs(*cells)).interval
        hits += lo <= truth <= hi
    assert 0.93 <= hits / trials <= 0.975


def test_paired_difference_refuses_outcomes_of_different_samples():
    with pytest.raises(ValueError, match="same samples"):
        metrics.paired_difference(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="no sample"):
        metrics.paired_difference(np.ones(0, bool), np.ones(0, bool))
