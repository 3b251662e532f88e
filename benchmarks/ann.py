"""The ANN graph of ``text2token index`` (usearch HNSW, f16) against exact search in the same process: recall@10 of
the graph's top-10 against the exact top-10, build time, size, and single-query latency p50/p99 of both.

1. A synthetic corpus: ``--vectors`` unit vectors of dimension 576 (SmolLM2's hidden size) drawn around 2,000
   random centres (embeddings cluster; uniform random vectors are a worst case no real corpus looks like), and
   1,000 held-out queries from the same distribution.
2. The bundled WordNet retrieval task with a model (``--model``): 3,000 documents, 500 queries, recall@10 and
   nDCG@10 of graph search vs exact search.

    python benchmarks/ann.py --vectors 1000000 --model runs/demo/model --json benchmarks/results/ann.json
    python benchmarks/ann.py --vectors 20000                      # a quick look
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n: int, dim: int, queries: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((2000, dim)))

    def draw(k):
        out = np.empty((k, dim), dtype=np.float32)
        for lo in range(0, k, 100_000):
            hi = min(k, lo + 100_000)
            out[lo:hi] = _unit(
                centres[rng.integers(0, len(centres), hi - lo)] + 0.06 * rng.standard_normal((hi - lo, dim))
            )
        return out

    return draw(n), draw(queries)


def exact_top(vectors, queries, k=10):
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for lo in range(0, len(vectors), 200_000):
        s = queries @ vectors[lo : lo + 200_000].T
        part = np.argpartition(-s, k, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + lo], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def measure(vectors, queries, folder: Path, label: str) -> dict:
    from text2token.retrieval.ann import DenseANN, build_ann

    t0 = time.perf_counter()
    build_ann([(0, vectors)], folder / f"{label}.usearch", vectors.shape[1])
    build_s = time.perf_counter() - t0
    ann = DenseANN(folder / f"{label}.usearch", vectors.shape[1])
    exact = exact_top(vectors, queries)
    found, _ = ann.search(queries, 10)
    recall = float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(found, exact)]))
    lat_ann, lat_exact = [], []
    for q in queries[:300]:
        t = time.perf_counter()
        ann.search(q[None, :], 10)
        lat_ann.append(time.perf_counter() - t)
        t = time.perf_counter()
        s = vectors @ q
        np.argpartition(-s, 10)[:10]
        lat_exact.append(time.perf_counter() - t)
    row = {
        "vectors": len(vectors),
        "dim": int(vectors.shape[1]),
        "recall_at_10": round(recall, 4),
        "build_s": round(build_s, 1),
        "index_mb": round((folder / f"{label}.usearch").stat().st_size / 2**20, 1),
        "ann_ms_p50": round(1000 * float(np.percentile(lat_ann, 50)), 3),
        "ann_ms_p99": round(1000 * float(np.percentile(lat_ann, 99)), 3),
        "exact_ms_p50": round(1000 * float(np.percentile(lat_exact, 50)), 3),
        "exact_ms_p99": round(1000 * float(np.percentile(lat_exact, 99)), 3),
    }
    row["speedup_p50"] = round(row["exact_ms_p50"] / row["ann_ms_p50"], 1)
    print(
        f"{label}: {row['vectors']:,} × {row['dim']}: recall@10 {recall:.4f}; build {build_s:.1f} s, "
        f"{row['index_mb']} MB; query p50/p99 ANN {row['ann_ms_p50']}/{row['ann_ms_p99']} ms vs exact "
        f"{row['exact_ms_p50']}/{row['exact_ms_p99']} ms ({row['speedup_p50']}× at p50)",
        flush=True,
    )
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vectors", default="1000000", help="synthetic corpus sizes, comma-separated")
    p.add_argument("--model", help="also measure on the bundled WordNet retrieval task with this model")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    report: dict = {"synthetic": {}}
    with tempfile.TemporaryDirectory() as d:
        for n in [int(x) for x in args.vectors.split(",") if x]:
            vectors, queries = synthetic(n, 576, 1000)
            report["synthetic"][str(n)] = measure(vectors, queries, Path(d), f"synthetic-{n}")
            del vectors
        if args.model:
            from text2token import Text2TokenModel
            from text2token.evaluation.suite import load_task, ndcg_at_10

            task = load_task("WordNetNounDefinitionRetrieval")
            qs, corpus, qrels = task.data["queries"], task.data["corpus"], task.data["qrels"]
            model = Text2TokenModel.from_pretrained(args.model)
            docs = model.encode([c["text"] for c in corpus], normalize_embeddings=True)
            qv = model.encode([q["text"] for q in qs], normalize_embeddings=True)
            row = measure(docs, qv, Path(d), "wordnet")
            from text2token.retrieval.ann import DenseANN

            rows, cos = DenseANN(Path(d) / "wordnet.usearch", docs.shape[1]).search(qv, 10)
            approx = np.full((len(qs), len(corpus)), -np.inf, dtype=np.float32)
            np.put_along_axis(approx, rows, cos, 1)
            qids, dids = [q["id"] for q in qs], [c["id"] for c in corpus]
            row["ndcg_at_10_exact"] = round(100 * ndcg_at_10(qv @ docs.T, qids, dids, qrels), 2)
            row["ndcg_at_10_ann"] = round(100 * ndcg_at_10(approx, qids, dids, qrels), 2)
            print(f"wordnet nDCG@10: exact {row['ndcg_at_10_exact']}, ANN {row['ndcg_at_10_ann']}")
            report["wordnet"] = row
    if args.json:
        from text2token.textio import write_json_atomic

        write_json_atomic(args.json, report)
        print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
