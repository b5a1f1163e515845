"""Attack suites as TOML files a user writes and runs; the images of a run chosen by range or seeded subset."""
import json
import os
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest

import dim
import evalkit
from dim import data
from dim.attacks.suite_files import read_suite, write_suite
from dim.attacks.suites import SUITES, get_suite
from dim.evaluation.artifacts import load_inputs
from dim.evaluation.spec import RunSpec
from dim.report.pool import pool_cards
from dim.pipeline import run_evaluation


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_built_in_suite_survives_a_round_trip_through_a_file(name, tmp_path):
    assert read_suite(write_suite(get_suite(name), tmp_path / "s.toml")) == get_suite(name)


def test_the_committed_suite_files_read_and_an_attack_named_as_a_built_in_one_is_that_attack():
    """The suite files that published checks ran (benchmarks/suites/) stay readable, and an attack of theirs named as
    a built-in attack is exactly that attack (a run joins them with built-in suites, and names key the results):
    the Sparse-RS of 10,000 queries, first a file, is now the suite ``sparse-rs-10k`` too."""
    files = sorted((Path(__file__).resolve().parent.parent / "benchmarks" / "suites").glob("*.toml"))
    assert files
    built_in = {s.name: s for name in SUITES for s in get_suite(name)}
    for f in files:
        for spec in read_suite(f):
            assert built_in.get(spec.name, spec) == spec, (f, spec.name)
    assert read_suite(files[0].parent / "l0-sparse-rs-10k.toml") == get_suite("sparse-rs-10k")


def test_our_adapters_are_known_to_a_suite_file_read_before_anything_else(tmp_path):
    """Our adapters register when ``dim.attacks.adaptive`` is imported, which reading a suite's names does not do:
    checking a file's attacks asks the registry with ours in it (a fresh interpreter, nothing imported before)."""
    path = write_suite(get_suite("quick"), tmp_path / "s.toml")
    code = ("import sys\nfrom dim.attacks.suite_files import read_suite\nfrom dim.attacks import list_adapters\n"
            "print(len(read_suite(sys.argv[1])), len(list_adapters()))")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    from dim.attacks import ADAPTERS
    ours = {k for k, fn in ADAPTERS.items() if fn.__module__.startswith("dim.")}   # not the tests' own
    assert {s.attack for s in get_suite("quick")} & ours
    assert r.stdout.split() == [str(len(get_suite("quick"))), str(len(ours))]


def test_an_edited_exported_suite_runs_as_written_and_the_report_prints_it(tiny, test_data, tmp_path):
    path = write_suite(get_suite("quick:Linf PGD,L2 DDN"), tmp_path / "mine.toml")
    text = path.read_text().replace("steps = 100", "steps = 7")      # DDN's steps
    path.write_text(text + '\n[[attack]]\nname = "Linf FGSM"\nattack = "LinfFastGradientAttack"\nnorm = "Linf"\n')
    x, y = test_data
    dim.evaluate(tiny, x[:10], y[:10], suite=str(path), run_dir=tmp_path / "run", show=False, checks=False)
    attacks = {a["name"]: a for a in json.loads(_meta(tmp_path / "run", "config"))["attacks"]}
    assert sorted(attacks) == ["L2 DDN", "Linf FGSM", "Linf PGD"] and attacks["L2 DDN"]["params"] == {"steps": 7}
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert f"## Attack suite `{path}` (3 attacks)" in report and "| L2 DDN | L2 | DDNAttack | steps=7 |" in report
    # the same run with the file changed again is another evaluation, refused
    path.write_text(text.replace("steps = 7", "steps = 8"))
    with pytest.raises(ValueError, match="parameters of 'L2 DDN'"):
        dim.evaluate(tiny, x[:10], y[:10], suite=str(path), run_dir=tmp_path / "run", show=False, checks=False)


def _meta(run, key):
    import sqlite3
    with sqlite3.connect(run / "results.sqlite") as db:
        return db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]


@pytest.mark.parametrize("body, message", [
    ('[[attack]]\nname = "a"\nattack = "DDNAttack"\n', r"attack 1: missing 'norm'"),
    ('[[attack]]\nname = "a"\nattack = "DDNAttack"\nnorm = "L3"\n', r"attack 1: norm 'L3', expected one of"),
    ('[[attack]]\nname = "a"\nattack = "DDNAttack"\nnorm = "L2"\nstep = 3\n', r"unknown field\(s\) \['step'\]"),
    ('[[attack]]\nname = "a"\nattack = "DDNAttack"\nnorm = "L2"\nrepeats = "3"\n', r"repeats = '3' is str, expected int"),
    ('[[attack]]\nname = "a"\nattack = "NoSuchAttack"\nnorm = "L2"\n', r"unknown attack 'NoSuchAttack'"),
    ('[[attack]]\nname = "a"\nattack = "DDNAttack"\nnorm = "L2"\n' * 2, r"\['a'\] given twice"),
    ('attack = 3\n', r"no \[\[attack\]\] table"),
    ('[[attack]\n', r"not a readable TOML suite file"),
])
def test_a_bad_suite_file_is_one_error_naming_the_file_and_the_attack(body, message, tmp_path):
    (tmp_path / "bad.toml").write_text(body)
    with pytest.raises(ValueError, match=message):
        get_suite(str(tmp_path / "bad.toml"))


