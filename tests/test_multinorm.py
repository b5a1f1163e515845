"""The multi-norm attack (MSD / MAX) and the recipes that train against it."""
import copy
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import dim
from dim.attacks import multinorm
from dim.attacks.binflip import FlipUnits
from dim.attacks.multinorm import MSDConfig, msd, project_l1
from dim.core.norms import Norm, distances
from dim.models import create_model
from dim.train import train

EPS = {Norm.LINF: 0.3, Norm.L2: 1.5, Norm.L1: 8.0, Norm.L0: 12.0}
TOL = 1e-5


def _inside(x: torch.Tensor, x_adv: torch.Tensor, which: torch.Tensor, eps: dict, scale: float = 1.0) -> None:
    """Every point lies in [0, 1] and in the ball of the norm the attack says it came from (-1: the clean point)."""
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    norms = list(eps)
    xn, an, w = x.numpy(), x_adv.numpy(), which.numpy()
    if (w < 0).any():
        assert np.all(distances(xn[w < 0], an[w < 0], Norm.LINF) == 0)
    for i, nm in enumerate(norms):
        sel = w == i
        if sel.any():
            radius = max(1.0, np.floor(eps[nm] * scale)) if nm is Norm.L0 else eps[nm] * scale
            assert distances(xn[sel], an[sel], nm).max() <= radius * (1 + TOL), nm


@pytest.fixture(scope="module")
def batch(data_dir):
    x, y = dim.data.load_split("mnist", "test", data_dir, limit=64)
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("mode", sorted(multinorm.MODES))
@pytest.mark.parametrize("model", ["cnn", "dim"])
def test_every_point_stays_in_its_norms_ball_and_the_box(batch, mode, model):
    torch.manual_seed(0)
    net = create_model(model)
    x, y = batch
    for only in ([Norm.L1], [Norm.L0], [Norm.L2], list(EPS)):
        eps = {k: EPS[k] for k in only}
        for scale in (1.0, 0.3):
            x_adv, which = msd(net, x, y, MSDConfig(eps=eps, steps=4, loss="margin", mode=mode), scale=scale)
            _inside(x, x_adv, which, eps, scale)
            if len(only) == 1:       # one ball: every step of an untrained model raises the margin somewhere
                assert (which >= 0).any()


@pytest.mark.parametrize("mode", sorted(multinorm.MODES))
def test_flip_steps_stay_in_the_balls_and_only_cross_the_threshold(batch, mode):
    """Knapsack flips on a binarized model: every point inside its ball and the box, every changed value moved
    just past the threshold (so each change is a flip of the binarized image), and the attack finds some."""
    from dim.attacks.binflip import NUDGE
    from dim.models.binarize import GradientMode, gradient_mode
    torch.manual_seed(0)
    net = create_model("bidim")
    x, y = batch
    for only in ([Norm.LINF], [Norm.L2], [Norm.L1], [Norm.L0], list(EPS)):
        eps = {k: EPS[k] for k in only}
        with gradient_mode(net, GradientMode.STRAIGHT_THROUGH):
            x_adv, which = msd(net, x, y, MSDConfig(eps=eps, steps=3, loss="margin", mode=mode, flip_threshold=0.5))
        _inside(x, x_adv, which, eps)
        changed = x_adv != x
        assert changed.any()
        assert torch.equal((x_adv > 0.5) != (x > 0.5), changed)
        assert float((x_adv[changed] - 0.5).abs().max()) <= NUDGE + 1e-6


def test_a_flip_step_takes_the_best_gain_per_cost_that_fits_the_budget():
    """Four values at 0.4, 0.1, 0.45, 0.9 (flip costs 0.101, 0.401, 0.051, 0.399 in L1), gains 1, 8, 0.1, -5: by
    gain per cost the second (20) and the first (9.9) fit a budget of 0.52 (0.502 spent), the third (2) no longer does,
    and the fourth would lower the loss."""
    x = torch.tensor([[0.4, 0.1, 0.45, 0.9]])
    g = torch.tensor([[1.0, 8.0, 0.1, 5.0]])          # the fourth lies above the threshold: flipping it lowers it
    d = multinorm.flip_step(Norm.L1, FlipUnits(0.5))(torch.zeros_like(x), g, x, 0.52, None, None)
    assert torch.equal(d != 0, torch.tensor([[True, True, False, False]]))
    assert torch.allclose(x + d, torch.tensor([[0.501, 0.501, 0.45, 0.9]]))
    d_inf = multinorm.flip_step(Norm.LINF, FlipUnits(0.5))(torch.zeros_like(x), g, x, 0.3, None, None)
    assert torch.equal(d_inf != 0, torch.tensor([[True, False, True, False]]))   # within 0.3 and gaining


