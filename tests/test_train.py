import dataclasses
import json
from pathlib import Path
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

import dim
from dim.checkpoint import CheckpointError
from dim.core.device import device_of
from dim.models import list_models, get_entry
from dim.train import train

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow   # trains models

TRAINABLE = [m for m in list_models() if get_entry(m).trainable]
SMALL = {"batch_size": 16}  # small data: more, smaller steps
SMALL_DENOISER = {"denoiser_epochs": 6}  # on 400-600 images the denoiser needs more epochs than the default 4
# "learns" needs the recipe's loop, not its full inner attack: one or two attack steps instead of the recipes' 3-5
# (the attacks themselves are tested in test_multinorm.py and by test_madry_training_is_adversarial)
CHEAP_ATTACKS = {"msd": {"steps": 1}, "score_msd": {"steps": 2}, "adversarial": {"pgd_steps": 2, "pgd_step": 0.2}}


def test_short_training_beats_chance(trained_dim):
    out, card = trained_dim
    assert card["clean_accuracy"] > 0.6, card["clean_accuracy"]  # chance is 0.1
    for key in ("model", "config", "clean_accuracy", "train_seconds", "seed", "git_commit", "packages",
                "data_sha256", "weights_sha256"):
        assert key in card
    assert card["config"]["train"]["epochs"] == 12 and card["test_samples"] == 1000
    assert json.loads((out / "card.json").read_text())["clean_accuracy"] == card["clean_accuracy"]


# trained elsewhere already, on more data, with a check that they learn: the session's plain CNN
# (test_the_plain_cnn_learns) and the adversarially trained ones (test_madry_training_is_adversarial here,
# test_multinorm_training_is_adversarial in test_multinorm.py); a new model is trained here by default
LEARNS_ELSEWHERE = {"cnn", "madry", "msd_cnn", "bidim_at_ramp"}   # bidim_at_ramp: bidim_at_bin's training


def test_the_models_said_to_learn_elsewhere_are_trainable_models():
    assert LEARNS_ELSEWHERE <= set(TRAINABLE)


def test_the_plain_cnn_learns(plain_cnn):
    assert plain_cnn.card["clean_accuracy"] > 0.9, plain_cnn.card["clean_accuracy"]


@pytest.mark.parametrize("name", [m for m in TRAINABLE if m not in LEARNS_ELSEWHERE])
def test_every_trainable_model_learns(name, data_dir, tmp_path):
    recipe = get_entry(name).recipe
    epochs = 12
    if recipe == "score_msd":   # the clean pretraining learns; one adversarial epoch runs the recipe's loop
        extra, epochs = {"pretrain_denoiser_epochs": 6, "pretrain_epochs": 12}, 1
    elif recipe == "msd":       # adversarial from the first step, one attack step: four epochs
        extra, epochs = {}, 4
    else:
        extra = SMALL_DENOISER if recipe.startswith("score") else {}
    extra.update(CHEAP_ATTACKS.get(recipe, {}))
    # the paper's objective alone (no cross-entropy) learns more slowly: it gets 1,200 images, for 6 epochs
    # after one adversarial epoch on 400 images DIM's clean accuracy sits at the bar, where float differences
    # between CPUs decide; 600 images keep it clear
    limit = {"score_paper": 1200, "score_msd": 600}.get(recipe, 400)
    if recipe == "score_paper":
        epochs = 6
    card = train(name, tmp_path / name, epochs=epochs, seed=0, data_dir=data_dir, limit=limit, eval_limit=500,
                 train_overrides={**SMALL, **extra}, show=False)
    assert card["clean_accuracy"] > 0.4, (name, card["clean_accuracy"])


