"""MNTP (LLM2Vec's masked next-token prediction) and the llm2vec recipe (MNTP, merge, then SimCSE)."""

import json

import pytest
import torch

from text2token import Text2TokenModel
from text2token.objectives import MNTP, mask_token_id
from text2token.training.batches import Collator

TEXTS = [
    "The cat sat on the mat near the door.",
    "Stocks fell after the bank raised rates.",
    "Hi",
    "Volcanoes erupted, spreading ash across the villages below the mountain.",
]


@pytest.mark.parametrize("packed", [False, True])
def test_masking_and_loss_match_a_full_lm_forward(tiny_model_dir, packed):
    model = Text2TokenModel.from_pretrained(
        str(tiny_model_dir), pooling="mean", attention="bidirectional", device="cpu"
    )
    model.eval()
    collate = Collator(model, TEXTS, torch.arange(len(TEXTS)).numpy())
    if packed:
        collate.pack_length = 64
    batch = collate(torch.arange(len(TEXTS)).numpy())
    original = batch.input_ids.clone()
    objective = MNTP(0.5, mask_token_id(model.tokenizer))
    torch.manual_seed(0)
    objective.attach_targets(batch, model)
    chosen = batch.token_labels != -100
    real = batch.attention_mask.bool()
    assert chosen.any() and not (chosen & ~real).any()  # only real tokens are masked
    first = batch.position_ids == 0 if packed else real & (real.long().cumsum(1) == 1)
    assert not (chosen & first).any()  # a text's first token is never masked
    assert torch.equal(batch.token_labels[chosen], original[chosen])
    assert (batch.input_ids[chosen] == objective.mask_id).all() and torch.equal(
        batch.input_ids[~chosen], original[~chosen]
    )
    with torch.no_grad():
        hidden = model(batch.input_ids, batch.attention_mask, batch.position_ids, batch.segment_ids, return_hidden=True)
        out = objective([hidden], batch, model)
        # the same loss from full per-token LM logits: position i-1 predicts token i
        logits = model.vocab_logits(hidden.reshape(-1, hidden.shape[-1])).reshape(*hidden.shape[:2], -1)
        pairs = [(logits[r, i - 1], batch.token_labels[r, i]) for r, i in chosen.nonzero().tolist()]
        expected = torch.stack([torch.nn.functional.cross_entropy(lg[None], y[None]) for lg, y in pairs]).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0 <= out.metrics["masked_accuracy"].item() <= 1


def test_mask_token_falls_back_to_underscore_for_decoder_tokenizers(tokenizer):
    assert tokenizer.mask_token_id is None
    assert tokenizer.convert_ids_to_tokens(mask_token_id(tokenizer)) == "_"


def test_llm2vec_recipe_trains_mntp_then_simcse(tmp_path, tiny_model_dir):
    from helpers import tiny_run_config

    from text2token.training import train

    cfg = tiny_run_config(
        tmp_path,
        tiny_model_dir,
        "objective=llm2vec",
        "model.attention=bidirectional",
        "mntp.steps=3",
        "simcse.steps=2",
        "mntp.lr=1e-3",
    )
    model_dir = train(cfg, show_progress_bar=False)
    run = tmp_path / "run"
    mntp = [json.loads(x) for x in (run / "mntp" / "train_log.jsonl").read_text().splitlines()]
    simcse = [json.loads(x) for x in (run / "simcse" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in mntp] == [1, 2, 3] and [r["step"] for r in simcse] == [1, 2]
    assert all("loss/mntp" in r and 0 <= r["masked_accuracy"] <= 1 for r in mntp)
    assert json.loads((run / "mntp" / "data_report.json").read_text())["targets"]["mask_token"] == "_"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["stages"] == ["mntp", "simcse"] and summary["objective"] == "llm2vec"
    emb = Text2TokenModel.from_pretrained(str(model_dir), device="cpu").encode(TEXTS)
    assert emb.shape[0] == len(TEXTS) and torch.isfinite(torch.as_tensor(emb)).all()
    # the report lists the recipe's own stages, finished (it once printed stage1/stage2 "not started")
    from text2token.training.report import summarize_run

    report = summarize_run(run)
    assert "mntp: 3/3 steps, finished" in report and "simcse: 2/2 steps, finished" in report
    assert "stage1-data" not in report and "stage2-model" not in report
    # MNTP may be trained further on resume, like every other stage's steps (it was refused)
    from text2token.training.config import resume_config

    grown = resume_config(run, overrides=["mntp.steps=5", "simcse.steps=3"])
    assert (grown.mntp.steps, grown.simcse.steps) == (5, 3)