def test_a_block_flip_step_moves_whole_blocks_by_gain_per_cost():
    """Two 2x2 blocks of means 0.2 and 0.45; the gradient favours the first (gain 4 against 1) but in L1 it costs
    1.204 against 0.204, so with a budget of 0.5 only the second block moves, as a whole, its mean just past 0.5."""
    x = torch.tensor([[[[0.0, 0.0, 0.4, 0.5], [0.0, 0.8, 0.4, 0.5]]]])
    g = torch.tensor([[[[1.0, 1.0, 0.25, 0.25], [1.0, 1.0, 0.25, 0.25]]]])
    d = multinorm.flip_step(Norm.L1, FlipUnits(0.5, 2))(torch.zeros_like(x), g, x, 0.5, None, None)
    assert torch.equal(d[..., :2], torch.zeros_like(d[..., :2]))
    assert torch.allclose((x + d)[..., 2:].mean(), torch.tensor(0.501)) and bool((d[..., 2:] > 0).all())
    d = multinorm.flip_step(Norm.L1, FlipUnits(0.5, 2))(torch.zeros_like(x), g, x, 1.5, None, None)
    assert bool((d.sum((-1, -2)).abs() > 0).all())                    # a budget of 1.5 flips both blocks
    assert torch.allclose(torch.nn.functional.avg_pool2d(x + d, 2).flatten(), torch.tensor([0.501, 0.501]))


def test_cycled_targets_are_every_other_class_in_turn():
    y = torch.full((9,), 4)
    t = multinorm.cycled_targets(y, 10)
    assert sorted(t.tolist()) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    y = torch.arange(10).repeat(3)
    assert not (multinorm.cycled_targets(y, 10) == y).any()


@pytest.mark.parametrize("mode", sorted(multinorm.MODES))
def test_the_targeted_attack_raises_its_targets_margin_inside_the_balls(batch, mode):
    """``loss="targeted_margin"``: the point returned pushes each sample's own target up against its true class."""
    torch.manual_seed(0)
    net = create_model("cnn").eval()
    x, y = batch
    x_adv, which = msd(net, x, y, MSDConfig(eps=EPS, steps=4, loss="targeted_margin", mode=mode))
    _inside(x, x_adv, which, EPS)
    t = multinorm.cycled_targets(y, 10)
    with torch.no_grad():
        gap = [(z.gather(1, t[:, None]) - z.gather(1, y[:, None]))[:, 0] for z in (net(x), net(x_adv))]
    moved = which >= 0
    assert moved.float().mean() > 0.5 and (gap[1][moved] > gap[0][moved]).all()


def test_given_targets_replace_the_cycled_ones_and_bad_ones_are_refused(batch):
    """``msd(..., targets=t)``: the margin towards each sample's given class rises (here the class after the
    cycled one), and targets that are a label, of the wrong shape or with another loss are refused."""
    torch.manual_seed(0)
    net = create_model("cnn").eval()
    x, y = batch
    t = (multinorm.cycled_targets(y, 10) + 1) % 10
    t = torch.where(t == y, (t + 1) % 10, t)
    x_adv, which = msd(net, x, y, MSDConfig(eps=EPS, steps=4, loss="targeted_margin"), targets=t)
    _inside(x, x_adv, which, EPS)
    with torch.no_grad():
        gap = [(z.gather(1, t[:, None]) - z.gather(1, y[:, None]))[:, 0] for z in (net(x), net(x_adv))]
    moved = which >= 0
    assert moved.float().mean() > 0.5 and (gap[1][moved] > gap[0][moved]).all()
    for bad, cfg in ((y, MSDConfig(eps=EPS, loss="targeted_margin")), (t[:-1], MSDConfig(eps=EPS, loss="targeted_margin")),
                     (t, MSDConfig(eps=EPS, loss="ce"))):
        with pytest.raises(ValueError, match="targets"):
            msd(net, x, y, cfg, targets=bad)


