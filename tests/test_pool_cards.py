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
