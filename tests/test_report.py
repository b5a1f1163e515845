"""Reports rendered from a run's store: Markdown, Table 1/2, cards, incomplete runs, warnings."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import evalkit  # noqa: F401  (registers the test adapters)
from dim.attacks.suites import get_suite
from dim.attacks.spec import AttackSpec
from dim.evaluation import metrics
from dim.core.norms import Norm
from dim.evaluation.artifacts import load_adversarials
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.core.verify import predict_numpy
from dim.report import build_report
from dim.store import Store


TESTS = Path(__file__).resolve().parent


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
        assert res.norms[norm].accuracy == pytest.approx(evalkit.robust_fraction(worst, eps))
        assert res.norms[norm].median == pytest.approx(float(np.median(worst)))
    linf = np.minimum(d["Linf FGSM"], d["Linf PGD"])
    assert f"| Linf PGD | {fmt_acc(evalkit.robust_fraction(d['Linf PGD'], 0.3))} | 0% |" in table   # ours, then the paper's
    lo, hi = metrics.wilson_interval(int(np.sum(linf > 0.3 * (1 + metrics.RELATIVE_TOLERANCE))), len(linf))
    assert f"| All L∞ attacks | {fmt_dist(float(np.median(linf)))}/{fmt_acc(evalkit.robust_fraction(linf, 0.3))} " \
           f"[{100 * lo:.0f}-{100 * hi:.0f}] | 0.08/0% |" in table
    minimal = min(evalkit.robust_fraction(v, 0.3 if k.startswith("Linf") else 1.5) for k, v in d.items())
    assert res.minimal_accuracy == pytest.approx(minimal)
    csv_rows = (out / "table1.csv").read_text().splitlines()
    assert f"Linf PGD,{fmt_acc(evalkit.robust_fraction(d['Linf PGD'], 0.3))},0%" in csv_rows
    card = json.loads((out / "cards" / "tiny.json").read_text())
    assert card["attacks"]["Linf PGD"]["accuracy"] == pytest.approx(evalkit.robust_fraction(d["Linf PGD"], 0.3))
    assert card["paper_protocol"]["per_norm"]["Linf"]["accuracy"] == pytest.approx(evalkit.robust_fraction(linf, 0.3))
    assert card["paper_protocol"]["per_norm"]["Linf"]["interval_95"] == pytest.approx([lo, hi], abs=1e-4)
    assert card["paper_protocol"]["per_norm"]["Linf"]["n"] == len(y)
    assert card["paper_protocol"]["minimal_accuracy"] == pytest.approx(minimal)
    # which norms broke each sample, recounted from the rows: clean errors apart, the rest by their set of norms
    l2 = np.min(np.stack([d[n] for n in ("L2 DDN", "L2 DeepFool") if n in d]), axis=0)
    correct = predict_numpy(tiny, x) == y
    expected: dict[str, int] = {}
    for i in range(len(y)):
        broken = [n for n, dist, eps in (("L2", l2, 1.5), ("Linf", linf, 0.3))
                  if dist[i] <= eps * (1 + metrics.RELATIVE_TOLERANCE)]
        key = "+".join(broken) or "robust" if correct[i] else "clean error"
        expected[key] = expected.get(key, 0) + 1
    assert card["paper_protocol"]["union"]["broken_by"] == expected
    several = sum(v for k, v in expected.items() if "+" in k)
    assert (f"| tiny | {len(y)} | {expected.get('robust', 0)} | {expected.get('clean error', 0)} | "
            in (out / "report.md").read_text())
    assert f"| {several} (" in (out / "report.md").read_text()


def test_table2_cells_are_the_stored_rows(tiny, test_data, tmp_path):
    from dim.report.tables import fmt_acc
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    noisy = evalkit.Output(tiny, lambda z: z + 0.5 * torch.sin(17 * z))   # another model, other numbers
    evaluate_models([EvalModel("a", tiny, paper_name="Internal Models"), EvalModel("b", noisy, paper_name="DIM")],
                    x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False, checks=False)
    out = build_report(tmp_path, plots=False)
    store = Store(tmp_path / "results.sqlite")
    try:
        acc = {m: evalkit.robust_fraction(np.array([r.distance for r in store.rows(m, "Linf FGSM")]), 0.3) for m in "ab"}
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


def test_report_warns_about_binarized_models(test_data, tmp_path):
    import dim
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    models = [EvalModel("bicnn", dim.create_model("bicnn"), name="bicnn", paper_name="biCNN"),
              EvalModel("cnn", dim.create_model("cnn"), name="cnn", paper_name="CNN")]
    evaluate_models(models, x[:10], y[:10], suite=suite, run_dir=tmp_path, batch_size=10, show=False)
    text = (build_report(tmp_path, plots=False) / "report.md").read_text()
    assert "Warning: bicnn binarizes its input" in text and "cnn, " not in text.split("Warning:")[1][:40]


def test_metrics_json_leads_with_the_numbers_to_quote_and_is_strict_json(tiny, test_data, tmp_path):
    """metrics.json: ``robust`` (adaptive attacks included) before ``paper_protocol``; an attack that did not
    apply and an infinite median are null, never the strings "nan" / "inf" (or NaN, which strict JSON lacks)."""
    x, y = test_data
    specs = {s.name: s for s in (*get_suite("quick"), *get_suite("adaptive"))}
    suite = [specs[n] for n in ("Linf FGSM", "L0 PGD-L0 20x1", "Linf BPDA-APGD")]
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False,
                    checks=False)
    text = (build_report(tmp_path, plots=False) / "metrics.json").read_text()

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    (m,) = json.loads(text, parse_constant=refuse)
    assert '"nan"' not in text and '"inf"' not in text
    keys = list(m)
    assert keys.index("robust") < keys.index("paper_protocol") < keys.index("attacks")
    l0 = np.array([r[3] for r in evalkit.rows(tmp_path) if r[1] == "L0 PGD-L0 20x1"])
    assert m["robust"]["per_norm"]["L0"]["accuracy"] == pytest.approx(evalkit.robust_fraction(l0, 12))
    assert "L0" not in m["paper_protocol"]["per_norm"]            # no attack of the paper's ran at L0
    assert m["robust"]["minimal_accuracy"] <= m["paper_protocol"]["minimal_accuracy"]
    bpda = m["attacks"]["Linf BPDA-APGD"]
    assert bpda["not_applicable"] and bpda["accuracy"] is None and bpda["median_distance"] is None
    if not np.isfinite(np.median(l0)):
        assert m["robust"]["per_norm"]["L0"]["median_distance"] is None


def test_an_accuracy_is_shown_as_measured_never_rounded_up_to_a_whole_point():
    """31 of 200 images is 15.5%: a table saying 16% would claim more robustness than was measured."""
    from dim.report.tables import fmt_acc, fmt_acc_ci
    assert [fmt_acc(a) for a in (31 / 200, 32 / 200, 1 / 200, 0.0, 1.0, 1 / 3)] == \
        ["15.5%", "16%", "0.5%", "0%", "100%", "33.3%"]
    assert fmt_acc(float("nan")) == fmt_acc(None) == "-"
    assert fmt_acc_ci(0.155, (0.1114, 0.2116)) == "15.5% [11-21]"
