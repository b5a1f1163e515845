import pytest

from dim.attacks import ADAPTERS
from dim.attacks.foolbox_adapter import build_attack
from dim.attacks.suites import PAPER, SUITES, counts_per_norm, get_suite
from dim.core.norms import Norm


def test_paper_suite_counts_match_the_paper():
    assert len(PAPER) == 42
    assert counts_per_norm(PAPER) == {Norm.L2: 22, Norm.LINF: 12, Norm.L1: 6, Norm.L0: 2}


def test_extended_adds_foolbox_33_attacks():
    ext = get_suite("extended")
    added = {s.attack for s in ext} - {s.attack for s in PAPER}
    assert {"L0FMNAttack", "L1FMNAttack", "L2FMNAttack", "LInfFMNAttack",
            "LinfMomentumIterativeFastGradientMethod", "LinfAdamProjectedGradientDescentAttack"} <= added


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_attack_builds_and_names_are_unique(suite):
    specs = get_suite(suite)
    assert len({s.name for s in specs}) == len(specs)
    for s in specs:
        if s.attack in ADAPTERS:
            continue     # an adapter of ours (tests/test_adaptive.py runs them)
        build_attack(s)  # the foolbox class exists and takes these parameters


def test_quick_suite_covers_every_norm():
    assert all(v >= 1 for v in counts_per_norm(get_suite("quick")).values())


def test_quick_suite_attacks_binarized_models_through_the_binarization_in_every_norm():
    """The main job must not report masked numbers: the paper's attacks see zero gradients on biCNN/biDIM."""
    from dim.core.norms import Norm
    quick = get_suite("quick")

    def sees_through(s) -> bool:   # BinFlip flips across the threshold by construction; the others ask for BPDA
        return s.attack == "binflip" or (s.attack in ADAPTERS and s.params.get("gradient") in ("bpda", "auto"))

    assert {s.norm for s in quick if sees_through(s)} == set(Norm)
    assert any(s.norm is Norm.LINF and s.attack in ADAPTERS and s.params.get("gradient") == "auto" for s in quick)
    assert any(s.norm is Norm.LINF and s.attack == "square" for s in quick)     # black box beside the gradient


def test_every_quick_attack_but_binflip_applies_to_a_model_that_does_not_binarize(tiny, test_data, tmp_path):
    """Users' models rarely binarize: quick must attack them in every norm with every gradient attack it has.
    (Its targeted L-inf APGD once asked for BPDA only, so on such models quick's L-inf was FGSM, PGD and Square.)"""
    import json

    from dim.evaluation.runner import EvalModel, evaluate_models
    from dim.report import build_report
    x, y = test_data
    suite = [s for s in get_suite("quick") if s.attack in ADAPTERS]      # foolbox's attacks apply to any model
    evaluate_models([EvalModel("tiny", tiny)], x[:4], y[:4], suite=suite, run_dir=tmp_path, batch_size=4,
                    show=False, checks=False)
    (m,) = json.loads((build_report(tmp_path, plots=False) / "metrics.json").read_text())
    skipped = {name for name, a in m["attacks"].items() if a["not_applicable"]}
    assert skipped == {s.name for s in suite if s.attack == "binflip"}
    assert "Linf APGD 50 (9 targets)" in m["attacks"]


def test_a_suite_filtered_by_patterns_keeps_the_matching_attacks_in_suite_order():
    picked = get_suite("paper:L2 DDN,Linf FGSM+adaptive:L? AutoAttack,*Score-MT")
    assert [s.name for s in picked] == ["L2 DDN", "Linf FGSM", "Linf Score-MT", "L2 AutoAttack", "L2 Score-MT",
                                        "L1 AutoAttack"]     # "?" is one character: not Linf
    paper = {s.name: s for s in PAPER}
    assert picked[0] == paper["L2 DDN"]           # the same specs, so shards are shared with unfiltered runs
    with pytest.raises(ValueError, match=r"suite adaptive: \['L3 \*'\]: no attack of the suite matches"):
        get_suite("paper+adaptive:L3 *")
    with pytest.raises(ValueError, match="unknown suite 'papers'"):
        get_suite("papers:L2 DDN")


def test_cli_lists_the_suites_and_the_attacks_of_one(tmp_path):
    import os
    import subprocess
    import sys

    def dim(*args):
        env = {**os.environ, "COLUMNS": "250"}
        return subprocess.run([sys.executable, "-m", "dim", "suites", *args], capture_output=True, text=True, env=env)
    r = dim()
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.count("│") > 2}
    assert set(rows) >= set(SUITES) and f"│ {len(PAPER)} " in rows["paper"]
    r = dim("adaptive:L0 *")
    assert r.returncode == 0, r.stderr
    names = [line.split("│")[2].strip() for line in r.stdout.splitlines() if line.count("│") > 2]
    assert names == [s.name for s in get_suite("adaptive") if s.norm is Norm.L0]
    sparse_rs = next(line for line in r.stdout.splitlines() if "L0 Sparse-RS" in line)
    assert "queries=3000" in sparse_rs and "black box" in sparse_rs and "adaptive" in sparse_rs
    r = dim("papers")
    assert r.returncode == 2 and "error: unknown suite 'papers'" in r.stderr


def test_unknown_suite():
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        get_suite("nope")
