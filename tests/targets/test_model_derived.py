import math

import pytest
import torch

from text2token.targets.model_derived import corpus_prior, model_derived_targets, ratio_scores, truncate_top_k


def test_ratio_and_target_match_hand_computation_on_tiny_vocabulary():
    logits = torch.tensor([[0.0, math.log(3.0), 0.0]])  # p = [0.2, 0.6, 0.2]
    prior = torch.tensor([0.5, 0.3, 0.2])
    r = ratio_scores(logits, prior)
    expected_r = torch.tensor([[0.2 / 0.7, 0.6 / 0.9, 0.2 / 0.4]])
    assert torch.allclose(r, expected_r, atol=1e-6)
    q = model_derived_targets(logits, prior, tau=0.1)
    expected_q = torch.softmax(expected_r / 0.1, dim=-1)
    assert torch.allclose(q, expected_q, atol=1e-6) and torch.allclose(q.sum(), torch.tensor(1.0))


def test_small_tau_gives_one_hot_on_argmax_ratio():
    torch.manual_seed(0)
    logits, prior = torch.randn(4, 30), torch.softmax(torch.randn(30), -1)
    q = model_derived_targets(logits, prior, tau=1e-5)
    arg = ratio_scores(logits, prior).argmax(dim=-1)
    assert torch.allclose(q.max(dim=-1).values, torch.ones(4), atol=1e-4)
    assert torch.equal(q.argmax(dim=-1), arg)
    with pytest.raises(ValueError):
        model_derived_targets(logits, prior, tau=0.0)


def test_truncation_reports_the_mass_it_keeps():
    q = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    ids, w, mass = truncate_top_k(q, 2)
    assert ids.tolist() == [[0, 1]] and torch.allclose(mass, torch.tensor([0.8]))
    assert torch.allclose(w, torch.tensor([[0.625, 0.375]]))


def test_prior_equals_softmax_of_mean_logits(tiny_model):
    texts = ["one fish", "two fish red fish", "blue fish", "a much longer sentence about fish and the sea"]
    prior = corpus_prior(tiny_model, texts, batch_size=3)
    with torch.no_grad():
        enc = tiny_model.tokenize(texts)
        logits = tiny_model.vocab_logits(tiny_model(enc["input_ids"], enc["attention_mask"]))
    assert torch.allclose(prior, torch.softmax(logits.mean(dim=0), dim=-1), atol=1e-6)


def test_cached_prior_is_reused_only_for_the_same_fingerprint(tmp_path):
    from text2token.training.stages import load_prior as _load_prior
    from text2token.training.stages import save_prior as _save_prior

    prior = torch.softmax(torch.randn(50), -1)
    fp = {"model": "abc", "corpus": "c1", "texts": 10, "pooling": "mean"}
    _save_prior(tmp_path / "prior.safetensors", prior, fp)
    assert torch.equal(_load_prior(tmp_path / "prior.safetensors", fp), prior)
    assert _load_prior(tmp_path / "prior.safetensors", {**fp, "model": "other"}) is None  # model changed
    assert _load_prior(tmp_path / "prior.safetensors", {**fp, "corpus": "c2"}) is None  # corpus changed
    assert _load_prior(tmp_path / "missing.safetensors", fp) is None