def test_bidim_at_ramp_is_bidim_at_bin_on_a_ramp_against_flips():
    """The named model trains as ``bidim_at_bin`` with the ramp's model setting, flips and the clean loss weighted 2.0
    (what the committed ``weights/bidim_at_ramp`` were first trained as): the same training function, the same
    recorded configs, the same initial weights from the same seed (training is a function of these, the seed and the
    data; test_same_seed_same_weights checks that it is deterministic)."""
    from dim.models.registry import create_model, resolve_config
    from dim.train.loop import RECIPES
    named, spelled = RECIPES[get_entry("bidim_at_ramp").recipe], RECIPES[get_entry("bidim_at_bin").recipe]
    assert named.fit is spelled.fit
    assert named.recorded() == spelled.recorded({"flips": True, "clean_weight": 2.0})
    cfg = dataclasses.asdict(resolve_config("bidim_at_ramp"))
    assert cfg == dataclasses.asdict(resolve_config("bidim_at_bin", {"binarize_width": 0.4}))
    torch.manual_seed(0)
    a = create_model("bidim_at_ramp").state_dict()
    torch.manual_seed(0)
    b = create_model("bidim_at_bin", binarize_width=0.4).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    committed = json.loads((ROOT / "weights" / "bidim_at_ramp" / "card.json").read_text())["config"]
    # a setting added to the model or the recipe after the card was written counts as its default
    assert {**json.loads(json.dumps(cfg)), **committed["model"]} == json.loads(json.dumps(cfg))
    assert {**named.recorded(), **committed["train"]} == named.recorded()


def test_the_denoisers_output_can_be_binarized_on_a_ramp_too():
    """``denoiser_binarize_width`` makes the second binarization a ramp as ``binarize_width`` does the input's; the
    default keeps the step (the committed models, whose cards predate the setting)."""
    from dim.models.binarize import input_binarization
    step = dim.create_model("bidim_at_ramp")
    ramp = dim.create_model("bidim_at_ramp", denoiser_binarize_width=0.4)
    assert (step.bin_in.width, step.bin_dn.width) == (0.4, 0.0)
    assert (ramp.bin_in.width, ramp.bin_dn.width) == (0.4, 0.4)
    assert input_binarization(ramp) is ramp.bin_in
    loaded = dim.load_model(ROOT / "weights" / "bidim_at_ramp")
    assert loaded.bin_dn.width == 0.0


def test_load_model_roundtrip(trained_dim, data_dir):
    out, card = trained_dim
    model = dim.load_model(out)
    assert not model.training and model.card["model"] == "dim"
    x, y = dim.data.load_split("mnist", "test", data_dir, limit=1000)
    dev = device_of(model)
    acc = (model(torch.from_numpy(x).to(dev)).argmax(1).cpu() == torch.from_numpy(y)).float().mean().item()
    assert acc == pytest.approx(card["clean_accuracy"], abs=1e-6)


def test_same_seed_same_weights(data_dir, tmp_path):
    kw = dict(epochs=1, seed=7, data_dir=data_dir, limit=200, eval_limit=100, train_overrides=SMALL, show=False)
    train("im", tmp_path / "a", **kw)
    train("im", tmp_path / "b", **kw)
    kw["seed"] = 8
    train("im", tmp_path / "c", **kw)
    a, b, c = (load_file(str(tmp_path / s / "model.safetensors")) for s in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_bidim_from_dim_dir(trained_dim, tmp_path):
    out, _ = trained_dim
    card = train("bidim", tmp_path / "bidim", from_dir=out, eval_limit=1000, show=False)
    assert card["weights_from"]["model"] == "dim" and card["clean_accuracy"] > 0.5
    bi = dim.load_model(tmp_path / "bidim")
    src = dim.load_model(out)
    assert all(torch.equal(bi.state_dict()[k], v) for k, v in src.state_dict().items())
    with pytest.raises(ValueError, match="inference variant of 'dim'"):
        train("bidim", tmp_path / "x", show=False)
    with pytest.raises(CheckpointError, match="needs the weights of 'dim'"):
        train("bidim", tmp_path / "y", from_dir=tmp_path / "bidim", show=False)
    card_before = (out / "card.json").read_text()
    with pytest.raises(ValueError, match="are the same directory"):
        train("bidim", out, from_dir=out, show=False)
    assert (out / "card.json").read_text() == card_before     # the source model is untouched


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_bad_checkpoints_are_clear_errors(trained_dim, tmp_path):
    out, _ = trained_dim
    with pytest.raises(CheckpointError, match="does not exist"):
        dim.load_model(tmp_path / "missing")
    trunc = _copy(out, tmp_path / "trunc")
    raw = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        dim.load_model(trunc)
    shapes = _copy(out, tmp_path / "shapes")
    card = json.loads((shapes / "card.json").read_text())
    card["config"]["model"]["im_hidden"] = 64
    card.pop("identity_sha256")      # as a card written before the identity hash existed
    (shapes / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"shapes do not match.*heads.enc1"):
        dim.load_model(shapes)
    wrong = _copy(out, tmp_path / "wrong")
    card = json.loads((wrong / "card.json").read_text())
    card["model"] = "single_im"
    card.pop("identity_sha256")
    (wrong / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="missing tensors"):
        dim.load_model(wrong)
    with pytest.raises(CheckpointError, match="holds model 'dim', expected 'cnn'"):
        dim.load_model(out, expected_model="cnn")
    tampered = _copy(out, tmp_path / "tampered")
    t = load_file(str(tampered / "model.safetensors"))
    t["heads.dec2.bias"] += 1
    save_file(t, str(tampered / "model.safetensors"))
    with pytest.raises(CheckpointError, match="modified after training"):
        dim.load_model(tampered)
    relabelled = _copy(out, tmp_path / "relabelled")     # dim's weights fit bidim: only the card says otherwise
    card = json.loads((relabelled / "card.json").read_text())
    card["model"] = "bidim"
    (relabelled / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="card was edited after training"):
        dim.load_model(relabelled)
    (relabelled / "card.json").write_text("null")
    with pytest.raises(CheckpointError, match="a card is a JSON object, this file holds NoneType"):
        dim.load_model(relabelled)


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "dim", *args], capture_output=True, text=True, env=env)


