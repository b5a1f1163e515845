import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import evalkit  # noqa: F401  (registers the test adapters)
from dim import data
from dim.attacks.suites import get_suite
from dim.attacks.spec import AttackSpec
from dim.evaluation import metrics
from dim.core.norms import Norm
from dim.evaluation.status import run_status, status_text
from dim.evaluation.artifacts import load_adversarials
from dim.evaluation.runner import EvalModel, RunConfigError, evaluate_models
from dim.core.verify import predict_numpy
from dim.report import build_report
from dim.store import Store

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def test_data(data_dir):
    return data.load_split("mnist", "test", limit=40)


def _robust(dist, eps) -> float:
    """The documented accuracy at eps: distances beyond eps by more than float32 rounding."""
    return float(np.mean(np.asarray(dist) > eps * (1 + metrics.RELATIVE_TOLERANCE)))


def _rows(run_dir):
    store = Store(run_dir / "results.sqlite")
    try:
        return [(r.model, r.attack, r.sample, r.distance, r.pred) for r in store.results()]
    finally:
        store.close()


def test_lying_attack_is_rejected(tiny, test_data, tmp_path):
    x, y = test_data
    suite = (AttackSpec("Linf liar", "lying", Norm.LINF),)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=16, show=False)
    clean_ok = predict_numpy(tiny, x) == y
    rows = _rows(tmp_path)
    assert len(rows) == len(y)
    for (_, _, s, dist, _pred) in rows:
        assert dist == (np.inf if clean_ok[s] else 0.0)  # the liar's claims count for nothing


def test_the_runner_verifies_what_an_adapter_claims(tiny, test_data, tmp_path):
    """An adapter that fabricates distances and labels, with out-of-bounds candidates, stores nothing false."""
    x, y = test_data
    suite = (AttackSpec("L2 fabricated", "fabricating", Norm.L2),)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False)
    clean = predict_numpy(tiny, x)
    clipped = x.copy()
    clipped[:, 0, 0, 0] = 1.0                      # what the candidates are once clipped to [0, 1]
    fooled = predict_numpy(tiny, clipped) != y
    rows = _rows(tmp_path)
    assert len(rows) == len(y)
    for (_, _, s, dist, pred) in rows:
        if clean[s] != y[s]:
            assert dist == 0.0
        elif s % 20 == 1 or not fooled[s]:         # the NaN row, and every candidate that fools nobody
            assert dist == np.inf and pred == clean[s]
        else:
            assert dist == pytest.approx(1.0 - x[s, 0, 0, 0]) and pred == predict_numpy(tiny, clipped[s:s + 1])[0]
        assert dist != 0.01


def test_another_model_under_the_same_key_is_refused_and_changes_nothing(tiny, test_data, tmp_path):
    import copy
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    evaluate_models([EvalModel("m", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False)
    before = _rows(tmp_path)
    store = Store(tmp_path / "results.sqlite")
    models_before, config_before = store.models(), store.get_meta("config")
    store.close()
    other = copy.deepcopy(tiny)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)          # retrained in place: another checkpoint, the same name
    with pytest.raises(RunConfigError, match=r"model 'm' was evaluated there as state sha256 \w+, and this is "
                                             r"state sha256 \w+ .*new --run"):
        evaluate_models([EvalModel("m", other)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False)
    store = Store(tmp_path / "results.sqlite")
    try:
        assert store.models() == models_before and store.get_meta("config") == config_before
    finally:
        store.close()
    assert _rows(tmp_path) == before
    # the same model again, or the other one under a new key, is fine
    evaluate_models([EvalModel("m", copy.deepcopy(tiny)), EvalModel("m2", other)], x, y, suite=suite,
                    run_dir=tmp_path, batch_size=20, show=False)
    assert len(_rows(tmp_path)) == 2 * len(y)


class _Output(torch.nn.Module):
    """``tiny`` with its output transformed, for the output checks."""

    def __init__(self, base, fn):
        super().__init__()
        self.base, self.fn = base, fn

    def forward(self, x):
        return self.fn(self.base(x))


@pytest.mark.parametrize("fn, message", [
    (lambda z: z * float("nan"), r"non-finite outputs \(NaN or inf\) for 40 of 40 images"),
    (lambda z: z[:, :3], r"returns 3 outputs per image; the data has 10 classes"),
    (lambda z: z[:, 0], r"returns shape \(40,\) for 40 images of shape \(1, 28, 28\); expected \(40, 10\)"),
])
def test_model_outputs_are_checked_before_any_attack(tiny, test_data, tmp_path, fn, message):
    from dim.evaluation.outputs import ModelOutputError
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    with pytest.raises(ModelOutputError, match=message):
        evaluate_models([EvalModel("m", _Output(tiny, fn))], x, y, suite=suite, run_dir=tmp_path, batch_size=20,
                        show=False, num_classes=10)
    store = Store(tmp_path / "results.sqlite")
    try:
        assert store.models() == [] and store.shards() == [] and store.get_meta("config") is None
    finally:
        store.close()


def test_a_model_returning_probabilities_is_evaluated_with_a_warning(tiny, test_data, tmp_path):
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    probs = _Output(tiny, lambda z: z.softmax(1))
    evaluate_models([EvalModel("p", probs), EvalModel("logits", tiny)], x, y, suite=suite, run_dir=tmp_path,
                    batch_size=20, show=False, checks=False)
    text = (build_report(tmp_path, plots=False) / "report.md").read_text()
    assert "**Warning: p return(s) probabilities, not logits**" in text and "logits return(s)" not in text


def test_hostile_model_names_stay_inside_the_run_and_render_as_text(tiny, test_data, tmp_path):
    x, y = test_data
    run = tmp_path / "a" / "run"
    names = ["../../../escaped", str(tmp_path / "abs" / "card"), "<b>x</b>|y"]
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    evaluate_models([EvalModel(n, tiny, name=n, paper_name=n) for n in names], x[:20], y[:20], suite=suite,
                    run_dir=run, batch_size=20, show=False, checks=False)
    out = build_report(run, plots=False)
    outside = [p for p in tmp_path.rglob("*") if run not in p.parents and p != run and p not in run.parents]
    assert outside == []                                   # nothing written beside the run
    cards = sorted(p.name for p in (out / "cards").iterdir())
    assert len(cards) == 3 and all("/" not in c and not c.startswith(".") for c in cards)
    text = (out / "report.md").read_text()
    assert "<b>" not in text and "&lt;b&gt;x&lt;/b&gt;\\|y" in text
    summary_rows = [line for line in text.splitlines()
                     if line.startswith(("| ../../../escaped | ", "| &lt;b&gt;x&lt;/b&gt;\\|y | "))]
    header = next(line for line in text.splitlines() if line.startswith("| model | clean |"))
    cols = lambda line: len(re.split(r"(?<!\\)\|", line))   # noqa: E731  (unescaped column bars)
    assert len(summary_rows) == 4     # the summary's rows, then the sanity checks' rows
    checks_header = next(line for line in text.splitlines() if line.startswith("| model | Unbounded"))
    assert all(cols(r) == cols(header) for r in summary_rows[:2])
    assert all(cols(r) == cols(checks_header) for r in summary_rows[2:])
    latex = (out / "table1.tex").read_text()      # the absolute path's underscores, escaped
    assert "test\\_hostile" in latex and "test_hostile" not in latex


def test_failing_attack_is_recorded_and_run_continues(tiny, test_data, tmp_path):
    x, y = test_data
    suite = (AttackSpec("L2 broken", "broken", Norm.L2), AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF))
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False)
    store = Store(tmp_path / "results.sqlite")
    shards = store.shards()
    store.close()
    failed = [s for s in shards if s["status"] == "failed"]
    assert len(failed) == 2 and all("this attack always fails" in s["error"] for s in failed)
    assert sum(1 for s in shards if s["status"] == "done") == 2
    report = (build_report(tmp_path, plots=False) / "report.md").read_text()
    assert "2 attack shard(s) failed" in report and "this attack always fails" in report
    # a failed shard is retried by the next evaluation of the run, and every attempt keeps its error
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False)
    store = Store(tmp_path / "results.sqlite")
    try:
        attempts = store.attempts("tiny", "L2 broken", 0)
        assert store.failed_shards() == 2
    finally:
        store.close()
    assert [a["attempt"] for a in attempts] == [1, 2] and all("always fails" in a["error"] for a in attempts)


