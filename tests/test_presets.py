"""Each preset of ``dim reproduce`` would reproduce the cards committed in ``results/``."""
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from dim import data
from dim.pipeline import ALL, PRESETS, ensure_model, inference_dir, model_dir_name, reproduce
from dim.evaluation.runner import data_sha256
from dim.models.registry import get_entry, resolve_config, shape_config
from dim.train.loop import RECIPES

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
CARDS = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def _cards_of(preset):
    return {m: CARDS[m] for m in preset.models if m in CARDS}


# the pooled result behind each preset of several image ranges: it lists the cards of its ranges
POOLED = {"every-norm": ROOT / "benchmarks" / "results" / "pooled_bidim_at_ramp_dnramp_w08_mt_n1000.json"}


def _committed(name):
    """``[(model, card)]`` the preset's committed cards: ``results/<model>.json``, or each range's card."""
    preset = PRESETS[name]
    if len(preset.starts) == 1:
        return list(_cards_of(preset).items())
    pooled = json.loads(POOLED[name].read_text())
    return [(pooled["model"], json.loads((ROOT / c["path"]).read_text())) for c in pooled["cards"]]


def _suite(name):
    """A suite's attacks by name (a committed run may name a suite file, relative to the repository)."""
    from dim.attacks.suites import get_suite
    return {s.name: s for s in get_suite(name)}


@pytest.mark.parametrize("name", [n for n in ALL if _committed(n)])
def test_the_preset_plans_what_the_committed_cards_record(name, data_dir, monkeypatch):
    monkeypatch.chdir(ROOT)
    preset = PRESETS[name]
    committed = _committed(name)
    assert sorted({m for m, _ in committed}) == sorted(preset.models), "cards for every model the preset evaluates"
    starts = sorted({int((c["evaluation"].get("images") or {}).get("start", 0)) for _, c in committed})
    assert starts == sorted(preset.starts) and len(committed) == len(preset.starts) * len(preset.models)
    spec = data.get_spec("mnist")
    x, y = data.load_split("mnist", "test", data_dir, limit=max(preset.starts) + preset.n)
    for model, card in committed:
        ev, mc = card["evaluation"], card["model_card"]
        start = int((ev.get("images") or {}).get("start", 0))
        assert (ev["n"], ev["seed"], ev["dataset"]) == (preset.n, 0, "mnist"), model
        assert ev["suite"] == preset.suite or _suite(ev["suite"]) == _suite(preset.suite), (model, ev["suite"])
        assert ev["data_sha256"] == data_sha256(x[start:start + preset.n], y[start:start + preset.n]), model
        entry = get_entry(model)
        inference = dict(preset.inference.get(model, {}))
        settings = dict(preset.settings.get(model, {}))
        want_model = dataclasses.asdict(resolve_config(model, {**shape_config(model, spec.input_shape,
                                                                              spec.num_classes),
                                                               **settings, **inference}))
        # a setting added to the model's config after the card was written counts as its default
        defaults = json.loads(json.dumps(dataclasses.asdict(resolve_config(model, {}))))
        assert {**defaults, **mc["config"]["model"]} == json.loads(json.dumps(want_model)), model
        if entry.weights_from or inference:
            assert mc["weights_from"]["model"] == (entry.weights_from or model), model
            assert mc["weights_from"]["overrides"] == inference, model
        else:   # trained with its recipe's defaults and the settings the preset pins
            config_cls = RECIPES[entry.recipe].config_cls
            want_train = dataclasses.asdict(config_cls(**preset.recipes.get(model, {})))
            # a setting added to the recipe after the card was written counts as its default
            have_train = {**json.loads(json.dumps(dataclasses.asdict(config_cls()))), **mc["config"]["train"]}
            assert have_train == json.loads(json.dumps(want_train)), model


