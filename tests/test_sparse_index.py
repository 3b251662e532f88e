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
    for extra in ([], ["--dense"], ["--sparse"], ["--hybrid", "0.3", "--fusion", "rrf"]):
        assert main(["search", "--index", str(index_dir), "--query", DOCS[3], "--top", "5", "--json", *extra]) == 0
        row = json.loads(capsys.readouterr().out)
        hits = row["hits"]
        assert len(hits) == 5 and hits[0]["id"] == "d3"  # a document is its own best match
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        assert row["mode"] == ("hybrid" if not extra or "--hybrid" in extra else extra[0][2:])
    index = SparseIndex(index_dir)
    s, d = (index.scores(DOCS[:2], mode=m) for m in ("sparse", "dense"))
    scale = lambda x: (x - x.min(1, keepdims=True)) / (x.max(1, keepdims=True) - x.min(1, keepdims=True))  # noqa: E731
    np.testing.assert_allclose(index.scores(DOCS[:2], alpha=0.3, fusion="minmax"), 0.3 * scale(d) + 0.7 * scale(s),
                               atol=1e-6)
    rank = lambda x: np.argsort(np.argsort(-x, axis=1, kind="stable"), axis=1) + 1  # noqa: E731  (1 = best)
    np.testing.assert_allclose(index.scores(DOCS[:2]), 0.9 / (60 + rank(d)) + 0.1 / (60 + rank(s)), atol=1e-9)
    np.testing.assert_allclose(index.scores(DOCS[:2], mode="hybrid", alpha=0.3, fusion="raw"), 0.3 * d + 0.7 * s,
                               atol=1e-6)
    # one pass gives the same dense vectors as encode
    np.testing.assert_allclose(index.dense, index.model.encode(DOCS, normalize_embeddings=True), atol=1e-6)
    assert main(["search", "--index", str(tmp_path), "--query", "x"]) == 2
    assert "not a text2token index" in capsys.readouterr().err


def test_index_moves_with_its_model_and_search_relocates_it(tmp_path, tiny_model_dir, tokenizer, capsys):
    import shutil

    from conftest import make_tiny_model

    model = shutil.copytree(tiny_model_dir, tmp_path / "project" / "model")
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(DOCS) + "\n")
    assert main(["index", "-q", "--model", str(model), "--pooling", "mean", "--corpus", str(corpus),
                 "--output", str(tmp_path / "project" / "index")]) == 0
    info = json.loads((tmp_path / "project" / "index" / "index.json").read_text())
    assert info["model"] == "../model" and info["model_relative_to_index"]
    docs = [json.loads(line) for line in (tmp_path / "project" / "index" / "docs.jsonl").read_text().splitlines()]
    assert [d["id"] for d in docs] == ["0", "1", "2", "3", "4"], ".txt documents are numbered from 0, like .npy rows"
    moved = shutil.move(str(tmp_path / "project"), str(tmp_path / "elsewhere"))
    queries = tmp_path / "q.txt"
    queries.write_text(DOCS[1] + "\n" + DOCS[4] + "\n")
    capsys.readouterr()
    assert main(["search", "-q", "--index", f"{moved}/index", "--queries", str(queries), "--query", DOCS[0], "--json",
                 "--top", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in rows] == [DOCS[0], DOCS[1], DOCS[4]] and [r["hits"][0]["id"] for r in rows] == ["0", "1", "4"]
    # index alone, model elsewhere: --model relocates it, checked against the recorded weights
    shutil.move(f"{moved}/model", str(tmp_path / "m2"))
    assert main(["search", "--index", f"{moved}/index", "--query", "x"]) == 2
    assert "(moved?): pass --model PATH" in capsys.readouterr().err
    assert main(["search", "-q", "--index", f"{moved}/index", "--model", str(tmp_path / "m2"), "--query", DOCS[2],
                 "--top", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["id"] == "2"
    other = make_tiny_model(tmp_path / "other", tokenizer, seed=7)
    assert main(["search", "--index", f"{moved}/index", "--model", str(other), "--query", "x"]) == 2
    assert "is not the model" in capsys.readouterr().err