def test_end_to_end_evaluate_and_report(tiny, test_data, tmp_path):
    x, y = test_data
    suite = [s for s in get_suite("quick") if s.name in ("Linf FGSM", "Linf PGD", "L2 DDN", "L2 DeepFool")]
    evaluate_models([EvalModel("tiny", tiny, paper_name="CNN")], x, y, suite=suite, run_dir=tmp_path,
                    batch_size=20, show=False)
    store = Store(tmp_path / "results.sqlite")
    (res,) = metrics.compute(store)
    store.close()
    assert res.clean_accuracy == pytest.approx(float(np.mean(predict_numpy(tiny, x) == y)))
    # a linear MNIST model is not robust: PGD at eps 0.3 breaks nearly everything
    assert res.attacks["Linf PGD"].accuracy < 0.2
    assert res.norms[Norm.LINF].accuracy <= min(res.attacks["Linf PGD"].accuracy, res.attacks["Linf FGSM"].accuracy)
    assert res.minimal_accuracy <= res.attacks["Linf PGD"].accuracy
    adv = load_adversarials(tmp_path, "tiny", "Linf PGD")
    ok = np.isfinite(adv["distance"]) & (adv["distance"] > 0)
    assert (predict_numpy(tiny, adv["x_adv"][ok]) != y[adv["sample"][ok]]).all()
    assert (np.abs(adv["x_adv"][ok] - x[adv["sample"][ok]]).reshape(ok.sum(), -1).max(1) <= 0.3 + 1e-6).all()
    out = build_report(tmp_path)
    for f in ("report.md", "table1.md", "table1.csv", "table1.tex", "metrics.json", "accuracy_vs_eps_Linf.png"):
        assert (out / f).is_file(), f
    table = (out / "table1.md").read_text()
    assert "LinfProjectedGradientDescentAttack" in (out / "report.md").read_text()
    # every number recomputed from the stored rows, not from the metrics code
    from dim.report.tables import fmt_acc, fmt_dist
    store = Store(tmp_path / "results.sqlite")
    try:
        assert {s["status"] for s in store.shards()} == {"done"} and len(store.shards()) == len(suite) * 2
        d = {a.name: np.array([r.distance for r in store.rows("tiny", a.name)]) for a in suite}
    finally:
        store.close()
    assert all(len(v) == len(y) for v in d.values()) and all(a.complete for a in res.attacks.values())
    for norm, eps, names in ((Norm.LINF, 0.3, ("Linf FGSM", "Linf PGD")), (Norm.L2, 1.5, ("L2 DDN", "L2 DeepFool"))):
        names = [n for n in names if n in d]
        worst = np.min(np.stack([d[n] for n in names]), axis=0)          # element-wise, per sample
        assert res.norms[norm].accuracy == pytest.approx(_robust(worst, eps))
        assert res.norms[norm].median == pytest.approx(float(np.median(worst)))
    linf = np.minimum(d["Linf FGSM"], d["Linf PGD"])
    assert f"| Linf PGD | {fmt_acc(_robust(d['Linf PGD'], 0.3))} | 0% |" in table   # ours, then the paper's
    lo, hi = metrics.wilson_interval(int(np.sum(linf > 0.3 * (1 + metrics.RELATIVE_TOLERANCE))), len(linf))
    assert f"| All L∞ attacks | {fmt_dist(float(np.median(linf)))}/{fmt_acc(_robust(linf, 0.3))} " \
           f"[{100 * lo:.0f}-{100 * hi:.0f}] | 0.08/0% |" in table
    minimal = min(_robust(v, 0.3 if k.startswith("Linf") else 1.5) for k, v in d.items())
    assert res.minimal_accuracy == pytest.approx(minimal)
    csv_rows = (out / "table1.csv").read_text().splitlines()
    assert f"Linf PGD,{fmt_acc(_robust(d['Linf PGD'], 0.3))},0%" in csv_rows
    card = json.loads((out / "cards" / "tiny.json").read_text())
    assert card["attacks"]["Linf PGD"]["accuracy"] == pytest.approx(_robust(d["Linf PGD"], 0.3))
    assert card["paper_protocol"]["per_norm"]["Linf"]["accuracy"] == pytest.approx(_robust(linf, 0.3))
    assert card["paper_protocol"]["per_norm"]["Linf"]["interval_95"] == pytest.approx([lo, hi], abs=1e-4)
    assert card["paper_protocol"]["per_norm"]["Linf"]["n"] == len(y)
    assert card["paper_protocol"]["minimal_accuracy"] == pytest.approx(minimal)


