"""One device, chosen once: the resolver, and every kind of work on an explicit device."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import dim
from dim.attacks.suites import get_suite
from dim.core.device import DeviceError, device_info, device_of, generator, resolve_device
from dim.core.verify import Unverified
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.models import create_model
from dim.report import build_report
from dim.store import Store
from dim.train import train
from dim.train.loop import TrainData, run_epochs

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU visible to torch here")
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]


# ------------------------------------------------------------------------------------------ the resolver
def test_resolver_names(monkeypatch):
    monkeypatch.delenv("DIM_DEVICE", raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(DeviceError, match="sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="unknown device.*auto, cpu, cuda"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("cuda:x")


def test_resolver_with_a_gpu_present(monkeypatch):
    monkeypatch.delenv("DIM_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="only 2 CUDA devices"):
        resolve_device("cuda:2")
    assert resolve_device("cpu") == torch.device("cpu")      # never a GPU the user did not allow


def test_environment_variable_and_explicit_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("DIM_DEVICE", "cpu")
    assert resolve_device(None) == torch.device("cpu")       # DIM_DEVICE=cpu wins over a present GPU
    assert resolve_device("cuda") == torch.device("cuda", 0)  # an explicit choice wins over the variable
    monkeypatch.setenv("DIM_DEVICE", "tpu")
    with pytest.raises(DeviceError, match=r"\$DIM_DEVICE 'tpu'"):
        resolve_device(None)


def test_device_of_and_generators():
    assert device_of(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert device_of(torch.nn.ReLU()) == torch.device("cpu")
    a, b = generator("cpu", 3), generator("cpu", 3)
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    info = device_info("cpu")
    assert info["device"] == "cpu" and info["torch"] == torch.__version__ and "cuda" in info
    assert info["isa"] == torch.backends.cpu.get_cpu_capability() and info["threads"] == torch.get_num_threads()


def test_the_cpus_model_name_is_read_from_the_kernels_cpuinfo(tmp_path):
    from dim.core.device import cpu_model
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fma avx2\n")
    assert cpu_model(str(f)) == "AMD EPYC 7B13"
    f.write_text("processor\t: 0\nflags\t\t: fma\n")            # no model name (some ARM kernels)
    assert cpu_model(str(f)) is None
    assert cpu_model(str(tmp_path / "missing")) is None


# ------------------------------------------------------- DIM_DEVICE=cpu keeps everything on the CPU
@pytest.mark.slow
def test_dim_device_cpu_keeps_training_and_evaluation_on_the_cpu(monkeypatch, data_dir, tmp_path):
    """With a GPU 'present', DIM_DEVICE=cpu still trains, loads and evaluates on the CPU, and says so."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("DIM_DEVICE", "cpu")
    card = train("cnn", tmp_path / "cnn", epochs=1, seed=0, data_dir=data_dir, limit=300, eval_limit=100,
                 train_overrides={"batch_size": 32}, show=False)
    assert card["device"]["device"] == "cpu" and card["device"]["torch"] == torch.__version__
    model = dim.load_model(tmp_path / "cnn")
    assert all(p.device.type == "cpu" for p in model.parameters())
    x, y = dim.data.load_split("mnist", "test", data_dir, limit=20)
    run = tmp_path / "run"
    evaluate_models([EvalModel("cnn", model)], x, y, suite=get_suite("quick")[:2], run_dir=run, batch_size=10,
                    show=False, checks=False)
    store = Store.of_run(run)
    try:
        prov = store.get_meta("provenance")
        per_device = store.shard_devices()
    finally:
        store.close()
    assert [d["device"] for d in prov["devices"]] == ["cpu"]
    assert len(per_device) == 1 and next(iter(per_device)).startswith("cpu (") and sum(per_device.values()) == 4
    text = (build_report(run, plots=False) / "report.md").read_text()
    assert "## Provenance" in text and "device(s) the run was computed on: cpu (" in text


# ----------------------------------------------------------- every kind of work on an explicit device
@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_model_attack_and_training_step_on_a_device(device, data_dir):
    dev = torch.device(device)
    x, y = dim.data.load_split("mnist", "test", data_dir, limit=8)
    model = create_model("bidim").to(dev)
    out = model(torch.from_numpy(x).to(dev))
    assert out.device.type == dev.type and out.shape == (8, 10)
    from dim.attacks import ADAPTERS
    spec = next(s for s in get_suite("adaptive") if s.name == "Linf BPDA-PGD 100x5")
    got = ADAPTERS[spec.attack](spec, model, x, y, seed=0)   # numpy in, numpy out; runs on the model's device
    assert isinstance(got, Unverified) and isinstance(got.x_adv, np.ndarray) and got.x_adv.shape == x.shape
    data = TrainData(torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev), dev)
    cnn = create_model("cnn").to(dev).train()
    before = [p.detach().clone() for p in cnn.parameters()]

    def loss_fn(idx, g, step):
        xb, yb = data.take(idx)
        return torch.nn.functional.cross_entropy(cnn(xb), yb)

    run_epochs(cnn, loss_fn, 8, 1, 4, 1e-3, generator(dev, 0), "step", False)
    assert all(p.device.type == dev.type for p in cnn.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, cnn.parameters()))


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_weights_on_one_device(device, data_dir, tmp_path):
    kw = dict(epochs=4, seed=3, data_dir=data_dir, limit=600, eval_limit=100, train_overrides={"batch_size": 16},
              show=False, device=device)
    cards = [train("dim", tmp_path / s, **kw) for s in "ab"]
    a, b = (load_file(str(tmp_path / s / "model.safetensors")) for s in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert cards[0]["device"]["device"].startswith(device)
    model = dim.load_model(tmp_path / "a", device=device)
    assert device_of(model).type == device


@needs_cuda
def test_a_model_trained_on_the_gpu_loads_on_the_cpu_with_the_same_predictions(data_dir, tmp_path):
    train("cnn", tmp_path / "cnn", epochs=1, seed=0, data_dir=data_dir, limit=300, eval_limit=100,
          train_overrides={"batch_size": 32}, show=False, device="cuda")
    x, _ = dim.data.load_split("mnist", "test", data_dir, limit=100)
    on_gpu = dim.load_model(tmp_path / "cnn", device="cuda")
    on_cpu = dim.load_model(tmp_path / "cnn", device="cpu")
    with torch.no_grad():
        a = on_gpu(torch.from_numpy(x).cuda()).argmax(1).cpu()
        b = on_cpu(torch.from_numpy(x)).argmax(1)
    assert (a == b).float().mean() >= 0.99
