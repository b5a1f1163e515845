"""Each sanity check passes on an honest model and trips on a model (or attack) crafted to fail it."""
import numpy as np
import pytest
import torch

import evalkit
from dim import data
from dim.attacks.spec import AttackSpec
from dim.evaluation import checks, metrics
from dim.core.norms import Norm
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.core.verify import predict_numpy
from dim.report import build_report
from dim.store import Store


@pytest.fixture(scope="module")
def samples(data_dir, tiny):
    x, y = data.load_split("mnist", "test", limit=40)
    ok = predict_numpy(tiny, x) == y
    return x[ok][:24], y[ok][:24]


def _model_checks(model, samples):
    x, y = samples
    return {k: v["status"] for k, v in checks.run_model_checks(model, x, y, seed=0).items()}


def test_every_check_passes_on_an_honest_model(tiny, samples):
    assert _model_checks(tiny, samples) == {c.name: checks.PASS for c in checks.MODEL_CHECKS}


def test_masked_gradients_trip_zero_gradient_and_unbounded(tiny, samples):
    got = _model_checks(evalkit.Masked(tiny), samples)
    assert got["zero_gradient"] == checks.WARN
    assert got["unbounded"] == checks.WARN
    assert got["deterministic"] == checks.PASS


def test_randomized_model_trips_determinism(tiny, samples):
    assert _model_checks(evalkit.Randomized(tiny), samples)["deterministic"] == checks.WARN


def test_accuracy_rising_with_eps_is_caught(tiny, samples):
    x, y = samples
    trap = evalkit.Trap(tiny, torch.from_numpy(x), torch.from_numpy(y)).eval()
    out = checks.run_model_checks(trap, x, y, seed=0)["monotone"]
    assert out["status"] == checks.WARN
    acc = out["detail"]["accuracy"]
    assert acc[-1] > acc[1] + 0.5        # the trap: far better at 0.4 than at 0.1


def _run(model, samples, suite, tmp_path):
    x, y = samples
    evaluate_models([EvalModel("m", model)], x, y, suite=suite, run_dir=tmp_path, batch_size=len(y), show=False)
    store = Store(tmp_path / "results.sqlite")
    try:
        (r,) = metrics.compute(store)
        return r, checks.all_outcomes(r, store.get_meta("checks/m"))
    finally:
        store.close()


def test_black_box_beating_white_box_is_caught(tiny, samples, tmp_path):
    suite = (AttackSpec("Linf PGD", "LinfProjectedGradientDescentAttack", Norm.LINF),
             AttackSpec("Linf Square", "square", Norm.LINF, params={"queries": 300}))
    r, out = _run(evalkit.Masked(tiny), samples, suite, tmp_path)
    assert r.attacks["Linf Square"].accuracy < r.attacks["Linf PGD"].accuracy - 0.5
    assert out["black_box"].status == checks.WARN
    assert out["black_box"].value.startswith("Linf: black box") and out["black_box"].value.endswith("(black box wins)")
    assert out["zero_gradient"].status == checks.WARN
    report = (build_report(tmp_path, plots=False) / "report.md").read_text()
    assert "Sanity-check warnings" in report and "Black box does not beat white box -- failed" in report


@pytest.mark.slow
def test_autoattack_does_not_hide_black_box_beating_white_box(tiny, samples, tmp_path):
    """AutoAttack ends with Square; counted as white box it would make the black-box check unable to fire."""
    suite = (AttackSpec("Linf PGD", "LinfProjectedGradientDescentAttack", Norm.LINF),
             AttackSpec("Linf AutoAttack", "autoattack", Norm.LINF, adaptive=True),
             AttackSpec("Linf Square", "square", Norm.LINF, params={"queries": 300}))
    r, out = _run(evalkit.Masked(tiny), samples, suite, tmp_path)
    assert r.attacks["Linf AutoAttack"].ensemble and not r.attacks["Linf PGD"].ensemble
    assert r.attacks["Linf AutoAttack"].accuracy <= r.attacks["Linf Square"].accuracy
    assert out["black_box"].status == checks.WARN
    assert out["black_box"].detail["per_norm"][Norm.LINF.value]["white_box"] == r.attacks["Linf PGD"].accuracy


def test_an_unconverged_attack_is_caught_by_its_refinement(tiny, samples, tmp_path):
    weak = AttackSpec("Linf PGD tiny steps", "LinfProjectedGradientDescentAttack", Norm.LINF,
                      params={"steps": 1, "abs_stepsize": 0.001, "random_start": False})
    strong = AttackSpec("Linf PGD 100x5", "pgd", Norm.LINF, params={"steps": 100, "restarts": 5},
                        adaptive=True, refines="Linf PGD tiny steps")
    r, out = _run(tiny, samples, (weak, strong), tmp_path)
    assert out["more_iterations"].status == checks.WARN
    assert out["more_iterations"].detail["drops"]["Linf PGD tiny steps -> Linf PGD 100x5"] > 0.5
    # and the same pair passes when the weak attack is a real one
    ok = AttackSpec("Linf PGD", "LinfProjectedGradientDescentAttack", Norm.LINF)
    r2, out2 = _run(tiny, samples, (ok, AttackSpec("Linf PGD 100x5", "pgd", Norm.LINF,
                                                    params={"steps": 100, "restarts": 5}, adaptive=True,
                                                    refines="Linf PGD")), tmp_path / "b")
    assert out2["more_iterations"].status == checks.PASS


def test_checks_without_the_needed_attacks_are_not_applicable(tiny, samples, tmp_path):
    r, out = _run(tiny, samples, (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),), tmp_path)
    assert out["more_iterations"].status == checks.NA and out["black_box"].status == checks.NA
    assert np.isfinite(r.attacks["Linf FGSM"].accuracy)


@pytest.mark.parametrize("masked", [True, False])
def test_report_explains_an_infinite_median(tiny, samples, tmp_path, masked):
    """PGD cannot move the masked model, so more than half of its samples have no adversarial: median inf."""
    suite = (AttackSpec("Linf PGD", "LinfProjectedGradientDescentAttack", Norm.LINF, params={"random_start": False}),)
    r, _ = _run(evalkit.Masked(tiny) if masked else tiny, samples, suite, tmp_path)
    assert np.isinf(r.norms[Norm.LINF].median) == masked
    report = (build_report(tmp_path, plots=False) / "report.md").read_text()
    assert ("A median of `inf`" in report) == masked
