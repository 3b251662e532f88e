"""The model card of a saved folder reads the recipe registry: each recipe's summary and its stages' labels, the
SimCSE term's weights for the combined recipe, and the evaluation table once one is recorded."""

import json

import pytest

from text2token.layout import MODEL_CONFIG_NAME
from text2token.model_card import record_evaluation, write_model_card
from text2token.recipes import RECIPES, STAGES


def _settings(objective):
    stages = RECIPES[objective].stages(["data", "model"])
    training = {
        "objective": objective,
        "stages": stages,
        "seconds": 12.5,
        "config": {
            "objective": objective,
            "description": "a test recipe",
            "combined": {"token_weight": 1.0, "simcse_weight": 0.5},
            "stage2": {"tau": 0.01},
            "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj"]},
        },
    }
    for key in stages:
        training[f"stage_{key}"] = {"steps": 3, "lr": 5e-5, "seconds_per_step": 0.1}
    return {
        "pooling": "mean",
        "attention": "causal",
        "template": None,
        "max_length": 64,
        "provenance": {"backbone": "tiny"},
        "training": training,
    }


@pytest.mark.parametrize("objective", list(RECIPES))
def test_the_card_names_the_recipe_its_stages_and_the_combined_weights(tmp_path, objective):
    write_model_card(tmp_path, _settings(objective))
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert f"objective: `{objective}` — {RECIPES[objective].summary}" in card
    assert "- recipe: a test recipe" in card and "Backbone `tiny`" in card
    for key in RECIPES[objective].stages(["data", "model"]):
        assert f"- {STAGES[key].label}: 3 steps" in card
    assert ("0.5×SimCSE" in card) == RECIPES[objective].simcse_term
    assert "Not evaluated yet" in card


def test_recording_an_evaluation_regenerates_the_card_with_its_table(tmp_path):
    settings = _settings("combined")
    (tmp_path / MODEL_CONFIG_NAME).write_text(json.dumps(settings))
    evaluation = {
        "suite": "demo",
        "mean": 41.25,
        "tasks": {
            "WordSim353": {"type": "WordSimilarity", "metric": "spearman", "main_score": 40.0},
            "MiniNewsgroupsClustering": {"type": "Clustering", "metric": "v_measure", "main_score": 42.5},
        },
    }
    record_evaluation(tmp_path, evaluation)
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "| WordSim353 | WordSimilarity | spearman | 40.00 |" in card and "**41.25**" in card
    assert "Not evaluated yet" not in card
    assert json.loads((tmp_path / MODEL_CONFIG_NAME).read_text())["evaluation"] == evaluation