def test_table2_cells_are_the_stored_rows(tiny, test_data, tmp_path):
    from dim.report.tables import fmt_acc
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    noisy = _Output(tiny, lambda z: z + 0.5 * torch.sin(17 * z))   # another model, other numbers
    evaluate_models([EvalModel("a", tiny, paper_name="Internal Models"), EvalModel("b", noisy, paper_name="DIM")],
                    x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False, checks=False)
    out = build_report(tmp_path, plots=False)
    store = Store(tmp_path / "results.sqlite")
    try:
        acc = {m: _robust(np.array([r.distance for r in store.rows(m, "Linf FGSM")]), 0.3) for m in "ab"}
    finally:
        store.close()
    header, *rows = (out / "table2.md").read_text().splitlines()
    cols = [c.strip() for c in header.strip("|").split("|")]
    fgsm = next([c.strip() for c in r.strip("|").split("|")] for r in rows if r.startswith("| Linf FGSM |"))
    assert fgsm[cols.index("Internal Models")] == fmt_acc(acc["a"]) and fgsm[cols.index("DIM")] == fmt_acc(acc["b"])


def test_a_run_of_table2_ablations_only_gets_table2_and_no_table1_of_empty_paper_columns(tiny, test_data, tmp_path):
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    models = [EvalModel("a", tiny, paper_name="Internal Models"), EvalModel("b", tiny, paper_name="singleIM")]
    evaluate_models(models, x[:10], y[:10], suite=suite, run_dir=tmp_path, batch_size=10, show=False, checks=False)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "table1.md").write_text("a Table 1 of an earlier report")   # now wrong: removed
    out = build_report(tmp_path, plots=False)
    assert (out / "table2.md").is_file() and not (out / "table1.md").exists()
    assert "## Table 2: ablations" in (out / "report.md").read_text()
    assert 'id="table-table1"' not in (out / "index.html").read_text()
    evaluate_models([EvalModel("c", tiny, paper_name="CNN")], x[:10], y[:10], suite=suite, run_dir=tmp_path,
                    batch_size=10, show=False, checks=False)
    out = build_report(tmp_path, plots=False)                   # a model of Table 1 joins: both tables
    assert (out / "table1.md").is_file() and (out / "table2.md").is_file()


@pytest.mark.slow
def test_brendel_bethge_starts_from_earlier_adversarials_and_never_does_worse(tiny, test_data, tmp_path):
    """The paper suite's Brendel-Bethge attacks run, from the best adversarial of the attacks before them."""
    from dim.attacks.suites import PAPER
    x, y = test_data
    suite = [s for s in PAPER if s.name in ("L2 PGD", "L2 BrendelBethge")]
    assert [s.name for s in suite] == ["L2 PGD", "L2 BrendelBethge"] and suite[1].starting_points
    evaluate_models([EvalModel("tiny", tiny)], x[:12], y[:12], suite=suite, run_dir=tmp_path, batch_size=12,
                    show=False, checks=False)
    store = Store(tmp_path / "results.sqlite")
    try:
        assert {s["status"] for s in store.shards()} == {"done"}
        pgd = np.array([r.distance for r in store.rows("tiny", "L2 PGD")])
        bb = np.array([r.distance for r in store.rows("tiny", "L2 BrendelBethge")])
    finally:
        store.close()
    found = np.isfinite(pgd) & (pgd > 0)
    assert found.sum() >= 6
    assert np.all(bb[found] <= pgd[found] + 1e-5)          # refined from PGD's adversarials, never worse
    assert np.mean(bb[found] < pgd[found] - 1e-3) >= 0.5    # and really refined


