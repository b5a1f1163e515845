"""--reuse: copying finished shards of another run, only where they are the same work and re-verify."""
import json
from pathlib import Path

import numpy as np
import pytest

import evalkit  # noqa: F401  (registers the test adapters)
from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm
from dim.evaluation.status import run_status, status_text
from dim.evaluation.artifacts import adversarial_path, load_adversarials
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.core.verify import predict_numpy
from dim.report import build_report
from dim.store import Store


TESTS = Path(__file__).resolve().parent


def test_reuse_copies_identical_shards_of_another_run_and_changes_no_result(tiny, test_data, tmp_path):
    """A run on 40 images that reuses a run on the first 20 stores exactly what a fresh run on 40 stores."""
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),
             AttackSpec("Linf PGD", "LinfProjectedGradientDescentAttack", Norm.LINF, params={"steps": 5}))
    kw = dict(suite=suite, batch_size=10, seed=3, show=False, checks=False, suite_name="s")
    model = lambda sha="card-a": EvalModel("tiny", tiny, card_sha256=sha)  # noqa: E731
    evaluate_models([model()], x[:20], y[:20], run_dir=tmp_path / "small", **kw)
    evaluate_models([model()], x, y, run_dir=tmp_path / "fresh", **kw)
    evaluate_models([model()], x, y, run_dir=tmp_path / "grown", reuse=[tmp_path / "small"], **kw)
    assert evalkit.rows(tmp_path / "grown") == evalkit.rows(tmp_path / "fresh")
    for attack, _ in [(s.name, s) for s in suite]:
        a, b = (load_adversarials(tmp_path / r, "tiny", attack) for r in ("grown", "fresh"))
        np.testing.assert_array_equal(a["x_adv"], b["x_adv"])
    (st,) = run_status(tmp_path / "grown")
    assert st.reused == {str(tmp_path / "small"): 4} and st.shards["done"] == 8
    assert f"4 of the finished shards copied from {tmp_path / 'small'}" in status_text(tmp_path / "grown")
    report = (build_report(tmp_path / "grown", plots=False, cards_dir=tmp_path / "cards") / "report.md").read_text()
    assert f"4 shard(s) were copied from {tmp_path / 'small'}" in report
    small = Store.of_run(tmp_path / "small", read_only=True)      # and whose code computed them
    try:
        theirs = small.get_meta("provenance")["git_commits"]
    finally:
        small.close()
    assert f"shards copied from {tmp_path / 'small'} were computed with `{theirs[0]}`" in report
    card = json.loads((tmp_path / "cards" / "tiny.json").read_text())
    assert card["evaluation"]["donor_git_commits"] == {str(tmp_path / "small"): theirs}

    # another model (card), or a donor whose adversarial no longer fools the model: recomputed, not copied
    evaluate_models([model("card-b")], x, y, run_dir=tmp_path / "other", reuse=[tmp_path / "small"], **kw)
    assert run_status(tmp_path / "other")[0].reused == {}
    path = adversarial_path(tmp_path / "small", "tiny", "Linf FGSM")
    adv = dict(np.load(path))
    broken = int(np.flatnonzero(np.isfinite(adv["distance"]) & (adv["distance"] > 0))[0])
    adv["x_adv"][broken] = x[broken]
    np.savez_compressed(path, **adv)
    evaluate_models([model()], x, y, run_dir=tmp_path / "checked", reuse=[tmp_path / "small"], **kw)
    assert run_status(tmp_path / "checked")[0].reused == {str(tmp_path / "small"): 3}
    assert evalkit.rows(tmp_path / "checked") == evalkit.rows(tmp_path / "fresh")


