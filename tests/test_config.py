import pytest

from text2token.errors import ConfigError
from text2token.training import RunConfig, load_config


def test_defaults_are_valid_and_roundtrip(tmp_path):
    cfg = load_config()
    assert cfg.lora.r == 16 and cfg.lora.alpha == 32 and cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_overrides_and_yaml_number_forms(tmp_path):
    cfg = load_config(None, ["training.lr=1e-4", "training.steps=7", "model.pooling=mean", "lora.target_modules=q_proj,v_proj",
                             "data.max_texts=null", "model.template=null"])
    assert cfg.training.lr == 1e-4 and cfg.training.steps == 7 and cfg.model.pooling == "mean"
    assert cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.model.template is None


@pytest.mark.parametrize("override,match", [
    ("training.stepz=3", "unknown config key 'training.stepz' \\(did you mean 'steps'\\?\\)"),
    ("training.steps=-1", "training.steps"),
    ("training.lr=0", "training.lr"),
    ("training.lr=fast", "must be a number"),
    ("training.steps=2.5", "must be an integer"),
    ("model.pooling=max", "model.pooling"),
    ("model.attention=sideways", "model.attention"),
    ("lora.dropout=1.5", "lora.dropout"),
    ("model.template=no placeholder", "model.template"),
    ("training", "section.key=value"),
])
def test_invalid_values_name_the_field(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  steps: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml:.*invalid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("training: 5\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(wrong)
    assert isinstance(load_config(None), RunConfig)