@pytest.mark.parametrize("mode", sorted(multinorm.MODES))
def test_runner_up_runs_keep_each_samples_point_of_highest_margin(batch, mode):
    """``mt_classes=2``: the untargeted run and one run targeted at each of the two most likely other classes; per
    sample the point of highest untargeted margin among the three, inside its ball and the box."""
    from dim.attacks.gradient import margin_loss
    torch.manual_seed(0)
    net = create_model("cnn").eval()
    x, y = batch
    base = MSDConfig(eps=EPS, steps=3, loss="ce", mode=mode)
    x_mt, which = msd(net, x, y, MSDConfig(eps=EPS, steps=3, loss="ce", mode=mode, mt_classes=2))
    _inside(x, x_mt, which, EPS)
    runners = net(x).detach().scatter(1, y[:, None], float("-inf")).topk(2, dim=1).indices
    targeted = MSDConfig(eps=EPS, steps=3, loss="targeted_margin", mode=mode)
    points = [msd(net, x, y, base)[0]] + [msd(net, x, y, targeted, targets=runners[:, j])[0] for j in range(2)]
    with torch.no_grad():
        margins = [margin_loss(net(p), y, None) for p in points]
        got = margin_loss(net(x_mt), y, None)
    runs = torch.stack(margins)
    assert torch.allclose(got, runs.max(0).values, atol=1e-5)
    assert (runs[1:].max(0).values > runs[0]).any()         # a targeted run wins somewhere: the point is not the same


def test_a_bad_number_of_runner_up_classes_is_refused():
    with pytest.raises(ValueError, match="at least 0"):
        MSDConfig(eps=EPS, mt_classes=-1)
    with pytest.raises(ValueError, match="targeted already"):
        MSDConfig(eps=EPS, loss="targeted_margin", mt_classes=1)


def test_each_norms_step_alone_leaves_its_ball_without_the_projection(batch):
    """The steps really need the projection the test above checks: without it they leave the ball."""
    x, y = batch
    g = torch.randn_like(x)
    cfg = MSDConfig(eps=EPS, steps=1)
    big = torch.rand_like(x) - 0.5                      # outside every ball: L-inf 0.5, L0 784 pixels
    for nm, step in multinorm.STEPS.items():
        inside = step(big, g, x, EPS[nm], cfg.alpha(nm), cfg)
        assert distances(x.numpy(), (x + inside).numpy(), nm).max() <= EPS[nm] * (1 + TOL), nm
        assert distances(x.numpy(), (x + big).numpy(), nm).max() > EPS[nm], nm


def test_l1_projection_is_the_euclidean_one():
    torch.manual_seed(1)
    d = torch.randn(6, 1, 5, 5)
    p = project_l1(d, 3.0)
    assert torch.allclose(p.flatten(1).abs().sum(1), torch.full((6,), 3.0), atol=1e-4)
    # soft thresholding at theta, with theta found by bisection: the same point
    for row, got in zip(d.flatten(1), p.flatten(1)):
        lo, hi = 0.0, float(row.abs().max())
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if (row.abs() - mid).clamp_min(0).sum() > 3.0 else (lo, mid)
        assert torch.allclose(got, row.sign() * (row.abs() - lo).clamp_min(0), atol=1e-4)
    small = torch.full((1, 1, 2, 2), 0.1)
    assert torch.equal(project_l1(small, 3.0), small)


def test_msd_raises_the_loss_and_max_finds_at_least_what_one_norm_finds(batch):
    torch.manual_seed(0)
    net = create_model("cnn")
    x, y = batch
    ce = torch.nn.functional.cross_entropy
    x_msd, _ = msd(net, x, y, MSDConfig(eps=EPS, steps=5, mode="msd"))
    x_max, _ = msd(net, x, y, MSDConfig(eps=EPS, steps=5, mode="max"))
    x_inf, _ = msd(net, x, y, MSDConfig(eps={Norm.LINF: 0.3}, steps=5))
    with torch.no_grad():
        clean = ce(net(x), y, reduction="none")
        assert (ce(net(x_msd), y, reduction="none") >= clean).all()
        assert ce(net(x_max), y).item() >= ce(net(x_inf), y).item() - 1e-6
    with pytest.raises(ValueError, match="unknown mode"):
        msd(net, x, y, MSDConfig(eps=EPS, mode="avg"))


