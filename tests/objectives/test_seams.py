"""The trainer's seams: objectives return named loss components (Combined is one new class), stages say
whether they are finished before reading anything, batches come from a collator, the loop logs whatever
components and metrics it gets; lazy package import; overrides anywhere on the command line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import SENTENCES, tiny_run_config

from text2token.cli import main
from text2token.objectives import Combined, SimCSE, TokenKL
from text2token.targets import DataDrivenTargetBuilder
from text2token.training import train
from text2token.training.batches import Batch, Collator


def _views_and_batch(model, tokenizer, n_views):
    texts = SENTENCES[:6]
    targets, _ = DataDrivenTargetBuilder(tokenizer, max_length=32).build(texts)
    batch = Collator(model, texts, targets.text_index, targets)(np.arange(len(targets)))
    ids, mask = torch.cat([batch.input_ids] * n_views), torch.cat([batch.attention_mask] * n_views)
    model.train()
    return list(model(ids, mask).chunk(n_views)), batch


def test_collator_makes_batches_with_their_targets(tiny_model, tokenizer):
    texts = SENTENCES[:5]
    targets, _ = DataDrivenTargetBuilder(tokenizer, max_length=32).build(texts)
    batch = Collator(tiny_model, texts, targets.text_index, targets)(np.array([3, 1]))
    ref = tiny_model.tokenize([texts[3], texts[1]])
    assert torch.equal(batch.input_ids, ref["input_ids"]) and batch.num_tokens == int(ref["attention_mask"].sum())
    ids, weights = targets.batch([3, 1])
    assert torch.equal(batch.target_ids, ids) and torch.equal(batch.target_weights, weights)
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and moved.position_ids is None and moved.segment_ids is None


def test_combined_components_sum_to_its_loss_and_weights_1_0_equal_token_kl(tiny_model, tokenizer):
    torch.manual_seed(0)
    views, batch = _views_and_batch(tiny_model, tokenizer, 2)
    kl = TokenKL()(views[:1], batch, tiny_model)
    combined = Combined([(TokenKL(), 1.0), (SimCSE(0.05, 0.0), 0.0)])
    assert combined.views == 2 and combined.attention_dropout == 0.0
    out = combined(views, batch, tiny_model)
    assert set(out.losses) == {"token_kl", "simcse"} and out.losses["simcse"].item() == 0.0
    assert torch.equal(out.loss, kl.loss), "weights (1, 0): exactly the token KL"
    weighted = Combined([(TokenKL(), 0.7), (SimCSE(0.05, 0.3), 0.2)])(views, batch, tiny_model)
    simcse = SimCSE(0.05)(views, batch, tiny_model).loss
    assert torch.allclose(weighted.loss, 0.7 * kl.loss + 0.2 * simcse)  # against each objective computed alone
    assert torch.allclose(weighted.losses["simcse"], 0.2 * simcse) and torch.allclose(
        weighted.losses["token_kl"], 0.7 * kl.loss
    )
    assert "hit_rate" in weighted.metrics
    # one graph through both parts: the second dropout view (read by SimCSE only) and the first both get gradient
    grads = torch.autograd.grad(weighted.loss, [views[0], views[1]], retain_graph=True)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    only_kl = torch.autograd.grad(0.7 * TokenKL()(views[:1], batch, tiny_model).loss, views[0])[0]
    assert not torch.allclose(grads[0], only_kl), "the SimCSE term adds to the first view's gradient too"


@pytest.mark.parametrize("center", [False, True])
def test_combined_training_logs_every_component(tmp_path, tiny_model_dir, center):
    cfg = tiny_run_config(
        tmp_path,
        tiny_model_dir,
        "objective=combined",
        "stage1.steps=4",
        "combined.simcse_weight=0.5",
        "simcse.dropout=0.1",
        f"simcse.center={str(center).lower()}",
        "description=token KL and half-weight SimCSE",
    )
    model_dir = train(cfg, show_progress_bar=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "stage1-data" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 4
    for row in log:
        assert row["loss"] == pytest.approx(row["loss/token_kl"] + row["loss/simcse"], rel=1e-5)
        assert 0 <= row["hit_rate"] <= 1
    summary = json.loads((tmp_path / "run" / "stage1-data" / "summary.json").read_text())
    assert "simcse" in summary["objective"].lower() and "token_kl" in summary["objective"]
    assert ("centred" in summary["objective"]) == center
    from text2token import Text2TokenModel

    reloaded = Text2TokenModel.from_pretrained(str(model_dir), device="cpu")
    assert reloaded.backbone.config.attention_dropout == 0.0  # the training dropout is not shipped
    card = (model_dir / "README.md").read_text()  # the card names the recipe, its description and its weights
    assert "- recipe: token KL and half-weight SimCSE" in card and "1.0×KL + 0.5×SimCSE" in card
    assert ("batch-centred" in card) == center


def test_a_finished_stage_is_skipped_before_its_corpus_is_read(tmp_path, tiny_model_dir):
    cfg = tiny_run_config(tmp_path, tiny_model_dir, "stage1.steps=2")
    model_dir = train(cfg, show_progress_bar=False)
    before = (model_dir / "model.safetensors").read_bytes()
    os.remove(cfg.data.train_file)  # resuming a finished run must not need it
    train(cfg, resume=True, show_progress_bar=False)
    assert (model_dir / "model.safetensors").read_bytes() == before


def test_rng_states_roundtrip():
    from text2token.training.checkpoints import restore_rng_states, rng_states

    saved = rng_states()
    first = torch.rand(5)
    torch.rand(3)
    restore_rng_states(saved)
    assert torch.equal(torch.rand(5), first)


def test_overrides_anywhere_on_the_command_line(capsys):
    assert (
        main(
            [
                "train",
                "--print-config",
                "stage1.steps=5",
                "--objective",
                "simcse",
                "simcse.steps=7",
                "--stages",
                "data",
                "model.pooling=mean",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "objective: simcse" in out and "steps: 5" in out and "steps: 7" in out and "pooling: mean" in out
    with pytest.raises(SystemExit):
        main(["train", "--print-config", "stage1.steps=5", "--no-such-option"])
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_package_import_and_help_do_not_load_torch():
    code = (
        "import sys, text2token, text2token.cli, text2token.training, text2token.evaluation; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'eager import'; "
        "assert text2token.Text2TokenModel.__name__ == 'Text2TokenModel'; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "text2token", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: text2token" in res.stdout
    assert not any(line.rstrip().endswith(" torch") for line in res.stderr.splitlines()), "--help imported torch"
