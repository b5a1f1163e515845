"""One driver per run: the run lock."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import evalkit  # noqa: F401  (registers the test adapters)
from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm
from dim.evaluation.runner import EvalModel, evaluate_models


TESTS = Path(__file__).resolve().parent


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
    assert len(evalkit.rows(tmp_path)) == len(y)


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