def test_every_norm_gives_each_norms_own_point_and_max_picks_the_highest(batch):
    """``every_norm`` (what "avg" training trains on): one point per norm, each inside its own ball and the box,
    and MAX's point is, per image, the one of highest loss among them."""
    torch.manual_seed(0)
    net = create_model("cnn")
    x, y = batch[0][:24], batch[1][:24]
    cfg = MSDConfig(eps=EPS, steps=4, mode="max")
    pts = multinorm.every_norm(net, x, y, cfg)
    assert pts.shape == (len(EPS), *x.shape)
    for i, nm in enumerate(EPS):
        _inside(x, pts[i], torch.full((len(x),), i), {nm: EPS[nm]})
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        per_norm = ce(net(pts.flatten(0, 1)), y.repeat(len(EPS)), reduction="none").view(len(EPS), -1)
        x_max, which = msd(net, x, y, cfg)
        got = ce(net(x_max), y, reduction="none")
    assert torch.allclose(got, per_norm.max(0).values, atol=1e-5)
    assert (per_norm.argmax(0)[which >= 0] == which[which >= 0]).float().mean() > 0.9
    assert (per_norm > ce(net(x), y, reduction="none")).float().mean() > 0.5   # most tracks raised the loss


@pytest.mark.parametrize("name, overrides", [("msd_cnn", {"steps": 2}),
                                             pytest.param("dim_at", {"batch_size": 32, "pretrain_denoiser_epochs": 1,
                                                                     "pretrain_epochs": 1, "steps": 2},
                                                          marks=pytest.mark.slow)])
def test_avg_training_trains_on_every_norms_point(name, overrides, data_dir, tmp_path, monkeypatch):
    """``mode="avg"``: each batch's loss is taken over one point per norm and image, each in its own ball."""
    from dim.train import multinorm as mn
    seen = []
    real = mn.adversarial_points

    def spy(model, x, y, attack, scale, every=False):
        x_adv = real(model, x, y, attack, scale, every)
        seen.append((every, x, x_adv))
        return x_adv

    monkeypatch.setattr(mn, "adversarial_points", spy)
    monkeypatch.setattr("dim.train._check_not_chance", lambda *a, **k: None)
    train(name, tmp_path / "m", epochs=1, seed=0, data_dir=data_dir, limit=64, eval_limit=50,
          train_overrides={**overrides, "mode": "avg"}, show=False, device="cpu")
    assert seen and all(every for every, _, _ in seen)
    for _, x, x_adv in seen:
        assert x_adv.shape == (len(EPS) * len(x), *x.shape[1:])
        pts = x_adv.view(len(EPS), *x.shape)
        assert all(float((pts[i] - x).abs().max()) > 0 for i in range(len(EPS)))     # every norm's point moved
        for i, nm in enumerate(EPS):     # the warm-up shrinks the radii, so the full ones bound them
            _inside(x, pts[i], torch.full((len(x),), i), {nm: EPS[nm]})


FAST_DIM_AT = {"batch_size": 32, "pretrain_denoiser_epochs": 1, "pretrain_epochs": 1, "steps": 2}


