"""The Ray executor: same rows as serial, a simulated two-node cluster, and every fault case of a worker, a task and a driver."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evalkit
from dim import data
from dim.attacks.spec import AttackSpec
from dim.core.norms import Norm
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.report import build_report
from dim.store import Store

pytestmark = pytest.mark.slow   # local Ray clusters

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'dim[ray]')")

TESTS = Path(__file__).resolve().parent

# Units of different lengths, so that they finish out of plan order under Ray, and one that waits for the
# adversarials of the two before it (as Brendel-Bethge does).
SUITE = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),
         AttackSpec("Linf PGD", "LinfProjectedGradientDescentAttack", Norm.LINF, {"steps": 10}),
         AttackSpec("L2 DDN", "DDNAttack", Norm.L2, {"steps": 20}),
         AttackSpec("Linf from best", "from_best", Norm.LINF, starting_points=True))


@pytest.fixture(scope="module")
def xy(data_dir):
    return data.load_split("mnist", "test", limit=60)


def _rows(run: Path) -> list[tuple]:
    store = Store.of_run(run, read_only=True)
    try:
        return sorted((r.model, r.attack, r.sample, round(r.distance, 6), r.pred) for r in store.results())
    finally:
        store.close()


def _evaluate(run: Path, xy, models: int = 2, **kw) -> None:
    x, y = xy
    both = [EvalModel("tiny", evalkit.tiny_model()), EvalModel("other", evalkit.tiny_model(seed=1))]
    evaluate_models(both[:models], x, y, suite=kw.pop("suite", SUITE), run_dir=run, batch_size=20, seed=3,
                    show=False, **kw)


@pytest.fixture(scope="module")
def serial_run(xy, tmp_path_factory):
    run = tmp_path_factory.mktemp("serial")
    _evaluate(run, xy, checks=True)
    return run


def test_ray_stores_the_same_rows_and_tables_as_serial(serial_run, xy, tmp_path):
    _evaluate(tmp_path, xy, checks=True, executor="ray")
    assert len(_rows(serial_run)) == 2 * len(SUITE) * 60
    assert _rows(tmp_path) == _rows(serial_run)
    store = Store.of_run(tmp_path, read_only=True)
    try:
        assert store.get_meta("checks/tiny") is not None                # the sanity checks ran as units too
        assert store.get_meta("provenance")["executors"] == ["ray"]
        assert {s["status"] for s in store.shards()} == {"done"}
    finally:
        store.close()
    a, b = build_report(serial_run, plots=False), build_report(tmp_path, plots=False)
    for table in ("table1.md", "table1.csv"):
        assert (a / table).read_text() == (b / table).read_text()
    assert not ray.is_initialized()                                     # the local cluster it started is gone


def test_a_simulated_two_node_cluster_gives_the_same_rows(serial_run, xy, tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        _evaluate(tmp_path, xy, checks=True, executor="ray", ray_address=cluster.address)
    finally:
        cluster.shutdown()
    assert _rows(tmp_path) == _rows(serial_run)


def test_faults_a_killed_worker_is_retried_and_a_raising_attack_is_stored_once_as_failed(xy, tmp_path):
    marker = tmp_path / "died"
    suite = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),
             AttackSpec("Linf dies once", "dies_once", Norm.LINF, {"marker": str(marker)}),
             AttackSpec("Linf broken", "broken", Norm.LINF))
    run = tmp_path / "run"
    t0 = time.perf_counter()
    _evaluate(run, xy, models=1, suite=suite, checks=False, executor="ray")
    print(f"faults run: {time.perf_counter() - t0:.1f} s")
    assert marker.is_file()                                            # a worker really died mid-unit
    store = Store.of_run(run, read_only=True)
    try:
        status = {(s["model"], s["attack"], s["shard"]): s["status"] for s in store.shards()}
        assert all(v == "done" for k, v in status.items() if k[1] != "Linf broken")
        assert all(v == "failed" for k, v in status.items() if k[1] == "Linf broken") and len(status) == 3 * 3
        attempts = store.attempts("tiny", "Linf broken", 0)
        assert len(attempts) == 1 and "this attack always fails" in attempts[0]["error"]   # not retried by Ray
        rows = store.rows("tiny", "Linf dies once")
    finally:
        store.close()
    assert sorted(r.sample for r in rows) == list(range(60))           # its rows stored exactly once


def test_a_sigkilled_ray_driver_resumes_with_nothing_lost_or_duplicated(tmp_path, data_dir, monkeypatch):
    script = tmp_path / "run.py"
    script.write_text(evalkit.KILLABLE_RUN.format(tests=str(TESTS)))
    env = {**os.environ, "DIM_NO_PROGRESS": "1", "DIM_TEST_SLOW": "1.5",    # seconds per slow unit
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    monkeypatch.setenv("DIM_TEST_SLOW", "0")
    evalkit.killable_run(str(ref), "serial")     # the reference, in this process
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "ray"], env=env, start_new_session=True)
    deadline = time.time() + 180
    while evalkit.done_shards(killed / "results.sqlite") < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    status = subprocess.run([sys.executable, "-m", "dim", "status", str(killed)], capture_output=True, text=True,
                            env=env)                                  # while the Ray run goes on
    assert status.returncode == 0 and "tiny: " in status.stdout, status.stderr
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= evalkit.done_shards(killed / "results.sqlite") < 24
    # the killed driver left its lock file, which blocks nothing
    subprocess.run([sys.executable, str(script), str(killed), "ray"], check=True, env={**env, "DIM_TEST_SLOW": "0"},
                   timeout=300)   # the resumed run need not be slow
    if _group_alive(proc.pid):      # whatever of the killed driver's local Ray cluster outlived it
        os.killpg(proc.pid, signal.SIGKILL)
    assert _rows(killed) == _rows(ref) and len(_rows(ref)) == 2 * 48
    a, b = build_report(ref, plots=False), build_report(killed, plots=False)
    assert (a / "table1.md").read_text() == (b / "table1.md").read_text()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_a_model_directory_travels_as_its_files_and_is_checked_on_arrival(xy, tmp_path, data_dir):
    """What a worker loads is what the driver evaluated: the directory's weights and card, checked by sha256;
    anything else travels as the module itself."""
    import dataclasses

    import torch
    from dim.api import eval_model_from_dir
    from dim.evaluation.executors.ray_executor import ModelPayload
    from dim.train import train
    train("cnn", tmp_path / "cnn", epochs=1, limit=200, eval_limit=100, data_dir=data_dir, show=False)
    m = eval_model_from_dir(tmp_path / "cnn", device="cpu")
    payload = ModelPayload.of(m)
    assert payload.module is None and set(payload.files) == {"model.safetensors", "card.json"}
    x = torch.from_numpy(xy[0][:5])
    with torch.no_grad():
        assert torch.equal(payload.load(torch.device("cpu"))(x), m.model(x))
    forged = dataclasses.replace(payload, files={**payload.files, "card.json": payload.files["card.json"] + b" "})
    with pytest.raises(ValueError, match="differs from the driver's"):
        forged.load(torch.device("cpu"))
    plain = ModelPayload.of(EvalModel("tiny", evalkit.tiny_model()))
    assert plain.files is None and isinstance(plain.module, torch.nn.Module)


def test_reproduce_trains_the_missing_base_models_as_parallel_ray_tasks(tmp_path, data_dir):
    from dim.checkpoint import load_model, read_card
    from dim.pipeline import train_on_ray
    from dim.pipeline import base_models
    from dim.evaluation.spec import RunSpec
    models = tmp_path / "models"
    assert base_models(["cnn", "bicnn", "madry"], models) == ["cnn", "madry"]   # bicnn is derived from cnn
    (models / "cnn").mkdir(parents=True)            # a training that never finished: no card, replaced
    train_on_ray(["cnn", "madry"], models, RunSpec(run_dir=tmp_path / "run", executor="ray", data_dir=data_dir),
                 epochs=1, limit=500, eval_limit=100)
    for name in ("cnn", "madry"):
        assert read_card(models / name)["model"] == name and load_model(models / name, device="cpu") is not None
    assert base_models(["cnn", "bicnn", "madry"], models) == []
    assert not list(models.glob(".*.incoming")) and not ray.is_initialized()


def test_an_unknown_executor_is_one_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dim", "evaluate", "--model-factory", "evalkit:tiny_model", "--run",
                        str(tmp_path / "run"), "--executor", "threads"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert r.returncode == 2 and "executor 'threads': expected one of ['ray', 'serial']" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


def test_without_ray_the_ray_executor_is_one_clear_error_before_the_run_is_touched(xy, tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ValueError, match=r"--executor ray needs Ray: pip install 'dim\[ray\]'"):
        _evaluate(tmp_path / "run", xy, models=1, checks=False, executor="ray")
    assert not (tmp_path / "run").exists()