def test_a_report_of_an_incomplete_run_says_so_at_the_top_and_marks_its_numbers(tiny, test_data, tmp_path):
    x, y = test_data
    suite = (AttackSpec("L2 broken", "broken", Norm.L2), AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),
             AttackSpec("L2 DDN", "DDNAttack", Norm.L2), AttackSpec("Linf PGD", "LinfProjectedGradientDescentAttack",
                                                                    Norm.LINF))
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False,
                    checks=False, only=["L2 *", "Linf FGSM"])             # Linf PGD never starts
    text = (build_report(tmp_path, plots=False) / "report.md").read_text()
    top = text.split("| model | clean |")[0]
    assert "**Incomplete run: 2 (model, attack) unit(s) are missing or failed**" in top
    assert "tiny / L2 broken (2 shard(s) failed)" in top and "tiny / Linf PGD (not started)" in top
    row = next(line for line in text.splitlines() if line.startswith("| tiny | "))
    assert row.count("*(incomplete)*") == 4       # L2, L-inf, the union and the minimal accuracy; L0 and L1 have none
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite[1:], run_dir=tmp_path, batch_size=20, show=False,
                    checks=False)
    text = (build_report(tmp_path, plots=False) / "report.md").read_text()
    assert "Incomplete run: 1 (model, attack) unit(s)" in text and "Linf PGD (not started)" not in text


def test_a_filtered_suite_is_the_runs_protocol_where_only_leaves_the_rest_to_do(tiny, test_data, tmp_path):
    from dim.report.tables import fmt_acc
    x, y = test_data
    kw = dict(batch_size=20, show=False, checks=False)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite="paper:Linf FGSM,L2 FGM", run_dir=tmp_path / "a", **kw)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite="paper", only=["Linf FGSM", "L2 FGM"],
                    run_dir=tmp_path / "b", **kw)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")          # the same attacks, seeds and results
    filtered = (build_report(tmp_path / "a", plots=False) / "report.md").read_text()
    assert "Suite `paper:Linf FGSM,L2 FGM`" in filtered and "Incomplete run" not in filtered
    assert "## Attack suite `paper:Linf FGSM,L2 FGM` (2 attacks)" in filtered      # the suite, attack by attack
    assert "| 1 | L2 FGM | L2 | L2FastGradientAttack | foolbox defaults |" in filtered
    assert "to do" not in status_text(tmp_path / "a")
    split = (build_report(tmp_path / "b", plots=False) / "report.md").read_text()
    assert "**Incomplete run: 40 (model, attack) unit(s)" in split and "to do (40)" in status_text(tmp_path / "b")
    # the finished part of the grown run, reported as its own protocol: the same numbers as run a's, complete
    part = build_report(tmp_path / "b", plots=False, suite="paper:Linf FGSM,L2 FGM", out_dir=tmp_path / "part")
    text = (part / "report.md").read_text()
    assert "Suite `paper:Linf FGSM,L2 FGM`" in text and "Incomplete run" not in text
    # provenance counts the shards reported, not the run's others (here: those of L2 FGM)
    one = build_report(tmp_path / "b", plots=False, suite="paper:Linf FGSM", out_dir=tmp_path / "one")
    line = next(x for x in (one / "report.md").read_text().splitlines() if x.startswith("- finished shards per"))
    st = Store(tmp_path / "b" / "results.sqlite")
    try:
        done = [sh["attack"] for sh in st.shards() if sh["status"] == "done"]
    finally:
        st.close()
    assert line.endswith(f": {done.count('Linf FGSM')}") and done.count("Linf FGSM") < len(done)
    card = json.loads((part / "cards" / "tiny.json").read_text())
    ref = json.loads((tmp_path / "a" / "report" / "cards" / "tiny.json").read_text())
    def results(c):
        return {name: {k: v for k, v in a.items() if k != "seconds"} for name, a in c["attacks"].items()}
    assert card["evaluation"]["suite"] == "paper:Linf FGSM,L2 FGM" and results(card) == results(ref)
    assert card["incl_adaptive"] == ref["incl_adaptive"]
    with pytest.raises(ValueError, match="no attack of the suite 'adaptive' was run here"):
        build_report(tmp_path / "b", plots=False, suite="adaptive", out_dir=tmp_path / "none")

    # dim compare: cards of several runs side by side, the committed paper-objective DIM beside ours
    committed = TESTS.parent / "results" / "dim_paper.json"
    r = subprocess.run([sys.executable, "-m", "dim", "compare", str(tmp_path / "a" / "report" / "cards"),
                        str(committed), "--json", str(tmp_path / "rows.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    main, below = r.stdout.split("Each cell:")
    rows = {line.split("|")[1].strip(): line for line in main.splitlines() if line.startswith("| ")}
    paper_dim = json.loads(committed.read_text())["incl_adaptive"]["per_norm"]["L2"]
    assert f"**{fmt_acc(paper_dim['accuracy'])} [" in rows["DIM (paper objective) (`dim_paper`)"]
    assert "(paper 66%)" in rows["DIM (paper objective) (`dim_paper`)"]          # the paper's DIM at L2
    tiny = json.loads((tmp_path / "a" / "report" / "cards" / "tiny.json").read_text())
    ours = tiny["incl_adaptive"]["per_norm"]["Linf"]["accuracy"]
    assert f"**{fmt_acc(ours)} [" in rows["tiny (`tiny`)"] and "incomplete" not in rows["tiny (`tiny`)"]
    assert [row["model"] for row in json.loads((tmp_path / "rows.json").read_text())] == ["dim_paper", "tiny"]
    # ... and the attacks that set each number: tiny's only L2 and L-inf attacks, with the card's accuracies
    strongest = next(line for line in below.splitlines() if line.startswith("| tiny (`tiny`) |"))
    for name in ("L2 FGM", "Linf FGSM"):
        short = name.split(" ", 1)[1]
        assert f"{short} {fmt_acc(tiny['attacks'][name]['accuracy'])}" in strongest
    assert strongest.count("| - ") == 2                                      # no L0 or L1 attack
    by_model = {row["model"]: row for row in json.loads((tmp_path / "rows.json").read_text())}
    assert [a["attack"] for a in by_model["tiny"]["per_norm"]["L2"]["strongest"]] == ["L2 FGM"]
    assert len(by_model["dim_paper"]["per_norm"]["L2"]["strongest"]) == 3     # the CLI's default
    r = subprocess.run([sys.executable, "-m", "dim", "compare", str(tmp_path / "b" / "report" / "cards")],
                       capture_output=True, text=True)
    row = next(line for line in r.stdout.splitlines() if line.startswith("| tiny "))
    assert r.returncode == 0 and row.count("*(incomplete)*") == 5              # the paper's attacks never started
    assert row.endswith("| **0% [0-9]** *(incomplete)* |")                  # the union: no adaptive attack, no arrow
    r = subprocess.run([sys.executable, "-m", "dim", "compare", str(tmp_path / "rows.json")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "not a results card" in r.stderr


def test_the_strongest_attacks_are_the_lowest_accuracies_of_the_norm_without_the_ones_that_do_not_apply():
    from dim.report.compare import strongest_attacks
    card = {"attacks": {
        "L2 A": {"norm": "L2", "accuracy": 0.5, "adaptive": False},
        "L2 B": {"norm": "L2", "accuracy": 0.2, "adaptive": True, "complete": False},
        "L2 C": {"norm": "L2", "accuracy": 0.2, "adaptive": True},
        "L2 BPDA": {"norm": "L2", "accuracy": 0.0, "not_applicable": True},
        "L2 none": {"norm": "L2", "accuracy": None},
        "Linf D": {"norm": "Linf", "accuracy": 0.0}}}
    found = strongest_attacks(card, "L2", 2)
    assert [(a["attack"], a["accuracy"], a["complete"]) for a in found] == [("L2 B", 0.2, False), ("L2 C", 0.2, True)]
    assert [a["attack"] for a in strongest_attacks(card, "L2", 10)] == ["L2 B", "L2 C", "L2 A"]
    assert strongest_attacks(card, "L2", 0) == [] and strongest_attacks(card, "L1", 3) == []


def test_run_dir_refuses_a_different_evaluation(tiny, test_data, tmp_path):
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False)
    with pytest.raises(RunConfigError, match="differs in"):
        evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=10, show=False)
    changed = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF, params={"random_start": True}),)
    with pytest.raises(RunConfigError, match="parameters of 'Linf FGSM'"):
        evaluate_models([EvalModel("tiny", tiny)], x, y, suite=changed, run_dir=tmp_path, batch_size=20, show=False)


def test_a_run_grows_by_attacks_and_keeps_what_it_has(tiny, test_data, tmp_path):
    x, y = test_data
    fgsm = AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF)
    pgd = AttackSpec("Linf PGD", "LinfProjectedGradientDescentAttack", Norm.LINF)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=(fgsm,), run_dir=tmp_path, batch_size=20,
                    suite_name="one", show=False)
    before = _rows(tmp_path)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=(pgd,), run_dir=tmp_path, batch_size=20,
                    suite_name="two", show=False)
    after = _rows(tmp_path)
    assert [r for r in after if r[1] == "Linf FGSM"] == before
    assert sum(1 for r in after if r[1] == "Linf PGD") == len(y)
    store = Store(tmp_path / "results.sqlite")
    try:
        assert store.get_meta("config")["suite"] == "one+two"
        assert [a["attack"] for a in store.attacks()] == ["Linf FGSM", "Linf PGD"]
    finally:
        store.close()


