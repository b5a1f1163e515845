"""The adaptive suite: composition, BPDA against the exact gradient, attacks on the model's own scores."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import evalkit
from dim import data
from dim.attacks import ADAPTERS, AttackSpec
from dim.attacks.adaptive import score_function
from dim.attacks.suites import ADAPTIVE, BPDA_AUTOATTACK, PAPER, counts_per_norm, get_suite
from dim.evaluation import metrics
from dim.core.norms import Norm
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.evaluation.units import attack_runner
from dim.core.verify import predict_numpy, verify
from dim.models import Binarize, create_model
from dim.report import build_report
from dim.store import Store


@pytest.fixture(scope="module")
def binarized(tiny):
    """A binarized classifier (threshold 0.5, then the linear model): zero gradients, like biCNN."""
    return nn.Sequential(Binarize(0.5), tiny).eval()


@pytest.fixture(scope="module")
def samples(data_dir, binarized):
    x, y = data.load_split("mnist", "test", limit=40)
    ok = predict_numpy(binarized, x) == y
    return x[ok][:20], y[ok][:20]


def test_adaptive_suite_is_data_with_registered_adapters():
    assert counts_per_norm(ADAPTIVE) == {Norm.L0: 5, Norm.L1: 6, Norm.L2: 7, Norm.LINF: 7}
    assert all(s.adaptive and s.attack in ADAPTERS for s in ADAPTIVE)
    names = {s.name for s in PAPER + ADAPTIVE}
    assert all(s.refines in names for s in ADAPTIVE if s.refines)
    joined = get_suite("paper+adaptive")
    assert len(joined) == len(PAPER) + len(ADAPTIVE) and joined[:len(PAPER)] == PAPER
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        get_suite("paper+nope")


def _robust(spec, model, samples, seed=0):
    """The adapter's candidates through the evaluation's gate: robust accuracy and the verified result."""
    x, y = samples
    got = verify(model, x, y, attack_runner(spec)(spec, model, x, y, seed), spec.norm)
    return float(np.mean(~np.isfinite(got.distance))), got


def _accuracy(name, model, samples, seed=0):
    return _robust(next(s for s in ADAPTIVE if s.name == name), model, samples, seed)


def test_bpda_breaks_what_the_exact_gradient_cannot(binarized, samples):
    exact, _ = _accuracy("Linf PGD-CE 100x5", binarized, samples)
    bpda, got = _accuracy("Linf BPDA-PGD 100x5", binarized, samples)
    assert exact >= 0.8                    # zero gradients: only the random start moves the binarized model
    assert bpda <= exact - 0.5             # straight-through gradients do
    x, _ = samples
    broken = np.isfinite(got.distance)
    assert np.all(np.abs(got.x_adv[broken] - x[broken]).max(axis=(1, 2, 3)) <= 0.3 + 1e-6)
    assert binarized[0].mode.value == "exact"   # the model is left as it was


@pytest.mark.slow
def test_bpda_apgd_runs_the_reference_apgd_through_the_straight_through_gradient(binarized, samples):
    from dataclasses import replace
    for name, eps, gain in (("Linf BPDA-APGD", 0.3, 0.5), ("L2 BPDA-APGD", 1.5, 0.05)):
        bpda, got = _accuracy(name, binarized, samples)
        spec = next(s for s in ADAPTIVE if s.name == name)
        exact_spec = replace(spec, params={**spec.params, "gradient": "exact"})
        exact, _ = _robust(exact_spec, binarized, samples)
        assert exact >= 0.8 and bpda <= exact - gain, (name, exact, bpda)   # the same APGD, another gradient
        assert np.all(got.distance[np.isfinite(got.distance)] <= eps + 1e-4), name


def test_score_attack_uses_the_models_own_scores():
    dim_model = create_model("dim")
    assert score_function(dim_model) == dim_model.scores
    lin = nn.Linear(3, 2)
    assert score_function(lin) is lin


def test_score_attack_and_autoattack_break_a_weak_model(tiny, samples):
    for name, eps in (("L2 Score-MT", 1.5), ("Linf AutoAttack", 0.3)):
        acc, got = _accuracy(name, tiny, samples)
        assert acc <= 0.1, name
        assert np.all(got.distance[np.isfinite(got.distance)] <= eps + 1e-4), name   # within the threshold


class _ScoresOnly(nn.Module):
    """Logits without a gradient (as if computed by a non-differentiable head), and differentiable scores."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def scores(self, x):
        return self.base(x)

    def forward(self, x):
        return 10 * self.scores(x).detach()


