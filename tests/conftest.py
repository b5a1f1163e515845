import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("DIM_NO_PROGRESS", "1")
torch.set_num_threads(2)


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


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.endswith(SLOW_CASES):
            item.add_marker(pytest.mark.slow)