def test_only_runs_the_matching_attacks_and_the_rest_later(tiny, test_data, tmp_path):
    """``only`` splits one model's attacks between calls; the run records the whole suite from the start."""
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),
             AttackSpec("L2 FGM", "L2FastGradientAttack", Norm.L2))
    kw = dict(suite=suite, run_dir=tmp_path, batch_size=20, suite_name="two", show=False, checks=False)
    with pytest.raises(ValueError, match=r"\['L1 \*'\]: no attack of the suite matches"):
        evaluate_models([EvalModel("tiny", tiny)], x, y, only=["L1 *"], **kw)
    assert not (tmp_path / "results.sqlite").exists()          # refused before the run was touched
    evaluate_models([EvalModel("tiny", tiny)], x, y, only=["Linf *"], **kw)
    assert {r[1] for r in _rows(tmp_path)} == {"Linf FGSM"}
    store = Store(tmp_path / "results.sqlite")
    try:
        assert [a["attack"] for a in store.attacks()] == ["Linf FGSM", "L2 FGM"]
    finally:
        store.close()
    (half,) = run_status(tmp_path)
    assert half.shards == {"done": 2, "skipped": 0, "failed": 0, "pending": 2}
    assert half.pending_attacks == ("L2 FGM",) and half.seconds > 0
    assert "to do (1): L2 FGM" in status_text(tmp_path)
    first = _rows(tmp_path)
    evaluate_models([EvalModel("tiny", tiny)], x, y, **kw)
    after = _rows(tmp_path)
    assert [r for r in after if r[1] == "Linf FGSM"] == first
    assert sum(1 for r in after if r[1] == "L2 FGM") == len(y)
    (full,) = run_status(tmp_path)
    assert full.shards["done"] == 4 and not full.pending_attacks
    assert "4/4 shards finished" in status_text(tmp_path)


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
    assert _rows(tmp_path / "grown") == _rows(tmp_path / "fresh")
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
    path = tmp_path / "small" / "adversarials" / "tiny" / "Linf_FGSM.npz"
    adv = dict(np.load(path))
    broken = int(np.flatnonzero(np.isfinite(adv["distance"]) & (adv["distance"] > 0))[0])
    adv["x_adv"][broken] = x[broken]
    np.savez_compressed(path, **adv)
    evaluate_models([model()], x, y, run_dir=tmp_path / "checked", reuse=[tmp_path / "small"], **kw)
    assert run_status(tmp_path / "checked")[0].reused == {str(tmp_path / "small"): 3}
    assert _rows(tmp_path / "checked") == _rows(tmp_path / "fresh")


