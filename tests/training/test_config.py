import pytest
from helpers import REPO

from text2token.errors import ConfigError
from text2token.training import RunConfig, load_config


def test_defaults_are_valid_and_roundtrip(tmp_path):
    cfg = load_config()
    assert (
        cfg.lora.r == 16
        and cfg.lora.alpha == 32
        and cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_overrides_and_yaml_number_forms(tmp_path):
    cfg = load_config(
        None,
        [
            "stage1.lr=1e-4",
            "stage1.steps=7",
            "model.pooling=mean",
            "lora.target_modules=q_proj,v_proj",
            "data.max_texts=null",
            "model.template=null",
        ],
    )
    assert cfg.stage1.lr == 1e-4 and cfg.stage1.steps == 7 and cfg.model.pooling == "mean"
    assert cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.model.template is None


def test_each_stage_has_its_own_steps_and_lr():
    cfg = load_config(None, ["stage1.steps=3", "stage2.steps=4", "simcse.steps=5", "simcse.lr=1e-3"])
    assert (cfg.stage1.steps, cfg.stage2.steps, cfg.simcse.steps) == (3, 4, 5)
    assert cfg.simcse.lr == 1e-3 and cfg.stage1.lr == cfg.stage2.lr == 5e-5
    assert not hasattr(cfg.training, "steps") and not hasattr(cfg.training, "lr")


def test_old_keys_keep_working_with_a_deprecation_message(tmp_path, caplog):
    """training.steps/lr used to mean "stage 1, or SimCSE": they now set both sections, with a warning."""
    cfg = load_config(None, ["training.steps=7", "training.lr=1e-3"])
    assert cfg.stage1.steps == cfg.simcse.steps == 7 and cfg.stage1.lr == cfg.simcse.lr == 1e-3
    assert "'training.steps' is deprecated" in caplog.text and "stage1.steps" in caplog.text
    old_run = tmp_path / "config.yaml"  # an old run folder's config
    old_run.write_text("objective: simcse\ntraining:\n  steps: 9\n  lr: 0.01\n  batch_size: 4\n")
    cfg = load_config(old_run)
    assert cfg.simcse.steps == 9 and cfg.simcse.lr == 0.01 and cfg.training.batch_size == 4
    # an override with the old key wins over the file's new key, as any later override does
    assert load_config(old_run, ["training.steps=11"]).simcse.steps == 11
    both = tmp_path / "both.yaml"
    both.write_text("training:\n  steps: 9\nstage1:\n  steps: 3\n")
    with pytest.raises(ConfigError, match="both 'training.steps' \\(deprecated\\) and 'stage1.steps'"):
        load_config(both)


@pytest.mark.parametrize(
    "override,match",
    [
        ("training.stepz=3", "unknown config key 'training.stepz'"),
        ("stage1.stepz=3", "unknown config key 'stage1.stepz' \\(did you mean 'steps'\\?\\)"),
        ("stage1.steps=-1", "stage1.steps"),
        ("stage2.steps=0", "stage2.steps"),
        ("simcse.lr=0", "simcse.lr"),
        ("stage1.lr=fast", "must be a number"),
        ("stage1.steps=2.5", "must be an integer"),
        ("training.steps=-1", "stage1.steps"),
        ("objective=triplet", "objective"),
        ("combined.simcse_weight=-1", "combined.simcse_weight"),
        ("model.pooling=max", "model.pooling"),
        ("model.attention=sideways", "model.attention"),
        ("lora.dropout=1.5", "lora.dropout"),
        ("model.template=no placeholder", "model.template"),
        ("model.max_length=4", "model.max_length"),
        (
            "data.train_file=bundled:wikipedia",
            "data.train_file' names no bundled corpus \\(bundled: bundled:brown, bundled:wiki\\)",
        ),
        ("training", "section.key=value"),
    ],
)
def test_invalid_values_name_the_field(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage1:\n  steps: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml:.*invalid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("training: 5\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(wrong)
    out_of_range = tmp_path / "range.yaml"  # a valid value type out of its range names the file too
    out_of_range.write_text("combined:\n  simcse_weight: -1\n")
    with pytest.raises(ConfigError, match="range.yaml: config field 'combined.simcse_weight' must be >= 0"):
        load_config(out_of_range)
    defaults = load_config(None)  # the built-in defaults: the documented recipe, valid as it stands
    assert isinstance(defaults, RunConfig) and defaults.validate() is defaults
    assert (defaults.objective, defaults.run_stages(), defaults.model.name) == (
        "text2token",
        ["data", "model"],
        "default",
    )


def test_bundled_corpora_are_shipped_files():
    from text2token.training.corpus import BUNDLED_CORPUS, corpus_path, read_corpus

    assert corpus_path(None) == corpus_path("bundled:brown") == BUNDLED_CORPUS
    wiki = corpus_path("bundled:wiki")
    texts, info = read_corpus(wiki, "text", seed=0, limit=5)
    assert wiki.is_file() and wiki.parent == BUNDLED_CORPUS.parent and len(texts) == 5
    assert info["lines"] > 10_000 and all(t.strip() for t in texts)


def test_shipped_configs_and_study_recipes_are_valid_and_train_the_steps_they_state(monkeypatch):
    """Every file in configs/ is a valid config; every recipe of benchmarks/recipes.yaml resolves to a valid config
    that trains the optimizer steps it states (its table row says so); `make run` trains the config the study's
    combined_l1 recipe names, so the README's study row and the make-run model are one definition."""
    import re

    import yaml

    root = REPO
    for path in sorted((root / "configs").glob("*.yaml")):
        load_config(path)
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    import study

    recipes = yaml.safe_load((root / "benchmarks" / "recipes.yaml").read_text())
    for budget, entries in recipes.items():
        for name, recipe in entries.items():
            if "from" in recipe:  # evaluates another recipe's models: that recipe trains the steps it states
                assert recipe["steps"] == entries[recipe["from"]]["steps"], (budget, name)
                recipe = entries[recipe["from"]]
            cfg = study.recipe_config(recipe, str(root / "configs" / "demo.yaml"))
            if recipe.get("train", True):
                assert study.recipe_steps(cfg) == recipe["steps"], (budget, name)
    make_config = re.search(r"^CONFIG \?= (\S+)$", (root / "Makefile").read_text(), re.M).group(1)
    assert recipes["budget_200"]["combined_l1"]["config"] == make_config == "configs/combined.yaml"


def test_a_key_or_value_with_a_line_break_stays_a_one_line_error(tmp_path):
    """Found by tests/test_fuzz_readers.py: a YAML key 'model.\\n' was echoed raw, so the error spanned two lines."""
    path = tmp_path / "c.yaml"
    path.write_text('model:\n  "name\\n": x\nobjective: "text\\n2token"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "\n" not in str(exc.value) and "name\\n" in str(exc.value)


def test_the_configuration_reference_lists_every_setting_its_default_and_every_allowed_value():
    """docs/configuration.md is checked against the config definitions: a new setting, a changed default or a new
    allowed value that the reference does not show fails here."""

    from text2token.training.config import CHOICES, flatten

    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    missing, wrong_default, missing_values = [], [], []
    for key, default in flatten(RunConfig().to_dict()).items():
        row = next((r for r in rows if f"`{key}`" in r.split("|")[1]), None)
        if row is None:
            missing.append(key)
            continue
        keys = [k.strip().strip("`") for k in row.split("|")[1].split(" / ")]
        defaults = [d.strip().strip("`") for d in row.split("|")[2].split(" / ")]
        shown = defaults[keys.index(key)] if len(defaults) == len(keys) else row.split("|")[2]
        if default is None or isinstance(default, bool):
            text = {None: "null", True: "true", False: "false"}[default]
        else:
            text = "[" + ", ".join(default) + "]" if isinstance(default, list) else str(default)
        if isinstance(default, float) and not isinstance(default, bool):
            try:
                matches = float(shown) == default
            except ValueError:
                matches = False
        else:
            matches = text in shown
        if not matches:
            wrong_default.append(f"{key}: {text} not in {shown!r}")
        for value in CHOICES.get(key, ()):
            if f"`{value}`" not in row:
                missing_values.append(f"{key}: {value}")
    assert not missing and not wrong_default and not missing_values, (missing, wrong_default, missing_values)