def test_score_attack_follows_the_models_scores_where_the_logits_give_no_gradient(tiny, samples):
    acc, got = _accuracy("L2 Score-MT", _ScoresOnly(tiny).eval(), samples)
    assert acc <= 0.1                       # only the scores' gradient can have done this
    assert np.all(got.distance[np.isfinite(got.distance)] <= 1.5 + 1e-4)


def test_bpda_on_a_model_without_binarization_is_recorded_not_applicable(tiny, samples, tmp_path):
    x, y = samples
    suite = [s for s in ADAPTIVE if s.name in ("Linf BPDA-PGD 100x5", "Linf PGD-CE 100x5")]
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=10, show=False,
                    checks=False)
    store = Store(tmp_path / "results.sqlite")
    try:
        statuses = {(s["attack"], s["status"]) for s in store.shards()}
        (r,) = metrics.compute(store)
    finally:
        store.close()
    assert statuses == {("Linf BPDA-PGD 100x5", "skipped"), ("Linf PGD-CE 100x5", "done")}
    assert r.attacks["Linf BPDA-PGD 100x5"].not_applicable
    table = (build_report(tmp_path, plots=False) / "table1.md").read_text()
    assert "| Linf BPDA-PGD 100x5 | n/a |" in table
    assert "All L∞ attacks incl. adaptive" in table


@pytest.mark.slow
def test_autoattack_switches_to_rand_for_a_randomized_model(tiny, samples, monkeypatch):
    import pyautoattack
    seen = []
    real = pyautoattack.AutoAttack

    def spy(*args, **kw):
        seen.append(kw["version"])
        return real(*args, **kw)

    monkeypatch.setattr(pyautoattack, "AutoAttack", spy)
    spec = next(s for s in ADAPTIVE if s.name == "Linf AutoAttack")
    x, y = samples
    attack_runner(spec)(spec, tiny, x[:5], y[:5], 0)
    attack_runner(spec)(spec, evalkit.Randomized(tiny, sigma=0.05), x[:5], y[:5], 0)
    assert seen == ["standard", "rand"]


@pytest.mark.slow
def test_bpda_autoattack_runs_autoattack_through_the_straight_through_gradient(binarized, tiny, samples,
                                                                                 monkeypatch, tmp_path):
    import pyautoattack
    modes = []
    real = pyautoattack.AutoAttack

    class Spy(real):
        def run_standard_evaluation(self, *args, **kw):
            modes.append(binarized[0].mode.value)
            return super().run_standard_evaluation(*args, **kw)

    monkeypatch.setattr(pyautoattack, "AutoAttack", Spy)
    spec = next(s for s in BPDA_AUTOATTACK if s.norm is Norm.LINF)
    x, y = samples
    got = verify(binarized, x[:8], y[:8], attack_runner(spec)(spec, binarized, x[:8], y[:8], 0), spec.norm)
    assert modes == ["straight_through"] and binarized[0].mode.value == "exact"
    assert np.isfinite(got.distance).mean() >= 0.5       # the straight-through gradient breaks it
    # on a model without binarization it is recorded as not applicable, like the other BPDA attacks
    evaluate_models([EvalModel("tiny", tiny)], x[:8], y[:8], suite=BPDA_AUTOATTACK, run_dir=tmp_path,
                    batch_size=8, show=False, checks=False)
    store = Store(tmp_path / "results.sqlite")
    try:
        assert {s["status"] for s in store.shards()} == {"skipped"}
    finally:
        store.close()