def test_reuse_copies_brendel_bethge_only_when_it_would_start_from_the_same_points(tiny, test_data, tmp_path):
    """Brendel-Bethge starts from the best earlier adversarial of its norm: copied when this run's earlier attacks
    give the donor's starting points (recorded by the donor, or for an older donor, recomputed from its files)."""
    import sqlite3
    from dim.attacks.suites import PAPER
    x, y = test_data[0][:8], test_data[1][:8]
    pgd, ddn, bb = (next(s for s in PAPER if s.name == n) for n in ("L2 PGD", "L2 DDN", "L2 BrendelBethge"))
    kw = dict(batch_size=4, show=False, checks=False, suite_name="s")
    model = EvalModel("tiny", tiny, card_sha256="card")
    evaluate_models([model], x, y, suite=(pgd, bb), run_dir=tmp_path / "donor", **kw)
    evaluate_models([model], x, y, suite=(pgd, bb), run_dir=tmp_path / "copy", reuse=[tmp_path / "donor"], **kw)
    assert run_status(tmp_path / "copy")[0].reused == {str(tmp_path / "donor"): 4}      # PGD and BB, 2 shards each
    assert _rows(tmp_path / "copy") == _rows(tmp_path / "donor")

    with sqlite3.connect(tmp_path / "donor" / "results.sqlite") as db:   # a donor stored before the record
        assert db.execute("DELETE FROM meta WHERE key LIKE 'starts/%'").rowcount == 2
    evaluate_models([model], x, y, suite=(pgd, bb), run_dir=tmp_path / "old", reuse=[tmp_path / "donor"], **kw)
    assert run_status(tmp_path / "old")[0].reused == {str(tmp_path / "donor"): 4}

    # DDN before it changes where BB starts: PGD is copied, BB is run afresh (from PGD's and DDN's adversarials)
    evaluate_models([model], x, y, suite=(pgd, ddn, bb), run_dir=tmp_path / "more", reuse=[tmp_path / "donor"], **kw)
    store = Store(tmp_path / "more" / "results.sqlite")
    try:
        assert sorted({a for _, a, _ in store.reused_shards()}) == ["L2 PGD"]
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
    seen = _Output(tiny, lambda z: z)
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
    assert [r.distance for r in rows] == [r[3] for r in _rows(tmp_path)]


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


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_same_results(tmp_path, data_dir):
    script = tmp_path / "run.py"
    script.write_text(evalkit.KILLABLE_RUN.format(tests=str(TESTS)))
    env = {**os.environ, "DIM_NO_PROGRESS": "1"}
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run([sys.executable, str(script), str(ref)], check=True, env=env)
    proc = subprocess.Popen([sys.executable, str(script), str(killed)], env=env)
    deadline = time.time() + 120
    while evalkit.done_shards(killed / "results.sqlite") < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = evalkit.done_shards(killed / "results.sqlite")
    assert 3 <= partial < 24
    subprocess.run([sys.executable, str(script), str(killed)], check=True, env=env)
    assert _rows(killed) == _rows(ref)
    assert len(_rows(ref)) == 2 * 48
    a = build_report(ref, plots=False)
    b = build_report(killed, plots=False)
    assert (a / "table1.md").read_text() == (b / "table1.md").read_text()