def test_reuse_copies_brendel_bethge_only_when_it_would_start_from_the_same_points(tiny, test_data, tmp_path):
    """Brendel-Bethge starts from the best earlier adversarial of its norm: copied when this run's earlier attacks
    give the donor's starting points (recorded by the donor, or for an older donor, recomputed from its files).
    Here an attack that starts from them as Brendel-Bethge does (``from_best``, whose result depends on them) stands
    in for Brendel-Bethge itself, whose first call compiles for 20 s (it runs for real in test_runner.py)."""
    import sqlite3
    from dim.attacks.suites import PAPER
    x, y = test_data[0][:8], test_data[1][:8]
    pgd, ddn = (next(s for s in PAPER if s.name == n) for n in ("L2 PGD", "L2 DDN"))
    bb = AttackSpec("L2 from best", "from_best", Norm.L2, starting_points=True)
    kw = dict(batch_size=4, show=False, checks=False, suite_name="s")
    model = EvalModel("tiny", tiny, card_sha256="card")
    evaluate_models([model], x, y, suite=(pgd, bb), run_dir=tmp_path / "donor", **kw)
    evaluate_models([model], x, y, suite=(pgd, bb), run_dir=tmp_path / "copy", reuse=[tmp_path / "donor"], **kw)
    assert run_status(tmp_path / "copy")[0].reused == {str(tmp_path / "donor"): 4}      # PGD and BB, 2 shards each
    assert evalkit.rows(tmp_path / "copy") == evalkit.rows(tmp_path / "donor")

    with sqlite3.connect(tmp_path / "donor" / "results.sqlite") as db:   # a donor stored before the record
        assert db.execute("DELETE FROM meta WHERE key LIKE 'starts/%'").rowcount == 2
    evaluate_models([model], x, y, suite=(pgd, bb), run_dir=tmp_path / "old", reuse=[tmp_path / "donor"], **kw)
    assert run_status(tmp_path / "old")[0].reused == {str(tmp_path / "donor"): 4}

    # DDN before it changes where BB starts: PGD is copied, BB is run afresh (from PGD's and DDN's adversarials)
    evaluate_models([model], x, y, suite=(pgd, ddn, bb), run_dir=tmp_path / "more", reuse=[tmp_path / "donor"], **kw)
    store = Store(tmp_path / "more" / "results.sqlite")
    try:
        assert sorted({a for _, a, _ in store.reused_shards()}) == ["L2 PGD"]   # not the one starting from them
        assert {s["status"] for s in store.shards()} == {"done"}
    finally:
        store.close()


def test_a_copied_shard_is_verified_in_the_batch_its_attack_was_verified_in(tiny, test_data, tmp_path):
    """Execution verifies the clean-correct samples in one batch; logits can differ in the last bit with the
    batch size, which moves points a boundary attack left on the boundary: the copy re-verifies that batch."""
    from dim.evaluation.reuse import copy_shard, open_donor
    x, y = test_data[0][:10], test_data[1][:10].copy()
    clean = predict_numpy(tiny, x)
    y[3] = (clean[3] + 1) % 10                           # a clean misclassification in the shard
    fgsm = AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF)
    evaluate_models([EvalModel("tiny", tiny, card_sha256="c")], x, y, suite=(fgsm,), run_dir=tmp_path, batch_size=10,
                    show=False, checks=False)
    sizes = []
    seen = evalkit.Output(tiny, lambda z: z)
    seen.register_forward_pre_hook(lambda _, args: sizes.append(len(args[0])))
    store = Store.of_run(tmp_path, read_only=True)
    try:
        donor = open_donor(tmp_path, store.get_meta("config"), x, y)
    finally:
        store.close()
    try:
        got = copy_shard(donor, "tiny", fgsm, seen, x, y, clean, np.arange(10))
    finally:
        donor.close()
    assert got is not None and sizes == [int(np.sum(clean == y))] and sizes[0] < 10
    arrays, rows, _ = got
    assert rows[3].distance == 0.0 and np.array_equal(arrays["x_adv"][3], x[3])   # stored as execution stores it
    assert [r.distance for r in rows] == [r[3] for r in evalkit.rows(tmp_path)]