@pytest.mark.slow
def test_interrupted_multinorm_training_resumes_to_the_same_weights(data_dir, tmp_path, monkeypatch):
    from dim.train import loop
    kw = dict(epochs=3, seed=5, data_dir=data_dir, limit=128, eval_limit=100,
              # augment's draws come from the resumed generator; the class weights are measured again on resume;
              # the weight perturbation keeps no state across steps
              train_overrides={**FAST_DIM_AT, "augment": 0.5, "class_reweight": 0.5, "reweight_images": 64,
                               "awp": 0.01},
              show=False, device="cpu")
    monkeypatch.setattr("dim.train._check_not_chance", lambda *a, **k: None)   # 128 images: any accuracy will do
    train("dim_at", tmp_path / "ref", **kw)
    real_save = loop._save_state

    def crash(path, module, opt, gen, epoch, last_loss, seconds, *rest):
        real_save(path, module, opt, gen, epoch, last_loss, seconds, *rest)
        if path.name == "score_msd.safetensors" and epoch == 2:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(loop, "_save_state", crash)
    with pytest.raises(KeyboardInterrupt):
        train("dim_at", tmp_path / "resumed", **kw)
    monkeypatch.setattr(loop, "_save_state", real_save)
    card = train("dim_at", tmp_path / "resumed", **kw)
    assert card["resumed"] is True
    a = load_file(str(tmp_path / "ref" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name,overrides", [("dim_at", FAST_DIM_AT), ("msd_cnn", {"batch_size": 32, "steps": 1})])
def test_augmented_adversarial_training_attacks_distorted_images(name, overrides, data_dir, tmp_path, monkeypatch):
    """``augment``: the inner attack starts from zoomed and sheared digits (with probability 1, none of them a
    training image as it is); without it, from the training images themselves."""
    from dim.train import multinorm as mn
    x, _ = dim.data.load_split("mnist", "train", data_dir, limit=64)
    rows = {tuple(r) for r in torch.from_numpy(x).flatten(1).tolist()}
    seen: list[torch.Tensor] = []
    real = mn.adversarial_points

    def spy(model, xb, *a, **k):
        seen.append(xb.detach().clone())
        return real(model, xb, *a, **k)

    monkeypatch.setattr(mn, "adversarial_points", spy)
    monkeypatch.setattr("dim.train._check_not_chance", lambda *a, **k: None)   # 64 images: any accuracy will do
    for augment in (1.0, 0.0):
        seen.clear()
        card = train(name, tmp_path / str(augment), epochs=1, data_dir=data_dir, limit=64, eval_limit=50,
                     train_overrides={**overrides, "augment": augment}, show=False, device="cpu")
        assert card["config"]["train"]["augment"] == augment and len(seen) == 2
        images = [tuple(r) for xb in seen for r in xb.flatten(1).tolist()]
        assert len(images) == 64
        found = sum(r in rows for r in images)
        assert found == (0 if augment else 64), (augment, found)


@pytest.mark.parametrize("name", ["dim_at", "msd_cnn"])
def test_a_bad_augmentation_probability_is_refused_by_the_multinorm_recipes(name, data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"augmentation probability must be in \[0, 1\], got -0.1"):
        train(name, tmp_path / "m", epochs=1, data_dir=data_dir, limit=64, eval_limit=50,
              train_overrides={"augment": -0.1}, show=False)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_multinorm_training_is_adversarial(plain_cnn, data_dir, tmp_path):
    """The same CNN and budget trained with and without the multi-norm attack: only the first resists it."""
    x, y = dim.data.load_split("mnist", "test", data_dir, limit=200)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    eps = {Norm.LINF: 0.1, Norm.L2: 1.0}
    card = train("msd_cnn", tmp_path / "msd_cnn", epochs=2, seed=0, data_dir=data_dir, limit=2000, eval_limit=200,
                 train_overrides={"batch_size": 32, "norms": ["Linf", "L2"], "eps_linf": 0.1, "eps_l2": 1.0,
                                  "steps": 1, "eps_warmup_epochs": 0.5}, show=False, device="cpu")
    assert card["clean_accuracy"] > 0.6, card["clean_accuracy"]   # it learns (chance is 0.1)
    robust = {}
    for name, model in (("cnn", copy.deepcopy(plain_cnn)), ("msd_cnn", dim.load_model(tmp_path / "msd_cnn", device="cpu"))):
        for p in model.parameters():   # (a copy of the shared baseline: its flags stay as they are)
            p.requires_grad_(False)
        x_adv, _ = msd(model, xt, yt, MSDConfig(eps=eps, steps=10, loss="margin", mode="max"))
        robust[name] = float((model(x_adv).argmax(1) == yt).float().mean())
    assert robust["msd_cnn"] >= robust["cnn"] + 0.1, robust


def test_a_bad_norm_list_is_refused_before_any_state_is_written(data_dir, tmp_path):
    for name, bad, message in (("msd_cnn", {"norms": ["L3"]}, "norms"),
                               ("msd_cnn", {"eps_l2": 0}, "eps_l2 must be positive"),
                               ("msd_cnn", {"mode": "mean"}, "mode"),
                               ("msd_cnn", {"flips": True}, "needs a model that binarizes"),
                               ("bidim_at_bin", {"flips": True, "partial_flips": True}, "ramp"),
                               ("bidim_at_ramp", {"flips": False, "partial_flips": True}, "flips=True"),
                               ("msd_cnn", {"mt_classes": -1}, "at least 0"),
                               ("msd_cnn", {"mt_classes": 1, "mode": "avg"}, "AVG"),
                               ("msd_cnn", {"mt_classes": 1, "loss": "targeted_margin"}, "targeted already")):
        with pytest.raises(ValueError, match=message):
            train(name, tmp_path / "m", epochs=1, data_dir=data_dir, limit=64, eval_limit=50,
                  train_overrides=bad, show=False)
        assert not (tmp_path / "m").exists()


def test_partial_flips_in_training_give_the_l_inf_step_partial_moves():
    from dim.train.multinorm import ScoreMSDFlipsTrainConfig
    model = create_model("bidim_at_ramp")
    attack = ScoreMSDFlipsTrainConfig(partial_flips=True).attack((1, 28, 28), model)
    assert attack.flip_partial and attack.flip_width == pytest.approx(0.4)
    x = torch.tensor([0.75, 0.0]).repeat(392).reshape(1, 1, 28, 28)
    g = -torch.ones_like(x)                                     # lower everything: 0.75 -> 0.45 gains, 0 cannot move
    d = multinorm.steps_for(attack)[Norm.LINF](torch.zeros_like(x), g, x, 0.3, None, attack)
    assert torch.allclose((x + d)[x == 0.75], torch.tensor(0.45)) and bool((d[x == 0] == 0).all())
    whole = ScoreMSDFlipsTrainConfig().attack((1, 28, 28), model)
    assert not bool(multinorm.steps_for(whole)[Norm.LINF](torch.zeros_like(x), g, x, 0.3, None, whole).any())


@pytest.mark.slow
@pytest.mark.parametrize("name, overrides", [("bidim_at_bin", FAST_DIM_AT), ("bicnn_at_bin", {"steps": 2})])
def test_a_binarized_model_is_attacked_and_trained_through_its_binarization(name, overrides, data_dir, tmp_path,
                                                                             monkeypatch):
    """Both recipes (score_msd, msd): the inner attack sees straight-through gradients (its points move; with the
    exact backward they could not, since the step function's derivative is zero)."""
    from dim.models import GradientMode
    from dim.models.binarize import Binarize
    from dim.train import multinorm as mn
    seen = []
    real = mn.adversarial_points

    def spy(model, x, y, attack, scale, every=False):
        seen.append(({m.mode for m in model.modules() if isinstance(m, Binarize)}, x))
        x_adv = real(model, x, y, attack, scale, every)
        seen[-1] += (x_adv,)
        return x_adv

    monkeypatch.setattr(mn, "adversarial_points", spy)
    monkeypatch.setattr("dim.train._check_not_chance", lambda *a, **k: None)
    train(name, tmp_path / "m", epochs=1, seed=0, data_dir=data_dir, limit=64, eval_limit=50,
          train_overrides=overrides, show=False, device="cpu")
    assert seen and all(modes == {GradientMode.STRAIGHT_THROUGH} for modes, _, _ in seen)
    assert all(float((x_adv - x).abs().max()) > 0 for _, x, x_adv in seen)     # the points moved


def test_the_trades_term_is_the_kl_of_the_clean_prediction_to_the_adversarial_one():
    from dim.train.multinorm import trades_kl
    clean, adv = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.5]])
    p, q = clean.softmax(-1), adv.softmax(-1)
    assert torch.allclose(trades_kl(clean, adv), (p * (p / q).log()).sum(), atol=1e-6)
    assert not torch.allclose(trades_kl(clean, adv), trades_kl(adv, clean), atol=1e-3)    # KL(p || q), not (q || p)
    assert float(trades_kl(clean, clean)) == pytest.approx(0.0, abs=1e-7)