def _with(spec, **params):
    from dataclasses import replace
    return replace(spec, params={**spec.params, **params})


@pytest.mark.parametrize("name", ["L1 AutoAttack", "L1 APGD-CE 100x5", "L1 Square", "L0 PGD-L0 100x5",
                                  "L0 Sparse-RS", "L0 Greedy"])
@pytest.mark.slow
def test_l1_and_l0_attacks_break_an_undefended_model_within_the_threshold(tiny, samples, name):
    spec = next(s for s in ADAPTIVE if s.name == name)
    acc, got = _robust(spec, tiny, samples)
    assert acc <= 0.2, (name, acc)        # the linear model has no defence: these attacks break it
    x, _ = samples
    broken = np.isfinite(got.distance)
    assert np.all(got.distance[broken] <= spec.threshold * (1 + 1e-5)), name
    if spec.norm is Norm.L0:               # never more than eps pixels, counted on the stored adversarials
        changed = (np.abs(got.x_adv[broken] - x[broken]).sum(axis=1) > 0).reshape(broken.sum(), -1).sum(1)
        assert changed.max() <= 12, name


@pytest.mark.parametrize("name, gain", [("L1 BPDA-APGD", 0.5), ("L1 APGD-CE 100x5", 0.5), ("L0 PGD-L0 100x5", 0.5),
                                        ("L0 Greedy", 0.5)])
def test_l1_and_l0_gradient_attacks_break_a_binarized_model_only_through_bpda(binarized, samples, name, gain):
    spec = next(s for s in ADAPTIVE if s.name == name)
    bpda, _ = _robust(_with(spec, gradient="bpda"), binarized, samples)
    exact, _ = _robust(_with(spec, gradient="exact"), binarized, samples)
    assert exact >= 0.8 and bpda <= exact - gain, (name, exact, bpda)
    assert binarized[0].mode.value == "exact"


def test_sparse_rs_needs_no_gradient_and_breaks_a_binarized_model(binarized, samples):
    spec = next(s for s in ADAPTIVE if s.name == "L0 Sparse-RS")
    acc, got = _robust(spec, binarized, samples)
    assert acc <= 0.3
    x, _ = samples
    broken = np.isfinite(got.distance)
    changed = (np.abs(got.x_adv[broken] - x[broken]).sum(axis=1) > 0).reshape(broken.sum(), -1).sum(1)
    assert changed.max() <= 12


def test_the_l0_projection_keeps_the_best_pixels_inside_the_box():
    from dim.attacks.sparse import project_l0_box
    x = torch.full((1, 1, 2, 3), 0.5)
    delta = torch.tensor([[[[0.9, -0.1, 0.3], [0.0, -0.6, 0.2]]]])
    got = project_l0_box(delta, x, 2)
    # clipped changes: 0.5, -0.1, 0.3, 0, -0.5, 0.2; worth keeping: 0.9^2-0.4^2=0.65, 0.01, 0.09, 0, 0.36-0.01, 0.04
    assert torch.allclose(got, torch.tensor([[[[0.5, 0.0, 0.0], [0.0, -0.5, 0.0]]]]))
    assert ((x + got) >= 0).all() and ((x + got) <= 1).all()


