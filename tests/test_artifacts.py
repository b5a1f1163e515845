"""The adversarials on disk: collision-free file names, and runs stored under the earlier names still read."""
import shutil

import numpy as np

import evalkit
from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm
from dim.evaluation.artifacts import (ADV_DIR, adversarial_path, artifact_name, legacy_slug, load_adversarials,
                                      shard_path)
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.store import Store


def _stored(run, model, attack):
    store = Store.of_run(run, read_only=True)
    try:
        return np.array([r.distance for r in store.rows(model, attack)])
    finally:
        store.close()


def test_alike_names_never_share_a_file(tiny, test_data, tmp_path):
    """Models ``a/b`` and ``a_b`` and attacks ``Linf FGSM`` and ``Linf/FGSM`` (which the earlier names mapped to
    one file each): every (model, attack) keeps its own adversarials, and they are the ones its rows describe."""
    x, y = test_data
    noisy = evalkit.Output(tiny, lambda z: z + 0.5 * torch_sin(17 * z))
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),
             AttackSpec("Linf/FGSM", "LinfProjectedGradientDescentAttack", Norm.LINF, {"steps": 3}))
    assert legacy_slug("a/b") == legacy_slug("a_b") and legacy_slug("Linf FGSM") == legacy_slug("Linf/FGSM")
    evaluate_models([EvalModel("a/b", tiny), EvalModel("a_b", noisy)], x, y, suite=suite, run_dir=tmp_path,
                    batch_size=20, show=False, checks=False)
    files = sorted(p.relative_to(tmp_path / ADV_DIR) for p in (tmp_path / ADV_DIR).rglob("*.npz"))
    assert len(files) == 4, files
    for model in ("a/b", "a_b"):
        for spec in suite:
            adv = load_adversarials(tmp_path, model, spec.name)
            assert adv is not None and list(adv["sample"]) == list(range(len(y)))
            np.testing.assert_array_equal(adv["distance"], _stored(tmp_path, model, spec.name))
    assert not np.array_equal(_stored(tmp_path, "a/b", "Linf FGSM"), _stored(tmp_path, "a_b", "Linf FGSM"))


def test_a_name_too_long_for_the_file_system_gets_a_short_file_name(tiny, test_data, tmp_path):
    x, y = test_data
    name = "m" * 300
    assert len(artifact_name(name)) <= 80
    evaluate_models([EvalModel(name, tiny)], x[:10], y[:10], suite=(AttackSpec("Linf FGSM", "LinfFastGradientAttack",
                    Norm.LINF),), run_dir=tmp_path, batch_size=10, show=False, checks=False)
    assert load_adversarials(tmp_path, name, "Linf FGSM") is not None
    from dim.report import build_report
    report = build_report(tmp_path, plots=True, cards_dir=tmp_path / "cards")
    assert (report / "index.html").is_file() and len(list((tmp_path / "cards").glob("*.json"))) == 1


def test_a_run_stored_under_the_earlier_names_is_read_and_resumed(tiny, test_data, tmp_path):
    """Files renamed to the earlier scheme (as a run of an earlier version left them) are read; a resumed run adds
    its shards under the new names and merges both into one file."""
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    kw = dict(suite=suite, batch_size=10, show=False, checks=False)
    evaluate_models([EvalModel("tiny", tiny)], x, y, run_dir=tmp_path / "ref", **kw)
    evaluate_models([EvalModel("tiny", tiny)], x, y, run_dir=tmp_path / "old", **kw)
    new = adversarial_path(tmp_path / "old", "tiny", "Linf FGSM")
    old = adversarial_path(tmp_path / "old", "tiny", "Linf FGSM", legacy_slug)
    old.parent.mkdir(parents=True)
    new.rename(old)
    shutil.rmtree(new.parent)
    np.testing.assert_array_equal(load_adversarials(tmp_path / "old", "tiny", "Linf FGSM")["distance"],
                                  _stored(tmp_path / "ref", "tiny", "Linf FGSM"))
    # an earlier run killed half-way: two legacy shards, the rest to do
    evaluate_models([EvalModel("tiny", tiny)], x[:20], y[:20], run_dir=tmp_path / "half", **kw)
    merged = adversarial_path(tmp_path / "half", "tiny", "Linf FGSM")
    data = dict(np.load(merged))
    merged.unlink()
    for shard in (0, 1):
        path = shard_path(tmp_path / "half", "tiny", "Linf FGSM", shard, legacy_slug)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{k: v[shard * 10:(shard + 1) * 10] for k, v in data.items()})
    shutil.rmtree(merged.parent)
    store = Store.of_run(tmp_path / "half")
    try:
        store.set_meta("config", {**store.get_meta("config"), "n": 40,
                                  "data_sha256": _config(tmp_path / "ref")["data_sha256"]})
    finally:
        store.close()
    evaluate_models([EvalModel("tiny", tiny)], x, y, run_dir=tmp_path / "half", **kw)
    got = load_adversarials(tmp_path / "half", "tiny", "Linf FGSM")
    ref = load_adversarials(tmp_path / "ref", "tiny", "Linf FGSM")
    np.testing.assert_array_equal(got["sample"], ref["sample"])
    np.testing.assert_array_equal(got["x_adv"], ref["x_adv"])
    assert not shard_path(tmp_path / "half", "tiny", "Linf FGSM", 0, legacy_slug).parent.exists()


def _config(run):
    store = Store.of_run(run, read_only=True)
    try:
        return store.get_meta("config")
    finally:
        store.close()


def torch_sin(z):
    import torch
    return torch.sin(z)