def test_the_quoted_model_s_preset_trains_what_its_committed_weights_hold(data_dir):
    """The committed weights of the model the README quotes are what ``every-norm`` would train: the preset takes
    them as its model (copied into the directory it trains into) and refuses them with another ramp."""
    preset = PRESETS["every-norm"]
    card_file = ROOT / "weights" / "bidim_at_ramp_dnramp_w08" / "card.json"
    card = json.loads(card_file.read_text())
    pooled = json.loads(POOLED["every-norm"].read_text())
    assert pooled["card_sha256"] == hashlib.sha256(card_file.read_bytes()).hexdigest()
    from dim.pipeline import _check_trained, model_config_diff
    assert model_config_diff("bidim_at_ramp", card, "mnist", preset.settings["bidim_at_ramp"]) == {}
    _check_trained(card_file.parent, "bidim_at_ramp", "mnist", preset.recipes["bidim_at_ramp"],
                   preset.settings["bidim_at_ramp"])     # recipe and model config: taken as the preset's model
    assert model_config_diff("bidim_at_ramp", card, "mnist") == {"denoiser_binarize_width": (0.8, 0.0)}
    with pytest.raises(ValueError, match=r"another model config \(denoiser_binarize_width: has 0.8, wants 0.4\)"):
        _check_trained(card_file.parent, "bidim_at_ramp", "mnist",
                       preset.recipes["bidim_at_ramp"], {"denoiser_binarize_width": 0.4})
    assert model_dir_name("bidim_at_ramp", preset.recipes, preset.settings) == \
        "bidim_at_ramp-clean_weight1.0-denoiser_binarize_width0.8"


def test_every_preset_names_registered_models_and_a_valid_suite():
    from dim.attacks.suites import get_suite
    for name, preset in PRESETS.items():
        assert get_suite(preset.suite), name
        for m in preset.models:
            get_entry(m)
        assert set(preset.inference) <= set(preset.models), name
    assert inference_dir("abs", {"n_steps": 10, "n_random": 1000}) == "abs-n_random1000-n_steps10"


def test_an_unknown_preset_is_refused_naming_the_presets(tmp_path):
    with pytest.raises(ValueError, match="table1"):
        reproduce("table9", tmp_path / "run", tmp_path / "models")
    assert not (tmp_path / "run").exists()


def test_a_pinned_recipe_trains_into_its_own_directory_and_derived_models_follow():
    from dim.pipeline import model_dir_name
    pinned = PRESETS["table1"].recipes
    assert pinned["dim"] == {"lr": 3e-3}
    assert model_dir_name("dim", pinned) == "dim-lr0.003" and model_dir_name("bidim", pinned) == "bidim-lr0.003"
    assert model_dir_name("cnn", pinned) == "cnn" and model_dir_name("dim") == "dim"


def test_a_model_trained_with_another_recipe_is_refused_not_evaluated_as_the_preset_s(tmp_path, data_dir):
    from dim.pipeline import ensure_model
    from dim.train.score import ScoreTrainConfig
    old = {**dataclasses.asdict(ScoreTrainConfig()), "lr": 3e-3}
    (tmp_path / "dim").mkdir()
    (tmp_path / "dim" / "card.json").write_text(json.dumps({"model": "dim", "dataset": "mnist",
                                                            "config": {"train": old}}))
    with pytest.raises(ValueError, match=r"dim.*another recipe \(lr: has 0.003, wants 0.002\)"):
        ensure_model("dim", tmp_path, data_dir)
    (tmp_path / "dim-lr0.003").mkdir()
    (tmp_path / "dim-lr0.003" / "card.json").write_text((tmp_path / "dim" / "card.json").read_text())
    assert ensure_model("dim", tmp_path, data_dir, recipes={"dim": {"lr": 3e-3}}) == tmp_path / "dim-lr0.003"


def test_reproduce_refuses_a_model_of_another_recipe_before_training_anything(tmp_path, data_dir):
    from dim.train.score import ScoreTrainConfig
    models = tmp_path / "models"
    (models / "dim").mkdir(parents=True)
    (models / "dim" / "card.json").write_text(json.dumps({"model": "dim", "dataset": "mnist", "config": {
        "train": {**dataclasses.asdict(ScoreTrainConfig()), "lr": 3e-3}}}))
    with pytest.raises(ValueError, match=r"another recipe \(lr: has 0.003, wants 0.002\)"):
        reproduce("quick", tmp_path / "run", models, data_dir)
    assert sorted(p.name for p in models.iterdir()) == ["dim"] and not (tmp_path / "run").exists()


