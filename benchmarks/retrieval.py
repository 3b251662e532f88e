"""Dense vs sparse (top-k LM-head tokens) vs hybrid retrieval from one model, on the bundled
WordNet definition-retrieval task: nDCG@10 and P@10 of each mode and of each hybrid fusion
(min-max, reciprocal rank, raw) at several weights, index size, and query latency.

    python benchmarks/retrieval.py --model runs/demo/model          # the full task: 500 queries × 3,000 docs
    python benchmarks/retrieval.py --model runs/demo/model --quick  # 200 queries × 1,000 docs (the demo subset)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path



def precision_at_10(scores, qids, dids, qrels) -> float:
    import numpy as np

    relevant = {}
    for r in qrels:
        if float(r["score"]) > 0:
            relevant.setdefault(r["query_id"], set()).add(r["doc_id"])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return float(np.mean([len({dids[d] for d in row} & relevant.get(q, set())) / 10 for q, row in zip(qids, top)]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="text2token model folder, hub id, or 'default'")
    p.add_argument("--quick", action="store_true", help="the demo subset (200 queries × 1,000 documents)")
    p.add_argument("--top-k", type=int, default=128, help="tokens per sparse vector (default 128)")
    p.add_argument("--alphas", default="0.3,0.5,0.7", help="hybrid weights of the dense score to compare")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    from text2token import Text2TokenModel
    from text2token.evaluation.suite import load_task, ndcg_at_10
    from text2token.sparse_index import FUSIONS, SparseIndex, build_index, dense_and_sparse, fuse

    task = load_task("WordNetNounDefinitionRetrieval", limit=200 if args.quick else None)
    queries, corpus, qrels = task.data["queries"], task.data["corpus"], task.data["qrels"]
    model = Text2TokenModel.from_pretrained(args.model)
    print(f"{args.model}: {model.pooling} pooling, {model.attention}; {len(queries)} queries × {len(corpus)} documents")
    qtexts = [q["text"] for q in queries]
    qids, dids = [q["id"] for q in queries], [c["id"] for c in corpus]
    with tempfile.TemporaryDirectory() as d:
        info = build_index(model, [{"id": c["id"], "text": c["text"]} for c in corpus], Path(d) / "index",
                           top_k=args.top_k, model_ref=args.model, show_progress_bar=False)
        index = SparseIndex(Path(d) / "index", model=model)
        dense_and_sparse(model, qtexts[:4], args.top_k)  # warm-up
        t0 = time.perf_counter()
        q_dense, q_sparse = dense_and_sparse(model, qtexts, args.top_k)  # one pass: both query vectors
        encode_ms = 1000 * (time.perf_counter() - t0) / len(qtexts)
        t0 = time.perf_counter()
        dense = q_dense @ index.dense.T
        dense_ms = 1000 * (time.perf_counter() - t0) / len(qtexts)
        t0 = time.perf_counter()
        sparse = (q_sparse @ index.sparse.T).toarray()
        sparse_ms = 1000 * (time.perf_counter() - t0) / len(qtexts)

        def row(scores, score_ms):
            return {"ndcg_at_10": round(100 * ndcg_at_10(scores, qids, dids, qrels), 2),
                    "p_at_10": round(100 * precision_at_10(scores, qids, dids, qrels), 2),
                    "ms_scoring_per_query": round(score_ms, 4)}

        rows = {"dense": row(dense, dense_ms), "sparse": row(sparse, sparse_ms)}
        for fusion in FUSIONS:
            for alpha in (float(a) for a in args.alphas.split(",")):
                t0 = time.perf_counter()
                fused = fuse(dense, sparse, alpha, fusion)
                rows[f"hybrid {fusion} α={alpha:g}"] = row(fused, dense_ms + sparse_ms +
                                                            1000 * (time.perf_counter() - t0) / len(qtexts))
    result = {"model": args.model, "queries": len(queries), "documents": len(corpus), "top_k": args.top_k,
              "modes": rows, "query_encode_ms_per_query": round(encode_ms, 2), "sparse_bytes": info["sparse_bytes"],
              "dense_bytes": info["dense_bytes"],
              "sparse_over_dense_ndcg": round(rows["sparse"]["ndcg_at_10"] / rows["dense"]["ndcg_at_10"], 3),
              "sparse_over_dense_bytes": round(info["sparse_bytes"] / info["dense_bytes"], 3)}
    print("\n| mode | nDCG@10 | P@10 | ms/query scoring |\n|---|---|---|---|")
    for mode, r in rows.items():
        print(f"| {mode} | {r['ndcg_at_10']:.2f} | {r['p_at_10']:.2f} | {r['ms_scoring_per_query']:.4f} |")
    print(f"\nquery encoding (dense + sparse, one pass): {encode_ms:.1f} ms/query; sparse/dense nDCG@10 = "
          f"{result['sparse_over_dense_ndcg']:.2f}; index size sparse {info['sparse_bytes'] / 1024:.0f} KiB vs dense "
          f"{info['dense_bytes'] / 1024:.0f} KiB ({result['sparse_over_dense_bytes']:.2f}×)")
    if args.json:
        from text2token.textio import write_json_atomic

        write_json_atomic(args.json, result)
        print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
