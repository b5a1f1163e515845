import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

os.environ.setdefault("DIM_NO_PROGRESS", "1")
# pytest-xdist runs one process per core: each takes its share of the cores, so that two never fight over one.
torch.set_num_threads(max(1, (os.cpu_count() or 2) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real MNIST files (fetched once through the package's own sources, then cached)."""
    from dim import data
    data.fetch("mnist")
    return data.default_data_dir()


@pytest.fixture(scope="session")
def tiny(data_dir):
    """A softmax regression trained on 2,000 MNIST images, once per test run (shared: do not modify it)."""
    import evalkit
    return evalkit.tiny_model()


@pytest.fixture(scope="session")
def trained_dim(data_dir, tmp_path_factory):
    """DIM trained on 600 MNIST images for 12 epochs (seed 1), once per test run: ``(model folder, card)``.
    Shared: read it, do not write into its folder."""
    from dim.train import train
    out = tmp_path_factory.mktemp("dim")
    card = train("dim", out, epochs=12, seed=1, data_dir=data_dir, limit=600, eval_limit=1000,
                 train_overrides={"batch_size": 16, "denoiser_epochs": 6}, show=False)
    return out, card


@pytest.fixture(scope="session")
def plain_cnn(data_dir, tmp_path_factory):
    """The paper's CNN trained without any attack on 2,000 MNIST images for 2 epochs (seed 0, batch 32, CPU), once
    per test run: the baseline the adversarial-training tests train their models against. Shared: do not modify."""
    import dim
    from dim.train import train
    out = tmp_path_factory.mktemp("cnn")
    train("cnn", out, epochs=2, seed=0, data_dir=data_dir, limit=2000, eval_limit=200,
          train_overrides={"batch_size": 32}, show=False, device="cpu")
    return dim.load_model(out, device="cpu")


@pytest.fixture(scope="session")
def test_data(data_dir):
    """The first 40 MNIST test images and labels (shared: do not modify them)."""
    from dim import data
    return data.load_split("mnist", "test", limit=40)


# Parametrized cases slower than about 10 s here (the slow marker of the others sits on the test itself).
SLOW_CASES = ("test_models.py::test_binarized_gradient_modes[biabs]", "test_models.py::test_deterministic_in_eval[abs]",
              "test_models.py::test_deterministic_in_eval[biabs]", "test_models.py::test_gradient_reaches_input[abs]")


# Under pytest-xdist (scripts/test.sh), tests that share something costly run on one worker, one after another:
# those that start a local Ray cluster (two clusters side by side on two cores are far slower than one after the
# other), and those that need a model trained once per test run (so that it is trained once, not once per worker).
RAY_TESTS = ("test_ray.py::", "test_model_files.py::test_model_files_travel_to_ray_workers",
             "test_cli.py::test_a_ray_address_where_nothing_answers")
SHARED_MODELS = ("trained_dim", "plain_cnn")


def xdist_group(item: pytest.Item) -> str | None:
    if any(name in item.nodeid for name in RAY_TESTS):
        return "ray"
    return next((name for name in SHARED_MODELS if name in item.fixturenames), None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.endswith(SLOW_CASES):
            item.add_marker(pytest.mark.slow)
        group = xdist_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def benchmark_module(name: str) -> ModuleType:
    """A script of ``benchmarks/`` imported as a module (they are scripts, not a package), registered under its name
    so that the benchmarks that import one another find it."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
