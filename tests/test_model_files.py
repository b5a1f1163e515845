"""A model as users have it: TorchScript, a torch.export program, or a state dict with the function that builds
its architecture (module or file path), labelled with --name, from the CLI and from dim.evaluate."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import dim
import evalkit
from dim.models.files import ModelFileError

SUITE = "quick:Linf FGSM,L2 DDN"
ARCH = "import torch.nn as nn\n\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"


def _rows(run):
    return [(a, s, d, p) for _, a, s, d, p in evalkit.rows(run)]


@pytest.fixture(scope="module")
def reference(tiny, test_data, tmp_path_factory):
    """The shared tiny model evaluated as a live module: the rows every file of it must give again."""
    run = tmp_path_factory.mktemp("live")
    x, y = test_data
    dim.evaluate(tiny, x[:20], y[:20], suite=SUITE, run_dir=run, show=False, checks=False, report=False)
    return _rows(run)


def test_a_torchscript_file_from_the_cli_with_a_name(tiny, reference, data_dir, tmp_path):
    torch.jit.save(torch.jit.script(tiny), str(tmp_path / "tinynet.pt"))
    r = subprocess.run([sys.executable, "-m", "dim", "evaluate", str(tmp_path / "tinynet.pt"), "--name", "mine",
                        "--suite", SUITE, "--n", "20", "--batch-size", "100", "--no-checks", "--no-report",
                        "--run", str(tmp_path / "run")], capture_output=True, text=True,
                       env={**os.environ, "DIM_NO_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr
    assert {m for m, *_ in evalkit.rows(tmp_path / "run")} == {"mine"}
    assert _rows(tmp_path / "run") == reference


def test_an_exported_program_gives_the_same_rows(tiny, test_data, reference, tmp_path):
    x, y = test_data
    program = torch.export.export(tiny, (torch.from_numpy(x[:2]),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, str(tmp_path / "tiny.pt2"))
    dim.evaluate(tmp_path / "tiny.pt2", x[:20], y[:20], suite=SUITE, run_dir=tmp_path / "run", show=False,
                 checks=False, report=False)
    assert _rows(tmp_path / "run") == reference


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_state_dict_with_a_factory_file(tiny, test_data, reference, tmp_path, suffix):
    x, y = test_data
    (tmp_path / "arch.py").write_text(ARCH)
    weights = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(tiny.state_dict(), weights)
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(weights))
    with pytest.raises(ModelFileError, match=r"a state dict holds weights, not the architecture.*--model-factory"):
        dim.evaluate(weights, x, y, suite=SUITE, run_dir=tmp_path / "no", show=False)
    assert not (tmp_path / "no").exists()
    results = dim.evaluate(weights, x[:20], y[:20], factory=f"{tmp_path / 'arch.py'}:build", name="mine",
                           suite=SUITE, run_dir=tmp_path / "run", show=False, checks=False, report=False)
    assert [r.model for r in results] == ["mine"] and _rows(tmp_path / "run") == reference


def test_a_factory_module_in_the_current_directory_from_the_cli(tiny, reference, data_dir, tmp_path):
    """``--model-factory arch:build`` with arch.py where the command runs (no PYTHONPATH), on a state dict."""
    (tmp_path / "arch.py").write_text(ARCH)
    torch.save(tiny.state_dict(), tmp_path / "w.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-m", "dim", "evaluate", "w.pt", "--model-factory", "arch:build",
                        "--suite", SUITE, "--n", "20", "--no-checks", "--no-report", "--run", "run"],
                       capture_output=True, text=True, cwd=tmp_path, env={**env, "DIM_NO_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr
    assert _rows(tmp_path / "run") == reference and {m for m, *_ in evalkit.rows(tmp_path / "run")} == {"w"}


@pytest.mark.parametrize("make, message", [
    (lambda m, p: torch.save(m, p), r"a whole pickled model is not loaded.*state_dict\(\)"),
    (lambda m, p: p.write_text("not a model"), r"not a model file torch can read"),
])
def test_a_file_that_is_no_model_is_one_clear_error(tiny, test_data, tmp_path, make, message):
    x, y = test_data
    make(tiny, tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match=message):
        dim.evaluate(tmp_path / "m.pt", x, y, factory=evalkit.tiny_model, suite=SUITE, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("factory, message", [
    ("nowhere_module:build", r"cannot import 'nowhere_module'.*path/to/file.py:function"),
    ("missing.py:build", r"missing.py does not exist"),
    ("build", r"expected package.module:function or path/to/file.py:function"),
])
def test_a_factory_that_cannot_be_found_says_how_to_give_one(factory, message):
    with pytest.raises(ModelFileError, match=message):
        dim.api.eval_models(factories=[factory])


def test_a_function_is_a_model_too(test_data, tmp_path):
    x, y = test_data
    (result,) = dim.evaluate(evalkit.tiny_model, x[:10], y[:10], suite="quick:Linf FGSM", run_dir=tmp_path,
                             show=False, checks=False, report=False)
    assert result.model == "tiny_model" and np.isfinite(result.clean_accuracy)


@pytest.mark.slow   # a local Ray cluster
def test_model_files_travel_to_ray_workers(tiny, test_data, reference, tmp_path):
    """TorchScript and exported programs do not pickle: the file itself travels (and a factory's file with a
    state dict), and the workers store what a serial run stores."""
    x, y = test_data
    torch.jit.save(torch.jit.script(tiny), str(tmp_path / "ts.pt"))
    (tmp_path / "arch.py").write_text(ARCH)
    torch.save(tiny.state_dict(), tmp_path / "w.pt")
    import ray
    from dim.evaluation.executors import ray_executor
    ray_executor.connect(ray, None)   # one local cluster for both runs (each would start and stop its own)
    try:
        for name, kw in (("ts.pt", {}), ("w.pt", {"factory": f"{tmp_path / 'arch.py'}:build"})):
            dim.evaluate(tmp_path / name, x[:20], y[:20], suite=SUITE, run_dir=tmp_path / f"run-{name}",
                         show=False, checks=False, report=False, executor="ray", **kw)
            assert _rows(tmp_path / f"run-{name}") == reference, name
    finally:
        ray.shutdown()