def test_the_cli_exports_a_suite_and_lists_the_file(tmp_path):
    env = {**os.environ, "DIM_NO_PROGRESS": "1"}
    dim_cli = [sys.executable, "-m", "dim", "suites"]
    r = subprocess.run([*dim_cli, "quick", "--export", str(tmp_path / "q.toml")], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0 and f"{len(get_suite('quick'))} attacks written" in r.stdout, r.stderr
    r = subprocess.run([*dim_cli, str(tmp_path / "q.toml")], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "Linf APGD 50" in r.stdout
    r = subprocess.run([*dim_cli, "quick", "--export", str(tmp_path / "q.toml")], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2 and "exists" in r.stderr


@pytest.mark.parametrize("choice, words", [({"start": 10}, "(images 10 to 19)"),
                                           ({"subset_seed": 3}, "(drawn at random, seed 3)")])
def test_the_images_are_chosen_by_range_or_seeded_subset_and_recorded(choice, words, data_dir, tmp_path):
    spec = RunSpec(run_dir=tmp_path / "run", factories=("evalkit:tiny_model",), suite="quick:Linf FGSM", n=10,
                   checks=False, **choice)
    out = run_evaluation(spec)
    x, y = data.load_split("mnist", "test")
    idx = np.arange(10, 20) if "start" in choice else np.sort(np.random.default_rng(3).choice(len(y), 10, replace=False))
    stored_x, stored_y = load_inputs(tmp_path / "run")
    np.testing.assert_array_equal(stored_x, x[idx])
    np.testing.assert_array_equal(stored_y, y[idx])
    config = json.loads(_meta(tmp_path / "run", "config"))
    assert config["images"] == ({"start": 10} if "start" in choice else {"random_subset_seed": 3})
    assert words in (out / "report.md").read_text()
    (card,) = (out / "cards").glob("*.json")          # a card says which images, so runs on others can be pooled
    assert json.loads(card.read_text())["evaluation"]["images"] == config["images"]
    assert evalkit is not None


def test_a_suite_file_sets_the_epsilon_grid_of_a_fixed_epsilon_attack(tiny, test_data, tmp_path):
    """``epsilons`` in an attack's params is the grid it searches (the threshold is always on it): the smallest
    breaking epsilon stored per sample is one of them."""
    (tmp_path / "grid.toml").write_text('[[attack]]\nname = "Linf FGSM coarse"\nattack = "LinfFastGradientAttack"\n'
                                        'norm = "Linf"\n[attack.params]\nepsilons = [0.05, 0.5]\n')
    (spec,) = read_suite(tmp_path / "grid.toml")
    assert spec.grid == (0.05, 0.3, 0.5)
    x, y = test_data
    dim.evaluate(tiny, x[:20], y[:20], suite=str(tmp_path / "grid.toml"), run_dir=tmp_path / "run", show=False,
                 checks=False, report=False)
    dist = np.array([d for *_, d, _ in evalkit.rows(tmp_path / "run")])
    broken = dist[np.isfinite(dist) & (dist > 0)]
    assert len(broken) and np.all(broken <= 0.5 + 1e-6)
    # FGSM at eps moves pixels by eps: the L-inf distance found is an epsilon of the grid
    assert set(np.round(broken, 4)) <= {0.05, 0.3, 0.5}


def test_a_run_on_the_training_split_evaluates_training_images_and_says_so(data_dir, tmp_path):
    spec = RunSpec(run_dir=tmp_path / "run", factories=("evalkit:tiny_model",), suite="quick:Linf FGSM", n=10,
                   checks=False, split="train", start=5)
    out = run_evaluation(spec)
    x, y = data.load_split("mnist", "train")
    stored_x, stored_y = load_inputs(tmp_path / "run")
    np.testing.assert_array_equal(stored_x, x[5:15])
    np.testing.assert_array_equal(stored_y, y[5:15])
    assert json.loads(_meta(tmp_path / "run", "config"))["images"] == {"start": 5, "split": "train"}
    assert "10 training samples of mnist (images 5 to 14)" in (out / "report.md").read_text()
    (card,) = (out / "cards").glob("*.json")
    with pytest.raises(ValueError, match="train split"):          # not pooled with ranges of the test set
        pool_cards([card])
    with pytest.raises(ValueError, match="split 'validation'"):
        RunSpec(run_dir=tmp_path / "other", split="validation")