def test_reuse_refuses_a_run_on_other_images_or_settings(tiny, test_data, tmp_path):
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    kw = dict(suite=suite, batch_size=10, show=False, checks=False)
    evaluate_models([EvalModel("tiny", tiny, card_sha256="c")], x[20:], y[20:], run_dir=tmp_path / "late", **kw)
    with pytest.raises(ValueError, match="other images than the first 20"):
        evaluate_models([EvalModel("tiny", tiny)], x, y, run_dir=tmp_path / "new", reuse=[tmp_path / "late"], **kw)
    with pytest.raises(ValueError, match=r"differs in \['seed'\]"):
        evaluate_models([EvalModel("tiny", tiny)], x[20:], y[20:], run_dir=tmp_path / "new", seed=1,
                        reuse=[tmp_path / "late"], **kw)
    with pytest.raises(FileNotFoundError, match="no results store"):
        evaluate_models([EvalModel("tiny", tiny)], x, y, run_dir=tmp_path / "new", reuse=[tmp_path / "nowhere"], **kw)
    assert not (tmp_path / "new").exists()          # refused before the run was touched


def _fgsm_donor(tiny, test_data, run):
    """An FGSM run on 20 images (2 shards) to copy from: its images, evaluation options and model."""
    x, y = test_data[0][:20], test_data[1][:20]
    kw = dict(suite=(AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),), batch_size=10, seed=3,
              show=False, checks=False, suite_name="s")
    model = EvalModel("tiny", tiny, card_sha256="card")
    evaluate_models([model], x, y, run_dir=run, **kw)
    return x, y, kw, model


@pytest.mark.parametrize("forge", ["store", "store and file"])
def test_a_donor_whose_rows_claim_none_found_against_its_own_evidence_is_recomputed(tiny, test_data, tmp_path,
                                                                                     capsys, forge):
    """A donor edited to say "no adversarial found" where FGSM broke the model (its distances set to infinity,
    and with them its adversarials to NaN) would turn broken samples into robust ones if copied: every such shard
    is recomputed, and the run says why."""
    import sqlite3
    x, y, kw, model = _fgsm_donor(tiny, test_data, tmp_path / "donor")
    honest = evalkit.rows(tmp_path / "donor")
    assert sum(np.isfinite(d) and d > 0 for *_, d, _ in honest) >= 5        # FGSM breaks the model
    with sqlite3.connect(tmp_path / "donor" / "results.sqlite") as db:
        db.execute("UPDATE results SET distance = 9e999 WHERE distance > 0")
    if forge == "store and file":
        path = adversarial_path(tmp_path / "donor", "tiny", "Linf FGSM")
        adv = dict(np.load(path))
        broken = adv["distance"] > 0
        adv["distance"][broken] = np.inf
        adv["x_adv"][broken] = np.nan
        np.savez_compressed(path, **adv)
    assert evalkit.robust_fraction([d for *_, d, _ in evalkit.rows(tmp_path / "donor")], 0.3) > 0.9   # the lie
    capsys.readouterr()
    evaluate_models([model], x, y, run_dir=tmp_path / "copy", reuse=[tmp_path / "donor"], **kw)
    assert run_status(tmp_path / "copy")[0].reused == {}
    assert evalkit.rows(tmp_path / "copy") == honest
    err = " ".join(capsys.readouterr().err.split())   # the console wraps long lines
    assert err.count(f"not copied from {tmp_path / 'donor'}") == 2 and "recomputing" in err
    why = ("its store and its adversarials file give different distances" if forge == "store"
           else "its stored labels are not the model's on these images")
    assert why in err


def test_a_donor_with_a_truncated_adversarials_file_is_recomputed_not_a_crash(tiny, test_data, tmp_path, capsys):
    x, y, kw, model = _fgsm_donor(tiny, test_data, tmp_path / "donor")
    honest = evalkit.rows(tmp_path / "donor")
    path = adversarial_path(tmp_path / "donor", "tiny", "Linf FGSM")
    path.write_bytes(path.read_bytes()[:200])
    capsys.readouterr()
    evaluate_models([model], x, y, run_dir=tmp_path / "copy", reuse=[tmp_path / "donor"], **kw)
    assert run_status(tmp_path / "copy")[0].reused == {} and evalkit.rows(tmp_path / "copy") == honest
    err = " ".join(capsys.readouterr().err.split())
    assert "its adversarials file cannot be read" in err and "damaged adversarials file" in err
