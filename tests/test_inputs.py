"""Every mistake with the arrays a user brings is one clear error before anything is written; the model never
changes the caller's arrays or the images a run stores."""
import numpy as np
import pytest
import torch

import dim
import evalkit
from dim.evaluation.artifacts import INPUTS, load_inputs
from dim.evaluation.inputs import InputError, check_labels
from dim.evaluation.reuse import data_sha256

SUITE = "quick:Linf FGSM"


def _bad(x, y):
    """The mistakes seen in practice, as (x, y) -> the words the error must contain."""
    onehot = np.eye(10, dtype=np.float32)[y]
    nan = x.copy()
    nan[3, 0, 5, 5] = np.nan
    return {
        "one-hot labels": (x, onehot, r"class indices of shape \(N,\), got shape \(40, 10\).*y.argmax\(1\)"),
        "labels (N, 1)": (x, y[:, None], r"class indices of shape \(N,\), got shape \(40, 1\).*y.ravel\(\)"),
        "float labels": (x, y.astype(np.float32) + 0.5, r"integer class indices, got float32"),
        "label -1": (x, np.where(np.arange(40) == 7, -1, y), r"1 are negative \(smallest -1\)"),
        # the API knows the number of classes only from the model: its outputs are checked against the labels
        "label 10": (x, np.where(np.arange(40) == 7, 10, y), r"returns 10 outputs per image, but the labels go up to 10"),
        "NaN pixel": (nan, y, r"1 NaN and 0 infinite values \(in 1 of 40 images\)"),
        "0..255": (x * 255, y, r"seen values from 0 to 255: images in 0..255 need dividing by 255"),
        "empty": (x[:0], y[:0], r"no images: x has shape \(0, 1, 28, 28\)"),
        "no channel axis": (x[:, 0], y, r"\(N, C, H, W\), got \(40, 28, 28\): add the channel axis"),
        "fewer labels": (x, y[:30], r"40 images but 30 labels"),
    }


@pytest.mark.parametrize("case", list(_bad(np.zeros((40, 1, 28, 28), np.float32), np.zeros(40, np.int64))))
def test_an_input_mistake_is_one_clear_error_and_writes_nothing(case, tiny, test_data, tmp_path):
    x, y = test_data
    bx, by, message = _bad(x, y)[case]
    with pytest.raises(ValueError, match=message) as err:   # InputError, or the model's ModelOutputError
        dim.evaluate(tiny, bx, by, suite=SUITE, run_dir=tmp_path / "run", show=False, checks=False)
    assert not (tmp_path / "run").exists()
    assert type(err.value).__name__ in ("InputError", "ModelOutputError")


def test_a_failed_start_leaves_no_run_directory(tiny, test_data, tmp_path):
    from dim.evaluation.outputs import ModelOutputError
    x, y = test_data
    with pytest.raises(ModelOutputError):
        dim.evaluate(evalkit.Output(tiny, lambda z: z[:, :3]), x, y, suite=SUITE, run_dir=tmp_path / "run",
                     show=False, checks=False)
    assert not (tmp_path / "run").exists()


class _ClampsInPlace(torch.nn.Module):
    """``base`` on its input clamped to [0, 0.5] in place: a model that writes into the tensor it is given."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, x):
        return self.base(x.clamp_(0, 0.5))


def test_a_model_that_changes_its_input_in_place_changes_neither_the_callers_array_nor_the_stored_images(
        tiny, test_data, tmp_path):
    x, y = test_data
    mine = x.copy()
    dim.evaluate(_ClampsInPlace(tiny), mine, y, suite=SUITE, run_dir=tmp_path, show=False, checks=False,
                 report=False)
    np.testing.assert_array_equal(mine, x)
    stored_x, stored_y = load_inputs(tmp_path)
    np.testing.assert_array_equal(stored_x, x)
    np.testing.assert_array_equal(stored_y, y)


def test_stored_images_that_are_not_the_runs_are_neither_shown_nor_kept(tiny, test_data, tmp_path):
    """An inputs.npz replaced by other images (here inverted) no longer hashes to the run: the gallery leaves it out,
    and the next evaluation of the run writes the run's own images again."""
    from dim.evaluation.artifacts import atomic_npz
    from dim.report.gallery import _clean_inputs
    from dim.report.view import build_view
    from dim.store import Store
    x, y = test_data
    dim.evaluate(tiny, x, y, suite=SUITE, run_dir=tmp_path, show=False, checks=False, report=False)
    atomic_npz(tmp_path / INPUTS, x=1 - x, y=y)
    store = Store.of_run(tmp_path, read_only=True)
    try:
        view = build_view(store, tmp_path)
    finally:
        store.close()
    assert _clean_inputs(view) is None or data_sha256(*_clean_inputs(view)) == data_sha256(x, y)
    dim.evaluate(tiny, x, y, suite=SUITE, run_dir=tmp_path, show=False, checks=False, report=False)
    np.testing.assert_array_equal(load_inputs(tmp_path)[0], x)


def test_labels_beyond_the_datasets_classes_are_refused_where_the_classes_are_known():
    with pytest.raises(InputError, match=r"class indices 0..9; 1 are 10 or more \(largest 10\)"):
        check_labels(np.array([0, 3, 10]), 3, num_classes=10)