FLIP_SPECS = ADAPTIVE + get_suite("knapsack-flips")


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["BinFlip", "KnapsackFlips"])
@pytest.mark.parametrize("norm", list(Norm))
def test_flips_break_a_binarized_model_within_the_threshold_and_beat_the_exact_gradient(binarized, samples, norm,
                                                                                        attack):
    spec = next(s for s in FLIP_SPECS if s.name == f"{norm.value} {attack}")
    acc, got = _robust(spec, binarized, samples)
    exact = next(s for s in ADAPTIVE if s.name == "Linf PGD-CE 100x5")
    exact_acc, _ = _robust(exact, binarized, samples)
    assert acc <= 0.5 and acc < exact_acc - 0.3, (norm, acc, exact_acc)
    x, _ = samples
    broken = np.isfinite(got.distance)
    assert np.all(got.distance[broken] <= spec.threshold * (1 + 1e-5))
    assert binarized[0].mode.value == "exact"       # the model is left as it was


def test_binflip_flips_the_cheapest_values_first():
    """One value of the input decides the class; BinFlip moves only that one, just past the threshold."""
    from dim.attacks.binflip import NUDGE, binflip

    class Pick(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = Binarize(0.5)

        def forward(self, x):
            h = self.b(x).flatten(1)
            return torch.stack([1 - h[:, 0] - h[:, 1], h[:, 0] + h[:, 1]], 1)   # class 1 if either value is on
    x = torch.tensor([[[[0.2, 0.45, 0.0, 0.0]]]])
    adv, broken = binflip(Pick(), x, torch.tensor([0]), norm=Norm.L2, eps=1.0, steps=5)
    assert bool(broken[0])
    assert torch.allclose(adv, torch.tensor([[[[0.2, 0.5 + NUDGE, 0.0, 0.0]]]]))   # 0.05 away, not 0.3


def test_block_flips_spend_each_norm_least():
    """A block of 0, 0, 0, 0.8 (mean 0.2) flips when its mean passes 0.501, a total change of 1.204: L0 moves the
    fewest pixels (one all the way, one by the rest), L2 and L-inf the most evenly the box allows (the 0.8 pixel
    has 0.2 of room, the others 1.004 / 3 each), L1 pays 1.204 either way."""
    from dim.attacks.binflip import FlipUnits, flip_cost
    x = torch.tensor([[[[0.0, 0.0], [0.0, 0.8]]]])
    units = FlipUnits(0.5, 2)
    up, l0 = units.moves(x, Norm.L0)
    assert bool(up.all())
    assert flip_cost(l0, Norm.L0).item() == 2 and torch.allclose(l0.sum(), torch.tensor(1.204))
    _, even = units.moves(x, Norm.L2)
    assert torch.allclose(even.flatten(), torch.tensor([1.004 / 3] * 3 + [0.2]))
    assert torch.allclose(flip_cost(even, Norm.LINF), torch.tensor(1.004 / 3))
    assert flip_cost(even, Norm.L2).item() < flip_cost(l0, Norm.L2).item()
    assert torch.allclose(flip_cost(even, Norm.L1), flip_cost(l0, Norm.L1))


@pytest.mark.parametrize("norm", list(Norm))
def test_every_block_move_flips_its_block_inside_the_box_with_the_fewest_pixels(norm):
    from dim.attacks.binflip import NUDGE, FlipUnits, flip_cost
    torch.manual_seed(0)
    x = (torch.rand(6, 2, 4, 6) * 1.4 - 0.2).clamp(0, 1)          # with values at 0 and 1, where the box binds
    units = FlipUnits(0.5, 2)
    assert torch.equal(units.ungroup(units.group(x), x.shape[1:]), x)
    with pytest.raises(ValueError, match="multiples of 2"):
        units.group(torch.rand(1, 1, 5, 4))
    _, move = units.moves(x, norm)
    x_adv = x + units.ungroup(move, x.shape[1:])
    assert bool(((x_adv >= 0) & (x_adv <= 1)).all())
    assert bool(((F.avg_pool2d(x, 2) > 0.5) != (F.avg_pool2d(x_adv, 2) > 0.5)).all())
    if norm is Norm.L0:           # no fewer pixels can do it: the k roomiest pixels of the block fall short
        v = units.group(x)
        up = v.mean(-1) <= 0.5
        room = torch.where(up[..., None], 1 - v, v).sort(-1, descending=True).values.cumsum(-1)
        need = ((v.mean(-1) - 0.5).abs() + NUDGE) * 4
        k = flip_cost(move, norm).long()
        short = room.gather(-1, (k - 2).clamp_min(0)[..., None])[..., 0]
        assert bool(((k == 1) | (short < need)).all())


def test_block_binarization_thresholds_block_means_and_passes_their_gradient_straight_through():
    from dim.models.binarize import GradientMode
    torch.manual_seed(0)
    x = torch.rand(2, 1, 4, 4, requires_grad=True)
    b = Binarize(0.5, mode=GradientMode.STRAIGHT_THROUGH, pool=2)
    out = b(x)
    means = F.avg_pool2d(x.detach(), 2)
    assert torch.equal(out, (means > 0.5).float().repeat_interleave(2, 2).repeat_interleave(2, 3))
    w = torch.rand_like(x)
    (out * w).sum().backward()
    assert torch.allclose(x.grad, F.avg_pool2d(w, 2).repeat_interleave(2, 2).repeat_interleave(2, 3))
    with pytest.raises(ValueError, match="multiples of 2"):
        b(torch.rand(1, 1, 5, 4))
    with pytest.raises(ValueError, match="whole number"):
        Binarize(0.5, pool=0)


@pytest.fixture(scope="module")
def block_binarized(tiny):
    """``tiny`` behind a binarization of 2x2 blocks."""
    return nn.Sequential(Binarize(0.5, pool=2), tiny).eval()


@pytest.mark.parametrize("attack", ["BinFlip", "KnapsackFlips"])
def test_flips_on_a_block_binarized_model_move_whole_blocks_within_the_threshold(block_binarized, samples, attack):
    """Every changed pixel belongs to a block whose binarization flipped (an attack that flipped single pixels,
    or spread its budget over blocks that never cross, fails here), and the attack breaks most images."""
    spec = next(s for s in FLIP_SPECS if s.name == f"L1 {attack}")
    x, y = samples
    cand = attack_runner(spec)(spec, block_binarized, x, y, 0)
    got = verify(block_binarized, x, y, cand, spec.norm)
    assert np.mean(~np.isfinite(got.distance)) <= 0.5
    xt, at = torch.from_numpy(x), torch.from_numpy(cand.x_adv)
    flipped = ((F.avg_pool2d(xt, 2) > 0.5) != (F.avg_pool2d(at, 2) > 0.5)).repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert bool(((at != xt) <= flipped).all())
    broken = np.isfinite(got.distance)
    assert np.all(got.distance[broken] <= spec.threshold * (1 + 1e-5))


def test_a_ramp_is_linear_across_its_band_and_its_exact_gradient_is_the_ramps_own():
    from dim.models.binarize import GradientMode, gradient_mode
    x = torch.tensor([0.0, 0.2, 0.29, 0.45, 0.5, 0.6, 0.71, 0.9, 1.0], requires_grad=True)
    b = Binarize(0.5, width=0.4)
    out = b(x)
    assert torch.allclose(out, torch.tensor([0.0, 0.0, 0.0, 0.375, 0.5, 0.75, 1.0, 1.0, 1.0]), atol=1e-6)
    out.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.0, 0.0, 0.0, 2.5, 2.5, 2.5, 0.0, 0.0, 0.0]))
    x.grad = None
    with gradient_mode(b, GradientMode.STRAIGHT_THROUGH):
        b(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    with pytest.raises(ValueError, match="width must lie in"):
        Binarize(0.5, width=1.2)


def test_the_smooth_gradient_keeps_a_ramps_derivative_and_passes_a_step_straight_through():
    """A ramp (0.3-0.7) then a step: the exact gradient is zero (the step), BPDA's the identity everywhere, the
    smooth one the ramp's own derivative (2.5 inside the band, zero outside) through the step's identity."""
    from dim.models.binarize import GradientMode, gradient_mode
    model = nn.Sequential(Binarize(0.5, width=0.4), Binarize(0.5))
    x = torch.tensor([0.1, 0.45, 0.6, 0.9])
    want = {GradientMode.EXACT: [0.0] * 4, GradientMode.STRAIGHT_THROUGH: [1.0] * 4,
            GradientMode.SMOOTH: [0.0, 2.5, 2.5, 0.0]}
    for mode, grad in want.items():
        xg = x.clone().requires_grad_(True)
        with gradient_mode(model, mode):
            model(xg).sum().backward()
        assert torch.allclose(xg.grad, torch.tensor(grad)), mode


def test_the_smooth_gradient_is_not_applicable_without_a_ramp(binarized, samples):
    from dim.attacks import NotApplicable
    spec = next(s for s in get_suite("ramp-autoattack") if s.name == "L2 Smooth-AutoAttack")
    with pytest.raises(NotApplicable, match="ramp"):
        attack_runner(spec)(spec, binarized, *samples, 0)


def test_a_flip_on_a_ramp_takes_the_value_to_the_bands_far_edge():
    """Band 0.3-0.7: 0.45 goes to 0.7 (L1 cost 0.25, the ramp's value 0.375 -> 1), 0.9 to 0.3 (1 -> 0), 0 to 0.7."""
    from dim.attacks.binflip import FlipUnits, flip_cost
    x = torch.tensor([[0.45, 0.9, 0.0]])
    units = FlipUnits(0.5, 1, 0.4)
    _, move = units.moves(x, Norm.L1)
    assert torch.allclose(x + move[..., 0], torch.tensor([[0.7, 0.3, 0.7]]))
    assert torch.allclose(flip_cost(move, Norm.L1), torch.tensor([[0.25, 0.6, 0.7]]))
    assert torch.allclose(units.change(x), torch.tensor([[0.625, -1.0, 1.0]]))
    assert torch.equal(FlipUnits(0.5).change(x), torch.tensor([[1.0, -1.0, 1.0]]))


def test_knapsack_flips_on_a_ramp_model_stay_within_the_threshold_and_end_on_the_bands_edges(tiny, samples):
    """Every value the attack changes ends at 0.3 or 0.7 (a step's flip would end at 0.5 -+ 0.001)."""
    model = nn.Sequential(Binarize(0.5, width=0.4), tiny).eval()
    spec = next(s for s in FLIP_SPECS if s.name == "L1 KnapsackFlips")
    x, y = samples
    cand = attack_runner(spec)(spec, model, x, y, 0)
    got = verify(model, x, y, cand, spec.norm)
    assert np.mean(~np.isfinite(got.distance)) <= 0.5
    changed = cand.x_adv != x
    assert changed.any()
    ends = cand.x_adv[changed]
    assert np.all(np.isclose(ends, 0.3, atol=1e-5) | np.isclose(ends, 0.7, atol=1e-5))
    broken = np.isfinite(got.distance)
    assert np.all(got.distance[broken] <= spec.threshold * (1 + 1e-5))


def test_a_partial_move_stops_inside_the_band_and_counts_by_its_change_on_the_ramp():
    """L-inf 0.3 on a band of 0.3-0.7: 0.75 -> 0.45 (1 -> 0.375), 0 -> 0.3 (no change), 0.45 -> 0.7 (a whole flip),
    0.2 -> 0.5 (0 -> 0.5). On a step only the moves that cross the threshold change anything."""
    from dim.attacks.binflip import FlipUnits
    x = torch.tensor([[0.75, 0.0, 0.45, 0.2]])
    move, change = FlipUnits(0.5, 1, 0.4).partial_moves(x, 0.3)
    assert torch.allclose(x + move[..., 0], torch.tensor([[0.45, 0.3, 0.7, 0.5]]))
    assert torch.allclose(change, torch.tensor([[-0.625, 0.0, 0.625, 0.5]]))
    _, change = FlipUnits(0.5).partial_moves(x, 0.3)
    assert torch.equal(change, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]))


