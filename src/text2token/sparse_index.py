"""Sparse retrieval from the same model: each text becomes its top-k LM-head tokens with their
probabilities (an L2-normalised sparse vector over the vocabulary), ranked by sparse dot product;
optionally mixed with the dense cosine (hybrid).

An index folder holds ``sparse.npz`` (scipy CSR, documents × vocabulary), ``dense.npy`` (normalised
dense embeddings, for hybrid search), ``docs.jsonl`` (id and text), ``sparse_vectors.jsonl`` (the
``{"id", "indices", "values"}`` form that sparse-vector stores accept) and ``index.json`` (model and
settings). It is written atomically.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .errors import Text2TokenError
from .textio import atomic_directory

INDEX_FILE = "index.json"


def sparse_vectors(model, texts: list[str], top_k: int = 128, batch_size: int = 32,
                   show_progress_bar: bool = False) -> sp.csr_matrix:
    """Texts × vocabulary CSR matrix: each row the top-``top_k`` probabilities of softmax(lm_head(pooled)),
    L2-normalised (so the dot product of two rows is their cosine in vocabulary space)."""
    rows, cols, vals = [], [], []
    vocab = None
    for idx, logits in model.iter_vocab_logits(texts, batch_size, desc="sparse", show_progress_bar=show_progress_bar):
        vocab = logits.shape[-1]
        top = torch.softmax(logits, dim=-1).topk(top_k, dim=-1)
        v = torch.nn.functional.normalize(top.values, dim=-1)
        rows.append(np.repeat(np.asarray(idx), top_k))
        cols.append(top.indices.cpu().numpy().ravel())
        vals.append(v.cpu().numpy().ravel().astype(np.float32))
    if vocab is None:
        raise Text2TokenError("no texts to encode")
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(len(texts), vocab), dtype=np.float32)


def build_index(model, docs: list[dict], output: str | os.PathLike, top_k: int = 128, batch_size: int = 32,
                model_ref: str = "", show_progress_bar: bool = True) -> dict:
    """Index ``docs`` (dicts with ``id`` and ``text``) into the folder ``output``; returns its summary."""
    texts = [d["text"] for d in docs]
    t0 = time.perf_counter()
    sparse = sparse_vectors(model, texts, top_k, batch_size, show_progress_bar)
    dense = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=show_progress_bar)
    summary = {"model": model_ref, "pooling": model.pooling, "attention": model.attention, "template": model.template,
               "max_length": model.max_length, "top_k": top_k, "documents": len(docs), "vocab_size": sparse.shape[1],
               "sparse_nnz": int(sparse.nnz), "seconds": round(time.perf_counter() - t0, 1)}
    with atomic_directory(output) as tmp:
        sp.save_npz(tmp / "sparse.npz", sparse)
        np.save(tmp / "dense.npy", dense.astype(np.float32))
        with open(tmp / "docs.jsonl", "w", encoding="utf-8") as fh:
            for d in docs:
                fh.write(json.dumps({"id": d["id"], "text": d["text"]}, ensure_ascii=False) + "\n")
        with open(tmp / "sparse_vectors.jsonl", "w", encoding="utf-8") as fh:
            for d, i in zip(docs, range(sparse.shape[0])):
                row = sparse.getrow(i)
                fh.write(json.dumps({"id": d["id"], "indices": row.indices.tolist(),
                                     "values": [round(float(x), 6) for x in row.data]}) + "\n")
        summary["sparse_bytes"] = (tmp / "sparse.npz").stat().st_size
        summary["dense_bytes"] = (tmp / "dense.npy").stat().st_size
        (tmp / INDEX_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


class SparseIndex:
    """A loaded index folder; ``search`` ranks documents for queries (sparse, dense, or hybrid)."""

    def __init__(self, folder: str | os.PathLike, model=None):
        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file():
            raise Text2TokenError(f"{folder} is not a text2token index (no {INDEX_FILE}); build one with text2token index")
        self.folder = folder
        self.info = json.loads((folder / INDEX_FILE).read_text())
        self.sparse = sp.load_npz(folder / "sparse.npz").tocsr()
        self.dense = np.load(folder / "dense.npy")
        with open(folder / "docs.jsonl", encoding="utf-8") as fh:
            self.docs = [json.loads(line) for line in fh]
        if model is None:
            from .model import Text2TokenModel

            model = Text2TokenModel.from_pretrained(self.info["model"], pooling=self.info["pooling"],
                                                    attention=self.info["attention"], template=self.info["template"],
                                                    max_length=self.info["max_length"])
        self.model = model

    def scores(self, queries: list[str], mode: str = "sparse", alpha: float = 0.5) -> np.ndarray:
        """Queries × documents scores. ``mode``: sparse (dot product of sparse vectors), dense (cosine), or
        hybrid (``alpha · dense + (1 − alpha) · sparse``)."""
        if mode not in ("sparse", "dense", "hybrid"):
            raise Text2TokenError(f"mode must be sparse, dense or hybrid, got '{mode}'")
        out = 0.0
        if mode in ("sparse", "hybrid"):
            q = sparse_vectors(self.model, queries, self.info["top_k"])
            s = (q @ self.sparse.T).toarray()
            out = s if mode == "sparse" else (1 - alpha) * s
        if mode in ("dense", "hybrid"):
            d = self.model.encode(queries, normalize_embeddings=True) @ self.dense.T
            out = d if mode == "dense" else out + alpha * d
        return np.asarray(out)

    def search(self, query: str, top: int = 10, mode: str = "sparse", alpha: float = 0.5) -> list[dict]:
        scores = self.scores([query], mode, alpha)[0]
        best = np.argsort(-scores, kind="stable")[:top]
        return [{"rank": r + 1, "score": float(scores[i]), **self.docs[i]} for r, i in enumerate(best)]
