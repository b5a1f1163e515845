"""The trained weights committed under weights/ load, and classify the test set as their cards say."""
from pathlib import Path

import pytest
import torch

import dim
from dim.train.loop import accuracy

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted(p for p in (ROOT / "weights").iterdir() if (p / "card.json").is_file())


def test_there_are_committed_weights():
    assert {p.name for p in COMMITTED} >= {"msd_cnn", "dim_at"}


@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_weights_give_their_cards_clean_accuracy(folder, data_dir):
    model = dim.load_model(folder, device="cpu")       # checks the weights' and the card's hashes
    x, y = dim.data.load_split(model.card["dataset"], "test", data_dir)
    assert len(y) == model.card["test_samples"]
    acc = accuracy(model, torch.from_numpy(x), torch.from_numpy(y))
    # floats differ between machines: a handful of the 10,000 predictions may flip, no more
    assert acc == pytest.approx(model.card["clean_accuracy"], abs=5e-4), (folder.name, acc)
