"""Sparse retrieval from the LM head: index, search (sparse / dense / hybrid), export."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import interrupted_at_call

from text2token import Text2TokenModel
from text2token.cli import main
from text2token.retrieval import SearchIndex, build_index, sparse_vectors

DOCS = [
    "The cat sat on the mat.",
    "Stock markets fell after the rate rise.",
    "Volcanoes erupted near the village.",
    "A kitten slept on the rug.",
    "Bond yields climbed as inflation rose.",
]


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
    assert (
        main(
            [
                "index",
                "--model",
                str(tiny_model_dir),
                "--pooling",
                "mean",
                "--corpus",
                str(corpus),
                "--output",
                str(index_dir),
                "--top-k",
                "32",
            ]
        )
        == 0
    )
    info = json.loads((index_dir / "index.json").read_text())
    assert info["documents"] == 5 and info["top_k"] == 32 and info["pooling"] == "mean"
    assert info["weighting"] == "prior_ratio" and info["query_top_k"] == 256
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
    index = SearchIndex(index_dir)
    s, d = (index.scores(DOCS[:2], mode=m) for m in ("sparse", "dense"))
    scale = lambda x: (x - x.min(1, keepdims=True)) / (x.max(1, keepdims=True) - x.min(1, keepdims=True))  # noqa: E731
    np.testing.assert_allclose(
        index.scores(DOCS[:2], alpha=0.3, fusion="minmax"), 0.3 * scale(d) + 0.7 * scale(s), atol=1e-6
    )
    rank = lambda x: np.argsort(np.argsort(-x, axis=1, kind="stable"), axis=1) + 1  # noqa: E731  (1 = best)
    np.testing.assert_allclose(
        index.scores(DOCS[:2], alpha=0.9, fusion="rrf"), 0.9 / (60 + rank(d)) + 0.1 / (60 + rank(s)), atol=1e-9
    )
    np.testing.assert_allclose(index.scores(DOCS[:2]), 0.5 * scale(d) + 0.5 * scale(s), atol=1e-6)  # the default
    np.testing.assert_allclose(
        index.scores(DOCS[:2], mode="hybrid", alpha=0.3, fusion="raw"), 0.3 * d + 0.7 * s, atol=1e-6
    )
    # sparse weights: p / (p + prior) of each document's top tokens, with the prior of the indexed documents
    import torch

    with torch.no_grad():
        logits = torch.empty(len(DOCS), index.sparse.shape[1])
        for idx, x in index.model.iter_vocab_logits(DOCS, 8):  # batches come in length order
            logits[torch.as_tensor(idx)] = x.float()
    prior = torch.softmax(logits.double().mean(0), -1).float().numpy()
    np.testing.assert_allclose(index.prior, prior, rtol=1e-4, atol=1e-9)
    p = torch.softmax(logits[0], -1).numpy()
    row = index.sparse.getrow(0)
    ratio = p[row.indices] / (p[row.indices] + prior[row.indices] + 1e-8)
    np.testing.assert_allclose(row.data, ratio / np.linalg.norm(ratio), rtol=1e-4)
    assert set(row.indices.tolist()) == set(np.argsort(-p)[:32].tolist())  # the 32 most probable tokens
    # one pass gives the same dense vectors as encode
    np.testing.assert_allclose(index.dense, index.model.encode(DOCS, normalize_embeddings=True), atol=1e-6)
    assert main(["search", "--index", str(tmp_path), "--query", "x"]) == 2
    assert "not a text2token index" in capsys.readouterr().err


def test_index_moves_with_its_model_and_search_relocates_it(tmp_path, tiny_model_dir, tokenizer, capsys):
    import shutil

    from helpers import make_tiny_model

    model = shutil.copytree(tiny_model_dir, tmp_path / "project" / "model")
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(DOCS) + "\n")
    assert (
        main(
            [
                "index",
                "-q",
                "--model",
                str(model),
                "--pooling",
                "mean",
                "--corpus",
                str(corpus),
                "--output",
                str(tmp_path / "project" / "index"),
            ]
        )
        == 0
    )
    info = json.loads((tmp_path / "project" / "index" / "index.json").read_text())
    assert info["model"] == "../model" and info["model_relative_to_index"]
    docs = [json.loads(line) for line in (tmp_path / "project" / "index" / "docs.jsonl").read_text().splitlines()]
    assert [d["id"] for d in docs] == ["0", "1", "2", "3", "4"], ".txt documents are numbered from 0, like .npy rows"
    moved = shutil.move(str(tmp_path / "project"), str(tmp_path / "elsewhere"))
    queries = tmp_path / "q.txt"
    queries.write_text(DOCS[1] + "\n" + DOCS[4] + "\n")
    capsys.readouterr()
    assert (
        main(
            [
                "search",
                "-q",
                "--index",
                f"{moved}/index",
                "--queries",
                str(queries),
                "--query",
                DOCS[0],
                "--json",
                "--top",
                "1",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in rows] == [DOCS[0], DOCS[1], DOCS[4]] and [r["hits"][0]["id"] for r in rows] == [
        "0",
        "1",
        "4",
    ]
    # index alone, model elsewhere: --model relocates it, checked against the recorded weights
    shutil.move(f"{moved}/model", str(tmp_path / "m2"))
    assert main(["search", "--index", f"{moved}/index", "--query", "x"]) == 2
    assert "(moved?): pass --model PATH" in capsys.readouterr().err
    assert (
        main(
            [
                "search",
                "-q",
                "--index",
                f"{moved}/index",
                "--model",
                str(tmp_path / "m2"),
                "--query",
                DOCS[2],
                "--top",
                "1",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["hits"][0]["id"] == "2"
    other = make_tiny_model(tmp_path / "other", tokenizer, seed=7)
    assert main(["search", "--index", f"{moved}/index", "--model", str(other), "--query", "x"]) == 2
    assert "is not the model" in capsys.readouterr().err


def _corpus(n):
    subjects = ["The cat", "A stock trader", "The volcano", "Our kitten", "The central bank", "A farmer", "The team"]
    verbs = ["watched", "sold", "covered", "chased", "raised", "planted", "won"]
    objects = [
        "the red ball",
        "shares in the morning",
        "the valley with ash",
        "rates again",
        "corn in spring",
        "the final match",
        "a quiet garden",
    ]
    return [f"{subjects[i % 7]} {verbs[(i // 7) % 7]} {objects[(i // 49) % 7]} ({i})." for i in range(n)]


def test_ann_index_finds_what_exact_search_finds(tmp_path, tiny_model):
    """An index with the usearch graph: dense top-10 agrees with exact search (recall), and with a corpus no larger
    than the candidate pool, hybrid search over the candidates is the exact hybrid ranking."""
    from text2token.retrieval import ANN_CANDIDATES, build_index

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(_corpus(ANN_CANDIDATES))]
    info = build_index(tiny_model, docs, tmp_path / "index", top_k=16, ann="on", show_progress_bar=False)
    assert info["ann"]["library"] == "usearch" and (tmp_path / "index" / info["ann"]["file"]).is_file()
    index = SearchIndex(tmp_path / "index", model=tiny_model)
    assert index.ann is not None and len(index.ann) == len(docs)
    queries = ["a cat chased a ball", "bank rates", "ash from the volcano", "the farmer planted corn"]
    dense = np.load(tmp_path / "index" / "dense.npy")
    q = tiny_model.encode(queries, normalize_embeddings=True)
    for qi, (rows, scores) in enumerate(index.ranked(queries, 10, "dense")):
        assert len(set(rows.tolist())) == 10 and np.all(np.diff(scores) <= 1e-6)  # ten distinct documents, best first
        np.testing.assert_allclose(scores, dense[rows] @ q[qi], atol=1e-4)  # rescored: their exact cosines
    # a query that is a document's own text has that document as its nearest neighbour (cosine 1, far from the rest)
    own = [docs[i]["text"] for i in (3, 40, 77)]
    assert [rows[0] for rows, _ in index.ranked(own, 1, "dense")] == [3, 40, 77]
    for approx, exact in zip(index.ranked(queries, 10), index.ranked(queries, 10, exact=True)):
        assert approx[0].tolist() == exact[0].tolist()
    small = build_index(tiny_model, docs[:5], tmp_path / "small", top_k=16, show_progress_bar=False)
    assert "ann" not in small  # auto: exact search for small corpora


@pytest.mark.parametrize("ann_dtype", ["i8", "b1"])
def test_quantised_ann_graph_is_rescored_by_the_float_vectors(tmp_path, tiny_model, ann_dtype):
    """An int8 or sign-bit graph: the graph records its dtype, is smaller than the f16 one, and dense search ranks
    the graph's candidates by the float vectors' exact cosines — so it finds at least what the graph's own top-10
    finds, and its scores are the exact ones."""
    from text2token.retrieval import build_index

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(_corpus(300))]
    f16 = build_index(tiny_model, docs, tmp_path / "f16", top_k=16, ann="on", show_progress_bar=False)
    info = build_index(
        tiny_model, docs, tmp_path / "q", top_k=16, ann="on", ann_dtype=ann_dtype, show_progress_bar=False
    )
    assert info["ann"]["dtype"] == ann_dtype and f16["ann"]["dtype"] == "f16"
    assert info["ann"]["bytes"] < f16["ann"]["bytes"]
    index = SearchIndex(tmp_path / "q", model=tiny_model)
    queries = ["a cat chased a ball", "bank rates", "ash from the volcano", "the farmer planted corn", "quiet garden"]
    exact = index.ranked(queries, 10, "dense", exact=True)
    rescored = index.ranked(queries, 10, "dense")
    graph_only = index.ranked(queries, 10, "dense", rescore=False)
    q_dense, _ = index.query_vectors(queries)
    for i, (rows, scores) in enumerate(rescored):
        assert len(rows) == 10 and np.all(np.diff(scores) <= 1e-6)
        np.testing.assert_allclose(scores, np.asarray(index.dense[rows]) @ q_dense[i], rtol=1e-5, atol=1e-6)
        assert len(set(rows) & set(exact[i][0])) >= len(set(graph_only[i][0]) & set(exact[i][0]))


def test_index_says_how_many_documents_the_window_cuts(tmp_path, tiny_model_dir, capsys):
    """A document longer than max_length is indexed by its first max_length tokens only: index says so (as encode
    does) and records the count; text past the window is then not what its vectors hold."""
    corpus = tmp_path / "docs.jsonl"
    long_text = "The cat sat on the mat. " * 20 + "Volcanoes erupted near the village."
    rows = [{"id": "short", "text": DOCS[1]}, {"id": "long", "text": long_text}]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ["index", "--model", str(tiny_model_dir), "--pooling", "mean", "--corpus", str(corpus)]
    assert main([*base, "--output", str(tmp_path / "cut"), "--max-length", "32"]) == 0
    err = capsys.readouterr().err
    assert "1 of 2 documents are longer than 32 tokens" in err and "not found" in err
    assert json.loads((tmp_path / "cut" / "index.json").read_text())["documents_truncated"] == 1
    assert main([*base, "--output", str(tmp_path / "whole")]) == 0
    assert "longer than" not in capsys.readouterr().err
    assert json.loads((tmp_path / "whole" / "index.json").read_text())["documents_truncated"] == 0


def test_index_rejects_an_unknown_ann_choice(tmp_path, tiny_model):
    import pytest

    from text2token.errors import Text2TokenError
    from text2token.retrieval import build_index

    with pytest.raises(Text2TokenError, match="ann must be one of"):
        build_index(tiny_model, [{"id": "a", "text": "x"}], tmp_path / "i", ann="maybe", show_progress_bar=False)
    with pytest.raises(Text2TokenError, match="ann_dtype must be one of"):
        build_index(tiny_model, [{"id": "a", "text": "x"}], tmp_path / "i", ann_dtype="f8", show_progress_bar=False)


def test_export_to_qdrant_and_query_it_through_qdrant(tmp_path, tiny_model, tiny_model_dir, capsys):
    """The real qdrant-client in local mode: the store's own dense and sparse queries give the top-10 that
    ``text2token search`` gives."""
    from qdrant_client import QdrantClient, models

    from text2token.retrieval import build_index

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(_corpus(60))]
    build_index(tiny_model, docs, tmp_path / "index", top_k=16, model_ref=str(tiny_model_dir), show_progress_bar=False)
    assert (
        main(
            [
                "export",
                "--index",
                str(tmp_path / "index"),
                "--qdrant-path",
                str(tmp_path / "qdrant"),
                "--collection",
                "docs",
                "--quiet",
            ]
        )
        == 0
    )
    assert "exported 60 documents" in capsys.readouterr().out
    index = SearchIndex(tmp_path / "index", model=tiny_model)
    queries = ["a cat chased a ball", docs[7]["text"], docs[33]["text"]]  # a document's text: sparse overlap certain
    q_dense, q_sparse = index.query_vectors(queries)
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        assert client.count("docs").count == 60
        for i, (dense, sparse) in enumerate(
            zip(index.ranked(queries, 10, "dense", exact=True), index.ranked(queries, 10, "sparse"))
        ):
            hits = client.query_points(
                "docs", query=q_dense[i].tolist(), using="dense", limit=10, with_payload=True
            ).points
            assert [h.payload["id"] for h in hits] == [docs[r]["id"] for r in dense[0]]
            row = q_sparse.getrow(i)
            hits = client.query_points(
                "docs",
                query=models.SparseVector(indices=row.indices.tolist(), values=row.data.tolist()),
                using="sparse",
                limit=10,
            ).points
            overlapping = sparse[1] > 0  # qdrant returns only documents that share a token with the query
            assert [h.id for h in hits] == sparse[0][overlapping].tolist()
            assert np.allclose([h.score for h in hits], sparse[1][overlapping], rtol=1e-4)
            assert i == 0 or hits  # the queries that are documents do overlap
    finally:
        client.close()


def test_export_needs_an_index(tmp_path, capsys):
    assert main(["export", "--index", str(tmp_path / "nope"), "--qdrant-path", str(tmp_path / "q")]) != 0
    assert "not a text2token index" in capsys.readouterr().err


def test_streamed_index_is_the_index_of_the_whole_corpus(tmp_path, tiny_model):
    """Built chunk by chunk (3 documents at a time), the index holds what one pass over all documents gives: the
    same dense rows, prior, and prior-ratio sparse matrix (sorted CSR, as scipy writes it), its jsonl form, and
    no file of the build left behind."""
    from text2token.retrieval import TopTokens, build_index

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(_corpus(20))]
    build_index(tiny_model, docs, tmp_path / "index", top_k=16, chunk=3, show_progress_bar=False)
    whole = TopTokens(tiny_model, [d["text"] for d in docs], 16)
    folder = tmp_path / "index"
    assert sorted(p.name for p in folder.iterdir()) == [
        "dense.npy",
        "docs.jsonl",
        "index.json",
        "prior.npy",
        "sparse.npz",
        "sparse_vectors.jsonl",
    ]
    assert not (tmp_path / "index.partial").exists()
    np.testing.assert_allclose(np.load(folder / "dense.npy"), whole.dense, atol=1e-5)
    prior = np.load(folder / "prior.npy")
    np.testing.assert_allclose(prior, whole.prior(), rtol=1e-4)
    stored = sp.load_npz(folder / "sparse.npz")
    assert stored.has_sorted_indices and stored.shape == (20, tiny_model.lm_head.weight.shape[0])
    np.testing.assert_allclose(stored.toarray(), whole.sparse("prior_ratio", prior).toarray(), atol=1e-5)
    vectors = [json.loads(line) for line in (folder / "sparse_vectors.jsonl").read_text().splitlines()]
    assert [v["id"] for v in vectors] == [d["id"] for d in docs]
    for i, v in enumerate(vectors):
        row = stored.getrow(i)
        assert v["indices"] == row.indices.tolist() and np.allclose(v["values"], row.data, atol=1e-6)
    assert [json.loads(line) for line in (folder / "docs.jsonl").read_text().splitlines()] == docs


def test_interrupted_index_resumes_to_the_same_files(tmp_path, tiny_model_dir, capsys):
    from text2token import Text2TokenModel

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(_corpus(14))))
    args = [
        "index",
        "-q",
        "--model",
        str(tiny_model_dir),
        "--pooling",
        "mean",
        "--corpus",
        str(corpus),
        "--top-k",
        "16",
        "--chunk-size",
        "4",
        "--ann",
        "on",
    ]
    corpus.write_text(  # two documents longer than the window: the count is carried across the interruption
        corpus.read_text() + "".join(json.dumps({"id": f"long{i}", "text": "words " * 600}) + "\n" for i in range(2))
    )
    assert main([*args, "--output", str(tmp_path / "whole")]) == 0
    assert json.loads((tmp_path / "whole" / "index.json").read_text())["documents_truncated"] == 2
    out = tmp_path / "out"
    with interrupted_at_call(Text2TokenModel, "vocab_logits", 3):  # Ctrl-C while the third chunk is encoded
        assert main([*args, "--output", str(out)]) == 130
    assert not out.exists(), "no index under its name until complete"
    assert json.loads((tmp_path / "out.partial" / "progress.json").read_text())["rows_done"] == 8
    capsys.readouterr()
    assert main([*args, "--output", str(out)]) == 2  # without --resume the finished chunks are not thrown away
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main([*args, "--output", str(out), "--resume"]) == 0
    assert not (tmp_path / "out.partial").exists()
    names = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert names == sorted(p.name for p in out.iterdir()) and "dense.usearch" in names
    for name in names:
        if name == "index.json":
            a, b = (json.loads((d / name).read_text()) for d in (tmp_path / "whole", out))
            for info in (a, b):  # per build: its time, its generation id, the ANN graph's size (threads, order)
                del info["seconds"], info["generation"], info["files"]["dense.usearch"], info["ann"]["bytes"]
            assert a == b
        elif name != "dense.usearch":  # the graph depends on insertion order and threads, not on the resume
            assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name

    corpus.write_text(corpus.read_text() + json.dumps({"id": "d99", "text": "one more document"}) + "\n")
    with interrupted_at_call(Text2TokenModel, "vocab_logits", 3):
        assert main([*args, "--output", str(out)]) == 130
    corpus.write_text(corpus.read_text().replace("one more", "another"))
    capsys.readouterr()
    assert main([*args, "--output", str(out), "--resume"]) == 2
    assert "written for another corpus" in capsys.readouterr().err
    assert (out / "index.json").is_file(), "the finished index is untouched by a failed build"


def test_index_names_a_repeated_id(tmp_path, tiny_model_dir, capsys):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(["a", "b", "a"], DOCS)))
    assert (
        main(["index", "-q", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--output", str(tmp_path / "i")])
        == 2
    )
    err = capsys.readouterr().err
    assert "docs.jsonl" in err and "'id' is not unique (a repeated)" in err
    assert not (tmp_path / "i").exists() and not (tmp_path / "i.partial").exists()


def test_a_damaged_index_is_one_line_naming_the_file(tmp_path, tiny_model_dir, capsys):
    """Missing, truncated or garbage index files gave raw tracebacks (FileNotFoundError, mmap length, BadZipFile,
    JSONDecodeError); the index records its files' sizes and checks them on open."""
    import shutil

    import pytest

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    good = tmp_path / "good"
    assert (
        main(
            [
                "index",
                "-q",
                "--model",
                str(tiny_model_dir),
                "--pooling",
                "mean",
                "--corpus",
                str(corpus),
                "--output",
                str(good),
                "--top-k",
                "16",
            ]
        )
        == 0
    )
    recorded = json.loads((good / "index.json").read_text())["files"]
    assert {"dense.npy", "sparse.npz", "docs.jsonl"} <= set(recorded)

    def damaged(name, how):
        bad = tmp_path / f"bad-{name}-{how}"
        shutil.copytree(good, bad)
        path = bad / name
        if how == "missing":
            path.unlink()
        elif how == "truncated":
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        return bad

    cases = [
        ("dense.npy", "missing", "dense.npy is missing"),
        ("dense.npy", "truncated", "dense.npy has"),
        ("sparse.npz", "truncated", "sparse.npz has"),
        ("docs.jsonl", "truncated", "docs.jsonl has"),
        ("index.json", "truncated", "index.json is damaged"),
    ]
    for name, how, match in cases:
        folder = damaged(name, how)
        with pytest.raises(Exception) as exc:
            SearchIndex(folder, load_model=False)
        assert match in str(exc.value) and "rebuild the index" in str(exc.value), (name, how, exc.value)
        capsys.readouterr()
        assert main(["search", "--index", str(folder), "--query", "cat"]) == 2
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_qdrant_unreachable_url_and_a_held_folder_are_one_line(tmp_path, tiny_model_dir, capsys):
    import socket

    import pytest

    pytest.importorskip("qdrant_client")
    from qdrant_client import QdrantClient

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    assert (
        main(
            [
                "index",
                "-q",
                "--model",
                str(tiny_model_dir),
                "--pooling",
                "mean",
                "--corpus",
                str(corpus),
                "--output",
                str(tmp_path / "ix"),
                "--top-k",
                "16",
            ]
        )
        == 0
    )
    with socket.socket() as s:  # a localhost port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    capsys.readouterr()
    assert main(["export", "--index", str(tmp_path / "ix"), "--qdrant-url", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot reach a Qdrant server" in err and "Traceback" not in err and len(err.splitlines()) == 1
    holder = QdrantClient(path=str(tmp_path / "qd"))
    try:
        assert main(["export", "--index", str(tmp_path / "ix"), "--qdrant-path", str(tmp_path / "qd")]) == 2
        err = capsys.readouterr().err.strip()
        assert "in use by another Qdrant client" in err and len(err.splitlines()) == 1
    finally:
        holder.close()


def test_one_writer_per_output_and_readers_see_one_whole_index(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """Two index (or encode) jobs on one output: the second is refused instead of wiping the first's partial work.
    A reader that opens an index while a rebuild swaps it in reads again and gets one whole generation."""
    import shutil

    from text2token.lock import RunLock
    from text2token.textio import replace_directory

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    out = tmp_path / "ix"
    with RunLock.for_output(out, "index build"):  # another job holds the output
        assert main(["index", "-q", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--output", str(out)]) == 2
        assert "in use by another index build" in capsys.readouterr().err
        assert not out.exists() and not (tmp_path / "ix.partial").exists()
    with RunLock.for_output(tmp_path / "e.npy", "encode"):
        assert (
            main(
                [
                    "encode",
                    "-q",
                    "--model",
                    str(tiny_model_dir),
                    "--input",
                    str(corpus),
                    "--output",
                    str(tmp_path / "e.npy"),
                ]
            )
            == 2
        )
        assert "in use by another encode" in capsys.readouterr().err
    assert main(["index", "-q", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--output", str(out)]) == 0
    other = tmp_path / "docs2.jsonl"
    other.write_text("".join(json.dumps({"id": f"e{i}", "text": t}) + "\n" for i, t in enumerate(DOCS[:3])))
    assert (
        main(["index", "-q", "--model", str(tiny_model_dir), "--corpus", str(other), "--output", str(tmp_path / "ix2")])
        == 0
    )
    real, calls = SearchIndex._open_files, []

    def open_then_swap(self, folder):
        real(self, folder)
        if not calls:  # a rebuild lands right after this reader opened the old files
            calls.append(1)
            staged = tmp_path / ".staged"
            shutil.copytree(tmp_path / "ix2", staged)
            replace_directory(staged, out)

    monkeypatch.setattr(SearchIndex, "_open_files", open_then_swap)
    index = SearchIndex(out, load_model=False)
    assert [d["id"] for d in index.docs] == ["e0", "e1", "e2"]  # the new index, whole
    assert index.dense.shape[0] == index.sparse.shape[0] == 3


def test_hostile_values_in_index_json_are_one_line(tmp_path, tiny_model_dir):
    """An index handed over by someone else: sizes, counts and paths in index.json are validated before use."""
    import shutil

    import pytest

    from text2token.errors import Text2TokenError

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    good = tmp_path / "good"
    assert main(["index", "-q", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--output", str(good)]) == 0
    for key, value, match in [
        ("documents", -3, "'documents' must be an integer >= 0"),
        ("top_k", 10**15, "'top_k' must be an integer >= 1"),
        ("pooling", "__import__('os')", "'pooling' must be one of"),
        ("files", {"../../etc/passwd": 1}, "names a file outside the index"),
        ("ann", {"file": "../outside.usearch"}, "'ann' must name a file inside the index"),
        ("ann", {"file": "dense.usearch", "dtype": "f8"}, "'ann.dtype' must be one of"),
    ]:
        bad = tmp_path / f"bad-{key}-{len(str(value))}"
        shutil.copytree(good, bad)
        info = json.loads((bad / "index.json").read_text())
        info[key] = value
        (bad / "index.json").write_text(json.dumps(info))
        with pytest.raises(Text2TokenError, match=match.replace("(", r"\(").replace(")", r"\)")):
            SearchIndex(bad, load_model=False)


_REBUILDER = """
import json, sys
from text2token import Text2TokenModel
from text2token.retrieval import build_index

model_dir, out, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = Text2TokenModel.from_pretrained(model_dir, pooling="mean", device="cpu")
texts = [l for l in sys.stdin.read().splitlines() if l]
for r in range(rounds):
    prefix, docs = ("a", texts) if r % 2 == 0 else ("b", texts[: len(texts) // 2])
    build_index(model, [{"id": f"{prefix}{r}-{i}", "text": t} for i, t in enumerate(docs)], out, top_k=16,
                show_progress_bar=False)
    print(f"built {r}", flush=True)
"""


@pytest.mark.slow
def test_a_reader_searching_through_five_rebuilds_sees_whole_indexes_and_never_fails(tmp_path, tiny_model_dir):
    """Concurrency, for real: one process rebuilds the same index folder five times (alternating two corpora of
    different sizes) while this one opens it and searches in a loop. Every open sees one generation whole (all ids
    from one build, as many dense and sparse rows as documents) and no search raises."""
    import subprocess
    import sys

    out = tmp_path / "ix"
    texts = _corpus(60)
    build_index(
        Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu"),
        [{"id": f"first-{i}", "text": t} for i, t in enumerate(texts)],
        out,
        top_k=16,
        show_progress_bar=False,
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", _REBUILDER, str(tiny_model_dir), str(out), "5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer.stdin.write("\n".join(texts))
    writer.stdin.close()
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")
    generations, opened_during_rebuilds = set(), 0
    while writer.poll() is None:
        index = SearchIndex(out, model=model)
        builds = {d["id"].split("-")[0] for d in index.docs}
        assert len(builds) == 1, builds  # one build's documents, not a mix
        assert index.dense.shape[0] == index.sparse.shape[0] == len(index.docs)
        for mode in ("dense", "sparse", "hybrid"):
            hits = index.search(["a cat chased a ball"], top=5, mode=mode)[0]
            assert {h["id"].split("-")[0] for h in hits} == builds
        generations |= builds
        opened_during_rebuilds += writer.poll() is None  # the writer was still at work after this open
    assert writer.returncode == 0, writer.stderr.read()
    assert writer.stdout.read().split("\n")[:5] == [f"built {r}" for r in range(5)]
    # the reads overlapped the rebuilds (the writer loads a model and builds five times: seconds, against
    # milliseconds per open); which builds a reader catches depends on timing, and none may be mixed
    assert opened_during_rebuilds >= 1 and generations


@pytest.mark.parametrize("failing_write", [2, 7])
def test_a_full_disk_mid_index_is_one_line_keeps_the_old_index_and_resumes_to_the_same_files(
    tmp_path, tiny_model_dir, capsys, monkeypatch, failing_write
):
    """Fault injection: the disk fills up while pass 1 writes a chunk's rows (ENOSPC from the writer). index ends
    with one line saying to resume, the index already in the folder stays whole and searchable, and --resume after
    space is freed ends with the files of an uninterrupted build."""
    import errno

    from text2token.resumable import NpyFile

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(_corpus(14))))
    args = ["index", "-q", "--model", str(tiny_model_dir), "--pooling", "mean", "--top-k", "16", "--chunk-size", "4"]
    assert main([*args, "--corpus", str(corpus), "--output", str(tmp_path / "whole")]) == 0
    out = tmp_path / "out"
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps({"id": f"old{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    assert main([*args, "--corpus", str(old), "--output", str(out)]) == 0  # the index a rebuild would replace
    real_write, calls = NpyFile.write, []

    def full_disk(self, first, block):
        calls.append(first)
        if len(calls) == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device", self.fh.name)
        return real_write(self, first, block)

    monkeypatch.setattr(NpyFile, "write", full_disk)
    capsys.readouterr()
    assert main([*args, "--corpus", str(corpus), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "--resume" in err and "Traceback" not in err
    index = SearchIndex(out, load_model=False)
    assert [d["id"] for d in index.docs] == [f"old{i}" for i in range(len(DOCS))]  # the old index, whole
    monkeypatch.setattr(NpyFile, "write", real_write)  # space freed
    assert main([*args, "--corpus", str(corpus), "--output", str(out), "--resume"]) == 0
    for name in sorted(p.name for p in (tmp_path / "whole").iterdir()):
        if name == "index.json":
            a, b = (json.loads((d / name).read_text()) for d in (tmp_path / "whole", out))
            for info in (a, b):  # per build: its time and its generation id
                del info["seconds"], info["generation"]
            assert a == b
        else:
            assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_a_corrected_model_indexes_corrected_dense_rows_and_the_same_sparse_rows(tmp_path, tiny_model_dir, capsys):
    from helpers import with_correction

    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(DOCS) + "\n")
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")
    model.save_pretrained(tmp_path / "raw")
    with_correction(model).save_pretrained(tmp_path / "corrected")
    for name in ("raw", "corrected"):
        args = [
            "index",
            "--model",
            str(tmp_path / name),
            "--corpus",
            str(corpus),
            "--output",
            str(tmp_path / f"i-{name}"),
        ]
        assert main([*args, "--top-k", "16", "-q"]) == 0
    raw, corrected = SearchIndex(tmp_path / "i-raw"), SearchIndex(tmp_path / "i-corrected")
    np.testing.assert_allclose(corrected.dense, model.encode(DOCS, normalize_embeddings=True), atol=1e-5)
    assert not np.allclose(corrected.dense, raw.dense, atol=1e-3)
    assert (corrected.sparse != raw.sparse).nnz == 0  # the vocabulary view reads the raw pooled state
    assert corrected.search([DOCS[2]], top=1, mode="dense")[0][0]["id"] == raw.search([DOCS[2]], top=1)[0][0]["id"]
    # a correction refitted after the index was built would give queries other vectors than the documents
    assert main(["postprocess", str(tmp_path / "corrected"), "--texts", "120", "--directions", "1", "-q"]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "i-corrected"), "--query", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "isotropy correction is not the one" in err and "rebuild the index" in err


def _long_corpus(path):
    """Three documents; 'manual' runs far past a 32-token window and ends with the sentence the test looks for."""
    sections = [
        f"Section {k}. The {w} pump of unit {k} is checked every {k + 2} weeks by the night crew."
        for k, w in enumerate(["red", "blue", "green", "grey", "white", "black", "amber", "violet"])
    ]
    needle = "Volcanic ash from the northern ridge clogged every air filter in the valley."
    rows = [
        {"id": "manual", "text": "\n\n".join(sections) + "\n\n" + needle},
        {"id": "stocks", "text": DOCS[1]},
        {"id": "cat", "text": DOCS[0]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows, needle


def test_passage_index_finds_text_past_the_window_and_ranks_documents(tmp_path, tiny_model_dir, capsys):
    corpus = tmp_path / "long.jsonl"
    rows, needle = _long_corpus(corpus)
    base = ["index", "-q", "--model", str(tiny_model_dir), "--pooling", "mean", "--corpus", str(corpus)]
    base += ["--max-length", "32", "--top-k", "16", "--chunk-size", "3"]
    assert main([*base, "--output", str(tmp_path / "cut")]) == 0
    assert main([*base, "--output", str(tmp_path / "split"), "--passages", "--passage-overlap", "4"]) == 0
    capsys.readouterr()
    info = json.loads((tmp_path / "split" / "index.json").read_text())
    assert info["passages"]["documents"] == 3 and info["passages"]["split"] == 1 and info["passages"]["overlap"] == 4
    assert info["documents"] > 3 and info["documents_truncated"] == 0
    index = SearchIndex(tmp_path / "split")
    assert index.passages
    manual = [d for d in index.docs if d["id"] == "manual"]
    assert [d["passage"] for d in manual] == list(range(len(manual))) and len(manual) == info["documents"] - 2
    assert index.model.count_truncated([d["text"] for d in manual]) == 0, "every passage fits the window"
    for d in manual:  # each passage is the document's own text at its offset
        assert rows[0]["text"][d["start"] : d["start"] + len(d["text"])] == d["text"]
    assert needle in manual[-1]["text"] and needle not in manual[0]["text"]
    vectors = [json.loads(l) for l in (tmp_path / "split" / "sparse_vectors.jsonl").read_text().splitlines()]
    assert [(v["id"], v.get("passage")) for v in vectors] == [(d["id"], d.get("passage")) for d in index.docs]

    query = manual[-1]["text"]  # the passage holding the last sentence: found as itself, in its document
    for mode in ("dense", "sparse", "hybrid"):
        hits = index.search(query, top=10, mode=mode)
        assert [h["id"] for h in hits].count("manual") == 1 and len(hits) == 3, "each document once"
        assert hits[0]["id"] == "manual" and hits[0]["passage"] == len(manual) - 1, mode
    assert index.search(query, top=1, mode="dense")[0]["score"] == pytest.approx(1.0, abs=1e-4)
    cut = SearchIndex(tmp_path / "cut", model=index.model)
    assert not cut.passages and json.loads((tmp_path / "cut" / "index.json").read_text())["documents_truncated"] == 1
    # truncated, the manual's vector is blind to its end: the same as that of the manual without the last sentence
    without = index.model.encode([rows[0]["text"].replace(needle, "")], normalize_embeddings=True)[0]
    np.testing.assert_allclose(cut.dense[[d["id"] for d in cut.docs].index("manual")], without, atol=1e-5)

    assert main(["search", "--index", str(tmp_path / "split"), "--query", query, "--top", "2"]) == 0
    assert f"[manual, passage {len(manual) - 1}]" in capsys.readouterr().out
    assert main([*base, "--output", str(tmp_path / "bad"), "--passages", "--passage-overlap", "500"]) == 2
    assert "--passage-overlap must be >= 0 and below the" in capsys.readouterr().err
    assert main([*base, "--output", str(tmp_path / "bad"), "--passage-overlap", "4"]) == 2
    assert "--passage-overlap goes with --passages" in capsys.readouterr().err

    from qdrant_client import QdrantClient  # an exported passage keeps its document: id, passage, start

    q = ["export", "--index", str(tmp_path / "split"), "--qdrant-path", str(tmp_path / "qd"), "--collection", "p"]
    assert main([*q, "--quiet"]) == 0
    client = QdrantClient(path=str(tmp_path / "qd"))
    try:
        points = client.retrieve("p", ids=list(range(len(index.docs))), with_payload=True)
        assert sorted((p.id, p.payload.get("passage"), p.payload["id"]) for p in points) == [
            (i, d.get("passage"), d["id"]) for i, d in enumerate(index.docs)
        ]
    finally:
        client.close()


def test_passage_index_with_a_graph_and_an_interrupted_build(tmp_path, tiny_model_dir, capsys):
    """The ANN path still returns each document once; a passage build interrupted mid-corpus resumes to the
    same files as an uninterrupted one."""
    corpus = tmp_path / "long.jsonl"
    _long_corpus(corpus)
    args = ["index", "-q", "--model", str(tiny_model_dir), "--pooling", "mean", "--corpus", str(corpus)]
    args += ["--max-length", "32", "--top-k", "16", "--chunk-size", "2", "--passages", "--ann", "on"]
    assert main([*args, "--output", str(tmp_path / "whole")]) == 0
    out = tmp_path / "out"
    with interrupted_at_call(Text2TokenModel, "vocab_logits", 2):
        assert main([*args, "--output", str(out)]) == 130
    assert main([*args, "--output", str(out), "--resume"]) == 0
    for name in ("docs.jsonl", "dense.npy", "sparse.npz", "sparse_vectors.jsonl", "prior.npy"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    index = SearchIndex(out)
    assert index.ann is not None
    hits = index.search(index.docs[1]["text"], top=3, mode="dense")
    assert len({h["id"] for h in hits}) == len(hits) == 3
