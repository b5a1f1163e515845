"""No write or delete inside a run or its report goes through a symbolic link: refused, naming the link, and
nothing outside changes."""
import os

import pytest

from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm
from dim.evaluation.artifacts import shard_path
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.fileio import LinkError
from dim.report import build_report

SUITE = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),)


@pytest.fixture
def run(tiny, test_data, tmp_path):
    x, y = test_data
    evaluate_models([EvalModel("tiny", tiny)], x[:20], y[:20], suite=SUITE, run_dir=tmp_path / "run",
                    batch_size=10, show=False, checks=False)
    build_report(tmp_path / "run", plots=True)
    return tmp_path / "run"


def _outside(tmp_path):
    victim = tmp_path / "elsewhere"
    victim.mkdir(exist_ok=True)
    (victim / "precious.png").write_bytes(b"not yours")
    return victim


def test_a_linked_figure_is_not_written_through(run, tmp_path):
    victim = _outside(tmp_path)
    png = run / "report" / "accuracy_vs_eps_Linf.png"
    png.unlink()
    png.symlink_to(victim / "precious.png")
    with pytest.raises(LinkError, match=r"accuracy_vs_eps_Linf.png: is a symbolic link inside"):
        build_report(run, plots=True)
    assert (victim / "precious.png").read_bytes() == b"not yours" and png.is_symlink()


def test_a_linked_report_folder_is_refused_before_anything_is_written(run, tmp_path):
    victim = _outside(tmp_path)
    import shutil
    shutil.rmtree(run / "report")
    (run / "report").symlink_to(victim)
    with pytest.raises(LinkError, match=r"report: is a symbolic link inside"):
        build_report(run, plots=True)
    assert sorted(os.listdir(victim)) == ["precious.png"]


def test_a_linked_adversarials_folder_receives_nothing_and_loses_nothing(tiny, test_data, tmp_path):
    """A model's adversarials folder that links elsewhere: the run stops at the first write, naming the link, and
    the merge never deletes through it."""
    x, y = test_data
    victim = _outside(tmp_path)
    shards = shard_path(tmp_path / "run", "tiny", "Linf FGSM", 0).parent      # RUN/adversarials/<model>/<attack>
    (victim / shards.name).mkdir()
    (victim / shards.name / "keep.txt").write_text("mine")
    shards.parent.parent.mkdir(parents=True)
    shards.parent.symlink_to(victim)                                          # <model> links elsewhere
    with pytest.raises(LinkError, match=r"is a symbolic link inside"):
        evaluate_models([EvalModel("tiny", tiny)], x[:20], y[:20], suite=SUITE, run_dir=tmp_path / "run",
                        batch_size=10, show=False, checks=False)
    found = sorted(str(p.relative_to(victim)) for p in victim.rglob("*"))
    assert found == sorted(["precious.png", shards.name, f"{shards.name}/keep.txt"])
