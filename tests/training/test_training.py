import json

import numpy as np
import pytest
import torch
from helpers import SENTENCES, stage1_losses, tiny_run_config

from text2token import Text2TokenModel
from text2token.errors import ConfigError, Text2TokenError
from text2token.training import train
from text2token.training.batches import batch_schedule
from text2token.training.checkpoint_model import load_checkpoint_model


def test_training_reduces_loss_and_saves_a_loadable_merged_model(tmp_path, tiny_model_dir):
    cfg = tiny_run_config(tmp_path, tiny_model_dir, "stage1.steps=12")
    model_dir = train(cfg, show_progress_bar=False)
    losses = stage1_losses(tmp_path / "run")
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses  # the direction, not a machine-dependent margin
    report = json.loads((tmp_path / "run" / "stage1-data" / "data_report.json").read_text())
    assert report["blank_lines_skipped"] == 1 and report["targets"]["skipped_no_content"] == 0
    assert (tmp_path / "run" / "config.yaml").is_file()
    trained = Text2TokenModel.from_pretrained(str(model_dir), device="cpu")
    base = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")
    assert not any("lora" in n for n, _ in trained.named_parameters()), "LoRA merged, plain model saved"
    assert trained.max_length == 256, "encode length (512 capped by the 256 positions), not the training truncation"
    assert not np.allclose(trained.encode(SENTENCES[:2]), base.encode(SENTENCES[:2]), atol=1e-4)
    # the frozen LM head is untouched by training
    assert torch.equal(trained.lm_head.weight, base.lm_head.weight)
    settings = json.loads((model_dir / "text2token_config.json").read_text())
    assert settings["training"]["steps"] == 12 and settings["training"]["stages"] == ["data"]
    # the default isotropy fit needs 100 texts: on this small corpus it is skipped, saying why, and the model kept
    assert "needs at least 100 texts" in settings["training"]["isotropy"]["skipped"]
    assert trained.correction is None and "isotropy" not in settings


def test_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    full_dir = tmp_path / "full"
    full_dir.mkdir()
    full = train(tiny_run_config(full_dir, tiny_model_dir, "stage1.steps=6"), show_progress_bar=False)
    part_dir = tmp_path / "part"
    part_dir.mkdir()
    train(tiny_run_config(part_dir, tiny_model_dir, "stage1.steps=4"), show_progress_bar=False)
    # continue the finished 4-step run to 6 steps from its last checkpoint (step 4)
    resumed = train(tiny_run_config(part_dir, tiny_model_dir, "stage1.steps=6"), resume=True, show_progress_bar=False)
    a = Text2TokenModel.from_pretrained(str(full), device="cpu").encode(SENTENCES[:3])
    b = Text2TokenModel.from_pretrained(str(resumed), device="cpu").encode(SENTENCES[:3])
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert stage1_losses(full_dir / "run")[:2] == stage1_losses(part_dir / "run")[:2]


def test_refuses_to_overwrite_checkpoints_without_resume(tmp_path, tiny_model_dir):
    train(tiny_run_config(tmp_path, tiny_model_dir, "stage1.steps=3"), show_progress_bar=False)
    with pytest.raises(Text2TokenError, match="--resume"):
        train(tiny_run_config(tmp_path, tiny_model_dir, "stage1.steps=3"), show_progress_bar=False)


def test_checkpoint_model_equals_final_model(tmp_path, tiny_model_dir):
    cfg = tiny_run_config(tmp_path, tiny_model_dir, "stage1.steps=4", "training.keep_checkpoints=5")
    train(cfg, show_progress_bar=False)
    run = tmp_path / "run"
    ckpt = load_checkpoint_model(run / "stage1-data" / "checkpoints" / "checkpoint-0000002")
    assert ckpt.encode(["hello"]).shape[1] == 64
    # the checkpoint's weights differ from the final model's (two more steps were taken)
    final = Text2TokenModel.from_pretrained(str(run / "model"), device="cpu")
    assert not np.allclose(ckpt.encode(SENTENCES[:2]), final.encode(SENTENCES[:2]), atol=1e-5)
    # the run rebuilt from its config and final adapters alone is the saved model (what a study keeps)
    from text2token.training.checkpoint_model import load_run_adapters

    rebuilt = load_run_adapters(run)
    np.testing.assert_allclose(rebuilt.encode(SENTENCES[:3]), final.encode(SENTENCES[:3]), atol=1e-5)
    (run / "stage1-data" / "adapter_final.safetensors").unlink()
    with pytest.raises(Text2TokenError, match="has not finished"):
        load_run_adapters(run)


def test_unknown_lora_module_is_a_clear_error(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="lora.target_modules"):
        train(
            tiny_run_config(tmp_path, tiny_model_dir, "stage1.steps=1", "lora.target_modules=[query,value]"),
            show_progress_bar=False,
        )


def test_batch_schedule_is_deterministic_and_covers_data():
    lengths = np.arange(40)
    a = batch_schedule(40, 8, 10, seed=3, lengths=lengths)
    b = batch_schedule(40, 8, 10, seed=3, lengths=lengths)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sorted(np.concatenate(a[:5]).tolist()) == list(range(40)), "one epoch sees every text once"
    with pytest.raises(Text2TokenError, match="fewer than one batch"):
        batch_schedule(5, 8, 1, seed=0, lengths=np.arange(5))