def test_a_trades_weight_adds_the_term_on_every_batch(data_dir, tmp_path, monkeypatch):
    """``trades > 0``: each adversarial batch's loss takes the term, on the clean and the adversarial logits of the
    same images (one row each), and the card records the weight."""
    from dim.train import multinorm as mn
    seen = []
    real = mn.trades_kl

    def spy(clean, adv):
        seen.append((clean.detach(), adv.detach()))
        return real(clean, adv)

    monkeypatch.setattr(mn, "trades_kl", spy)
    monkeypatch.setattr("dim.train._check_not_chance", lambda *a, **k: None)
    card = train("dim_at", tmp_path / "m", epochs=1, seed=0, data_dir=data_dir, limit=64, eval_limit=50,
                 train_overrides={**FAST_DIM_AT, "trades": 6.0}, show=False, device="cpu")
    assert card["config"]["train"]["trades"] == 6.0
    assert len(seen) == 2                                        # 64 images, batches of 32
    for clean, adv in seen:
        assert clean.shape == adv.shape == (32, 10) and not torch.equal(clean, adv)


def test_class_weights_grow_with_a_classes_robust_error():
    from dim.train.multinorm import class_weights
    errors = torch.tensor([0.2, 0.4, float("nan"), 0.0])
    assert torch.allclose(class_weights(errors, 1.0), torch.tensor([1.0, 2.0, 1.0, 0.0]))   # proportional
    assert torch.allclose(class_weights(errors, 0.5), torch.tensor([1.0, 1.5, 1.0, 0.5]))
    assert float(class_weights(errors, 0.5)[[0, 1, 3]].mean()) == pytest.approx(1.0)      # mean 1 over the classes
    assert torch.equal(class_weights(torch.zeros(3), 1.0), torch.ones(3))                 # nothing broken: uniform