def test_a_card_written_before_a_setting_existed_counts_as_that_setting_s_default(tmp_path, data_dir):
    """The committed msd_cnn card predates the inner attack's ``mode``: the preset takes it as trained with the
    default, and still refuses it when a non-default value is pinned."""
    card = json.loads((ROOT / "weights" / "msd_cnn" / "card.json").read_text())
    assert "mode" not in card["config"]["train"]
    (tmp_path / "msd_cnn").mkdir()
    (tmp_path / "msd_cnn" / "card.json").write_text(json.dumps(card))
    assert ensure_model("msd_cnn", tmp_path, data_dir) == tmp_path / "msd_cnn"
    pinned = {"msd_cnn": {"mode": "max"}}
    (tmp_path / model_dir_name("msd_cnn", pinned)).mkdir()
    (tmp_path / model_dir_name("msd_cnn", pinned) / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"another recipe \(mode: has 'msd', wants 'max'\)"):
        ensure_model("msd_cnn", tmp_path, data_dir, recipes=pinned)


def test_reproduce_help_names_every_preset():
    """The ``--preset`` help is written by hand (the CLI does not import the pipeline before a command runs, which
    would import torch): a preset added to ``PRESETS`` without it is found here."""
    from typer.testing import CliRunner

    from dim.cli import app
    r = CliRunner().invoke(app, ["reproduce", "--help"])
    assert r.exit_code == 0, r.output
    words = {w.strip(",;:()") for w in r.output.replace("│", " ").split()}
    missing = sorted(set(PRESETS) - words)
    assert not missing, f"presets missing from `dim reproduce --help`: {missing}"


@pytest.mark.slow
def test_a_preset_of_several_image_ranges_runs_each_as_dim_evaluate_start_would_and_pools_them(
        trained_dim, data_dir, tmp_path, monkeypatch):
    """Each range is a run of its own, the same as ``dim evaluate --start`` makes (its images, its card), and the
    pooled card adds the ranges' counts."""
    import shutil

    from dim.pipeline import Preset
    dim_dir, card = trained_dim
    defaults = json.loads(json.dumps(dataclasses.asdict(RECIPES[get_entry("dim").recipe].config_cls())))
    pinned = {k: v for k, v in card["config"]["train"].items() if defaults.get(k) != v}
    preset = Preset(("dim",), "quick:Linf FGSM", 12, batch_size=6, recipes={"dim": pinned}, starts=(0, 12))
    monkeypatch.setitem(PRESETS, "two-ranges", preset)
    models = tmp_path / "models"
    shutil.copytree(dim_dir, models / model_dir_name("dim", preset.recipes))
    from typer.testing import CliRunner

    from dim.cli import app
    r = CliRunner().invoke(app, ["reproduce", "--preset", "two-ranges", "--run", str(tmp_path / "run"),
                                 "--models-dir", str(models), "--data-dir", str(data_dir)])
    assert r.exit_code == 0, r.output
    runs = preset.runs(tmp_path / "run")
    assert [r.name for r in runs] == ["images-0", "images-12"]
    x, y = data.load_split("mnist", "test", data_dir, limit=24)
    cards = [json.loads((r / "report" / "cards" / "dim.json").read_text()) for r in runs]
    for c, start in zip(cards, (0, 12)):
        assert c["evaluation"]["n"] == 12 and (c["evaluation"].get("images") or {}).get("start", 0) == start
        assert c["evaluation"]["data_sha256"] == data_sha256(x[start:start + 12], y[start:start + 12])
    pooled = json.loads((tmp_path / "run" / "pooled" / "dim.json").read_text())
    assert pooled["n"] == 24 and [c["images"] for c in pooled["cards"]] == [[0, 11], [12, 23]]
    assert pooled["clean"]["robust"] == sum(round(c["clean_accuracy"] * 12) for c in cards)
    linf = [round(c["incl_adaptive"]["per_norm"]["Linf"]["accuracy"] * 12) for c in cards]
    assert pooled["incl_adaptive"]["per_norm"]["Linf"]["robust"] == sum(linf)
    assert sorted(p.name for p in models.iterdir()) == [model_dir_name("dim", preset.recipes)]  # nothing retrained
    assert "pooled over every range" in r.output        # the command ends with the pooled row, not the last range's
    assert r.output.rstrip().split("pooled over every range")[1].count("| DIM (`dim`)") == 1