def test_a_partial_flip_step_takes_every_move_of_positive_gain_and_is_an_l_inf_step():
    from dim.attacks import multinorm
    from dim.attacks.binflip import FlipUnits
    x = torch.tensor([[0.75, 0.0, 0.45, 0.2]])
    g = torch.tensor([[-1.0, 5.0, 2.0, -3.0]])           # lower the first, raise the others
    d = multinorm.flip_step(Norm.LINF, FlipUnits(0.5, 1, 0.4), partial=True)(torch.zeros_like(x), g, x, 0.3,
                                                                             None, None)
    assert torch.allclose(x + d, torch.tensor([[0.45, 0.0, 0.7, 0.2]]))    # no gain at 0 -> 0.3; 0.2 would gain < 0
    with pytest.raises(ValueError, match="L-inf"):
        multinorm.flip_step(Norm.L2, FlipUnits(0.5, 1, 0.4), partial=True)


def test_partial_flips_on_a_ramp_model_stay_within_the_threshold_and_find_adversarials(tiny, samples, binarized):
    """Within 0.3 of every pixel and the box; most of the changed values stop inside the band (whole flips end
    on its edges); not applicable to a model without a ramp."""
    from dim.attacks import NotApplicable
    model = nn.Sequential(Binarize(0.5, width=0.4), tiny).eval()
    spec, = get_suite("ramp-flips")
    x, y = samples
    cand = attack_runner(spec)(spec, model, x, y, 0)
    got = verify(model, x, y, cand, spec.norm)
    assert np.mean(~np.isfinite(got.distance)) <= 0.5
    assert np.all(np.abs(cand.x_adv - x) <= spec.threshold + 1e-6)
    assert np.all((cand.x_adv >= 0) & (cand.x_adv <= 1))
    ends = cand.x_adv[cand.x_adv != x]
    inside = (ends > 0.3 + 1e-5) & (ends < 0.7 - 1e-5)
    assert inside.mean() > 0.5
    with pytest.raises(NotApplicable, match="ramp"):
        attack_runner(spec)(spec, binarized, x, y, 0)


