"""The recipe registry (text2token.recipes) is what every consumer reads: for each recipe, a finished tiny run's
report lists exactly the recipe's stages as finished, its model card names the recipe, and a resume may grow every
stage's steps."""

import json
import re

import pytest
import yaml
from helpers import tiny_run_config

from text2token.cli import main
from text2token.cli.parser import build_parser
from text2token.modes import Objective
from text2token.recipes import RECIPES, STAGES, resume_safe_keys

# Each recipe at its smallest: one or two steps per stage on the tiny model.
TINY_STEPS = [
    "stages=[data,model]",
    "stage1.steps=2",
    "stage2.steps=1",
    "stage2.max_texts=8",
    "stage2.tau=0.1",
    "simcse.steps=1",
    "mntp.steps=1",
]


def test_every_objective_has_exactly_one_recipe_and_the_cli_offers_them():
    assert set(RECIPES) == set(Objective.values())
    train = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
        if "--objective" in a.option_strings
    )
    assert tuple(train.choices) == tuple(RECIPES)
    for name, recipe in RECIPES.items():
        assert set(recipe.stages(["data", "model"])) <= set(STAGES), name


def test_every_stage_steps_may_change_on_resume():
    assert {s.steps_key for s in STAGES.values()} <= set(resume_safe_keys())


@pytest.mark.parametrize("objective", list(RECIPES))
def test_a_finished_run_reports_exactly_its_recipes_stages_and_resumes_with_more_steps(
    objective, tmp_path, tiny_model_dir, capsys
):
    cfg = tiny_run_config(tmp_path, tiny_model_dir, f"objective={objective}", *TINY_STEPS)
    run = tmp_path / "run"
    cfg.save(tmp_path / "recipe.yaml")
    assert main(["train", "--config", str(tmp_path / "recipe.yaml"), "--output", str(run)]) == 0
    expected = RECIPES[objective].stages(["data", "model"])
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    # the report's stage lines: "  <folder>: <state>"
    lines = dict(re.findall(r"^  (\S+): (.*)$", out, flags=re.M))
    mentioned = {s.key for s in STAGES.values() if s.folder in lines}
    finished = {s.key for s in STAGES.values() if "finished" in lines.get(s.folder, "")}
    assert finished == set(expected) and mentioned == set(expected), out
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    assert f"objective: `{objective}`" in card
    assert all(STAGES[key].label in card for key in expected)

    # grow every stage this recipe runs by one step: the resume continues instead of refusing
    grown = [f"{STAGES[key].steps_key}={getattr(cfg, STAGES[key].section).steps + 1}" for key in expected]
    assert main(["train", "--output", str(run), "--resume", *grown]) == 0, capsys.readouterr().err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    for key in expected:
        info = STAGES[key]
        steps = [json.loads(line)["step"] for line in (run / info.folder / "train_log.jsonl").read_text().splitlines()]
        assert steps[-1] == saved[info.section]["steps"] == getattr(cfg, info.section).steps + 1, key
