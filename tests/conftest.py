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