def test_multi_targeted_attacks_try_the_classes_by_clean_logit_and_keep_each_samples_first_success():
    """Three samples, labels 0; the clean logits rank the other classes 2, 1, 3, 4, ...; a fake attack fools sample
    0 against target 2, sample 1 against target 1 only, sample 2 never. Each keeps the first fooling candidate, and
    a sample once broken is not attacked again (the helper of Score-MT and of the multi-targeted knapsack flips)."""
    from dim.attacks.adaptive import multi_targeted

    class Reads(nn.Module):            # the class is the first pixel's value (times 10), else class 0 wins
        def forward(self, x):
            v = x.flatten(1)[:, 0]
            z = torch.tensor([5.0, 3.0, 4.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]).repeat(len(x), 1)
            hit = (v * 10).round().long()
            z[hit > 0, hit[hit > 0]] = 9.0
            return z
    x, y = torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.long)
    tried = []

    def attack(idx, targets, k):
        tried.append((idx.tolist(), targets.tolist()))
        cand = x[idx].clone()
        t = int(targets[0])
        for j, i in enumerate(idx.tolist()):
            if i in {2: [0], 1: [1]}.get(t, []):
                cand[j, 0, 0, 0] = t / 10
            if i == 2:
                cand[j, 0, 1, 1] = t / 10        # moved, never fooled
        return cand, Reads()(cand).argmax(1) != y[idx]
    best = multi_targeted(Reads(), x, y, 9, attack)
    assert tried[:4] == [([0, 1, 2], [2, 2, 2]), ([1, 2], [1, 1]), ([2], [3]), ([2], [4])]   # by clean logit
    assert len(tried) == 9                                                       # every class for the unbroken
    assert best[0, 0, 0, 0] == pytest.approx(0.2) and best[1, 0, 0, 0] == pytest.approx(0.1)
    assert Reads()(best).argmax(1).tolist() == [2, 1, 0]


