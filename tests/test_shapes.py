"""Any image shape and class count: a user's folder of IDX files, end to end."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dim import data
from dim.data import DataError
from dim.core.norms import Norm, ThreatModel
from dim.pipeline import run_evaluation
from dim.evaluation.spec import RunSpec
from dim.attacks.suites import get_suite
from dim.models import get_entry, list_models
from dim.train import train

pytestmark = pytest.mark.slow   # trains every model on another image shape

TRAINABLE = [m for m in list_models() if get_entry(m).trainable]
SHAPE, CLASSES = (3, 16, 16), 4
# ABS searches 8,000 random latents per class at inference; a few hundred do for 16 x 16 squares
FAST_ABS = {"n_random": 100, "n_steps": 3}
# the adversarial recipes' loops with two attack steps and a short clean pretraining: squares are learnt at once
FAST_TRAIN = {"score_msd": {"pretrain_denoiser_epochs": 1, "pretrain_epochs": 2, "steps": 2},
              "adversarial": {"pgd_steps": 2, "pgd_step": 0.2}, "msd": {"steps": 2}}


def idx_bytes(a: np.ndarray) -> bytes:
    code = {np.uint8: 0x08}[a.dtype.type]
    return bytes([0, 0, code, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) + a.tobytes()


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k: a bright square in quadrant k of a noisy 3 x 16 x 16 image, its colour depending on k."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n).astype(np.uint8)
    x = rng.uniform(0, 0.25, (n, *SHAPE))
    for i, k in enumerate(y):
        r, c = divmod(int(k), 2)
        x[i, :, 8 * r + 2:8 * r + 7, 8 * c + 2:8 * c + 7] += 0.6
        x[i, int(k) % 3] += 0.1
    return (np.clip(x, 0, 1) * 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rgb16")
    for split, n, seed in (("train", 480, 0), ("test", 120, 1)):
        x, y = synthetic(n, seed)
        img, lab = data.SPLIT_FILES[split]
        (out / f"{img}.gz").write_bytes(gzip.compress(idx_bytes(x)))   # compressed and raw files mix
        (out / lab).write_bytes(idx_bytes(y))
    return out


def test_a_folder_is_a_dataset_with_its_shape_classes_and_scaled_thresholds(folder):
    spec = data.get_spec(str(folder))
    assert spec.input_shape == SHAPE and spec.num_classes == CLASSES and spec.folder == folder.resolve()
    x, y = data.load_split(str(folder), "test", limit=10)
    assert x.shape == (10, *SHAPE) and x.dtype == np.float32 and set(y.tolist()) <= set(range(CLASSES))
    tm = spec.threat_model()
    d = 3 * 16 * 16
    assert tm.threshold(Norm.LINF) == 0.3
    assert tm.threshold(Norm.L2) == pytest.approx(1.5 * (d / 784) ** 0.5)
    assert tm.threshold(Norm.L1) == pytest.approx(8 * d / 784)
    assert tm.threshold(Norm.L0) == round(12 * 256 / 784)
    assert tm.threshold(Norm.L2) in tm.grid(Norm.L2) and tm.threshold(Norm.L0) in tm.grid(Norm.L0)
    assert ThreatModel.for_shape((1, 28, 28)).is_paper
    assert spec.threat_model().with_overrides({"L2": 2.0}).threshold(Norm.L2) == 2.0
    with pytest.raises(ValueError, match="unknown norm"):
        tm.with_overrides({"L3": 1.0})
    assert len(data.checksums(str(folder))) == 4


def test_every_trainable_model_trains_evaluates_and_reports_on_another_shape(folder, tmp_path):
    dirs = []
    for name in TRAINABLE:
        # the paper's objective (no cross-entropy) needs a few epochs, DIM's recipe two, the others one
        recipe = get_entry(name).recipe
        epochs = 4 if recipe == "score_paper" else 2 if recipe == "score" else 1
        card = train(name, tmp_path / name, epochs=epochs, seed=0, dataset=str(folder), show=False,
                     train_overrides={"batch_size": 16, **FAST_TRAIN.get(recipe, {})},
                     model_overrides=FAST_ABS if get_entry(name).config_cls.__name__ == "ABSConfig" else None)
        assert card["clean_accuracy"] > 0.4, (name, card["clean_accuracy"])   # chance is 0.25
        assert card["dataset"] == str(folder.resolve()) and card["test_samples"] == 120
        dirs.append(tmp_path / name)
    out = run_evaluation(RunSpec(run_dir=tmp_path / "run", model_dirs=tuple(dirs), suite="quick", n=8, batch_size=8,
                                 dataset=str(folder), checks=False))
    metrics = {m["model"]: m for m in json.loads((out / "metrics.json").read_text())}
    assert sorted(metrics) == sorted(TRAINABLE)
    for name, m in metrics.items():
        assert len(m["attacks"]) == len(get_suite("quick")) and all(a["complete"] for a in m["attacks"].values()), name
    report = (out / "report.md").read_text()
    assert "eps_L2 = 1.485" in report and "this dataset's thresholds" in report
    config = json.loads((out / "cards" / "cnn.json").read_text())["paper_protocol"]["per_norm"]
    assert config["L2"]["threshold"] == pytest.approx(1.5 * (768 / 784) ** 0.5)


def test_cli_trains_and_evaluates_a_folder_with_its_own_thresholds(folder, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "dim", *args], capture_output=True, text=True,
                              env={**__import__("os").environ, "DIM_NO_PROGRESS": "1"})
    r = cli("train", "cnn", "--dataset", str(folder), "--out", str(tmp_path / "cnn"), "--epochs", "1",
            "--set", "batch_size=16")
    assert r.returncode == 0, r.stderr
    # the two norms whose thresholds are set (every attack of every model: the test above)
    r = cli("evaluate", str(tmp_path / "cnn"), "--dataset", str(folder), "--suite", "quick:L2 DDN,Linf PGD",
            "--n", "10", "--run", str(tmp_path / "run"), "--no-checks", "--eps", "L2=0.5", "--eps", "Linf=0.1")
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "run" / "report" / "cards" / "cnn.json").read_text())
    assert config["paper_protocol"]["per_norm"]["L2"]["threshold"] == 0.5
    assert config["paper_protocol"]["per_norm"]["Linf"]["threshold"] == 0.1
    r = cli("evaluate", str(tmp_path / "cnn"), "--suite", "quick", "--n", "10", "--run", str(tmp_path / "mnist"))
    assert r.returncode == 2 and "cannot run on images of shape (1, 28, 28)" in r.stderr
    r = cli("evaluate", str(tmp_path / "cnn"), "--dataset", str(folder), "--n", "5", "--run", str(tmp_path / "x"),
            "--eps", "L2")
    assert r.returncode == 2 and "--eps expects NORM=VALUE" in r.stderr


@pytest.mark.parametrize("breakage, message", [
    ("missing", r"t10k-labels-idx1-ubyte: missing"),
    ("magic", r"t10k-labels-idx1-ubyte: wrong magic number"),
    ("shape", r"train and test images differ in shape"),
    ("truncated", r"truncated"),
    ("labels", r"labels outside 0..3"),
])
def test_a_bad_file_in_a_folder_is_a_clear_error(folder, tmp_path, breakage, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    labels = bad / "t10k-labels-idx1-ubyte"
    images = bad / "t10k-images-idx3-ubyte.gz"
    if breakage == "missing":
        labels.unlink()
    elif breakage == "magic":
        labels.write_bytes(b"\x01\x02" + labels.read_bytes()[2:])
    elif breakage == "shape":
        images.write_bytes(gzip.compress(idx_bytes(np.zeros((120, 3, 8, 8), np.uint8))))
    elif breakage == "truncated":
        images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-100]))
    elif breakage == "labels":
        labels.write_bytes(idx_bytes(np.full(120, 7, np.uint8)))
    with pytest.raises(DataError, match=message):
        data.load_split(str(bad), "test")
