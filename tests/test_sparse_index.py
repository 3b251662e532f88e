"""Sparse retrieval from the LM head: index, search (sparse / dense / hybrid), export."""

import json

import numpy as np
import scipy.sparse as sp

from text2token.cli import main
from text2token.sparse_index import SparseIndex, sparse_vectors

DOCS = ["The cat sat on the mat.", "Stock markets fell after the rate rise.", "Volcanoes erupted near the village.",
        "A kitten slept on the rug.", "Bond yields climbed as inflation rose."]


def test_sparse_vectors_are_topk_probabilities_normalised(tiny_model):
    m = sparse_vectors(tiny_model, DOCS, top_k=16)
    assert isinstance(m, sp.csr_matrix) and m.shape == (5, tiny_model.lm_head.weight.shape[0])
    assert all(m.getrow(i).nnz == 16 for i in range(5))
    assert np.allclose(np.sqrt(m.multiply(m).sum(axis=1)).A.ravel(), 1.0, atol=1e-5)
    import torch

    with torch.no_grad():
        _, logits = next(tiny_model.iter_vocab_logits(DOCS[:1], 1))
    top = torch.softmax(logits, -1).topk(16)
    row = m.getrow(0)
    assert set(row.indices.tolist()) == set(top.indices[0].tolist())
    ratio = row[0, top.indices[0].numpy()].toarray().ravel() / top.values[0].numpy()
    assert np.allclose(ratio, ratio[0], rtol=1e-4)  # proportional to the probabilities


def test_index_and_search_cli(tmp_path, tiny_model_dir, capsys):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    index_dir = tmp_path / "index"
    assert main(["index", "--model", str(tiny_model_dir), "--pooling", "mean", "--corpus", str(corpus),
                 "--output", str(index_dir), "--top-k", "32"]) == 0
    info = json.loads((index_dir / "index.json").read_text())
    assert info["documents"] == 5 and info["top_k"] == 32 and info["pooling"] == "mean"
    exported = [json.loads(l) for l in (index_dir / "sparse_vectors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in exported] == [f"d{i}" for i in range(5)] and len(exported[0]["indices"]) == 32
    capsys.readouterr()
    for extra in ([], ["--dense"], ["--hybrid", "0.3"]):
        assert main(["search", "--index", str(index_dir), "--query", DOCS[3], "--top", "5", "--json", *extra]) == 0
        hits = json.loads(capsys.readouterr().out)["hits"]
        assert len(hits) == 5 and hits[0]["id"] == "d3"  # a document is its own best match
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    index = SparseIndex(index_dir)
    s, d, h = (index.scores(DOCS[:2], mode=m, alpha=0.3) for m in ("sparse", "dense", "hybrid"))
    assert np.allclose(h, 0.3 * d + 0.7 * s, atol=1e-5)
    assert main(["search", "--index", str(tmp_path), "--query", "x"]) == 2
    assert "not a text2token index" in capsys.readouterr().err