def test_multi_targeted_flips_need_the_targeted_loss_and_stay_within_the_threshold(binarized, samples):
    spec = next(s for s in get_suite("knapsack-flips-mt") if s.name == "L1 KnapsackFlips-MT")
    x, y = samples
    cand = attack_runner(spec)(spec, binarized, x, y, 0)
    got = verify(binarized, x, y, cand, spec.norm)
    broken = np.isfinite(got.distance)
    assert broken.any() and np.all(got.distance[broken] <= spec.threshold * (1 + 1e-5))
    bad = AttackSpec("L1 bad", "knapsack_flips", Norm.L1, params={"steps": 5, "targets": 9})
    with pytest.raises(ValueError, match="targeted_margin"):
        attack_runner(bad)(bad, binarized, x, y, 0)


def test_an_attack_refuses_a_model_whose_input_binarization_it_cannot_tell():
    from dim.models.binarize import input_binarization
    two = nn.Sequential(Binarize(0.5), Binarize(0.5, pool=2))
    with pytest.raises(ValueError, match="named bin_in"):
        input_binarization(two)


@pytest.mark.parametrize("name", ["L2 BinFlip", "L2 KnapsackFlips"])
def test_flips_are_not_applicable_without_binarization(tiny, samples, name):
    from dim.attacks import NotApplicable
    spec = next(s for s in FLIP_SPECS if s.name == name)
    with pytest.raises(NotApplicable):
        attack_runner(spec)(spec, tiny, *samples, 0)


