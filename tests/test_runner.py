"""The driver and what a run is: model identities, output checks, failures, growth, --only, resume after a kill, the API."""
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
from dim.attacks.suites import get_suite
from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm
from dim.evaluation.status import run_status, status_text
from dim.evaluation.runner import EvalModel, RunConfigError, evaluate_models
from dim.core.verify import predict_numpy
from dim.report import build_report
from dim.store import Store


TESTS = Path(__file__).resolve().parent


def test_another_model_under_the_same_key_is_refused_and_changes_nothing(tiny, test_data, tmp_path):
    import copy
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    evaluate_models([EvalModel("m", tiny)], x, y, suite=suite, run_dir=tmp_path, batch_size=20, show=False)
    before = evalkit.rows(tmp_path)
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
    assert evalkit.rows(tmp_path) == before
    # the same model again, or the other one under a new key, is fine
    evaluate_models([EvalModel("m", copy.deepcopy(tiny)), EvalModel("m2", other)], x, y, suite=suite,
                    run_dir=tmp_path, batch_size=20, show=False)
    assert len(evalkit.rows(tmp_path)) == 2 * len(y)


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
        evaluate_models([EvalModel("m", evalkit.Output(tiny, fn))], x, y, suite=suite, run_dir=tmp_path, batch_size=20,
                        show=False, num_classes=10)
    store = Store(tmp_path / "results.sqlite")
    try:
        assert store.models() == [] and store.shards() == [] and store.get_meta("config") is None
    finally:
        store.close()


def test_a_model_returning_probabilities_is_evaluated_with_a_warning(tiny, test_data, tmp_path):
    x, y = test_data
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)
    probs = evalkit.Output(tiny, lambda z: z.softmax(1))
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


def test_a_filtered_suite_is_the_runs_protocol_where_only_leaves_the_rest_to_do(tiny, test_data, tmp_path):
    from dim.report.tables import fmt_acc
    x, y = test_data
    kw = dict(batch_size=20, show=False, checks=False)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite="paper:Linf FGSM,L2 FGM", run_dir=tmp_path / "a", **kw)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite="paper", only=["Linf FGSM", "L2 FGM"],
                    run_dir=tmp_path / "b", **kw)
    assert evalkit.rows(tmp_path / "a") == evalkit.rows(tmp_path / "b")          # the same attacks, seeds and results
    filtered = (build_report(tmp_path / "a", plots=False) / "report.md").read_text()
    assert "Suite `paper:Linf FGSM,L2 FGM`" in filtered and "Incomplete run" not in filtered
    assert "## Attack suite `paper:Linf FGSM,L2 FGM` (2 attacks)" in filtered      # the suite, attack by attack
    assert "| 1 | L2 FGM | L2 | L2FastGradientAttack | foolbox defaults |" in filtered
    assert "to do" not in status_text(tmp_path / "a")
    split = (build_report(tmp_path / "b", plots=False) / "report.md").read_text()
    assert "**Incomplete run: 40 (model, attack) unit(s)" in split
    assert ("not selected by the last call (--only 'Linf FGSM' --only 'L2 FGM'): 80 shard(s) of 40 attack(s)"
            in status_text(tmp_path / "b")) and "to do" not in status_text(tmp_path / "b")
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
    before = evalkit.rows(tmp_path)
    evaluate_models([EvalModel("tiny", tiny)], x, y, suite=(pgd,), run_dir=tmp_path, batch_size=20,
                    suite_name="two", show=False)
    after = evalkit.rows(tmp_path)
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
    assert {r[1] for r in evalkit.rows(tmp_path)} == {"Linf FGSM"}
    store = Store(tmp_path / "results.sqlite")
    try:
        assert [a["attack"] for a in store.attacks()] == ["Linf FGSM", "L2 FGM"]
    finally:
        store.close()
    (half,) = run_status(tmp_path)
    assert half.shards == {"done": 2, "skipped": 0, "failed": 0, "pending": 2}
    # L2 FGM is not this call's work: counted apart as another call's part, not as left to do here
    assert half.pending_attacks == () and half.elsewhere_attacks == ("L2 FGM",) and half.seconds > 0
    assert "not selected by the last call (--only 'Linf *'): 2 shard(s) of 1 attack(s)" in status_text(tmp_path)
    first = evalkit.rows(tmp_path)
    evaluate_models([EvalModel("tiny", tiny)], x, y, **kw)
    after = evalkit.rows(tmp_path)
    assert [r for r in after if r[1] == "Linf FGSM"] == first
    assert sum(1 for r in after if r[1] == "L2 FGM") == len(y)
    (full,) = run_status(tmp_path)
    assert full.shards["done"] == 4 and not full.pending_attacks
    assert "4/4 shards finished" in status_text(tmp_path)


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_same_results(tmp_path, data_dir):
    script = tmp_path / "run.py"
    script.write_text(evalkit.KILLABLE_RUN.format(tests=str(TESTS)))
    env = {**os.environ, "DIM_NO_PROGRESS": "1"}
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    fast = {**env, "DIM_TEST_SLOW": "0"}   # only the run that is killed needs to be slow
    subprocess.run([sys.executable, str(script), str(ref)], check=True, env=fast)
    proc = subprocess.Popen([sys.executable, str(script), str(killed)], env=env)
    deadline = time.time() + 120
    while evalkit.done_shards(killed / "results.sqlite") < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = evalkit.done_shards(killed / "results.sqlite")
    assert 3 <= partial < 24
    subprocess.run([sys.executable, str(script), str(killed)], check=True, env=fast)
    assert evalkit.rows(killed) == evalkit.rows(ref)
    assert len(evalkit.rows(ref)) == 2 * 48
    a = build_report(ref, plots=False)
    b = build_report(killed, plots=False)
    assert (a / "table1.md").read_text() == (b / "table1.md").read_text()


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


def test_the_api_prints_the_warnings_and_returns_them_with_the_report(tiny, test_data, tmp_path, capsys):
    """Probabilities instead of logits, and attacks that failed, are said on the console and in the result, which
    names the report; a clean model gets no warning."""
    import dim
    x, y = test_data
    probs = evalkit.Output(tiny, lambda z: z.softmax(1))
    got = dim.evaluate(probs, x[:20], y[:20], name="p", suite="quick:Linf FGSM", run_dir=tmp_path / "p", show=False,
                       checks=False)
    assert got.report == tmp_path / "p" / "report" / "index.html" and got.report.is_file()
    assert [w for w in got.warnings if "p returns probabilities, not logits" in w]
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: p returns probabilities, not logits" in err and f"report: {got.report}" in err
    hostile = dim.evaluate(evalkit.gradient_hostile_model(), x[:20], y[:20], name="h", suite="quick:Linf FGSM",
                           run_dir=tmp_path / "h", show=False, checks=False)
    assert any("h: 1 shard(s) of Linf FGSM failed" in w for w in hostile.warnings), hostile.warnings   # 20 images, batch 100
    assert np.isnan(hostile[0].attacks["Linf FGSM"].accuracy)
    clean = dim.evaluate(tiny, x[:20], y[:20], suite="quick:Linf FGSM", run_dir=tmp_path / "c", show=False,
                         checks=False, batch_size=20)
    assert clean.warnings == [] and len(clean) == 1
