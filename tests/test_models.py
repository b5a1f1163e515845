"""Registry-driven model tests: every registered model gets each of these."""
import pytest
import torch

import dim
from dim.models.abs import VAE_ARCHS
from dim.models import GradientMode, get_entry, has_binarization, list_models, set_gradient_mode

MODELS = list_models()
BINARIZED = [m for m in MODELS if has_binarization(dim.create_model(m))]


def batch(n=6, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", MODELS)
def test_shape_and_finite(name):
    model = dim.create_model(name)
    assert not model.training
    out = model(batch())
    assert out.shape == (6, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_in_eval(name):
    model = dim.create_model(name)
    x = batch()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", sorted(set(MODELS) - set(BINARIZED)))
def test_gradient_reaches_input(name):
    model = dim.create_model(name)
    x = batch().requires_grad_(True)
    model(x).logsumexp(1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", BINARIZED)
def test_binarized_gradient_modes(name):
    model = dim.create_model(name)
    x = batch().requires_grad_(True)
    model(x)[:, 0].sum().backward()  # exact mode: a gradient tensor exists, and it is zero (a step function)
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0
    set_gradient_mode(model, GradientMode.STRAIGHT_THROUGH)
    x.grad = None
    y = model(x)
    y[:, 0].sum().backward()
    assert x.grad.abs().sum() > 0
    # the forward pass is the binarized model in both modes
    set_gradient_mode(model, "exact")
    assert torch.equal(y, model(x))


@pytest.mark.parametrize("name", BINARIZED)
def test_binarized_output_depends_only_on_binarized_input(name):
    """Values moved within the side of the threshold they lie on (outside a ramp's band: on the band they are
    what the model sees) leave the output unchanged."""
    from dim.models.binarize import input_binarization
    model = dim.create_model(name)
    half = input_binarization(model).width / 2
    x = batch()
    nudged = torch.where(x > 0.5 + half, torch.full_like(x, 0.9), torch.where(x > 0.5 - half, x, torch.full_like(x, 0.1)))
    assert (nudged != x).float().mean() > 0.5
    assert torch.equal(model(x), model(nudged))


def test_bidim_binarizes_the_denoiser_output_too():
    """biDIM's internal models see bin(D(bin(x))): replacing the second binarization by the identity fails here."""
    bidim, dim_model = dim.create_model("bidim"), dim.create_model("dim")
    bidim.load_state_dict(dim_model.state_dict())
    x = batch()
    d_bi = bidim.denoise(x)
    assert set(torch.unique(d_bi).tolist()) <= {0.0, 1.0}
    expected = (dim_model.denoiser((x.flatten(1) > 0.5).float()) > 0.5).float()
    assert torch.equal(d_bi, expected)
    assert not set(torch.unique(dim_model.denoise(x)).tolist()) <= {0.0, 1.0}   # DIM's is not binary


def test_set_gradient_mode_refuses_model_without_binarization():
    with pytest.raises(ValueError, match="has no binarization"):
        set_gradient_mode(dim.create_model("dim"), "straight_through")


def test_variants_share_weights_layout():
    for name in MODELS:
        base = get_entry(name).weights_from
        if base:
            assert dim.create_model(name).state_dict().keys() == dim.create_model(base).state_dict().keys()


def test_dim_score_is_paper_eq3():
    model = dim.create_model("dim")
    x = batch(4)
    with torch.no_grad():
        d, rec = model.reconstructions(x)
        manual = torch.stack([rec[i].abs().sum(1) / d.abs().sum(1) for i in range(10)], 1)
        assert torch.allclose(model.scores(x), manual, atol=1e-6)
        assert torch.allclose(model(x), model.temperature * manual, atol=1e-5)
    assert model.latents(x).shape == (10, 4, 10)


def test_batched_internal_models_equal_separate_autoencoders():
    """The batched computation (activations in place) is exactly ten independent autoencoders, and so are its
    gradients with respect to the input and to every weight."""
    from dim.models.dim import InternalModels
    im = InternalModels(10, 784, 32, 10)
    x = batch(5).flatten(1).requires_grad_(True)
    g = torch.randn(10, 5, 784)
    out = im(x)
    (out * g).sum().backward()
    got = [x.grad.clone()] + [p.grad.clone() for p in im.parameters()]
    x.grad = None
    im.zero_grad(set_to_none=True)
    refs = []
    for k in range(10):
        w1 = im.enc1.linear.weight[k * 32:(k + 1) * 32]
        b1 = im.enc1.linear.bias[k * 32:(k + 1) * 32]
        h = torch.relu(x @ w1.t() + b1)
        z = h @ im.enc2.weight[k] + im.enc2.bias[k]
        h2 = torch.relu(z @ im.dec1.weight[k] + im.dec1.bias[k])
        refs.append(torch.sigmoid(h2 @ im.dec2.weight[k] + im.dec2.bias[k]))
        assert torch.allclose(out[k], refs[k], atol=1e-5)
    (torch.stack(refs) * g).sum().backward()
    want = [x.grad] + [p.grad for p in im.parameters()]
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5)


def test_fused_reconstruction_sums_equal_the_batched_layer_and_its_gradients():
    """The per-class fusion of the last layer, the sigmoid and the sum (CPU) gives the batched form's sums and the
    same gradients for its input, weights and bias; float64 gradcheck; no stored reconstructions without grad."""
    from dim.models.sigmoid_sum import batched, sigmoid_sums
    g = torch.Generator().manual_seed(0)
    h, w, b = torch.rand(3, 5, 4, generator=g), torch.randn(3, 4, 6, generator=g), torch.randn(3, 1, 6, generator=g)
    gout = torch.randn(3, 5, generator=g)
    grads = []
    fns = [batched] + [lambda *t, c=c: sigmoid_sums(*t, chunk=c) for c in (1, 2, 3)]   # classes per step
    for fn in fns:
        leaves = [t.clone().requires_grad_(True) for t in (h, w, b)]
        out = fn(*leaves)
        (out * gout).sum().backward()
        grads.append([out.detach()] + [t.grad for t in leaves])
    for other in grads[1:]:
        for got, want in zip(other, grads[0]):
            assert torch.allclose(got, want, atol=1e-6)
    with torch.no_grad():
        for c in (1, 2, 3):
            assert torch.allclose(sigmoid_sums(h, w, b, chunk=c), grads[0][0], atol=1e-6)
    d64 = [t.double().requires_grad_(True) for t in (h, w, b)]
    assert torch.autograd.gradcheck(sigmoid_sums, d64)


def test_input_gradient_prepared_in_the_forward_equals_the_layer_by_layer_one():
    """With the heads' weights frozen (an attack), the sums and their input gradient computed class by class in the
    forward (models.input_grad) equal the stored-reconstruction path's; a second backward of the same graph gives
    the same gradient; float64 gradcheck; the path is taken only when no weight wants a gradient."""
    from dim.models import input_grad
    from dim.models.dim import InternalModels
    torch.manual_seed(0)
    im = InternalModels(10, 784, 32, 10)
    d = batch(6).flatten(1)
    gout = torch.randn(10, 6)
    ref = d.clone().requires_grad_(True)
    assert not input_grad.applies(ref, im)                   # weights want gradients: the stored path
    (im.sums(ref) * gout).sum().backward()
    im.requires_grad_(False)
    got = d.clone().requires_grad_(True)
    assert input_grad.applies(got, im)
    with torch.no_grad():
        assert not input_grad.applies(got, im)
    out = im.sums(got)
    assert torch.allclose(out, im.sums(d), atol=1e-6)
    (out * gout).sum().backward(retain_graph=True)
    first = got.grad.clone()
    assert torch.allclose(first, ref.grad, atol=1e-6) and ref.grad.abs().max() > 1e-3
    got.grad = None
    (out * gout).sum().backward()
    assert torch.equal(got.grad, first)
    for chunk in (1, 3, 10):         # classes per step (one per CPU thread by default): the same numbers
        each = d.clone().requires_grad_(True)
        sums = input_grad.input_grad_sums(each, im.enc1.linear, im.enc2, im.dec1, im.dec2, chunk=chunk)
        (sums * gout).sum().backward()
        assert torch.allclose(sums, out, atol=1e-6) and torch.allclose(each.grad, first, atol=1e-6), chunk
    im64 = InternalModels(3, 7, 4, 2).double().requires_grad_(False)
    d64 = torch.rand(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: input_grad.input_grad_sums(t, im64.enc1.linear, im64.enc2, im64.dec1, im64.dec2), (d64,))


@pytest.mark.parametrize("name", [m for m in MODELS if (get_entry(m).recipe or "").startswith("score")])
def test_scores_equal_eq3_on_the_stored_reconstructions(name):
    """``scores`` (fused sums) and ``scores_of(*reconstructions)`` (what training uses) agree, gradients too."""
    model = dim.create_model(name).eval()
    x = batch(4)
    outs = []
    for fn in (model.scores, lambda t: model.scores_of(*model.reconstructions(t))):
        xx = x.clone().requires_grad_(True)
        model.zero_grad(set_to_none=True)
        s = fn(xx)
        (s * torch.arange(1.0, 11.0)).sum().backward()
        outs.append([s.detach(), xx.grad] + [p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(outs[0]) == len(outs[1])
    for got, want in zip(*outs):
        assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("how", ["trace", "script", "export"])
def test_dim_saved_as_a_model_file_gives_the_same_logits(how, tmp_path):
    """A DIM model traced, scripted or exported (what `dim evaluate` loads from users' files) records the batched
    form of its fused CPU path and, saved and loaded, gives the eager logits."""
    model, x = dim.create_model("dim").eval(), batch(4)
    path = tmp_path / "m.pt"
    if how == "export":
        torch.export.save(torch.export.export(model, (x,)), str(path))
        loaded = torch.export.load(str(path)).module()
    else:
        torch.jit.save(torch.jit.trace(model, x) if how == "trace" else torch.jit.script(model), str(path))
        loaded = torch.jit.load(str(path))
    with torch.no_grad():
        other = batch(4, seed=1)          # an export fixes the batch size it saw
        assert torch.allclose(loaded(other), model(other), atol=1e-5)


@pytest.mark.parametrize("arch", sorted(VAE_ARCHS))
def test_abs_vaes_encode_and_decode_each_class_with_its_own_vae(arch):
    """Shapes of the VAE interface, and VAE k's output depends on input/latent k only."""
    torch.manual_seed(0)
    vaes = dim.create_model("abs", arch=arch, n_random=10).vaes
    x, z = torch.rand(10, 3, 784), torch.randn(10, 5, 8)
    mu, logvar = vaes.encode(x)
    assert mu.shape == logvar.shape == (10, 3, 8)
    rec = vaes.decode(z)
    assert rec.shape == (10, 5, 784) and ((rec >= 0) & (rec <= 1)).all()
    z2 = z.clone()
    z2[3] = torch.randn(5, 8)
    rec2 = vaes.decode(z2)
    assert torch.equal(rec2[:3], rec[:3]) and torch.equal(rec2[4:], rec[4:]) and not torch.equal(rec2[3], rec[3])
    with pytest.raises(ValueError, match="unknown ABS arch 'nope'"):
        dim.create_model("abs", arch="nope")


def test_create_model_rejects_unknown():
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        dim.create_model("nope")
    with pytest.raises(ValueError, match="unknown config keys"):
        dim.create_model("dim", hiden=3)


@pytest.mark.parametrize("arch", sorted(VAE_ARCHS))
def test_abs_tiny_settings_finite_logits_and_input_gradient(arch):
    model = dim.create_model("abs", arch=arch, n_random=50, n_steps=2)
    x = batch(3).requires_grad_(True)
    out = model(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", sorted(VAE_ARCHS))
def test_abs_refinement_lowers_the_bound(arch):
    """Adam steps on the latent can only improve on the best random latent (per class, per image)."""
    model = dim.create_model("abs", arch=arch, n_random=100, n_steps=0)
    refined = dim.create_model("abs", arch=arch, n_random=100, n_steps=20)
    refined.load_state_dict(model.state_dict())
    x = batch(4)
    with torch.no_grad():
        assert (refined(x) >= model(x) - 1e-4).all()  # logits = -alpha * bound


def test_shared_input_linear_grouped_equals_each_map_on_its_own_input():
    from dim.models.dim import SharedInputLinear
    torch.manual_seed(0)
    layer = SharedInputLinear(3, 5, 4)
    x = torch.randn(3, 2, 5)
    grouped = layer.forward_grouped(x)
    for k in range(3):
        assert torch.allclose(grouped[k], layer(x[k])[k], atol=1e-6)
