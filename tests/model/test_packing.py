"""Packed rows (several texts per row, padding-free): the same embeddings as one text per row, and no
attention across texts — in both attention modes and all poolings."""

import pytest
import torch

from text2token import Text2TokenModel
from text2token.packing import pack, packed_attention_mask

TEXTS = [
    "The cat sat on the mat.",
    "Stocks fell sharply after the bank raised interest rates.",
    "Hi",
    "Volcanoes erupted, spreading ash across the villages below the mountain.",
    "A kitten slept.",
    "Engineers designed bridges that withstand strong earthquakes in the region.",
]


def test_pack_layout_and_mask():
    packed = pack([[5, 6, 7], [8, 9], [1, 2, 3, 4]], row_length=6, pad_id=0)
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 8, 9], [5, 6, 7, 0, 0, 0]]  # longest first, first fit
    assert packed.segment_ids.tolist() == [[1, 1, 1, 1, 2, 2], [1, 1, 1, 0, 0, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 0, 0]]
    assert packed.texts == [2, 1, 0] and packed.num_tokens == 9
    allowed = packed_attention_mask(packed.segment_ids, causal=False, dtype=torch.float32)[0, 0] == 0
    assert allowed[4, 5] and allowed[5, 4] and not allowed[3, 4] and not allowed[4, 3]  # blocks, both ways
    causal = packed_attention_mask(packed.segment_ids, causal=True, dtype=torch.float32)[0, 0] == 0
    assert causal[5, 4] and not causal[4, 5] and not causal[4, 3]
    pad = packed_attention_mask(packed.segment_ids, causal=True, dtype=torch.float32)[1, 0] == 0
    assert pad[4].tolist() == [False, False, False, False, True, False]  # padding sees only itself
    with pytest.raises(ValueError, match="does not fit"):
        pack([[1] * 7], row_length=6, pad_id=0)


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
@pytest.mark.parametrize("pooling", ["mean", "last", "weighted_mean"])
def test_packed_equals_unpacked_and_neighbours_do_not_leak(tiny_model_dir, pooling, attention):
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling=pooling, attention=attention, device="cpu")
    model.eval()
    ids = model.token_ids(TEXTS)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(torch.cat([model(**_one(model, x)) for x in ids]), dim=-1)
        packed = pack(ids, row_length=max(map(len, ids)) * 2, pad_id=model.tokenizer.pad_token_id)
        assert packed.input_ids.shape[0] < len(TEXTS)  # several texts do share rows
        got = torch.nn.functional.normalize(model.forward_packed(packed), dim=-1)
        cos = (got * ref[packed.texts]).sum(-1)
        assert cos.min() >= 0.9999, cos
        # change one text of a row: its neighbours in the row keep their embeddings
        row = packed.segment_ids[0]
        first = packed.texts[0]
        changed = [list(x) for x in ids]
        changed[first] = [t + 1 if t + 1 < len(model.tokenizer) else t for t in changed[first]]
        again = torch.nn.functional.normalize(
            model.forward_packed(
                pack(changed, row_length=packed.input_ids.shape[1], pad_id=model.tokenizer.pad_token_id)
            ),
            dim=-1,
        )
        assert int(row.max()) >= 2
        for k, text in enumerate(packed.texts):
            if text != first:
                assert torch.allclose(again[k], got[k], atol=1e-5), (k, text)


def _one(model, ids):
    enc = model._pad([ids])
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def test_token_budget_schedule_fills_steps_and_covers_the_data():
    import numpy as np

    from text2token.training.batches import token_budget_schedule

    lengths = np.array([5, 9, 3, 12, 7, 4, 8, 6, 10, 2])
    a = token_budget_schedule(lengths, 20, 6, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, token_budget_schedule(lengths, 20, 6, seed=1), strict=True))
    assert all(lengths[s].sum() <= 20 for s in a) and len(a) == 6
    first_epoch = np.concatenate(a)[: len(lengths)]
    assert sorted(first_epoch.tolist()) == list(range(len(lengths))), "an epoch sees every text once"


@pytest.mark.parametrize("pooling,attention", [("mean", "causal"), ("last", "bidirectional")])
def test_a_packed_batch_gives_the_same_loss_as_a_padded_one(tiny_model_dir, tokenizer, pooling, attention):
    import numpy as np

    from text2token.objectives import TokenKL
    from text2token.targets import DataDrivenTargetBuilder
    from text2token.training.batches import Collator

    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling=pooling, attention=attention, device="cpu")
    model.eval()
    targets, _ = DataDrivenTargetBuilder(tokenizer, max_length=32).build(TEXTS)
    rows = np.arange(len(targets))
    padded = Collator(model, TEXTS, targets.text_index, targets)(rows)
    collate = Collator(model, TEXTS, targets.text_index, targets)
    collate.pack_length = 64
    packed = collate(rows)
    assert packed.segment_ids is not None and packed.input_ids.shape[0] < len(rows)
    assert sorted(packed.rows.tolist()) == rows.tolist() and packed.num_tokens == padded.num_tokens
    with torch.no_grad():
        a = TokenKL()([model(padded.input_ids, padded.attention_mask)], padded, model).loss
        b = TokenKL()(
            [model(packed.input_ids, packed.attention_mask, packed.position_ids, packed.segment_ids)], packed, model
        ).loss
    assert b.item() == pytest.approx(a.item(), rel=1e-5)


@pytest.mark.parametrize(
    "extra",
    [
        ["stages=[data,model]", "model.pooling=mean", "stage2.steps=3", "stage2.max_texts=24", "stage2.tau=0.1"],
        ["objective=simcse", "model.pooling=last", "model.attention=bidirectional", "simcse.steps=4", "simcse.lr=1e-2"],
    ],
)
def test_packed_training_runs_each_objective(tmp_path, tiny_model_dir, extra):
    import json

    from helpers import tiny_run_config

    from text2token.training import train

    cfg = tiny_run_config(tmp_path, tiny_model_dir, "stage1.steps=4", "training.tokens_per_step=160", *extra)
    train(cfg, show_progress_bar=False)
    logs = list((tmp_path / "run").glob("*/train_log.jsonl"))
    assert logs
    for log in logs:
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        assert rows and all(0 < r["tokens"] <= 160 for r in rows) and all(r["loss"] == r["loss"] for r in rows)