def test_class_errors_count_the_images_the_attack_or_the_model_gets_wrong(batch):
    """A model that answers 0 whatever the input: every image of class 0 survives, every other one is wrong; a
    class without images has no error (nan)."""
    from dim.train.multinorm import class_errors
    x, y = batch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 12))
    with torch.no_grad():
        net[1].weight.mul_(1e-3)
        net[1].bias.copy_(torch.tensor([100.0] + [0.0] * 11))
    errors, confusion = class_errors(net, x, y, MSDConfig(eps=EPS, steps=1), 12, batch_size=25)
    present = torch.bincount(y, minlength=12) > 0
    assert float(errors[0]) == 0.0 and bool((errors[1:10][present[1:10]] == 1).all())
    assert bool(torch.isnan(errors[10:]).all())
    expected = torch.zeros(10, 12)
    expected[1:10, 0] = 1.0                                     # every other class went to 0, and nowhere else
    assert torch.equal(confusion[:10][present[:10]], expected[present[:10]])


@pytest.mark.parametrize("name,overrides", [("dim_at", FAST_DIM_AT), ("msd_cnn", {"batch_size": 32, "steps": 1})])
def test_class_reweighting_is_measured_every_epoch_and_weights_the_adversarial_terms(name, overrides, data_dir,
                                                                                    tmp_path, monkeypatch):
    """``class_reweight``: the attack is run on the first images once per epoch; the adversarial terms of each
    batch take its classes' weights; the card records every epoch's errors and weights."""
    from dim.train import multinorm as mn
    probes, means = [], []
    real_errors, real_mean = mn.class_errors, mn._weighted_mean

    def errors_spy(model, x, y, attack, k, *a, **kw):
        probes.append(len(x))
        out, confusion = real_errors(model, x, y, attack, k, *a, **kw)
        return torch.zeros_like(out).index_fill_(0, torch.tensor([y[0].item()]), 1.0), confusion  # only y[0]'s

    def mean_spy(values, weights):
        means.append(weights)
        return real_mean(values, weights)

    monkeypatch.setattr(mn, "class_errors", errors_spy)
    monkeypatch.setattr(mn, "_weighted_mean", mean_spy)
    monkeypatch.setattr("dim.train._check_not_chance", lambda *a, **k: None)
    card = train(name, tmp_path / "m", epochs=2, data_dir=data_dir, limit=64, eval_limit=50, show=False,
                 device="cpu", train_overrides={**overrides, "class_reweight": 1.0, "reweight_images": 40})
    assert probes == [40, 40]                                                  # once per epoch, on 40 images
    history = card["class_reweighting"]
    assert [h["epoch"] for h in history] == [1, 2]
    _, first = dim.data.load_split("mnist", "train", data_dir, limit=1)
    for h in history:       # the first image's class alone was broken: it weighs 10 (K times the mean error)
        assert h["robust_error"] == [1.0 if i == int(first[0]) else 0.0 for i in range(10)]
        assert h["weights"] == [10.0 if i == int(first[0]) else 0.0 for i in range(10)]
    weighted = [w for w in means if w is not None]
    assert len(weighted) >= 4 and all(set(w.tolist()) <= {0.0, 10.0} for w in weighted)
    assert any(float(w.max()) == 10.0 for w in weighted)


