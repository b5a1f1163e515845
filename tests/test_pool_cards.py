"""benchmarks/pool_cards.py: cards of one model on disjoint image ranges pool into counts on all the images."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dim.evaluation.metrics import wilson_interval

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "pool_cards.py"


def card(n: int, clean: int, l2: int, linf: int, union: int, images: dict | None = None, sha: str = "a" * 64) -> dict:
    """A card as `dim report` writes it (the fields pooling reads), from counts out of ``n``."""
    def norm(k: int) -> dict:
        return {"accuracy": k / n, "n": n}
    ev = {"suite": "quick", "seed": 0, "dataset": "mnist", "data_sha256": "d" * 64, "n": n,
          **({"images": images} if images else {})}
    proto = {"per_norm": {"L2": norm(l2), "Linf": norm(linf)},
             "union": {"accuracy": union / n, "n": n, "norms": ["L2", "Linf"]}}
    return {"model": "m", "card_sha256": sha, "evaluation": ev, "clean_accuracy": clean / n,
            "incl_adaptive": proto, "paper_protocol": proto,
            "attacks": {"L2 DDN": {"accuracy": l2 / n, "complete": True},
                        "Linf PGD": {"accuracy": linf / n, "complete": n != 30}}}


def run(tmp_path: Path, *cards: dict) -> subprocess.CompletedProcess:
    paths = []
    for i, c in enumerate(cards):
        paths.append(tmp_path / f"c{i}.json")
        paths[-1].write_text(json.dumps(c))
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, paths), "--label", "t", "--results",
                           str(tmp_path / "out")], capture_output=True, text=True)


def test_counts_on_disjoint_ranges_add_up_with_the_interval_of_the_pooled_n(tmp_path):
    r = run(tmp_path, card(20, 19, 13, 11, 9), card(30, 28, 17, 14, 12, images={"start": 20}))
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "out" / "pooled_t.json").read_text())
    assert out["n"] == 50 and out["cards"][1]["images"] == [20, 49]
    assert out["clean"]["robust"] == 47
    union = out["incl_adaptive"]["union"]
    assert (union["robust"], union["n"], union["accuracy"]) == (21, 50, 0.42)
    assert union["interval_95"] == [round(v, 4) for v in wilson_interval(21, 50)]
    assert out["incl_adaptive"]["per_norm"]["L2"]["robust"] == 30
    assert out["attacks"]["L2 DDN"]["robust"] == 30
    assert "Linf PGD" not in out["attacks"]            # incomplete on one range: not pooled


@pytest.mark.parametrize("second, words", [
    (card(30, 28, 17, 14, 12, images={"start": 10}), "overlap"),
    (card(30, 28, 17, 14, 12, images={"start": 20}, sha="b" * 64), "another model"),
    (card(30, 28, 17, 14, 12, images={"random_subset_seed": 1}), "random subset"),
])
def test_overlapping_images_another_model_or_a_random_subset_are_refused(tmp_path, second, words):
    r = run(tmp_path, card(20, 19, 13, 11, 9), second)
    assert r.returncode == 2 and words in r.stderr
    assert not (tmp_path / "out").exists()


def test_the_norms_that_broke_each_sample_are_summed_and_checked_against_n(tmp_path):
    first, second = card(20, 19, 13, 11, 9), card(30, 28, 17, 14, 12, images={"start": 20})
    first["incl_adaptive"]["union"]["broken_by"] = {"robust": 9, "L2": 4, "L2+Linf": 6, "clean error": 1}
    second["incl_adaptive"] = {**second["incl_adaptive"], "union": {
        **second["incl_adaptive"]["union"], "broken_by": {"robust": 12, "Linf": 3, "L2+Linf": 13, "clean error": 2}}}
    r = run(tmp_path, first, second)
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "out" / "pooled_t.json").read_text())
    assert out["incl_adaptive"]["union"]["broken_by"] == {"L2+Linf": 19, "robust": 21, "L2": 4, "Linf": 3,
                                                          "clean error": 3}
    assert "broken_by" not in out["paper_protocol"]["union"]       # one card lacks it there: not pooled
    second["incl_adaptive"]["union"]["broken_by"]["robust"] = 11   # counts 29 of 30 samples
    r = run(tmp_path, first, second)
    assert r.returncode == 2 and "broken_by counts 29 samples, not 30" in r.stderr


def test_unions_over_other_norms_are_refused(tmp_path):
    second = card(30, 28, 17, 14, 12, images={"start": 20})
    second["incl_adaptive"] = {**second["incl_adaptive"], "union": {"accuracy": 0.4, "n": 30, "norms": ["L2"]}}
    r = run(tmp_path, card(20, 19, 13, 11, 9), second)
    assert r.returncode == 2 and "union over" in r.stderr


RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
RANGES = [RESULTS / f"eval_bidim_at_ramp_dnramp_mt_n200{s}_report" / "cards" / "bidim_at_ramp.json"
          for s in ("", "_start200", "_start400", "_start600", "_start800")]


def test_the_pooled_result_of_committed_ranges_is_a_card_dim_compare_reads(tmp_path, monkeypatch):
    """The five committed ranges of the quoted model pool into the counts their cards add up to, and the result is a
    card: ``dim compare`` puts it in a row of 1,000 images with the union and the strongest attacks."""
    from dim.report.compare import render
    from dim.report.pool import pool_cards
    monkeypatch.chdir(RESULTS.parent.parent)        # the cards' suite names a suite file in the repository
    cards = [json.loads(p.read_text()) for p in RANGES]
    out = pool_cards(RANGES)
    union = sum(round(c["incl_adaptive"]["union"]["accuracy"] * 200) for c in cards)
    l1 = sum(round(c["incl_adaptive"]["per_norm"]["L1"]["accuracy"] * 200) for c in cards)
    assert out["incl_adaptive"]["union"]["robust"] == union and out["incl_adaptive"]["per_norm"]["L1"]["robust"] == l1
    assert out["evaluation"]["images"] == {"ranges": [[0, 199], [200, 399], [400, 599], [600, 799], [800, 999]]}
    mt = sum(round(c["attacks"]["L1 KnapsackFlips-MT"]["accuracy"] * 200) for c in cards)
    low = min(out["attacks"].values(), key=lambda a: a["accuracy"])
    assert out["incl_adaptive"]["minimal_attack"] == "L1 KnapsackFlips-MT" and low["robust"] == mt
    assert not any(out["attacks"][a].get("adaptive") for a in [out["paper_protocol"]["minimal_attack"]])
    (tmp_path / "pooled.json").write_text(json.dumps(out))
    (row,), text = render([tmp_path / "pooled.json"], strongest=1)
    assert row["n"] == 1000 and row["union"]["incl_adaptive"]["accuracy"] == union / 1000
    assert all(c["complete"] for c in row["per_norm"].values()) and row["union"]["complete"]
    assert row["per_norm"]["L1"]["strongest"][0]["attack"] == "L1 KnapsackFlips-MT"
    assert row["clean"] == sum(round(c["clean_accuracy"] * 200) for c in cards) / 1000
    assert "**57.4% [54-60]**" in text      # the number the README quotes, rendered from the pooled card


def test_an_attack_unfinished_on_one_range_leaves_its_norm_incomplete_in_the_pooled_card(tmp_path, monkeypatch):
    from dim.report.compare import render
    from dim.report.pool import pool_cards
    monkeypatch.chdir(RESULTS.parent.parent)
    paths = []
    for i, p in enumerate(RANGES[:2]):
        c = json.loads(p.read_text())
        if i == 1:
            c["attacks"]["L0 Sparse-RS 10k"]["complete"] = False
        paths.append(tmp_path / f"c{i}.json")
        paths[-1].write_text(json.dumps(c))
    out = pool_cards(paths)
    assert "L0 Sparse-RS 10k" not in out["attacks"]
    (tmp_path / "pooled.json").write_text(json.dumps(out))
    (row,), _ = render([tmp_path / "pooled.json"])
    assert not row["per_norm"]["L0"]["complete"] and row["per_norm"]["L1"]["complete"]
    assert not row["union"]["complete"]


def test_a_pooled_result_is_not_pooled_again(tmp_path):
    from dim.report.pool import pool_cards
    (tmp_path / "pooled.json").write_text(json.dumps(pool_cards(RANGES[:2])))
    with pytest.raises(ValueError, match="already a pooled result"):
        pool_cards([tmp_path / "pooled.json", RANGES[2]])


def test_dim_pool_writes_the_pooled_card_and_prints_its_row_or_refuses_with_nothing_written(tmp_path):
    from typer.testing import CliRunner

    from dim.cli import app
    r = CliRunner().invoke(app, ["pool", *map(str, RANGES[:2]), "--out", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    pooled = json.loads((tmp_path / "p.json").read_text())
    union = sum(round(json.loads(p.read_text())["incl_adaptive"]["union"]["accuracy"] * 200) for p in RANGES[:2])
    assert pooled["n"] == 400 and pooled["incl_adaptive"]["union"]["robust"] == union
    assert f"**{union / 4:g}% [" in r.output and "400 images from 2 cards" in r.output
    r = CliRunner().invoke(app, ["pool", str(RANGES[0]), str(RANGES[0]), "--out", str(tmp_path / "q.json")])
    assert r.exit_code == 2 and "overlap" in r.output and not (tmp_path / "q.json").exists()
    (tmp_path / "bad.json").write_text("{not json")
    r = CliRunner().invoke(app, ["pool", str(RANGES[0]), str(tmp_path / "bad.json"), "--out", str(tmp_path / "q.json")])
    assert r.exit_code == 2 and "bad.json: not a JSON card" in r.output and not (tmp_path / "q.json").exists()


def test_attacks_that_do_not_apply_to_the_model_leave_its_norms_complete(tmp_path, monkeypatch):
    """``msd_cnn`` does not binarize: BinFlip and the flips are "not applicable" on its card, and stay so pooled
    (the same card twice, as two ranges), so no norm reads as unfinished."""
    from dim.report.compare import render
    from dim.report.pool import pool_cards
    monkeypatch.chdir(RESULTS.parent.parent)
    card = json.loads((RESULTS.parent.parent / "results" / "msd_cnn.json").read_text())
    first, second = json.loads(json.dumps(card)), json.loads(json.dumps(card))
    second["evaluation"]["images"] = {"start": 200}
    for i, c in enumerate((first, second)):
        (tmp_path / f"c{i}.json").write_text(json.dumps(c))
    out = pool_cards([tmp_path / "c0.json", tmp_path / "c1.json"])
    assert out["attacks"]["L0 BinFlip"]["not_applicable"] and out["n"] == 400
    assert out["incl_adaptive"]["minimal_attack"] == card["incl_adaptive"]["minimal_attack"]
    (tmp_path / "pooled.json").write_text(json.dumps(out))
    (row,), _ = render([tmp_path / "pooled.json"])
    assert all(c["complete"] for c in row["per_norm"].values())
    assert row["union"]["incl_adaptive"]["accuracy"] == card["incl_adaptive"]["union"]["accuracy"]
