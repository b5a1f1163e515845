"""Execution's verification gate: whatever an adapter returns, only what the model really misclassifies within the box is stored."""
from pathlib import Path

import numpy as np
import pytest

import evalkit  # noqa: F401  (registers the test adapters)
from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.core.verify import predict_numpy


TESTS = Path(__file__).resolve().parent


def test_lying_attack_is_rejected(tiny, test_data, tmp_path):
    x, y = test_data
    suite = (AttackSpec("Linf liar", "lying", Norm.LINF),)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=16, show=False)
    clean_ok = predict_numpy(tiny, x) == y
    rows = evalkit.rows(tmp_path)
    assert len(rows) == len(y)
    for (_, _, s, dist, _pred) in rows:
        assert dist == (np.inf if clean_ok[s] else 0.0)  # the liar's claims count for nothing


def test_the_runner_verifies_what_an_adapter_claims(tiny, test_data, tmp_path):
    """An adapter that fabricates distances and labels, with out-of-bounds candidates, stores nothing false."""
    x, y = test_data
    suite = (AttackSpec("L2 fabricated", "fabricating", Norm.L2),)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False)
    clean = predict_numpy(tiny, x)
    clipped = x.copy()
    clipped[:, 0, 0, 0] = 1.0                      # what the candidates are once clipped to [0, 1]
    fooled = predict_numpy(tiny, clipped) != y
    rows = evalkit.rows(tmp_path)
    assert len(rows) == len(y)
    for (_, _, s, dist, pred) in rows:
        if clean[s] != y[s]:
            assert dist == 0.0
        elif s % 20 == 1 or not fooled[s]:         # the NaN row, and every candidate that fools nobody
            assert dist == np.inf and pred == clean[s]
        else:
            assert dist == pytest.approx(1.0 - x[s, 0, 0, 0]) and pred == predict_numpy(tiny, clipped[s:s + 1])[0]
        assert dist != 0.01


def test_attacks_run_on_frozen_weights_and_the_model_is_given_back_as_it_was(tiny, test_data):
    """foolbox's attacks call ``loss.backward()``: with trainable weights, every step would also compute (and
    accumulate) a gradient for each weight. Execution freezes them for the unit and restores each flag after."""
    import copy
    from dim.attacks.suites import get_suite
    from dim.core.norms import ThreatModel
    from dim.evaluation.execute import execute
    from dim.evaluation.units import AttackUnit, attack_runner
    x, y = test_data
    model = copy.deepcopy(tiny)
    params = list(model.parameters())
    params[-1].requires_grad_(False)             # a flag of the user's own, kept as it was
    spec = next(s for s in get_suite("paper") if s.name == "Linf PGD")
    unit = AttackUnit("lin", spec.bind(ThreatModel.paper()), attack_runner(spec), 0, np.arange(8), x[:8], y[:8],
                      predict_numpy(model, x[:8]), 0)
    assert (unit.clean == y[:8]).sum() >= 6
    assert execute(unit, model, "cpu").status == "done"
    assert [p.requires_grad for p in params] == [True] * (len(params) - 1) + [False]
    assert all(p.grad is None for p in params)
