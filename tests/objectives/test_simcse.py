"""The SimCSE baseline objective (LLM2Vec's unsupervised step) inside the same trainer."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_run_config

from text2token import Text2TokenModel
from text2token.objectives import set_attention_dropout, simcse_loss
from text2token.training import train


def test_simcse_loss_is_cross_entropy_over_scaled_cosines():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.1], [0.1, 1.0], [1.0, 0.8]])
    cos = np.array([[float(F.cosine_similarity(x, y, dim=0)) for y in b] for x in a])
    logits = cos / 0.05
    expected = np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(logits)])
    assert simcse_loss(a, b, 0.05).item() == pytest.approx(expected, rel=1e-5)
    assert simcse_loss(a, a, 0.05).item() < simcse_loss(a, b.flip(0), 0.05).item()


def test_centred_simcse_ignores_a_direction_shared_by_the_batch():
    """center: the cosines of the vectors minus the batch mean — a vector added to every text changes nothing,
    as the isotropy correction's mean subtraction would remove it; uncentred, it changes the loss."""
    torch.manual_seed(0)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    shared = 5 * torch.randn(1, 8)
    centred = simcse_loss(a, b, 0.05, center=True)
    assert simcse_loss(a + shared, b + shared, 0.05, center=True).item() == pytest.approx(centred.item(), rel=1e-4)
    assert abs(simcse_loss(a + shared, b + shared, 0.05).item() - simcse_loss(a, b, 0.05).item()) > 0.1
    mean = torch.cat([a, b]).mean(0)
    assert centred.item() == pytest.approx(simcse_loss(a - mean, b - mean, 0.05).item(), rel=1e-5)
    a.requires_grad_(True)  # the mean carries no gradient: each text's gradient is its own cosine's
    (grad,) = torch.autograd.grad(simcse_loss(a, b, 0.05, center=True), a)
    fixed = (a - mean).detach().requires_grad_(True)
    (expected,) = torch.autograd.grad(simcse_loss(fixed, b - mean, 0.05), fixed)
    assert torch.allclose(grad, expected, atol=1e-6)


def test_gathered_negatives_path_in_a_real_process_group(tmp_path):
    """gather_negatives goes through torch.distributed's autograd all_gather (a 1-process gloo group here; the
    2-process run is tests/training/test_distributed.py): same loss as local negatives, gradients reach both views."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        a = torch.randn(4, 8, requires_grad=True)
        b = torch.randn(4, 8, requires_grad=True)
        gathered = simcse_loss(a, b, 0.05, gather_negatives=True)
        assert gathered.item() == pytest.approx(simcse_loss(a, b, 0.05).item(), rel=1e-6)
        gathered.backward()
        assert a.grad is not None and b.grad is not None and b.grad.abs().sum() > 0
    finally:
        dist.destroy_process_group()


def test_attention_dropout_makes_two_views_and_is_restorable(tiny_model_dir):
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")
    enc = model.tokenize(["dropout gives two different views of one text"])
    old = set_attention_dropout(model.backbone, 0.3)
    assert old == 0.0
    model.train()
    with torch.no_grad():
        v1, v2 = model(enc["input_ids"], enc["attention_mask"]), model(enc["input_ids"], enc["attention_mask"])
    assert not torch.allclose(v1, v2)
    set_attention_dropout(model.backbone, old)
    with torch.no_grad():
        assert torch.equal(
            model(enc["input_ids"], enc["attention_mask"]), model(enc["input_ids"], enc["attention_mask"])
        )


def test_simcse_training_lowers_its_loss_and_saves_a_plain_model(tmp_path, tiny_model_dir):
    cfg = tiny_run_config(tmp_path, tiny_model_dir, "objective=simcse", "simcse.steps=12", "simcse.lr=1e-2")
    model_dir = train(cfg, show_progress_bar=False)
    log = [json.loads(l) for l in (tmp_path / "run" / "simcse" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 12
    assert np.mean([r["loss"] for r in log[-4:]]) < np.mean([r["loss"] for r in log[:4]])
    saved = json.loads((model_dir / "text2token_config.json").read_text())
    assert saved["training"]["objective"] == "simcse" and saved["training"]["stages"] == ["simcse"]
    reloaded = Text2TokenModel.from_pretrained(str(model_dir), device="cpu")
    assert reloaded.backbone.config.attention_dropout == 0.0  # the training dropout is not shipped
    assert reloaded.encode(["a text"]).shape == (1, 64)