def test_interrupted_training_resumes_to_the_same_weights(data_dir, tmp_path, monkeypatch):
    from dim.train import loop
    # dim (two stages, denoiser and heads): 4 epochs on 600 images learn on any seed and device we tried
    kw = dict(epochs=4, seed=3, data_dir=data_dir, limit=600, eval_limit=100, train_overrides=SMALL, show=False)
    train("dim", tmp_path / "ref", **kw)
    real_save = loop._save_state

    def crash_after_two_epochs(path, module, opt, gen, epoch, last_loss, seconds, *rest):
        # as if the interrupted process had been slow: its 1000 s must reach the final card
        real_save(path, module, opt, gen, epoch, last_loss, seconds + 1000, *rest)
        if path.name == "heads.safetensors" and epoch == 2:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(loop, "_save_state", crash_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        train("dim", tmp_path / "resumed", **kw)
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    spent = loop.state_seconds(tmp_path / "resumed" / ".train_state")
    assert spent > 1000
    saved = []

    def record(path, module, opt, gen, epoch, last_loss, seconds, *rest):
        saved.append((path.name, epoch))
        real_save(path, module, opt, gen, epoch, last_loss, seconds, *rest)

    monkeypatch.setattr(loop, "_save_state", record)
    with pytest.raises(ValueError, match="different configuration"):
        train("dim", tmp_path / "resumed", **{**kw, "seed": 4})
    t0 = time.perf_counter()
    card = train("dim", tmp_path / "resumed", **kw)
    this_run = time.perf_counter() - t0
    # resumed, not retrained: the denoiser was finished, and the heads go on after their second epoch
    assert saved == [("heads.safetensors", 3), ("heads.safetensors", 4)], saved
    assert card["resumed"] is True and not (tmp_path / "resumed" / ".train_state").exists()
    # the card counts the interrupted process's training too, not only the resumed one's
    assert spent < card["train_seconds"] <= this_run + spent + 0.01 and "train_seconds_incomplete" not in card
    a = load_file(str(tmp_path / "ref" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_load_model_with_inference_overrides_keeps_the_weights(data_dir, tmp_path):
    train("abs", tmp_path / "abs", epochs=1, seed=0, data_dir=data_dir, limit=200, eval_limit=50,
          model_overrides={"n_random": 100, "n_steps": 2}, train_overrides=SMALL, show=False)
    paper = dim.load_model(tmp_path / "abs")
    fast = dim.load_model(tmp_path / "abs", overrides={"n_random": 30, "n_steps": 0})
    assert (paper.cfg.n_random, paper.cfg.n_steps) == (100, 2)
    assert (fast.cfg.n_random, fast.cfg.n_steps) == (30, 0)
    ps, fs = paper.state_dict(), fast.state_dict()
    assert all(torch.equal(ps[k], fs[k]) for k in ps)
    x, _ = dim.data.load_split("mnist", "test", data_dir, limit=4)
    assert torch.isfinite(fast(torch.from_numpy(x).to(device_of(fast)))).all()

    # --from on a trained model: the same weights, the inference setting recorded in the card and reloaded
    for name in ("abs", "biabs"):
        card = train(name, tmp_path / f"{name}-fast", from_dir=tmp_path / "abs", eval_limit=20, show=False,
                     model_overrides={"n_random": 30, "n_steps": 1})
        assert card["config"]["model"]["n_random"] == 30 and card["weights_from"]["overrides"]["n_steps"] == 1
        derived = dim.load_model(tmp_path / f"{name}-fast")
        assert (derived.cfg.n_random, derived.cfg.n_steps) == (30, 1)
        assert all(torch.equal(ps[k], v) for k, v in derived.state_dict().items())
    with pytest.raises(ValueError, match="only options that leave the weights' shapes alone"):
        train("abs", tmp_path / "wider", from_dir=tmp_path / "abs", model_overrides={"hidden": 64}, show=False)
    with pytest.raises(ValueError, match="nothing is trained"):
        train("abs", tmp_path / "more", from_dir=tmp_path / "abs", epochs=2, show=False)


def test_state_saved_without_its_time_is_reported_as_unknown(tmp_path):
    from dim.train import loop
    save_file({"gen": torch.zeros(1)}, str(tmp_path / "old.safetensors"), metadata={"epoch": "3", "last_loss": "0.1"})
    assert torch.isnan(torch.tensor(loop.state_seconds(tmp_path)))
    save_file({"gen": torch.zeros(1)}, str(tmp_path / "old.safetensors"), metadata={"epoch": "3", "seconds": "12.5"})
    save_file({"gen": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"epoch": "1", "seconds": "2.5"})
    assert loop.state_seconds(tmp_path) == 15.0
    assert loop.state_seconds(tmp_path / "missing") == 0.0


def test_random_affine_moves_the_chosen_digits_only_and_follows_the_generator():
    from dim.train.augment import random_affine
    img = torch.zeros(64, 1, 28, 28)
    img[:, :, 6:22, 12:16] = 1.0  # an off-centre bar: zoom and shear both move it
    a = random_affine(img, 0.5, torch.Generator().manual_seed(1))
    b = random_affine(img, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == img.shape
    x, a = img.flatten(1), a.flatten(1)
    changed = (a - x).abs().sum(1) > 1e-3
    assert 10 < int(changed.sum()) < 54  # about half of the samples, each one really moved
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # a mild distortion: the ink is about the same (zoom changes it by at most ~20%)
    assert torch.all((a.sum(1) / x.sum(1) - 1).abs() < 0.25)
    assert torch.equal(random_affine(img, 0.0, torch.Generator().manual_seed(1)), img)
    assert bool(((random_affine(img, 1.0, torch.Generator()).flatten(1) - x).abs().sum(1) > 1e-3).all())
    rgb = torch.rand(8, 3, 16, 12)     # any shape and channel count
    assert random_affine(rgb, 1.0, torch.Generator()).shape == rgb.shape
    with pytest.raises(ValueError, match="probability"):
        random_affine(img, 1.5, torch.Generator())
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_affine(x, 0.5, torch.Generator())


def test_abs_trains_with_augmentation(data_dir, tmp_path):
    card = train("abs", tmp_path / "abs", epochs=1, seed=0, data_dir=data_dir, limit=300, eval_limit=50,
                 model_overrides={"n_random": 100, "n_steps": 2}, train_overrides={**SMALL, "augment": 0.5},
                 show=False)
    assert card["config"]["train"]["augment"] == 0.5 and card["clean_accuracy"] > 0.3


def test_a_bad_augmentation_probability_fails_before_any_state_is_written(data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"augmentation probability must be in \[0, 1\], got 1.5"):
        train("abs", tmp_path / "abs", epochs=1, data_dir=data_dir, limit=200, eval_limit=50,
              train_overrides={"augment": 1.5}, show=False)
    assert not (tmp_path / "abs").exists()


def test_a_diverging_training_stops_naming_the_stage_and_the_loss(data_dir, tmp_path):
    from dim.train.loop import DivergedError
    with pytest.raises(DivergedError, match=r"stage 'classifier', epoch 1: mean loss \S+ \((not finite|above 10000)\)"):
        train("cnn", tmp_path / "cnn", epochs=1, data_dir=data_dir, limit=200, eval_limit=50,
              train_overrides={"lr": 1e6, "batch_size": 16}, show=False)
    assert not (tmp_path / "cnn" / "card.json").exists() and not (tmp_path / "cnn" / "model.safetensors").exists()


def test_a_training_that_ends_at_chance_level_writes_no_model(data_dir, tmp_path):
    from dim.train.loop import DivergedError
    with pytest.raises(DivergedError, match=r"chance level .* final losses: final_loss"):
        train("cnn", tmp_path / "cnn", epochs=1, data_dir=data_dir, limit=64, eval_limit=200,
              train_overrides={"lr": 0.0, "batch_size": 16}, show=False)   # lr 0: the random initial weights
    assert not (tmp_path / "cnn" / "card.json").exists()


def test_abs_augmentation_is_applied_with_its_probability(data_dir, monkeypatch):
    from dim.core.device import generator
    from dim.train import vae
    from dim.train.loop import TrainData
    calls = []
    real = vae.random_affine

    def spy(x, prob, gen):
        calls.append((tuple(x.shape), prob))
        return real(x, prob, gen)

    monkeypatch.setattr(vae, "random_affine", spy)
    x, y = dim.data.load_split("mnist", "train", data_dir, limit=64)
    data = TrainData(torch.from_numpy(x), torch.from_numpy(y))
    for augment in (0.5, 0.0):
        model = dim.create_model("abs", n_random=20, n_steps=0).train()
        vae.fit_vaes(model, data, vae.VAETrainConfig(epochs=1, batch_size=16, augment=augment), generator("cpu", 0),
                     False, None)
        if augment:   # every step: the K * B own-class digits of that step, as images
            assert len(calls) == 4 and all(c == ((10 * 16, 1, 28, 28), 0.5) for c in calls), calls
            calls.clear()
    assert calls == []


def test_madry_training_is_adversarial(plain_cnn, data_dir, tmp_path):
    """The same CNN and budget, trained with and without PGD: only the adversarially trained one resists PGD
    (by 10 points at least, on the first 200 test images)."""
    from dim.attacks.gradient import pgd
    from dim.core.norms import Norm
    x, y = dim.data.load_split("mnist", "test", data_dir, limit=200)
    card = train("madry", tmp_path / "madry", epochs=2, seed=0, data_dir=data_dir, limit=2000, eval_limit=200,
                 train_overrides={"batch_size": 32, "eps": 0.1, "eps_warmup_epochs": 0.5, "pgd_steps": 1},
                 show=False, device="cpu")
    assert card["clean_accuracy"] > 0.6, card["clean_accuracy"]   # it learns (chance is 0.1)
    robust = {}
    for name, model in (("cnn", plain_cnn), ("madry", dim.load_model(tmp_path / "madry", device="cpu"))):
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        ok = model(xt).argmax(1) == yt
        cand, _ = pgd(model, xt[ok], yt[ok], norm=Norm.LINF, eps=0.1, steps=20, restarts=1, seed=0)
        robust[name] = float((model(cand).argmax(1) == yt[ok]).float().mean())
    assert robust["madry"] >= robust["cnn"] + 0.1, robust


def test_dim_paper_is_trained_with_the_papers_objective_alone(data_dir, tmp_path, monkeypatch):
    """No cross-entropy and no binarized views in dim_paper's recipe; dim's recipe has both."""
    import dim.train.score as score

    def no_ce(*a, **k):
        raise AssertionError("cross-entropy called")
    monkeypatch.setattr(score.F, "cross_entropy", no_ce)
    small = {"batch_size": 16, "denoiser_epochs": 3}
    card = train("dim_paper", tmp_path / "p", epochs=4, seed=0, data_dir=data_dir, limit=400, eval_limit=300,
                 train_overrides=small, show=False)
    assert get_entry("dim_paper").recipe == "score_paper"
    assert card["config"]["train"]["ce_weight"] == 0 and card["config"]["train"]["binarized_fraction"] == 0
    with pytest.raises(AssertionError, match="cross-entropy called"):
        train("dim", tmp_path / "d", epochs=1, seed=0, data_dir=data_dir, limit=64, eval_limit=50,
              train_overrides=small, show=False)
    derived = train("bidim_paper", tmp_path / "b", from_dir=tmp_path / "p", data_dir=data_dir, eval_limit=50,
                    show=False)
    assert derived["weights_from"]["model"] == "dim_paper"


def test_blocks_that_do_not_tile_the_images_are_refused_before_any_training_state(tmp_path, data_dir):
    """3x3 blocks on 28x28 MNIST: refused at once, with nothing written to the output folder."""
    out = tmp_path / "m"
    with pytest.raises(ValueError, match="multiples of 3"):
        train("bidim_at_bin", out, epochs=1, limit=50, data_dir=data_dir, model_overrides={"binarize_pool": 3})
    assert not out.exists() or not any(out.rglob("*"))


def _tiny_problem():
    """A linear least-squares problem small enough to follow every step of run_epochs."""
    g = torch.Generator().manual_seed(0)
    x, w_true = torch.randn(40, 3, generator=g), torch.randn(3, 1, generator=g)
    return x, x @ w_true + 0.1 * torch.randn(40, 1, generator=g)


def test_the_weight_average_is_the_running_average_of_the_steps_and_resumes_exactly(tmp_path):
    from dim.train.loop import run_epochs
    x, t = _tiny_problem()
    seen = []

    def fit(module, state_path=None, stop_at=None, average=0.9):
        def loss_fn(idx, gen, step):
            if step == stop_at:
                raise KeyboardInterrupt("simulated kill")
            return ((module(x[idx]) - t[idx]) ** 2).mean()
        return run_epochs(module, loss_fn, 40, 3, 10, 0.05, torch.Generator().manual_seed(1), "tiny", False,
                          state_path, average=average)

    torch.manual_seed(2)
    ref = torch.nn.Linear(3, 1)
    start = [p.detach().clone() for p in ref.parameters()]
    live = torch.nn.Linear(3, 1)
    live.load_state_dict(ref.state_dict())
    fit(live, average=0.0)                       # the last iterate, without averaging

    class Spy(torch.nn.Linear):                  # the same training, the weights recorded after every step
        def forward(self, inp):
            seen.append([p.detach().clone() for p in self.parameters()])
            return super().forward(inp)
    spy = Spy(3, 1)
    spy.load_state_dict(ref.state_dict())
    fit(spy)
    steps = seen[1:] + [[p.detach().clone() for p in live.parameters()]]   # the weights after each step
    expected = start
    for k, after in enumerate(steps):
        decay = min(0.9, (1 + k) / (10 + k))
        expected = [e + (1 - decay) * (a - e) for e, a in zip(expected, after)]
    assert all(torch.allclose(p, e, atol=1e-6) for p, e in zip(spy.parameters(), expected))
    assert not torch.allclose(spy.weight, live.weight, atol=1e-3)    # the average is not the last iterate

    # killed in its third epoch and resumed: the same averaged weights as without the kill
    resumed = torch.nn.Linear(3, 1)
    resumed.load_state_dict(ref.state_dict())
    with pytest.raises(KeyboardInterrupt):
        fit(resumed, tmp_path / "state.safetensors", stop_at=9)
    fit(resumed, tmp_path / "state.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), spy.parameters()))
    # a state written without an average cannot continue one
    plain = torch.nn.Linear(3, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(plain, tmp_path / "plain.safetensors", stop_at=5, average=0.0)
    with pytest.raises(ValueError, match="no running average"):
        fit(plain, tmp_path / "plain.safetensors")


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_a_bad_weight_average_is_refused_before_training(decay):
    from dim.train.multinorm import MSDTrainConfig, ScoreMSDTrainConfig
    for cls in (MSDTrainConfig, ScoreMSDTrainConfig):
        with pytest.raises(ValueError, match="weight_average"):
            cls(weight_average=decay)
