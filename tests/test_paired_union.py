"""benchmarks/paired_union.py: two models on the same images compared sample by sample from their runs' stores."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from dim.evaluation import metrics
from dim.store import ResultRow, Store

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "paired_union.py"
INF = float("inf")


def make_run(path: Path, l2: list[float], linf: list[float], start: int = 0, weights: str = "w" * 64,
             suite: str = "quick", clean_wrong: tuple[int, ...] = (), unstarted: str | None = None) -> Path:
    """A run directory as `dim evaluate` leaves it: config, one model, one L2 and one L-inf attack."""
    n = len(l2)
    path.mkdir(parents=True)
    store = Store(path / "results.sqlite")
    try:
        store.set_meta("config", {"dataset": "mnist", "suite": suite, "seed": 0, "n": n, "batch_size": 100,
                                  "data_sha256": f"images-{start}-{n}",
                                  **({"images": {"start": start}} if start else {})})
        labels = (np.arange(n) + start) % 10
        pred = labels.copy()
        pred[list(clean_wrong)] = (pred[list(clean_wrong)] + 1) % 10
        store.add_model("m", "m", "M", {}, weights, labels, pred)
        store.add_attacks([("L2 a", "L2", {"attack": "x"}), ("Linf a", "Linf", {"attack": "y"})]
                          + ([(unstarted, "L2", {"attack": "z"})] if unstarted else []))
        for name, dist in (("L2 a", l2), ("Linf a", linf)):
            rows = [ResultRow("m", name, i, d, 1, 0.0) for i, d in enumerate(dist) if not np.isnan(d)]
            store.finish_shard("m", name, 0, rows, 0.0)
    finally:
        store.close()
    return path


def run(tmp_path: Path, a: list[Path], b: list[Path], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--a", *map(str, a), "--b", *map(str, b), "--label", "t",
                           "--results", str(tmp_path / "out"), *extra], capture_output=True, text=True)


def test_pairs_ranges_by_their_images_and_counts_what_only_one_model_holds(tmp_path):
    # images 0-3: A robust on 0, 1, 2 (L-inf breaks 3); B robust on 0 only (L2 breaks 1, L-inf 2 and 3)
    a0 = make_run(tmp_path / "a0", [INF, INF, INF, INF], [INF, INF, INF, 0.1])
    b0 = make_run(tmp_path / "b0", [INF, 1.0, INF, INF], [INF, INF, 0.2, 0.1], weights="v" * 64)
    # images 4-7: A robust on 4; B robust on 4 and 5; image 7 is a clean error of both
    a1 = make_run(tmp_path / "a1", [INF, 1.0, INF, 0.0], [INF, INF, 0.3, 0.0], start=4, clean_wrong=(3,))
    b1 = make_run(tmp_path / "b1", [INF, INF, 1.4, 0.0], [INF, INF, INF, 0.0], start=4, weights="v" * 64,
                  clean_wrong=(3,))
    r = run(tmp_path, [a1, a0], [b0, b1])          # the order of the runs does not matter
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "out" / "paired_t.json").read_text())
    assert out["n"] == 8 and [g["images"] for g in out["ranges"]] == [[0, 3], [4, 7]]
    union = out["figures"]["union"]
    assert (union["only_a"], union["only_b"]) == (2, 1)     # A alone holds 1 and 2; B alone holds 5
    assert (union["accuracy_a"], union["accuracy_b"]) == (0.5, 0.375)
    want = metrics.paired_difference(np.array([1, 1, 1, 0, 1, 0, 0, 0], bool),
                                     np.array([1, 0, 0, 0, 1, 1, 0, 0], bool))
    assert union["interval_95"] == [round(v, 4) for v in want.interval]
    assert union["p_value"] == round(want.p_value, 4)
    assert (out["figures"]["L2"]["only_a"], out["figures"]["L2"]["only_b"]) == (2, 1)   # images 1, 6 / 5
    assert out["figures"]["clean"]["accuracy_a"] == 7 / 8 and out["figures"]["clean"]["only_a"] == 0
    assert out["ranges"][0]["union"]["only_a"] == 2 and out["a"]["card_sha256"] == "w" * 64
    assert "union" in r.stdout and "only A" in r.stdout


def test_refuses_a_range_the_other_model_was_not_run_on(tmp_path):
    a0 = make_run(tmp_path / "a0", [INF] * 4, [INF] * 4)
    a1 = make_run(tmp_path / "a1", [INF] * 4, [INF] * 4, start=4)
    b0 = make_run(tmp_path / "b0", [INF] * 4, [INF] * 4)
    r = run(tmp_path, [a0, a1], [b0])
    assert r.returncode == 2 and "no run of the other model on the same images" in r.stderr and "a1" in r.stderr
    assert not (tmp_path / "out").exists()


def test_refuses_runs_of_another_suite_or_overlapping_ranges_or_mixed_weights(tmp_path):
    a0 = make_run(tmp_path / "a0", [INF] * 4, [INF] * 4)
    other_suite = make_run(tmp_path / "b0", [INF] * 4, [INF] * 4, suite="paper")
    r = run(tmp_path, [a0], [other_suite])
    assert r.returncode == 2 and "suite" in r.stderr and "b0" in r.stderr
    overlapping = make_run(tmp_path / "a2", [INF] * 4, [INF] * 4, start=2)
    r = run(tmp_path, [a0, overlapping], [a0, overlapping])
    assert r.returncode == 2 and "overlap" in r.stderr
    mixed = make_run(tmp_path / "a3", [INF] * 4, [INF] * 4, start=4, weights="x" * 64)
    r = run(tmp_path, [a0, mixed], [a0, mixed])
    assert r.returncode == 2 and "another model" in r.stderr


def test_refuses_an_incomplete_run_and_a_folder_without_a_store(tmp_path):
    a0 = make_run(tmp_path / "a0", [INF] * 4, [INF] * 4)
    partial = make_run(tmp_path / "b0", [INF, INF, np.nan, INF], [INF] * 4)
    r = run(tmp_path, [a0], [partial])
    assert r.returncode == 2 and "L2 a (unfinished)" in r.stderr and "b0" in r.stderr
    unfinished = make_run(tmp_path / "b1", [INF] * 4, [INF] * 4, unstarted="L2 later")
    r = run(tmp_path, [a0], [unfinished])      # every sample has a worst case, but not over the whole suite
    assert r.returncode == 2 and "1 attack(s) of its suite without a complete result" in r.stderr
    assert "L2 later (not started)" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run(tmp_path, [a0], [tmp_path / "empty"])
    assert r.returncode == 2 and "no results.sqlite" in r.stderr