@pytest.mark.slow
def test_cli_evaluate_with_model_factory_and_report(tmp_path, data_dir):
    env = {**os.environ, "DIM_NO_PROGRESS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "dim", "evaluate", "--model-factory", "evalkit:tiny_model",
                        "--suite", "quick", "--n", "10", "--batch-size", "10", "--run", str(run)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "report" / "report.md").is_file()
    assert f"page: {run / 'report' / 'index.html'}" in r.stdout and (run / "report" / "index.html").is_file()
    r = subprocess.run([sys.executable, "-m", "dim", "report", str(run)], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "tiny_model" in r.stdout and "index.html" in r.stdout
    r = subprocess.run([sys.executable, "-m", "dim", "status", str(run)], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "tiny_model:" in r.stdout and "shards finished (" in r.stdout
    r = subprocess.run([sys.executable, "-m", "dim", "status", str(tmp_path / "none")], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 2 and "no results store" in r.stderr
    r = subprocess.run([sys.executable, "-m", "dim", "evaluate", "--suite", "nope", "--n", "5", "--run",
                        str(tmp_path / "x"), "--model-factory", "evalkit:tiny_model"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "unknown suite 'nope'" in r.stderr
    # attacks that fail leave a run whose numbers are not final: exit status 3, with how many and what to do
    r = subprocess.run([sys.executable, "-m", "dim", "evaluate", "--model-factory", "evalkit:gradient_hostile_model",
                        "--suite", "quick", "--n", "10", "--batch-size", "10", "--run", str(tmp_path / "bad"),
                        "--no-checks"], capture_output=True, text=True, env=env)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "shard(s) of" in r.stderr and "failed" in r.stderr and "rerun the same command" in r.stderr


@pytest.mark.parametrize("damage, message", [
    (lambda db: db.write_bytes(b""), r"is empty \(0 bytes\), not a results store"),
    (lambda db: db.write_bytes(b"not sqlite" * 500), r"not a readable results store \(file is not a database\)"),
    (lambda db: db.write_bytes(db.read_bytes()[:3000]), r"not a readable results store"),
])
def test_a_damaged_store_is_one_clear_error_and_the_report_survives(tiny, test_data, tmp_path, damage, message):
    x, y = test_data
    run = tmp_path / "run"
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    evaluate_models([EvalModel("m", tiny)], x[:10], y[:10], suite=suite, run_dir=run, batch_size=10, show=False,
                    checks=False)
    report = (build_report(run, plots=False) / "report.md").read_text()
    damage(run / "results.sqlite")
    for args in (["status", str(run)], ["report", str(run)]):
        r = subprocess.run([sys.executable, "-m", "dim", *args], capture_output=True, text=True,
                           env={**os.environ, "DIM_NO_PROGRESS": "1"})
        assert r.returncode == 2 and re.search(message, r.stderr), r.stderr
        assert str(run / "results.sqlite") in r.stderr and "Traceback" not in r.stderr
    assert (run / "report" / "report.md").read_text() == report      # the good report is still there


def test_run_pointing_at_a_file_is_one_clear_error(tiny, test_data, tmp_path):
    x, y = test_data
    (tmp_path / "afile").write_text("not a run")
    with pytest.raises(ValueError, match=r"afile: is a file, not a run directory"):
        evaluate_models([EvalModel("m", tiny)], x[:10], y[:10], suite="quick", run_dir=tmp_path / "afile",
                        batch_size=10, show=False)


def test_a_second_driver_on_a_run_is_refused_naming_the_first(tiny, test_data, tmp_path):
    from dim.evaluation.locks import RunLockedError, run_lock
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    with run_lock(tmp_path):        # as if another driver were on this run
        with pytest.raises(RunLockedError, match=rf"{re.escape(str(tmp_path))}: another dim process .*process "
                                                 rf"{os.getpid()} on "):
            evaluate_models([EvalModel("m", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False,
                            checks=False)
        assert not (tmp_path / "results.sqlite").exists()       # refused before anything was written
    evaluate_models([EvalModel("m", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False,
                    checks=False)                              # released: the next evaluation runs
    assert len(_rows(tmp_path)) == len(y)


def test_a_lock_left_by_a_killed_driver_does_not_block_the_rerun(tmp_path):
    """The lock file stays behind a SIGKILLed holder; the kernel released its flock, so the rerun proceeds."""
    from dim.evaluation.locks import run_lock
    code = ("import sys, time; from dim.evaluation.locks import run_lock\n"
            "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        second = subprocess.run([sys.executable, "-m", "dim", "evaluate", "--model-factory", "evalkit:tiny_model",
                                 "--run", str(tmp_path), "--n", "10"], capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(TESTS)})
        assert second.returncode == 2 and f"another dim process is running this evaluation (process {p.pid} on " \
            in second.stderr, second.stderr
        p.kill()
        p.wait(timeout=30)
    finally:
        p.kill()
    assert (tmp_path / ".lock").is_file() and str(p.pid) in (tmp_path / ".lock").read_text()
    with run_lock(tmp_path):
        pass


class _Threshold(torch.nn.Module):
    """Class 1 iff the first pixel exceeds 0.5."""

    def forward(self, x):
        p = x[:, 0, 0, 0]
        return torch.stack([0.5 - p, p - 0.5], 1)


class _PushFirstPixel:
    """A fake fixed-epsilon attack: adds eps to the first pixel; counts its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, fmodel, x, criterion, epsilons):
        (eps,) = epsilons
        self.calls.append((len(x), eps))
        adv = x.clone()
        adv[:, 0, 0, 0] += eps
        return None, [adv], None


def test_grid_bisection_finds_the_smallest_breaking_epsilon():
    from dim.attacks.foolbox_adapter import _run_grid
    margins = np.array([0.01, 0.12, 0.29, 0.31, 0.45, 0.9])
    x = np.zeros((len(margins), 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = 0.5 - margins
    y = np.zeros(len(margins), np.int64)
    attack = _PushFirstPixel()
    spec = AttackSpec("Linf push", "fake", Norm.LINF)
    got = _run_grid(attack, spec, _Threshold(), None, x, y, torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(got.distance, [0.025, 0.15, 0.3, 0.35, 0.5, np.inf], rtol=1e-5)
    assert attack.calls[0] == (len(margins), 0.3)          # everyone starts at the threshold
    runs_per_sample = sum(n for n, _ in attack.calls) / len(margins)
    assert runs_per_sample < len(Norm.LINF.grid) / 2        # bisection, not a sweep


def test_report_warns_about_binarized_models(test_data, tmp_path):
    import dim
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    models = [EvalModel("bicnn", dim.create_model("bicnn"), name="bicnn", paper_name="biCNN"),
              EvalModel("cnn", dim.create_model("cnn"), name="cnn", paper_name="CNN")]
    evaluate_models(models, x[:10], y[:10], suite=suite, run_dir=tmp_path, batch_size=10, show=False)
    text = (build_report(tmp_path, plots=False) / "report.md").read_text()
    assert "Warning: bicnn binarizes its input" in text and "cnn, " not in text.split("Warning:")[1][:40]


def test_public_api_evaluate_any_classifier(tiny, test_data, tmp_path):
    import dim
    x, y = test_data
    suite = [s for s in get_suite("quick") if s.name == "Linf FGSM"]
    (res,) = dim.evaluate(tiny, torch.from_numpy(x), torch.from_numpy(y), suite=suite, run_dir=tmp_path,
                          name="mine", batch_size=20, show=False)
    assert res.clean_accuracy == pytest.approx(float(np.mean(predict_numpy(tiny, x) == y)))
    assert 0.0 <= res.attacks["Linf FGSM"].accuracy < res.clean_accuracy
    assert (tmp_path / "report" / "report.md").exists()


def test_a_resumed_run_records_every_commit_it_was_computed_with(tiny, test_data, tmp_path, monkeypatch):
    """A run resumed after a code change names both commits, in the store, the report and the cards."""
    from dim.evaluation import record
    x, y = test_data
    fgsm, pgd = ([s for s in get_suite("quick") if s.name == n] for n in ("Linf FGSM", "Linf PGD"))
    run = tmp_path / "run"
    for commit, suite in (("aaa111", fgsm), ("bbb222", fgsm + pgd), ("bbb222", fgsm + pgd), ("ccc333", fgsm + pgd)):
        monkeypatch.setattr(record, "git_commit", lambda c=commit: c)
        evaluate_models([EvalModel("m", tiny)], x[:10], y[:10], suite=suite, run_dir=run, batch_size=10,
                        show=False, checks=False)
    store = Store.of_run(run)
    try:
        prov = store.get_meta("provenance")
    finally:
        store.close()
    # ccc333 found nothing left to do: it computed nothing, so it is not one of the run's commits
    assert prov["git_commit"] == "bbb222" and prov["git_commits"] == ["aaa111", "bbb222"]
    report = build_report(run, plots=False, cards_dir=tmp_path / "cards")
    assert "git commit: `aaa111`, `bbb222` (resumed across 2 commits" in (report / "report.md").read_text()
    card = json.loads((tmp_path / "cards" / "m.json").read_text())
    assert card["evaluation"]["git_commits"] == ["aaa111", "bbb222"]
    assert "aaa111, bbb222 (resumed across 2 commits" in (report / "index.html").read_text()


def test_status_estimates_the_seconds_left_from_the_finished_shards(tmp_path):
    """n = 50 in shards of 20: shards of 20, 20 and 10 images. Model b is 3x slower than a on the attack both
    finished; a BPDA attack already skipped on a costs nothing; an attack nobody finished has no estimate."""
    store = Store(tmp_path / "results.sqlite")
    try:
        store.set_meta("config", {"n": 50, "batch_size": 20})
        for m in ("a", "b"):
            store.add_model(m, m, m, {}, None, np.zeros(50, dtype=np.int64), np.zeros(50, dtype=np.int64))
        store.add_attacks([("L2 A", "L2", {"attack": "pgd", "params": {}}),
                           ("L2 B", "L2", {"attack": "pgd", "params": {"steps": 10}}),
                           ("L2 BPDA", "L2", {"attack": "pgd", "params": {"gradient": "bpda"}}),
                           ("L2 new", "L2", {"attack": "square", "params": {}})])
        for k, images in enumerate((20, 20, 10)):
            store.finish_shard("a", "L2 A", k, [], seconds=1.0 * images)    # 1 s per image
            store.finish_shard("b", "L2 A", k, [], seconds=3.0 * images)    # 3 s per image
        store.finish_shard("a", "L2 B", 0, [], seconds=40.0)                # 2 s per image
        store.fail_shard("a", "L2 BPDA", 0, "no binarization", 0.01, status="skipped")
        store.fail_shard("a", "L2 new", 0, "out of memory", 5.0)            # failed: retried, so left
    finally:
        store.close()
    a, b = run_status(tmp_path)
    # a: L2 B's shards 1 and 2 at 2 s per image (40 + 20 s); L2 BPDA's two left skip; L2 new has nothing to go by
    assert (a.left.seconds, a.left.estimated, a.left.unknown, a.left.not_applicable) == (60.0, 4, 3, 2)
    # b: L2 B at a's 2 s per image times 3 (b / a on L2 A) over 50 images; L2 BPDA and L2 new unknown
    assert b.left.seconds == pytest.approx(300.0) and (b.left.estimated, b.left.unknown) == (3, 6)
    text = status_text(tmp_path)
    assert ("left: about 60 s of attacks for 4 shard(s) at the pace of the finished ones (2 of them not "
            "applicable, like others of their kind; 3 more with nothing finished to go by)") in text
    assert ("left: about 5 min of attacks for 3 shard(s) at the pace of the finished ones (6 more with nothing "
            "finished to go by)") in text
    # a: everything finished but a new attack nobody has run: nothing to estimate it by, and said so
    store = Store(tmp_path / "results.sqlite")
    try:
        store.add_attacks([("L2 last", "L2", {"attack": "boundary", "params": {}})])
        for k in range(3):
            for attack in ("L2 B", "L2 BPDA", "L2 new"):
                if store.shard_status("a", attack, k) not in ("done", "skipped"):
                    store.finish_shard("a", attack, k, [], seconds=1.0)
    finally:
        store.close()
    lines = status_text(tmp_path).splitlines()
    assert lines.count("  left: 3 shard(s), nothing finished yet to estimate them by") == 1       # a's L2 last
