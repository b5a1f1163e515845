"""Each preset of ``dim reproduce`` would reproduce the cards committed in ``results/``."""
import dataclasses
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


@pytest.mark.parametrize("name", [n for n in ALL if _cards_of(PRESETS[n])])
def test_the_preset_plans_what_the_committed_cards_record(name, data_dir):
    preset = PRESETS[name]
    cards = _cards_of(preset)
    assert sorted(cards) == sorted(preset.models), "a preset with cards has one for every model it evaluates"
    x, y = data.load_split("mnist", "test", data_dir, limit=preset.n)
    spec = data.get_spec("mnist")
    for model, card in cards.items():
        ev, mc = card["evaluation"], card["model_card"]
        assert (ev["suite"], ev["n"], ev["seed"], ev["dataset"]) == (preset.suite, preset.n, 0, "mnist"), model
        assert ev["data_sha256"] == data_sha256(x, y), model
        entry = get_entry(model)
        overrides = dict(preset.inference.get(model, {}))
        want_model = dataclasses.asdict(resolve_config(model, {**shape_config(model, spec.input_shape,
                                                                              spec.num_classes), **overrides}))
        # a setting added to the model's config after the card was written counts as its default
        defaults = json.loads(json.dumps(dataclasses.asdict(resolve_config(model, {}))))
        assert {**defaults, **mc["config"]["model"]} == json.loads(json.dumps(want_model)), model
        if entry.weights_from or overrides:
            assert mc["weights_from"]["model"] == (entry.weights_from or model), model
            assert mc["weights_from"]["overrides"] == overrides, model
        else:   # trained with its recipe's defaults and the settings the preset pins
            config_cls = RECIPES[entry.recipe].config_cls
            want_train = dataclasses.asdict(config_cls(**preset.recipes.get(model, {})))
            # a setting added to the recipe after the card was written counts as its default
            have_train = {**json.loads(json.dumps(dataclasses.asdict(config_cls()))), **mc["config"]["train"]}
            assert have_train == json.loads(json.dumps(want_train)), model


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
