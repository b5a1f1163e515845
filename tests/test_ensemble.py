"""The ensemble of trained models: the mean of its members' logits, one shared input binarization."""
import dataclasses
import subprocess
import sys

import pytest
import torch

import dim
from dim.checkpoint import CheckpointError, load_ensemble, save_weights, write_card
from dim.models.registry import resolve_config
from dim.train import train
from dim.train.ensemble import assemble


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dim", *args], capture_output=True, text=True)
from dim.models.binarize import GradientMode, gradient_mode, input_binarization
from dim.models.ensemble import Ensemble


def batch(n=5, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def members(name="bidim_at_ramp", count=3, **config):
    out = []
    for seed in range(count):
        torch.manual_seed(seed)
        out.append(dim.create_model(name, **config))
    return out


@pytest.mark.parametrize("name", ["bidim_at_ramp", "dim_at", "msd_cnn"])
def test_logits_are_the_mean_of_the_members_logits(name):
    ms = members(name)
    x = batch()
    with torch.no_grad():
        want = torch.stack([m(x) for m in ms]).mean(0)
        got = Ensemble(ms).eval()(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_the_members_input_binarization_is_applied_once_and_is_the_one_attacks_flip():
    ens = Ensemble(members())
    found = input_binarization(ens)
    assert found is ens.bin_in and found.width == 0.4
    assert all(isinstance(m.bin_in, torch.nn.Identity) for m in ens.members)
    # the members' other binarization (the denoiser's output) stays theirs, and BPDA reaches it
    with gradient_mode(ens, GradientMode.STRAIGHT_THROUGH):
        assert all(m.bin_dn.mode is GradientMode.STRAIGHT_THROUGH for m in ens.members)
    assert all(m.bin_dn.mode is GradientMode.EXACT for m in ens.members)


def test_the_gradient_reaches_every_member_and_the_input():
    ens = Ensemble(members("dim_at"))
    x = batch().requires_grad_(True)
    ens(x).logsumexp(1).sum().backward()
    assert x.grad.abs().sum() > 0
    for m in ens.members:
        assert m.heads.dec2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("bad, message", [
    (lambda: members(count=1), "at least two members"),
    (lambda: members() + members(binarize_width=0.2, count=1), "binarize their input differently"),
    (lambda: members() + members("dim_at", count=1), "binarize their input differently"),
])
def test_members_that_cannot_share_an_input_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        Ensemble(bad())


def _model_dir(tmp_path, name, seed, **config):
    torch.manual_seed(seed)
    model = dim.create_model(name, **config)
    out = tmp_path / f"{name}_{seed}"
    save_weights(model, out)
    write_card(out, {"model": name, "config": {"model": dataclasses.asdict(resolve_config(name, config))},
                     "seed": seed})
    return out, model


def test_load_ensemble_reads_the_members_from_their_folders(tmp_path):
    (a, ma), (b, mb) = _model_dir(tmp_path, "bidim_at_ramp", 0), _model_dir(tmp_path, "bidim_at_ramp", 1)
    ens = load_ensemble([a, b], device="cpu")
    x = batch()
    with torch.no_grad():
        torch.testing.assert_close(ens(x), (ma(x) + mb(x)) / 2, rtol=1e-5, atol=1e-6)
    assert [c["seed"] for c in ens.cards] == [0, 1] and not ens.training


def test_load_ensemble_names_the_folders_of_members_that_do_not_fit(tmp_path):
    (a, _), (b, _) = _model_dir(tmp_path, "bidim_at_ramp", 0), _model_dir(tmp_path, "dim_at", 1)
    with pytest.raises(CheckpointError, match=f"{b.name}.*binarize their input differently"):
        load_ensemble([a, b], device="cpu")


@pytest.mark.slow   # a CLI process that reads the test images
def test_dim_ensemble_writes_a_folder_that_loads_and_records_its_members(data_dir, tmp_path):
    (a, ma), (b, mb) = (_model_dir(tmp_path, "bidim_at_ramp", s, denoiser_binarize_width=0.8) for s in (0, 1))
    out = tmp_path / "ens"
    r = run_cli("ensemble", str(a), str(b), "--out", str(out), "--eval-limit", "50", "--data-dir", str(data_dir),
                "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "ensemble of 2 bidim_at_ramp: clean accuracy" in r.stdout
    model = dim.load_model(out, device="cpu")
    card = model.card
    assert card["model"] == "ensemble" and card["test_samples"] == 50 and card["seed"] == [0, 1]
    assert card["config"]["model"]["member"] == "bidim_at_ramp" and card["config"]["model"]["count"] == 2
    assert card["config"]["model"]["member_config"]["denoiser_binarize_width"] == 0.8
    assert [m["dir"] for m in card["members"]] == [str(a), str(b)]
    x = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(x), (ma(x) + mb(x)) / 2, rtol=1e-5, atol=1e-6)
    x50, y50 = dim.data.load_split("mnist", "test", data_dir, limit=50)
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x50)).argmax(1) == torch.from_numpy(y50)).float().mean())
    assert card["clean_accuracy"] == pytest.approx(acc)


@pytest.mark.parametrize("case, message", [
    ("one", "at least two model folders"),
    ("twice", "the same model folder is given twice"),
    ("out_is_member", "is one of the members' folders"),
    ("other_config", "model config differs .* in \\['latent'\\]"),
    ("other_model", "binarize their input differently"),
])
def test_assemble_refuses_members_it_cannot_combine_and_writes_nothing(case, message, data_dir, tmp_path):
    a, _ = _model_dir(tmp_path, "bidim_at_ramp", 0)
    b, _ = {"other_config": lambda: _model_dir(tmp_path, "bidim_at_ramp", 1, latent=6),
            "other_model": lambda: _model_dir(tmp_path, "dim_at", 1)}.get(
        case, lambda: _model_dir(tmp_path, "bidim_at_ramp", 1))()
    dirs = {"one": [a], "twice": [a, a]}.get(case, [a, b])
    out = b if case == "out_is_member" else tmp_path / "ens"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises((ValueError, CheckpointError), match=message):
        assemble(dirs, out, data_dir=data_dir, eval_limit=20, device="cpu")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.slow   # a CLI process
def test_dim_ensemble_exits_with_one_clear_error(data_dir, tmp_path):
    a, _ = _model_dir(tmp_path, "bidim_at_ramp", 0)
    r = run_cli("ensemble", str(a), str(a), "--out", str(tmp_path / "ens"), "--data-dir", str(data_dir))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "the same model folder is given twice" in " ".join(r.stderr.split())
    assert not (tmp_path / "ens").exists()


def test_dim_train_sends_an_ensemble_to_dim_ensemble(tmp_path):
    with pytest.raises(ValueError, match="assembled from trained models, not trained.*dim ensemble"):
        train("ensemble", tmp_path / "e", show=False)
    assert not (tmp_path / "e").exists()


def test_an_ensemble_of_ensembles_or_of_one_model_is_refused():
    with pytest.raises(ValueError, match="single models, not ensembles"):
        dim.create_model("ensemble", member="ensemble")
    with pytest.raises(ValueError, match="at least two members"):
        dim.create_model("ensemble", count=1)
