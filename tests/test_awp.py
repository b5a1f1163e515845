"""Adversarial weight perturbation (``awp``): the perturbation, the step it feeds, and the recipes that use it."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from dim.train import train
from dim.train.awp import WeightPerturbation
from dim.train.loop import run_epochs


def _net_and_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    return net, x, y


def test_each_weight_matrix_moves_uphill_by_gamma_of_its_norm_and_comes_back_exactly():
    net, x, y = _net_and_batch()
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    with torch.no_grad():
        loss_before = float(F.cross_entropy(net(x), y))
    awp = WeightPerturbation(net, 0.01)
    calls: list[dict[str, torch.Tensor]] = []

    def fn():
        calls.append({k: v.detach().clone() for k, v in net.named_parameters()})
        return F.cross_entropy(net(x), y)

    perturbed_loss = awp.loss(fn)
    assert len(calls) == 2 and all(torch.equal(calls[0][k], before[k]) for k in before)
    for k, w in before.items():
        moved = calls[1][k] - w
        if w.dim() > 1:     # weight matrices: a step of 1% of their own norm
            assert torch.isclose(moved.norm(), 0.01 * w.norm(), rtol=1e-4), k
        else:               # biases stay
            assert torch.equal(moved, torch.zeros_like(w)), k
    assert float(perturbed_loss.detach()) > loss_before                  # uphill
    awp.restore()
    assert all(torch.equal(p, before[k]) for k, p in net.named_parameters())


def test_without_gamma_the_loss_is_evaluated_once_at_the_weights():
    net, x, y = _net_and_batch()
    calls = []
    awp = WeightPerturbation(net, 0.0)
    loss = awp.loss(lambda: calls.append(1) or F.cross_entropy(net(x), y))
    assert calls == [1] and torch.equal(loss, F.cross_entropy(net(x), y))


def test_the_step_applies_the_perturbed_points_gradient_to_the_unperturbed_weights():
    """One step of ``run_epochs``: the gradient is the one at the perturbed weights, and Adam's first step (a move of
    the learning rate against its sign) starts from the weights as they were."""
    net, x, y = _net_and_batch()
    before = [p.detach().clone() for p in net.parameters()]
    awp = WeightPerturbation(net, 0.05)
    seen = {}

    def before_step():
        seen["perturbed"] = [p.detach().clone() for p in net.parameters()]
        seen["grads"] = [p.grad.clone() for p in net.parameters()]
        awp.restore()

    run_epochs(net, lambda idx, g, step: awp.loss(lambda: F.cross_entropy(net(x[idx]), y[idx])), len(y), 1, len(y),
               1e-3, torch.Generator().manual_seed(0), "test", False, before_step=before_step)
    ref = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():
        for p, q in zip(ref.parameters(), seen["perturbed"]):
            p.copy_(q)
    grads = torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(seen["perturbed"], before))
    for g, want, p, w in zip(seen["grads"], grads, net.parameters(), before):
        assert torch.allclose(g, want, atol=1e-6)
        assert torch.allclose(p.detach(), w - 1e-3 * g / (g.abs() + 1e-8), atol=1e-6)


@pytest.mark.parametrize("name, overrides", [("msd_cnn", {"batch_size": 32, "steps": 1}),
                                             ("dim_at", {"batch_size": 32, "pretrain_denoiser_epochs": 1,
                                                         "pretrain_epochs": 1, "steps": 1})])
def test_the_multinorm_recipes_perturb_the_weights_at_every_step(name, overrides, data_dir, tmp_path, monkeypatch):
    from dim.train import awp as awp_module
    gammas: list[float] = []
    real = awp_module.WeightPerturbation.restore

    def spy(self):
        gammas.append(self.gamma)
        real(self)

    monkeypatch.setattr(awp_module.WeightPerturbation, "restore", spy)
    monkeypatch.setattr("dim.train._check_not_chance", lambda *a, **k: None)   # 64 images: any accuracy will do
    for gamma in (0.01, 0.0):
        card = train(name, tmp_path / str(gamma), epochs=1, seed=0, data_dir=data_dir, limit=64, eval_limit=50,
                     train_overrides={**overrides, "awp": gamma}, show=False, device="cpu")
        assert card["config"]["train"]["awp"] == gamma
    assert gammas == [0.01, 0.01, 0.0, 0.0]       # two steps (64 images, batches of 32) of each training
    a = load_file(str(tmp_path / "0.01" / "model.safetensors"))
    b = load_file(str(tmp_path / "0.0" / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["dim_at", "msd_cnn"])
@pytest.mark.parametrize("bad", [-0.01, 0.5])
def test_a_bad_weight_perturbation_is_refused(name, bad, data_dir, tmp_path):
    with pytest.raises(ValueError, match=rf"awp must be 0 \(off\) or a relative weight perturbation in \(0, 0.1\], "
                                         rf"got {bad}"):
        train(name, tmp_path / "m", epochs=1, data_dir=data_dir, limit=64, eval_limit=50,
              train_overrides={"awp": bad}, show=False)
    assert not (tmp_path / "m").exists()
