"""The `dim` command: help everywhere, clear errors, fetch/train/load, evaluate with a factory, and one clear error
for a damaged store or a --run that is a file."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dim
import evalkit  # noqa: F401  (registers the test adapters)
from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.report import build_report


TESTS = Path(__file__).resolve().parent


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
    assert r.returncode == 0 and "index.html" in r.stdout
    # paths and one line per model, not the whole Markdown (that takes --print)
    (line,) = [ln for ln in r.stdout.splitlines() if ln.startswith("tiny_model: clean ")]
    assert "all norms at once" in line and "adaptive attacks included" in line
    assert "## " not in r.stdout and len(r.stdout.splitlines()) <= 6
    r = subprocess.run([sys.executable, "-m", "dim", "report", str(run), "--print"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0 and r.stdout.startswith((run / "report" / "report.md").read_text()[:200])
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


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "dim", *args], capture_output=True, text=True, env=env)


@pytest.mark.slow   # trains a model
def test_cli_fetch_train_load(data_dir, tmp_path):
    r = run_cli("data", "fetch", "--data-dir", str(data_dir))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "m"
    r = run_cli("train", "single_im", "--out", str(out), "--epochs", "2", "--limit", "300", "--eval-limit", "300",
                "--data-dir", str(data_dir), "--set", "batch_size=32")
    assert r.returncode == 0, r.stderr
    assert "single_im: clean accuracy" in r.stdout
    model = dim.load_model(out)
    assert model.card["config"]["train"]["batch_size"] == 32


@pytest.mark.parametrize("args, message", [
    (["data", "fetch", "--source", "/nonexistent/dir"], "folder does not exist"),
    (["train", "nope"], "unknown model 'nope'"),
    (["train", "bidim"], "inference variant"),
    (["info", "/nonexistent"], "does not exist"),
    (["train", "dim", "--set", "nonsense"], "key=value"),
])
def test_cli_errors_are_clear(args, message, tmp_path):
    r = run_cli(*args)
    assert r.returncode == 2 and message in r.stderr, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr


def _cli_commands(group, prefix=()):
    """Every command of the CLI with its path, from its click group (a new command is tested the day it is added)."""
    yield list(prefix), group
    for name, cmd in getattr(group, "commands", {}).items():
        yield from _cli_commands(cmd, (*prefix, name))


def test_cli_help_everywhere():
    import typer
    from typer.testing import CliRunner

    from dim.cli import app
    commands = list(_cli_commands(typer.main.get_command(app)))
    paths = [path for path, _ in commands]
    assert ["evaluate"] in paths and ["data", "fetch"] in paths and len(paths) >= 12
    runner = CliRunner()
    for path, cmd in commands:   # in process: one interpreter start per command would cost a second each
        r = runner.invoke(app, [*path, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output, (path, r.output)
        # every word of an option's help reaches the page: rich markup eats "[name]" unless escaped
        shown = set(r.output.replace("│", " ").split())
        for param in cmd.params:
            wanted = {w for w in (getattr(param, "help", None) or "").replace("\\[", "[").split() if "[" in w}
            assert wanted <= shown, (path, param.name, wanted - shown)
    r = run_cli("--help")   # and the real entry point once
    assert r.returncode == 0 and "evaluate" in r.stdout


def test_a_ray_address_where_nothing_answers_is_one_error_before_ray_starts_and_touches_nothing(tmp_path):
    """The address is refused by the executor's own check (its message), before Ray's retries and warnings (at most
    three lines of stderr); how long the check may take is tested on the check itself (the whole command's time is
    mostly its imports, which a loaded machine stretches)."""
    r = run_cli("evaluate", "--model-factory", "evalkit:tiny_model", "--executor", "ray", "--ray-address",
                "127.0.0.1:1", "--n", "10", "--run", str(tmp_path / "run"),
                env={**os.environ, "DIM_NO_PROGRESS": "1",
                     "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))})
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("error:") == 1 and "127.0.0.1:1: nothing answers there" in " ".join(r.stderr.split())
    assert len(r.stderr.strip().splitlines()) <= 3 and not (tmp_path / "run").exists()


def test_the_ray_address_check_answers_within_its_timeout():
    """Ray itself retries an unreachable address for about 20 s; the check gives up after its timeout (3 s), and a
    closed loopback port refuses at once."""
    import time

    from dim.evaluation.executors.ray_executor import check_reachable
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="127.0.0.1:1: nothing answers there"):
        check_reachable("127.0.0.1:1", timeout=3.0)
    assert time.perf_counter() - t0 < 3.0 + 2.0


def test_threads_fix_the_cpu_threads_of_every_unit_and_are_given_back(tiny, test_data):
    """--threads: each unit runs on exactly that many torch threads (serial and Ray run units through the same
    execute), and the process's own setting is restored after it."""
    import numpy as np
    import torch

    from dim.attacks import register_adapter
    from dim.core.verify import Unverified
    from dim.evaluation.execute import execute
    from dim.evaluation.units import AttackUnit
    seen = []

    @register_adapter("count_threads")
    def count_threads(spec, model, x, y, seed, **_):
        seen.append(torch.get_num_threads())
        return Unverified(np.full(x.shape, np.nan, np.float32))

    x, y = test_data
    spec = AttackSpec("Linf threads", "count_threads", Norm.LINF)
    unit = AttackUnit("tiny", spec, count_threads, 0, np.arange(4), x[:4], y[:4], y[:4], 0)
    before = torch.get_num_threads()
    for threads in (1, 2):
        assert execute(unit, tiny, "cpu", threads).status == "done"
    assert seen == [1, 2] and torch.get_num_threads() == before


# Runs a CLI command in a fresh interpreter and reports whether torch was imported on the way.
FRESH_CLI = ("import sys\nfrom dim.cli import app\ntry:\n    app(sys.argv[1:], prog_name='dim')\n"
             "except SystemExit as e:\n    code = e.code\nprint('exit', code, 'torch' in sys.modules)")


def test_the_commands_that_only_read_start_without_torch(tiny, test_data, tmp_path):
    """``--help``, ``dim status`` and ``dim data`` never compute: importing torch (seconds) is left to the commands
    that do, and a user's failed command still gets its one-line error."""
    x, y = test_data
    run = tmp_path / "run"
    evaluate_models([EvalModel("m", tiny)], x[:10], y[:10], suite=(AttackSpec("Linf FGSM", "LinfFastGradientAttack",
                                                                              Norm.LINF),),
                    run_dir=run, batch_size=10, show=False, checks=False)
    env = {**os.environ, "DIM_NO_PROGRESS": "1"}
    for args, code in ((["--help"], 0), (["status", str(run)], 0), (["data", "--help"], 0),
                       (["status", str(tmp_path / "none")], 2)):
        r = subprocess.run([sys.executable, "-c", FRESH_CLI, *args], capture_output=True, text=True, env=env)
        assert r.stdout.strip().endswith(f"exit {code} False"), (args, r.stdout[-500:], r.stderr[-2000:])
    # the checkpoint's errors are still one line (their module, and torch, imported when they happen)
    (tmp_path / "model").mkdir()
    r = subprocess.run([sys.executable, "-c", FRESH_CLI, "info", str(tmp_path / "model")], capture_output=True,
                       text=True, env=env)
    assert r.stdout.strip().endswith("exit 2 True") and "error:" in r.stderr and "Traceback" not in r.stderr, r.stderr