@pytest.mark.parametrize("name", ["dim_at", "msd_cnn"])
def test_a_bad_class_reweighting_is_refused(name, data_dir, tmp_path):
    for bad, message in (({"class_reweight": 1.5}, r"class_reweight must be in \[0, 1\]"),
                         ({"class_reweight": 0.5, "reweight_images": 0}, "reweight_images must be at least 1"),
                         ({"class_reweight": 0.5, "reweight_images": 3},     # the first three: 5, 0, 4
                          r"the first 3 training images hold no image of class \[1, 2, 3, 6, 7, 8, 9\]")):
        with pytest.raises(ValueError, match=message):
            train(name, tmp_path / "m", epochs=1, data_dir=data_dir, limit=64, eval_limit=50,
                  train_overrides=bad, show=False)
        assert not (tmp_path / "m").exists()


def test_per_sample_weights_of_the_reconstruction_terms():
    from dim.train.multinorm import _balanced_recon
    gen = torch.Generator().manual_seed(0)
    rec, target = torch.rand(3, 4, 5, generator=gen), torch.rand(4, 5, generator=gen)
    y = torch.tensor([0, 1, 2, 0])
    plain = _balanced_recon(rec, target, y, 1.0, 0.5)
    assert torch.allclose(_balanced_recon(rec, target, y, 1.0, 0.5, torch.ones(4)), plain)
    only_first = _balanced_recon(rec, target, y, 1.0, 0.5, torch.tensor([4.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(only_first, _balanced_recon(rec[:, :1], target[:1], y[:1], 1.0, 0.5))


def test_pair_weights_grow_with_how_often_a_class_is_sent_to_another():
    from dim.train.multinorm import pair_weights
    confusion = torch.tensor([[0.0, 0.3, 0.0], [0.1, 0.0, 0.2], [float("nan")] * 3])
    w = pair_weights(confusion, 1.0)                # mean over the four measured pairs: 0.15
    assert torch.allclose(w, torch.tensor([[1.0, 2 / 3, 1.0], [2.0, 1.0, 1.0], [0.0, 4 / 3, 1.0]]))   # [model, class]
    assert torch.equal(pair_weights(torch.zeros(3, 3), 1.0), torch.ones(3, 3))


def test_pair_reweighting_weights_each_internal_models_rejection(data_dir, tmp_path, monkeypatch):
    """``pair_reweight``: the rejection term of each adversarial batch takes, for internal model j and a sample of
    class c, the weight measured for c -> j at the epoch's start; the class weights stay off."""
    from dim.train import multinorm as mn
    recons = []
    real = mn._balanced_recon

    def spy(rec, target, y, w_pos, w_neg, weights=None, neg_weights=None):
        recons.append((y, weights, neg_weights))
        return real(rec, target, y, w_pos, w_neg, weights, neg_weights)

    monkeypatch.setattr(mn, "_balanced_recon", spy)
    monkeypatch.setattr("dim.train._check_not_chance", lambda *a, **k: None)
    card = train("dim_at", tmp_path / "m", epochs=1, data_dir=data_dir, limit=64, eval_limit=50, show=False,
                 device="cpu", train_overrides={**FAST_DIM_AT, "pair_reweight": 1.0, "reweight_images": 64})
    (entry,) = card["class_reweighting"]
    assert "weights" not in entry and len(entry["confusion"]) == 10
    pairs = torch.tensor(entry["pair_weights"])
    assert torch.allclose(pairs, mn.pair_weights(torch.tensor(entry["confusion"]), 1.0), atol=1e-4)
    adversarial = [(y, w, wn) for y, w, wn in recons if wn is not None]
    assert len(adversarial) == 2 and all(w is None for _, w, _ in adversarial)
    for y, _, wn in adversarial:
        assert torch.allclose(wn, pairs[:, y], atol=1e-4)
    with pytest.raises(ValueError, match=r"pair_reweight must be in \[0, 1\]"):
        train("dim_at", tmp_path / "bad", epochs=1, data_dir=data_dir, limit=64, eval_limit=50, show=False,
              train_overrides={"pair_reweight": -0.5})


def test_runner_up_classes_reach_the_training_attack():
    from dim.train.multinorm import MSDTrainConfig, ScoreMSDFlipsTrainConfig
    assert MSDTrainConfig(mt_classes=2).attack((1, 28, 28)).mt_classes == 2
    assert ScoreMSDFlipsTrainConfig().attack((1, 28, 28), create_model("bidim_at_ramp")).mt_classes == 0
