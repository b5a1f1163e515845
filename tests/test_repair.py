"""A damaged, missing or foreign adversarials file: one clear error where it is read, recomputed by the next
dim evaluate, and never shown in the gallery against the store's rows."""
import os
import shutil
import subprocess
import sys

import numpy as np

import evalkit
from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm
from dim.evaluation.artifacts import adversarial_path, load_adversarials
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.store import Store

SUITE = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),
         AttackSpec("L2 DDN", "DDNAttack", Norm.L2, {"steps": 10}))
KW = dict(suite=SUITE, batch_size=10, show=False, checks=False)


def _evaluate(tiny, test_data, run, capsys=None):
    x, y = test_data
    evaluate_models([EvalModel("tiny", tiny)], x, y, run_dir=run, **KW)


def _files(run):
    return {a.name: load_adversarials(run, "tiny", a.name) for a in SUITE}


def _same(a, b):
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_a_truncated_file_is_one_error_for_the_report_and_recomputed_by_the_next_evaluate(tiny, test_data, tmp_path):
    run = tmp_path / "run"
    _evaluate(tiny, test_data, run)
    rows, files = evalkit.rows(run), _files(run)
    path = adversarial_path(run, "tiny", "L2 DDN")
    path.write_bytes(path.read_bytes()[:300])
    r = subprocess.run([sys.executable, "-m", "dim", "report", str(run)], capture_output=True, text=True,
                       env={**os.environ, "DIM_NO_PROGRESS": "1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("error:") == 1 and f"{path}: damaged adversarials file" in " ".join(r.stderr.split())
    _evaluate(tiny, test_data, run)
    assert evalkit.rows(run) == rows
    _same(_files(run)["L2 DDN"], files["L2 DDN"])
    store = Store.of_run(run, read_only=True)
    try:
        attempts = store.attempts("tiny", "L2 DDN", 0)
    finally:
        store.close()
    assert attempts and attempts[-1]["error"].startswith("reopened: ") and "damaged adversarials file" in \
        attempts[-1]["error"]


def test_a_deleted_file_is_noticed_and_recomputed(tiny, test_data, tmp_path):
    run = tmp_path / "run"
    _evaluate(tiny, test_data, run)
    rows, files = evalkit.rows(run), _files(run)
    adversarial_path(run, "tiny", "Linf FGSM").unlink()
    _evaluate(tiny, test_data, run)
    assert evalkit.rows(run) == rows
    _same(_files(run)["Linf FGSM"], files["Linf FGSM"])


def test_another_attacks_file_in_its_place_is_not_shown_and_is_recomputed(tiny, test_data, tmp_path):
    from dim.report.gallery import worst_per_sample
    from dim.store import Store
    run = tmp_path / "run"
    _evaluate(tiny, test_data, run)
    rows, files = evalkit.rows(run), _files(run)
    shutil.copy(adversarial_path(run, "tiny", "L2 DDN"), adversarial_path(run, "tiny", "Linf FGSM"))
    store = Store.of_run(run, read_only=True)
    try:
        stored = {a.name: store.distances("tiny", a.name, len(test_data[1])) for a in SUITE}
    finally:
        store.close()
    attacks = [{"attack": a.name, "norm": a.norm.value} for a in SUITE]
    best, rejected = worst_per_sample(run, "tiny", attacks, Norm.LINF, stored, test_data[0])
    # DDN's images are no FGSM adversarials of the store's rows: only the misclassified clean images (distance 0,
    # the same in both files) remain
    assert all(d == 0 for d, *_ in best.values()) and rejected > 0
    _evaluate(tiny, test_data, run)
    assert evalkit.rows(run) == rows
    _same(_files(run)["Linf FGSM"], files["Linf FGSM"])
    best, rejected = worst_per_sample(run, "tiny", attacks, Norm.LINF, stored, test_data[0])
    assert rejected == 0 and any(d > 0 for d, *_ in best.values())


def test_one_bad_shard_of_a_merged_file_is_all_that_is_recomputed(tiny, test_data, tmp_path):
    run = tmp_path / "run"
    _evaluate(tiny, test_data, run)
    rows, files = evalkit.rows(run), _files(run)
    path = adversarial_path(run, "tiny", "Linf FGSM")
    data = dict(np.load(path))
    data["distance"][25] = 0.123                  # sample 25: shard 2 of 4
    np.savez_compressed(path, **data)
    _evaluate(tiny, test_data, run)
    store = Store.of_run(run, read_only=True)
    try:
        reopened = {k for k in range(4) if store.attempts("tiny", "Linf FGSM", k)}
    finally:
        store.close()
    assert reopened == {2}
    assert evalkit.rows(run) == rows
    _same(_files(run)["Linf FGSM"], files["Linf FGSM"])