def test_every_norm_has_what_the_sanity_checks_compare():
    """Convergence (an attack and its refinement) and black box against white box, in all four norms."""
    from dim.attacks.spec import is_black_box, is_ensemble
    suite = get_suite("paper+adaptive")
    for norm in Norm:
        specs = [s for s in suite if s.norm is norm]
        assert any(s.refines for s in specs), norm
        assert any(is_black_box(s.attack) for s in specs), norm
        assert any(not is_black_box(s.attack) and not is_ensemble(s.attack) for s in specs), norm


def test_greedy_l0_counts_pixels_not_channels_and_trades_pixels_at_the_budget():
    """Colour images: a pixel counts once whatever its channels. The class-1 score of a two-class model is
    min(5 * pixel 0, 0.5) + pixel 1 (first channel), against 0.8 for class 0. At k = 1 with one move checked
    per step, the gradient (5 against 1) picks pixel 0 first; only trading it for pixel 1 fools the model."""
    from dim.attacks.sparse import greedy_l0

    class Saturating(nn.Module):
        def forward(self, x):
            s = torch.clamp(5 * x[:, 0, 0, 0], max=0.5) + x[:, 0, 0, 1] + 0.01 * x[:, 1:].sum((1, 2, 3))
            return torch.stack([torch.full_like(s, 0.8), s], 1)
    x = torch.zeros(2, 3, 2, 4)
    y = torch.zeros(2, dtype=torch.long)
    adv, broken = greedy_l0(Saturating(), x, y, k=1, steps=4, lookahead=1)
    assert broken.all()
    changed = (adv != x).any(1).flatten(1)
    assert changed.sum(1).tolist() == [1, 1] and changed[:, 1].all()        # pixel 1 in, pixel 0 given back
    assert torch.equal(adv[:, :, 0, 1], torch.ones(2, 3))                      # every channel to the corner
    # one step only: pixel 0 is taken and nothing fools the model yet; never more than k pixels
    adv1, broken1 = greedy_l0(Saturating(), x, y, k=1, steps=1, lookahead=1)
    assert not broken1.any() and (adv1 != x).any(1).flatten(1)[:, 0].all()
